"""Repository-wide pytest setup: kernels import this checkout; notebooks have time budgets.

`pytest --nbmake notebooks` runs every notebook in a fresh Jupyter kernel. Two
things are added here:

* The repository root is put on PYTHONPATH, so the kernels (started with the
  notebook's folder as working directory) import `sdnotes` from this checkout,
  installed or not.
* Each notebook must finish within its budget: `"sdnotes": {"budget_s": 60}` in
  the notebook's metadata, 60 seconds if absent. A notebook that runs but takes
  longer fails with the measured time (the whole run, kernel start included).
  nbmake's own `--nbmake-timeout` is a per-cell hang guard; the budget is the
  course's promise that a whole notebook is quick.
"""

import json
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent
DEFAULT_NOTEBOOK_BUDGET_S = 60


def _put_repo_on_kernel_path():
    paths = [str(REPO_ROOT)]
    existing = os.environ.get("PYTHONPATH")
    if existing:
        paths.append(existing)
    os.environ["PYTHONPATH"] = os.pathsep.join(paths)


_put_repo_on_kernel_path()


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
    if elapsed_s > budget_s:
        report.outcome = "failed"
        report.longrepr = (
            f"{item.path.name} ran for {elapsed_s:.1f} s, over its budget of {budget_s:.0f} s "
            f'(notebook metadata "sdnotes": {{"budget_s": ...}}). '
            f"Shrink the sizes in its parameters cell."
        )
    return report


def pytest_terminal_summary(terminalreporter):
    """List each notebook's run time, so budgets can be watched as the course grows."""
    lines = []
    for report in terminalreporter.getreports("passed") + terminalreporter.getreports("failed"):
        if report.when == "call" and report.nodeid.split("::")[0].endswith(".ipynb"):
            lines.append(f"{report.nodeid}: {report.duration:.1f} s")
    if lines:
        terminalreporter.write_sep("-", "notebook run times")
        for line in lines:
            terminalreporter.write_line(line)
