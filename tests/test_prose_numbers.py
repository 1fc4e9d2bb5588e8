"""scripts/prose_numbers.py: numbers in a notebook's Markdown must be printed or computed by a cell.

Each test builds a small executed notebook in memory and says what the check must report.
"""

import subprocess
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from prose_numbers import CITED_CONSTANTS, unbacked_numbers  # scripts/ is on sys.path (conftest.py)

REPO_ROOT = Path(__file__).resolve().parent.parent


def executed_notebook(markdown, code="x = 1", printed=None, html=None, plain=None):
    """A notebook with one code cell (with the given outputs) and one Markdown cell after it."""
    outputs = []
    if printed is not None:
        outputs.append(new_output("stream", name="stdout", text=printed))
    if html is not None or plain is not None:
        data = {}
        if html is not None:
            data["text/html"] = html
        if plain is not None:
            data["text/plain"] = plain
        outputs.append(new_output("execute_result", data=data, execution_count=1))
    return new_notebook(cells=[new_code_cell(code, outputs=outputs), new_markdown_cell(markdown)])


def numbers_reported(notebook):
    return [text for _, text, _ in unbacked_numbers(notebook)]


def test_a_number_printed_by_a_cell_passes():
    assert numbers_reported(executed_notebook("The IoU was 0.83.", printed="median IoU 0.830\n")) == []


def test_a_number_only_in_prose_fails_with_its_cell_and_context():
    problems = unbacked_numbers(executed_notebook("The IoU was 0.83 at step 500.", printed="median IoU 0.71\n"))
    assert len(problems) == 1
    cell_index, text, context = problems[0]
    assert (cell_index, text) == (1, "0.83")
    assert "IoU was 0.83 at step" in context


def test_prose_may_round_what_a_cell_prints_but_not_add_digits():
    assert numbers_reported(executed_notebook("about 0.83", printed="0.8347")) == []
    assert numbers_reported(executed_notebook("about 0.8", printed="0.8347")) == []
    assert numbers_reported(executed_notebook("about 0.83", printed="0.8")) == ["0.83"]
    assert numbers_reported(executed_notebook("about 0.84", printed="0.8347")) == ["0.84"]


def test_a_number_in_a_code_cells_source_backs_prose():
    assert numbers_reported(executed_notebook("with guidance 7.5", code="guidance_scale = 7.5")) == []


def test_html_and_plain_outputs_back_prose():
    assert numbers_reported(executed_notebook("PSNR 27.8 dB", html="<td>27.81</td>")) == []
    assert numbers_reported(executed_notebook("a loss of 0.025", plain="tensor(0.0251)")) == []


def test_percentages_are_backed_by_a_printed_percentage_or_fraction_not_a_count():
    assert numbers_reported(executed_notebook("12% of pixels", printed="12.4%")) == []
    assert numbers_reported(executed_notebook("12% of pixels", printed="fraction 0.12")) == []
    assert numbers_reported(executed_notebook("12.5% of pixels", printed="0.125")) == []
    assert numbers_reported(executed_notebook("12% of pixels", printed="12 pixels")) == ["12%"]
    assert numbers_reported(executed_notebook("all of it, 100%, or none, 0%")) == []


def test_exponents_in_every_spelling():
    assert numbers_reported(executed_notebook("error 1.5e-06", printed="1.54e-06")) == []
    assert numbers_reported(executed_notebook("error $1.5 \\times 10^{-6}$", printed="1.5e-06")) == []
    assert numbers_reported(executed_notebook("error 1.5 × 10⁻⁶", printed="0.0000015")) == []
    assert numbers_reported(executed_notebook("error 1.5e-06", printed="1.5e-05")) == ["1.5e-06"]


def test_integers_versions_names_and_links_are_not_checked():
    markdown = ("25 steps on 1,000 pictures with SD 1.5 and diffusers 0.42.1 (section 3.2, arXiv 2112.10752, "
                "[paper](https://arxiv.org/abs/2112.10752), `stabilityai/stable-diffusion-3.5-medium`).\n"
                "```python\npipe(prompt, guidance_scale=9.5)\n```\n")
    assert numbers_reported(executed_notebook(markdown)) == []


def test_a_cited_constant_passes_only_beside_its_words():
    assert numbers_reported(executed_notebook("SD's latents are multiplied by the scaling factor 0.18215.")) == []
    assert numbers_reported(executed_notebook("The loss was 0.18215.")) == ["0.18215"]


def test_every_cited_constant_names_its_source():
    for constant in CITED_CONSTANTS:
        assert constant.near and len(constant.source) > 20, constant


def test_markdown_in_another_cell_does_not_back_prose():
    notebook = executed_notebook("The IoU was 0.83.")
    notebook.cells.append(new_markdown_cell("Again 0.83."))
    assert numbers_reported(notebook) == ["0.83", "0.83"]


def test_command_line_exit_status(tmp_path):
    good, bad = tmp_path / "good.ipynb", tmp_path / "bad.ipynb"
    nbformat.write(executed_notebook("IoU 0.83", printed="0.83"), good)
    nbformat.write(executed_notebook("IoU 0.83 and 0.5%", printed="0.71"), bad)
    script = str(REPO_ROOT / "scripts" / "prose_numbers.py")
    passed = subprocess.run([sys.executable, script, str(good)], capture_output=True, text=True)
    assert passed.returncode == 0, passed.stdout
    failed = subprocess.run([sys.executable, script, str(good), str(bad)], capture_output=True, text=True)
    assert failed.returncode == 1
    assert "bad.ipynb: 2 number(s)" in failed.stdout and "'0.5%'" in failed.stdout
