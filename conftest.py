"""Repository-wide pytest setup: how notebooks run under the tests, where their outputs go, their budgets.

`pytest -n 2 --nbmake tests notebooks` runs every notebook in a fresh Jupyter
kernel, two at a time (pytest-xdist). Added here:

* The kernels' environment comes from scripts/notebook_kernel.py (this
  checkout on PYTHONPATH, PyTorch on one thread), the same as for every other
  place that starts a kernel.
* `--executed-dir DIR` keeps each executed notebook, with its outputs, in DIR
  (CI builds the website from there). `notebooks/` is never written: the
  notebooks there stay clean whatever order the tests run in.
* Each notebook has a budget: `"sdnotes": {"budget_s": 60}` in the notebook's
  metadata, 60 seconds if absent (the course's promise on an idle 2-core
  machine). The run-time table at the end reports each notebook's time and
  marks those over budget. Only a notebook that takes more than
  BUDGET_FAILS_AT times its budget fails: a margin that no busy machine
  reaches (a loaded shared machine ran notebooks up to about 2x slower), so a
  red run means the notebook grew, not that the machine was busy. nbmake's own
  `--nbmake-timeout` is a per-cell hang guard.
* Every number in a notebook's Markdown must be printed or computed by one of
  its cells (scripts/prose_numbers.py says what counts): after nbmake runs a
  notebook, its executed copy is checked, and a notebook with unbacked numbers
  fails with the list. The notebooks checked are those numbered
  PROSE_CHECKED_FROM and up (the advanced track; 00-09 still have numbers
  to back, mostly in 09's results table). Only the locked environment checks
  prose (the versions of PROSE_CHECK_PACKAGES installed here equal
  requirements-lock.txt's, and SDNOTES_MODEL is unset or "pocket"): the
  notebooks print what the lock's
  libraries compute, and other versions (scripts/test_versions.sh: Colab's,
  the newest) may change a last digit, which is not what that run tests. The
  summary says when prose was not checked and why; SDNOTES_PROSE_NUMBERS=1
  forces the check, =0 turns it off.
"""

import json
import os
import sys
from pathlib import Path

import nbformat
import pytest

REPO_ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO_ROOT / "scripts"))
from notebook_kernel import kernel_environment  # noqa: E402  (scripts/notebook_kernel.py)
from prose_numbers import report as prose_numbers_report, unbacked_numbers  # noqa: E402  (scripts/prose_numbers.py)

DEFAULT_NOTEBOOK_BUDGET_S = 60
BUDGET_FAILS_AT = 3.0
# The libraries whose numbers the notebooks print; prose is checked only where they are the lock's versions.
PROSE_CHECK_PACKAGES = ["torch", "diffusers", "transformers", "numpy", "peft", "accelerate", "safetensors",
                        "torchmetrics", "pillow", "matplotlib"]
PROSE_CHECKED_FROM = 10  # notebooks NN_*.ipynb with NN >= this have their prose checked
EXECUTED_NOTEBOOKS = {}  # notebook file name -> its executed copy (this process's runs)

# nbmake starts its kernels with this process's environment.
os.environ.update(kernel_environment())


def pytest_addoption(parser):
    parser.addoption("--executed-dir", default=None, metavar="DIR",
                     help="keep every notebook nbmake executes, with its outputs, in DIR (notebooks/ is never written)")


def pytest_configure(config):
    executed_dir = config.getoption("--executed-dir")
    if config.getoption("overwrite", default=False):
        raise pytest.UsageError("--overwrite would write outputs into notebooks/; use --executed-dir DIR instead")
    keep_executed_notebooks(Path(executed_dir).resolve() if executed_dir else None)
    config.prose_numbers_skipped = prose_check_skipped()


def keep_executed_notebooks(executed_dir):
    """After nbmake runs a notebook, keep the executed copy (outputs included) for the prose check,
    and write it into executed_dir if given."""
    try:
        from nbmake.nb_run import NotebookRun
    except ImportError:  # nbmake not installed: no notebook runs to keep
        return
    if executed_dir:
        executed_dir.mkdir(parents=True, exist_ok=True)
    run_notebook = NotebookRun.execute

    def run_and_keep(self):
        result = run_notebook(self)
        EXECUTED_NOTEBOOKS[Path(self.filename).name] = result.nb
        if executed_dir:
            nbformat.write(result.nb, executed_dir / Path(self.filename).name)
        return result

    NotebookRun.execute = run_and_keep


def prose_check_skipped():
    """Why this run does not check the numbers in the notebooks' prose, or None if it does."""
    forced = os.environ.get("SDNOTES_PROSE_NUMBERS")
    if forced == "1":
        return None
    if forced == "0":
        return "SDNOTES_PROSE_NUMBERS=0"
    model = os.environ.get("SDNOTES_MODEL", "pocket")
    if model != "pocket":
        return f"SDNOTES_MODEL={model} (the prose describes the pocket model)"
    from importlib.metadata import PackageNotFoundError, version

    lock = {}
    for line in (REPO_ROOT / "requirements-lock.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, pinned = line.split("==", 1)
            lock[name.lower()] = pinned
    differences = []
    for name in PROSE_CHECK_PACKAGES:
        try:
            installed = version(name).split("+")[0]  # 2.13.0+cpu is the lock's 2.13.0
        except PackageNotFoundError:
            installed = "not installed"
        if installed != lock.get(name):
            differences.append(f"{name} {installed} (lock: {lock.get(name)})")
    if differences:
        return "not the locked environment: " + ", ".join(differences)
    return None


def notebook_budget_s(notebook_path):
    """The time budget in seconds stored in a notebook's metadata (default 60)."""
    with open(notebook_path, encoding="utf-8") as notebook_file:
        metadata = json.load(notebook_file).get("metadata", {})
    return float(metadata.get("sdnotes", {}).get("budget_s", DEFAULT_NOTEBOOK_BUDGET_S))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    # The budget is enforced on the report rather than by raising, because nbmake
    # would show an exception of ours as "NBMAKE INTERNAL ERROR".
    report = yield
    if item.path.suffix != ".ipynb" or call.when != "call" or not report.passed:
        return report
    executed = EXECUTED_NOTEBOOKS.pop(item.path.name, None)
    number = item.path.name.split("_")[0]
    prose_checked = number.isdigit() and int(number) >= PROSE_CHECKED_FROM
    if executed is not None and prose_checked and item.config.prose_numbers_skipped is None:
        problems = unbacked_numbers(executed)
        if problems:
            report.outcome = "failed"
            report.longrepr = "\n".join(prose_numbers_report(item.path, problems))
            return report
    budget_s = notebook_budget_s(item.path)
    elapsed_s = call.duration
    if elapsed_s > BUDGET_FAILS_AT * budget_s:
        report.outcome = "failed"
        report.longrepr = (
            f"{item.path.name} ran for {elapsed_s:.1f} s, over {BUDGET_FAILS_AT:g}x its budget of {budget_s:.0f} s "
            f'(notebook metadata "sdnotes": {{"budget_s": ...}}). '
            f"Shrink the sizes in its parameters cell."
        )
    return report


def pytest_terminal_summary(terminalreporter):
    """List each notebook's run time, so budgets can be watched as the course grows."""
    lines = []
    for report in terminalreporter.getreports("passed") + terminalreporter.getreports("failed"):
        if report.when == "call" and report.nodeid.split("::")[0].endswith(".ipynb"):
            budget_s = notebook_budget_s(terminalreporter.config.rootpath / report.nodeid.split("::")[0])
            mark = "" if report.duration <= budget_s else f"  (over its {budget_s:.0f} s budget)"
            lines.append(f"{report.nodeid}: {report.duration:.1f} s{mark}")
    if lines:
        terminalreporter.write_sep("-", "notebook run times")
        for line in sorted(lines):
            terminalreporter.write_line(line)
        skipped = terminalreporter.config.prose_numbers_skipped
        if skipped:
            terminalreporter.write_line(f"numbers in the notebooks' prose not checked: {skipped}")
