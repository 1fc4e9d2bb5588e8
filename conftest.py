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

DEFAULT_NOTEBOOK_BUDGET_S = 60
BUDGET_FAILS_AT = 3.0

# nbmake starts its kernels with this process's environment.
os.environ.update(kernel_environment())


def pytest_addoption(parser):
    parser.addoption("--executed-dir", default=None, metavar="DIR",
                     help="keep every notebook nbmake executes, with its outputs, in DIR (notebooks/ is never written)")


def pytest_configure(config):
    executed_dir = config.getoption("--executed-dir")
    if config.getoption("overwrite", default=False):
        raise pytest.UsageError("--overwrite would write outputs into notebooks/; use --executed-dir DIR instead")
    if executed_dir:
        keep_executed_notebooks(Path(executed_dir).resolve())


def keep_executed_notebooks(executed_dir):
    """After nbmake runs a notebook, write the executed copy (outputs included) into executed_dir."""
    from nbmake.nb_run import NotebookRun

    executed_dir.mkdir(parents=True, exist_ok=True)
    run_notebook = NotebookRun.execute

    def run_and_keep(self):
        result = run_notebook(self)
        nbformat.write(result.nb, executed_dir / Path(self.filename).name)
        return result

    NotebookRun.execute = run_and_keep


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
