"""Every module of the sdnotes package imports on its own: no circular imports.

A module that is only importable after another one was imported first (a
cycle, or a missing import hidden by the order the tests happen to run in)
fails here. One fresh Python imports the modules one at a time, and before
each it forgets every sdnotes module imported so far (`sys.modules`), so
nothing imported before can help; the libraries (torch, diffusers) stay
loaded, which keeps this fast. The list comes from the package folder itself,
skipping none.
"""

import json
import pathlib
import subprocess
import sys

import sdnotes

PACKAGE_DIR = pathlib.Path(sdnotes.__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent

IMPORT_EACH_ALONE = """
import importlib, json, sys, traceback

failures = {}
for module in json.loads(sys.argv[1]):
    for name in [name for name in sys.modules if name == "sdnotes" or name.startswith("sdnotes.")]:
        del sys.modules[name]
    try:
        importlib.import_module(module)
    except Exception:
        failures[module] = traceback.format_exc(limit=-4)
print(json.dumps(failures))
"""


def package_modules():
    """Dotted names of every .py file under sdnotes/ (packages by their __init__)."""
    names = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


def test_every_module_imports_alone():
    modules = package_modules()
    assert "sdnotes.pocket.control.train" in modules and "sdnotes.pocket.concept.__main__" in modules
    result = subprocess.run([sys.executable, "-c", IMPORT_EACH_ALONE, json.dumps(modules)], cwd=REPO_ROOT,
                            capture_output=True, text=True, check=True)
    failures = json.loads(result.stdout.strip().splitlines()[-1])
    report = "\n".join(f"--- import {module} (alone) failed:\n{error}" for module, error in failures.items())
    assert not failures, report
