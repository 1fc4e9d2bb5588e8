#!/usr/bin/env bash
# The course on other package versions than the lock file's, each in its own environment.
#
#   bash scripts/test_versions.sh colab  [install|run]   Colab's versions (.venv-colab)
#   bash scripts/test_versions.sh newest [install|run]   the newest versions pip finds today (.venv-newest)
#
# With no second argument: install, then run. .ci/run installs both beside the main environment,
# then runs them after the main run.
#
# colab: every package Colab ships at Colab's version, from the snapshot colab/pip-freeze.gpu.txt
#   (scripts/colab_snapshot.py writes the constraints; the CPU build of torch 2.13.0 stands in for
#   Colab's CUDA torch 2.11), and every other requirement at its floor in requirements.txt. The
#   course's floors are Colab's versions (tests/test_colab.py), so this is also the lower-bound
#   environment. It runs the unit tests (with SDNOTES_COLAB_ENV=1: the check that the Colab setup
#   cell replaces none of Colab's packages must run here), every notebook on the pocket model, and
#   05 and 08 on the SD-shaped models. Notebooks 00, 01 and 12 (the widget panels) are run in the
#   classic Notebook 6.5 with ipywidgets 7 in Chromium instead of by nbmake (tests/test_browser.py):
#   each notebook runs once in this environment.
# newest: no constraints. The unit tests and the notebooks that lean most on library internals:
#   attention capture (05), the hand-written loops (07), img2img/inpainting (08), editing (10),
#   LoRA with peft (11), the ControlNet (12); 05 and 08 also on the SD-shaped models.
#
# The package itself is not installed into these environments: the tests import it from this
# checkout (pytest's rootdir and the kernels' PYTHONPATH, scripts/notebook_kernel.py), so the
# installs can run while scripts/setup.sh installs it into .venv. Its dependencies and the dev
# extra are read from pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
kind="${1:-}"
mode="${2:-all}"
case "$kind" in colab|newest) ;; *) echo "usage: bash scripts/test_versions.sh colab|newest [install|run]" >&2; exit 2 ;; esac
case "$mode" in all|install|run) ;; *) echo "usage: bash scripts/test_versions.sh $kind [install|run]" >&2; exit 2 ;; esac
started_at=$(date +%s)
venv=".venv-$kind"

if [ "$mode" != run ]; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  constraints="$venv/constraints.txt"
  if [ "$kind" = colab ]; then
    python3 scripts/colab_snapshot.py constraints "$constraints"
    echo "$kind: $(head -1 colab/pip-freeze.gpu.txt)"
  else
    echo "torch==2.13.0" > "$constraints"  # the CPU build the test machines have
  fi
  python3 - "$venv/requirements.txt" "$kind" <<'PYTHON'
import sys, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
extras = ["dev"] + (["browser-classic"] if sys.argv[2] == "colab" else [])
requirements = project["dependencies"] + [r for extra in extras for r in project["optional-dependencies"][extra]]
open(sys.argv[1], "w").write("\n".join(requirements) + "\n")
PYTHON
  "$venv/bin/python" -m pip install -q -c "$constraints" torch==2.13.0
  "$venv/bin/python" -m pip install -q -c "$constraints" -r "$venv/requirements.txt"
  "$venv/bin/python" -m pip install -q --no-deps "open-clip-torch==3.3.0"
  "$venv/bin/python" - <<'PYTHON'
from importlib.metadata import PackageNotFoundError, version
shown = []
for name in ["torch", "diffusers", "transformers", "peft", "huggingface_hub", "accelerate", "ipywidgets",
             "ipython", "ipykernel", "notebook", "matplotlib", "numpy"]:
    try:
        shown.append(f"{name} {version(name)}")
    except PackageNotFoundError:
        pass
print("  " + ", ".join(shown))
PYTHON
  echo "$kind: installed in $(( $(date +%s) - started_at )) s"
fi

if [ "$mode" != install ]; then
  shopt -s nullglob
  failed=0
  if [ "$kind" = colab ]; then
    # Every notebook but the widget panels (00, 01, 12), which the browser test runs in the classic Notebook.
    notebooks=()
    for path in notebooks/[0-9][0-9]_*.ipynb; do
      case "$(basename "$path")" in 00_*|01_*|12_*) ;; *) notebooks+=("$path") ;; esac
    done
    SDNOTES_COLAB_ENV=1 "$venv/bin/python" -m pytest -q -p no:cacheprovider -n 2 --nbmake tests "${notebooks[@]}" \
      -k "not sd_shaped_model or 05_cross_attention or 08_img2img_inpainting" || failed=1
    SDNOTES_NOTEBOOK_FRONT_END=classic "$venv/bin/python" -m pytest -q -p no:cacheprovider -m browser \
      tests/test_browser.py -k "notebook" -rs -v || failed=1
  else
    notebooks=(notebooks/05_*.ipynb notebooks/07_*.ipynb notebooks/08_*.ipynb notebooks/10_*.ipynb notebooks/11_*.ipynb notebooks/12_*.ipynb)
    "$venv/bin/python" -m pytest -q -p no:cacheprovider -n 2 --nbmake tests "${notebooks[@]}" \
      -k "not sd_shaped_model or 05_cross_attention or 08_img2img_inpainting" || failed=1
  fi
  if [ "$failed" -ne 0 ]; then
    echo "$kind: FAILED (see above), after $(( $(date +%s) - started_at )) s" >&2
    exit 1
  fi
  echo "$kind: passed in $(( $(date +%s) - started_at )) s"
fi
