"""Every notebook is stored clean and has the course's standard parts.

Clean: no outputs, no execution counts (run `nbstripout notebooks/*.ipynb`).
Standard parts (see the conventions): a Colab-only install cell, a parameters
cell with `MODEL = `, an exercises section, and the `python3` kernel.
"""

import json
from pathlib import Path

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))


def read_notebook(path):
    with open(path, encoding="utf-8") as notebook_file:
        return json.load(notebook_file)


def cell_source(cell):
    source = cell.get("source", "")
    if isinstance(source, list):
        return "".join(source)
    return source


def cells_of_type(notebook, cell_type):
    cells = []
    for cell in notebook["cells"]:
        if cell["cell_type"] == cell_type:
            cells.append(cell_source(cell))
    return cells


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.name for path in NOTEBOOKS])
def test_stored_without_outputs(path):
    notebook = read_notebook(path)
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "code":
            continue
        assert cell.get("outputs") == [], f"cell {index} has outputs; run nbstripout {path.name}"
        assert cell.get("execution_count") is None, f"cell {index} has an execution count; run nbstripout"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.name for path in NOTEBOOKS])
def test_has_the_standard_parts(path):
    notebook = read_notebook(path)
    code_cells = cells_of_type(notebook, "code")
    markdown_cells = cells_of_type(notebook, "markdown")

    assert notebook["metadata"].get("kernelspec", {}).get("name") == "python3"

    colab_cells = [source for source in code_cells if '"google.colab" in sys.modules' in source]
    assert colab_cells, 'no Colab-only setup cell (`if "google.colab" in sys.modules:`)'
    assert "pip install" in colab_cells[0], "the Colab-only cell should install the course package"

    parameter_cells = [source for source in code_cells if "MODEL = " in source]
    assert parameter_cells, "no parameters cell with `MODEL = `"
    assert 'os.environ.get("SDNOTES_MODEL"' in parameter_cells[0]

    exercise_headings = []
    for source in markdown_cells:
        for line in source.splitlines():
            if line.startswith("#") and "exercise" in line.lower():
                exercise_headings.append(line)
    assert exercise_headings, "no Markdown heading containing 'Exercises'"

    environment_readers = [source for source in code_cells if "os.environ" in source or "getenv" in source]
    assert environment_readers == parameter_cells[:1], "only the parameters cell may read the environment"
