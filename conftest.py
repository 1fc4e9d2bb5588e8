"""Repository-wide pytest setup: kernels import this checkout; notebooks have time budgets.

`pytest --nbmake notebooks` runs every notebook in a fresh Jupyter kernel. Two
things are added here:

* The repository root is put on PYTHONPATH, so the kernels (started with the
  notebook's folder as working directory) import `sdnotes` from this checkout,
  installed or not.
* Kernels run PyTorch with one thread (OMP_NUM_THREADS=1, unless already set):
  on a 2-core test machine, two threads per process made notebooks 5-20x
  slower as soon as anything else ran; one thread is slower by much less and
  predictable.
* Each notebook has a budget: `"sdnotes": {"budget_s": 60}` in the notebook's
  metadata, 60 seconds if absent (the course's promise on an idle 2-core
  machine). The run-time table at the end marks notebooks over budget; a
  notebook that takes more than BUDGET_FAILS_AT times its budget fails with the
  measured time (the whole run, kernel start included). The slack is there
  because a shared test machine under load ran the same notebook 3-6x slower
  than an idle one; a notebook that doubles its idle time still fails.
  nbmake's own `--nbmake-timeout` is a per-cell hang guard.
"""

import json
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent
DEFAULT_NOTEBOOK_BUDGET_S = 60
BUDGET_FAILS_AT = 2.0


def _put_repo_on_kernel_path():
    paths = [str(REPO_ROOT)]
    existing = os.environ.get("PYTHONPATH")
    if existing:
        paths.append(existing)
    os.environ["PYTHONPATH"] = os.pathsep.join(paths)


_put_repo_on_kernel_path()
os.environ.setdefault("OMP_NUM_THREADS", "1")


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
        for line in lines:
            terminalreporter.write_line(line)
