"""The course website's parts that need no browser: worked answers, the teacher's page, Colab links.

* Every exercise cell of every notebook can be filled in from its module's
  REFERENCE_SOLUTIONS (scripts/worked_answers.py), and the filled-in cells,
  executed in a Jupyter kernel as a teacher would run them, make each check
  print "correct!".
* docs/teacher.md is what scripts/teacher_page.py writes now.
* The Open-in-Colab links and the install cells' REPOSITORY_URL agree with the
  one setting in pyproject.toml (scripts/colab_links.py), and the script
  changes nothing when run twice.
* The site builder keeps pages offline-safe: widget views become static HTML,
  and a page that would load a script from another host is caught.

The site itself and the live notebooks are checked in Chromium by tests/test_browser.py.
"""

import shutil
import sys
from pathlib import Path

import nbformat
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "scripts"))
import build_site  # noqa: E402
import colab_links  # noqa: E402
import course_map  # noqa: E402
import teacher_page  # noqa: E402
import worked_answers  # noqa: E402

NOTEBOOKS = worked_answers.notebooks()
NAMES = [path.name for path in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_every_exercise_is_filled_in_from_the_reference_solutions(path):
    exercises = worked_answers.worked_exercises(path)
    assert exercises, f"{path.name} has no exercise cells ending in exercises.check_...(answer)"
    problems = [f"{exercise['check']}: {exercise['problem']}" for exercise in exercises if exercise["problem"]]
    assert not problems, f"{path.name}: exercises the worked answers cannot fill in: {problems}"


def test_worked_answers_pass_their_checks_in_a_kernel(tmp_path):
    """All worked answer cells, notebook after notebook, in one kernel (a fresh namespace for each)."""
    from nbclient import NotebookClient

    combined = nbformat.v4.new_notebook()
    for path in NOTEBOOKS:
        exercises = [exercise for exercise in worked_answers.worked_exercises(path) if exercise["problem"] is None]
        if not exercises:
            continue
        module_name = exercises[0]["module"].__name__.rsplit(".", 1)[-1]
        # As in the notebook: only `exercises` is given; each answer cell brings its own imports.
        combined.cells.append(nbformat.v4.new_code_cell("%reset -f"))
        combined.cells.append(nbformat.v4.new_code_cell(f"from sdnotes.exercises import {module_name} as exercises"))
        for exercise in exercises:
            cell = nbformat.v4.new_code_cell(exercise["source"])
            cell.metadata["sdnotes"] = {"notebook": path.name, "check": exercise["check"]}
            combined.cells.append(cell)
    combined.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    NotebookClient(combined, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    checked = 0
    for cell in combined.cells:
        if "sdnotes" not in cell.metadata:
            continue
        where = f"{cell.metadata['sdnotes']['notebook']} {cell.metadata['sdnotes']['check']}"
        printed = "".join(output.get("text", "") for output in cell.outputs if output.output_type == "stream")
        assert "correct!" in printed and "not answered" not in printed, f"{where}: the worked answer printed {printed!r}"
        checked += 1
    assert checked >= len(NOTEBOOKS), f"only {checked} worked answers ran"


def test_teacher_page_is_up_to_date():
    current = teacher_page.TEACHER_PAGE.read_text(encoding="utf-8") if teacher_page.TEACHER_PAGE.exists() else ""
    assert current == teacher_page.teacher_page(), "docs/teacher.md is out of date: run python scripts/teacher_page.py"
    assert "FAILED" not in current


def test_teacher_page_reads_run_times_from_the_readme_course_map():
    rows = course_map.read_course_map()
    assert rows, "no course map table in the README"
    page = teacher_page.TEACHER_PAGE.read_text(encoding="utf-8")
    for name, row in rows.items():
        if (REPO_ROOT / "notebooks" / name).exists():
            assert row["run time"] in page, f"{name}'s run time from the README is not on the teacher's page"


def test_colab_links_and_install_cells_follow_the_one_repository_setting():
    url = colab_links.repository_url()
    out_of_date = []
    for path in NOTEBOOKS:
        _, changes = colab_links.updated_notebook(path, url)
        if changes:
            out_of_date.append(f"{path.name}: {changes}")
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    if colab_links.updated_readme(readme, url) != readme:
        out_of_date.append("README.md: the course map's Colab column")
    assert not out_of_date, "run python scripts/colab_links.py:\n" + "\n".join(out_of_date)


def test_colab_script_is_idempotent_and_uses_the_setting(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\n[project.urls]\nRepository = "https://github.com/someone/fork.git"\n')
    url = colab_links.repository_url(pyproject)
    assert url == "https://github.com/someone/fork"
    copy = tmp_path / NOTEBOOKS[0].name
    shutil.copy(NOTEBOOKS[0], copy)
    notebook, changes = colab_links.updated_notebook(copy, url)
    assert changes
    nbformat.write(notebook, copy)
    again, changes_again = colab_links.updated_notebook(copy, url)
    assert changes_again == [], f"a second run changed {changes_again}"
    assert again.cells[0].id == colab_links.LINK_CELL_ID
    assert f"colab.research.google.com/github/someone/fork/blob/main/notebooks/{copy.name}" in again.cells[0].source
    install = [cell.source for cell in again.cells if '"google.colab" in sys.modules' in cell.source][0]
    assert 'REPOSITORY_URL = "https://github.com/someone/fork.git"' in install
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    once = colab_links.updated_readme(readme, url)
    assert colab_links.updated_readme(once, url) == once
    assert "colab.research.google.com/github/someone/fork/blob/main/notebooks/" in once


def test_site_pages_keep_no_live_widgets_and_no_saved_widget_state():
    state = {
        "bar": {"model_name": "HBoxModel", "state": {"children": ["IPY_MODEL_text", "IPY_MODEL_progress"]}},
        "text": {"model_name": "HTMLModel", "state": {"value": "100%"}},
        "progress": {"model_name": "FloatProgressModel", "state": {"value": 20.0, "max": 20.0}},
        "slider": {"model_name": "IntSliderModel", "state": {"value": 3}},
    }
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": state}}
    cell = nbformat.v4.new_code_cell("x")
    for model_id in ("bar", "slider"):
        cell.outputs.append(nbformat.v4.new_output("display_data", data={
            build_site.WIDGET_MIME: {"model_id": model_id, "version_major": 2, "version_minor": 0},
            "text/plain": "HBox(...)"}))
    notebook.cells.append(cell)
    site_notebook = build_site.for_the_site(notebook)
    assert "widgets" not in site_notebook.metadata
    bar, slider = (output["data"] for output in site_notebook.cells[0].outputs)
    assert "<progress" in bar["text/html"] and "100%" in bar["text/html"]
    assert slider["text/html"] == build_site.WIDGET_NOTE


def test_offline_check_catches_resources_from_other_hosts(tmp_path):
    (tmp_path / "good.html").write_text('<script src="_static/x.js"></script><a href="https://example.org">x</a>')
    assert build_site.offline_problems(tmp_path) == []
    (tmp_path / "bad.html").write_text('<script src="https://cdn.jsdelivr.net/npm/require.js"></script>')
    (tmp_path / "bad.css").write_text('@import url("https://fonts.googleapis.com/css?family=Lato");')
    problems = build_site.offline_problems(tmp_path)
    assert len(problems) == 2 and "bad.html" in problems[0] + problems[1]


def test_remote_images_become_text_and_repository_files_become_web_links():
    text = ("| 00 | [![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://x.org/nb) "
            "| ![local](assets/pocket/samples.png) | [bench](benchmarks/README.md)")
    no_remote = build_site.REMOTE_IMAGE.sub(lambda match: match.group(1), text)
    assert "[Open in Colab](https://x.org/nb)" in no_remote and "![local](assets/pocket/samples.png)" in no_remote
    linked = build_site.link_to_repository_files(no_remote, ".")
    assert f"[bench]({colab_links.repository_url()}/blob/{colab_links.BRANCH}/benchmarks/README.md)" in linked
