"""The course on Colab's own package versions (colab/pip-freeze.gpu.txt, scripts/colab_snapshot.py).

* Every requirement of the course admits the version Colab ships (torch too:
  Colab's CUDA build 2.11.0+cu128 is torch 2.11.0).
* The Colab setup cell changes nothing Colab already has: pip's dry-run of
  exactly what the cell installs (`pip install -e <the course>`), in an
  environment that holds Colab's versions, installs no package that the
  snapshot lists in another version. CI runs it in .venv-colab
  (scripts/test_colab.sh, which sets SDNOTES_COLAB_ENV=1); elsewhere the
  environment holds other versions, so it says why and skips.
* The snapshot says where and when it came from, and the constraints for that
  environment hold Colab's versions with the CPU torch standing in.
"""

import json
import os
import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import nbformat
import pytest
from packaging.requirements import Requirement
from packaging.version import Version

import colab_snapshot  # scripts/ is on sys.path (conftest.py)

REPO_ROOT = Path(__file__).resolve().parent.parent
IN_COLAB_ENV = os.environ.get("SDNOTES_COLAB_ENV") == "1"


def course_requirements():
    lines = (REPO_ROOT / "requirements.txt").read_text().splitlines()
    return [Requirement(line.split("#")[0].strip()) for line in lines if line.split("#")[0].strip()]


def test_every_requirement_admits_colabs_version():
    colab = colab_snapshot.read_snapshot()
    checked = []
    for requirement in course_requirements():
        shipped = colab.get(colab_snapshot.canonical(requirement.name))
        if shipped is None:
            continue  # Colab lacks it; the setup cell installs it
        public = Version(shipped).public  # 2.11.0+cu128 -> 2.11.0
        assert requirement.specifier.contains(public, prereleases=True), (
            f"requirements.txt: {requirement} does not admit Colab's {requirement.name} {shipped} "
            f"({colab_snapshot.snapshot_header()}); lower the floor and run the course on it (scripts/test_colab.sh)")
        checked.append(requirement.name)
    assert {"torch", "diffusers", "transformers", "peft", "ipywidgets"} <= set(checked)


def test_snapshot_says_where_and_when_it_came_from():
    header = colab_snapshot.snapshot_header()
    assert colab_snapshot.SOURCE in header
    assert re.search(r"commit \w+ of \d{4}-\d{2}-\d{2}", header), header


def test_constraints_are_colabs_versions_with_the_cpu_torch_standing_in():
    lines = colab_snapshot.constraints()
    pins = dict(line.split("==") for line in lines)
    colab = colab_snapshot.read_snapshot()
    assert pins["torch"] == "2.13.0" and lines.count("torch==2.13.0") == 1
    for name in ("diffusers", "transformers", "peft", "ipywidgets", "ipython", "notebook", "numpy"):
        assert pins[name] == colab[name]
    assert not any("+" in pin or name.startswith("nvidia-") for name, pin in pins.items())


def colab_cell_install_target():
    """What the notebooks' Colab cell passes to pip (`%pip install -q -e sdnotes`: the cloned course)."""
    notebook = nbformat.read(REPO_ROOT / "notebooks" / "00_first_picture.ipynb", as_version=4)
    cell = next(cell.source for cell in notebook.cells if '"google.colab" in sys.modules' in cell.source)
    pip_lines = [line.strip() for line in cell.splitlines() if line.strip().startswith("%pip install")]
    assert pip_lines == ["%pip install -q -e sdnotes"], pip_lines
    return ["-e", str(REPO_ROOT)]


def installed_version(name):
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def test_setup_cell_installs_nothing_colab_has_in_another_version(tmp_path):
    colab = colab_snapshot.read_snapshot()
    differing = []
    for requirement in course_requirements():
        name = colab_snapshot.canonical(requirement.name)
        have = installed_version(requirement.name)
        if name in colab and name != "torch" and have is not None and have != colab[name]:
            differing.append(f"{requirement.name} {have} (Colab: {colab[name]})")
    if differing and not IN_COLAB_ENV:
        pytest.skip("this environment does not hold Colab's versions (" + ", ".join(differing[:3]) +
                    "); CI runs this check in .venv-colab (bash scripts/test_colab.sh)")
    assert not differing, f"SDNOTES_COLAB_ENV=1 but this environment differs from Colab's: {differing}"
    report_path = tmp_path / "report.json"
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--report", str(report_path),
               *colab_cell_install_target()]
    subprocess.run(command, check=True, cwd=tmp_path, timeout=600)
    report = json.loads(report_path.read_text())
    replaced = []
    for item in report["install"]:
        name = colab_snapshot.canonical(item["metadata"]["name"])
        new_version = item["metadata"]["version"]
        if name in colab and name != "sdnotes" and Version(new_version).public != Version(colab[name]).public:
            replaced.append(f"{name} {colab[name]} -> {new_version}")
    assert not replaced, "the Colab setup cell would replace Colab's packages: " + ", ".join(replaced)


def test_dtype_option_reaches_from_pretrained_on_the_installed_diffusers(tmp_path):
    """diffusers 0.40 renamed `torch_dtype` to `dtype`; Colab's 0.39 ignores `dtype` for pipelines and
    rejects it for models. `sdnotes.hub.dtype_option` spells it for the installed version."""
    import torch
    from diffusers import ControlNetModel

    from sdnotes.hub import dtype_option

    small = ControlNetModel(block_out_channels=(8, 16), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                            layers_per_block=1, cross_attention_dim=8, attention_head_dim=2, norm_num_groups=4,
                            conditioning_embedding_out_channels=(4, 8))
    small.save_pretrained(tmp_path / "controlnet")
    loaded = ControlNetModel.from_pretrained(tmp_path / "controlnet", **dtype_option(torch.float16))
    assert next(loaded.parameters()).dtype == torch.float16
