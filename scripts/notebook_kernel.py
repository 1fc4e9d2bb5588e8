"""The environment of a Jupyter kernel that runs a course notebook outside a learner's Jupyter.

Four places start such kernels: the test run (conftest.py, through nbmake), the
runs on SD-shaped models (tests/test_notebooks_sd_shaped.py), the site build
(scripts/build_site.py, for notebooks that were not run yet) and JupyterLab in
the browser tests (tests/test_browser.py). All of them take the kernel's
environment from `kernel_environment` here:

* `PYTHONPATH` starts with the repository root, so the kernel (started in the
  notebook's folder) imports `sdnotes` from this checkout, installed or not.
* `OMP_NUM_THREADS=1` unless already set: PyTorch on one thread. The tests run
  two kernels at a time on a 2-core machine (pytest-xdist, `-n 2`); a second
  thread per kernel would only make them fight over the cores (two spinning
  threads per process made the same 25-step run 14x slower on a busy machine).
* `model="tiny-sd15"` (etc.) also sets `SDNOTES_MODEL`, which the notebooks'
  parameters cell reads, and matplotlib's non-drawing Agg backend: those runs
  check code paths, and nobody looks at their figures.
"""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def kernel_environment(base=None, model=None):
    """A copy of `base` (default: this process's environment) for a notebook kernel, as above."""
    environment = dict(os.environ if base is None else base)
    paths = [str(REPO_ROOT)]
    for path in environment.get("PYTHONPATH", "").split(os.pathsep):
        if path and path not in paths:
            paths.append(path)
    environment["PYTHONPATH"] = os.pathsep.join(paths)
    environment.setdefault("OMP_NUM_THREADS", "1")
    if model is not None:
        environment["SDNOTES_MODEL"] = model
        environment["MPLBACKEND"] = "Agg"
    return environment
