"""Python 3.13 (Colab's) cannot be installed on the test machines (Python 3.11), so what 3.12 and
3.13 removed is checked in the source instead: no module of the course, its scripts, tests,
benchmarks or notebooks imports a standard-library module or uses a name that Python 3.12 or 3.13
removed (PEP 594's "dead batteries", distutils, imp, ...; What's New in Python 3.12 and 3.13).
What this does not cover (the README says so): behaviour changes inside modules that still exist,
and the packages' own 3.13 builds, which Colab runs.
"""

import ast
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
# What's New in Python 3.12 ("Removed") and 3.13 ("PEP 594: Remove dead batteries", lib2to3, ...).
REMOVED_MODULES = {
    "distutils", "imp", "asynchat", "asyncore", "smtpd",  # 3.12
    "aifc", "audioop", "cgi", "cgitb", "chunk", "crypt", "imghdr", "mailcap", "msilib", "nis", "nntplib",
    "ossaudiodev", "pipes", "sndhdr", "spwd", "sunau", "telnetlib", "uu", "xdrlib", "lib2to3",  # 3.13
}
# Names removed from modules that still exist (3.12: unittest aliases, ssl.wrap_socket, configparser's
# SafeConfigParser; 3.13: locale.resetlocale, typing.io / typing.re, pathlib's is_reserved stays).
REMOVED_NAMES = re.compile(r"\b(assertEquals|assertNotEquals|assertRegexpMatches|assertDictContainsSubset|"
                           r"ssl\.wrap_socket|SafeConfigParser|locale\.resetlocale|typing\.io|typing\.re)\b")


def python_sources():
    sources = {}
    for folder in ("sdnotes", "scripts", "tests", "benchmarks", "site"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.name == Path(__file__).name:
                continue  # this file names what it looks for
            sources[str(path.relative_to(ROOT))] = path.read_text(encoding="utf-8")
    sources["conftest.py"] = (ROOT / "conftest.py").read_text(encoding="utf-8")
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        code = []
        for cell in notebook.cells:
            if cell.cell_type == "code":  # IPython's ! and % lines are not Python: `pass` stands in
                lines = cell.source.splitlines()
                code.append("\n".join(line[:len(line) - len(line.lstrip())] + "pass" if line.lstrip().startswith(("!", "%"))
                                      else line for line in lines))
        sources[f"notebooks/{path.name}"] = "\n\n".join(code)
    return sources


SOURCES = python_sources()


def imported_modules(source):
    modules = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module.split(".")[0])
    return modules


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_uses_nothing_python_3_13_removed(name):
    source = SOURCES[name]
    removed = imported_modules(source) & REMOVED_MODULES
    assert not removed, f"{name} imports {sorted(removed)}, removed from the standard library in Python 3.12/3.13"
    names = sorted(set(REMOVED_NAMES.findall(source)))
    assert not names, f"{name} uses {names}, removed in Python 3.12/3.13"


def test_the_check_sees_a_removed_module():
    assert imported_modules("import cgi\nfrom distutils.util import strtobool") & REMOVED_MODULES == {"cgi", "distutils"}
