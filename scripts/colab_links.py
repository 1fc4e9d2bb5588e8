"""Open-in-Colab links and the Colab install cell, all from one setting: the repository URL.

    python scripts/colab_links.py            # update the notebooks and the README's course map
    python scripts/colab_links.py --check    # exit 1 (and say what) if anything is out of date

The one setting is `Repository` under `[project.urls]` in pyproject.toml. A fork
changes that line and reruns this script; it then rewrites, in every notebook:

* the Colab-only install cell's `REPOSITORY_URL = "..."` line (the URL + ".git");
* a first Markdown cell (id "open-in-colab") with an "Open in Colab" link;

and, in the README's course map, a "Colab" column with a badge per notebook.
Colab opens a notebook straight from GitHub:
https://colab.research.google.com/github/OWNER/REPO/blob/BRANCH/notebooks/NAME.ipynb

The script only rewrites what differs, so running it twice changes nothing the
second time. The site builder (site/conf.py) reads the same setting.
"""

import argparse
import re
import sys
import tomllib
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
import course_map  # noqa: E402  (scripts/course_map.py)

REPO_ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = REPO_ROOT / "pyproject.toml"
README = REPO_ROOT / "README.md"
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
BRANCH = "main"  # the branch Colab opens
LINK_CELL_ID = "open-in-colab"
BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
REPOSITORY_URL_LINE = re.compile(r'^REPOSITORY_URL = ".*"$', re.MULTILINE)


def repository_url(pyproject=PYPROJECT):
    """The repository's web address, e.g. https://github.com/sdnotes/sdnotes (no .git, no slash)."""
    urls = tomllib.loads(Path(pyproject).read_text(encoding="utf-8")).get("project", {}).get("urls", {})
    if "Repository" not in urls:
        raise SystemExit(f'{pyproject}: add Repository = "https://github.com/OWNER/REPO" under [project.urls]')
    url = urls["Repository"].rstrip("/")
    if url.endswith(".git"):
        url = url[: -len(".git")]
    return url


def colab_url(notebook_name, url=None):
    """Colab's address for notebooks/<notebook_name> on GitHub."""
    url = url or repository_url()
    match = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+)", url)
    if not match:
        raise ValueError(f"Colab opens notebooks from GitHub; the repository URL {url!r} is not https://github.com/OWNER/REPO")
    owner, name = match.groups()
    return f"https://colab.research.google.com/github/{owner}/{name}/blob/{BRANCH}/notebooks/{notebook_name}"


def link_cell_source(notebook_name, url=None):
    return (
        f"[Open this notebook in Colab]({colab_url(notebook_name, url)}) "
        "(then choose a GPU runtime and run the setup cell), or run it locally as the README says."
    )


def updated_notebook(path, url=None):
    """(the notebook with the link cell and install cell up to date, list of what changed)."""
    url = url or repository_url()
    notebook = nbformat.read(path, as_version=4)
    changes = []
    link_source = link_cell_source(Path(path).name, url)
    link_cells = [cell for cell in notebook.cells if cell.get("id") == LINK_CELL_ID]
    if not link_cells:
        cell = nbformat.v4.new_markdown_cell(link_source)
        cell.id = LINK_CELL_ID
        notebook.cells.insert(0, cell)
        changes.append("added the Open-in-Colab cell")
    elif link_cells[0].source != link_source:
        link_cells[0].source = link_source
        changes.append("updated the Open-in-Colab link")
    install_lines = 0
    for cell in notebook.cells:
        if cell.cell_type == "code" and '"google.colab" in sys.modules' in cell.source:
            wanted = f'REPOSITORY_URL = "{url}.git"'
            install_lines += len(REPOSITORY_URL_LINE.findall(cell.source))
            new_source = REPOSITORY_URL_LINE.sub(wanted, cell.source)
            if new_source != cell.source:
                cell.source = new_source
                changes.append(f"set {wanted}")
    if install_lines == 0:
        changes.append("WARNING: no REPOSITORY_URL line in a Colab install cell (copy it from notebook 00)")
    return notebook, changes


def updated_readme(text, url=None):
    """The README text with a Colab column in the course map (rows that link notebooks/NN_x.ipynb)."""
    url = url or repository_url()
    lines = text.splitlines(keepends=True)
    header_index, end = course_map.table_lines(lines)
    if header_index is None:
        return text
    header = course_map.split_row(lines[header_index])
    if "Colab" not in header:
        header.append("Colab")
    colab_column = header.index("Colab")
    new_lines = lines[:header_index] + ["| " + " | ".join(header) + " |\n"]
    new_lines.append("|" + "---|" * len(header) + "\n")
    for line in lines[header_index + 2:end]:
        cells = course_map.split_row(line)
        cells += [""] * (len(header) - len(cells))
        name = course_map.notebook_of_row(cells)
        if name:
            cells[colab_column] = f"[![Open in Colab]({BADGE})]({colab_url(name, url)})"
        new_lines.append("| " + " | ".join(cells) + " |\n")
    return "".join(new_lines + lines[end:])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if anything is out of date")
    parser.add_argument("--notebooks", default=str(NOTEBOOK_DIR), help="folder of notebooks (default notebooks/)")
    parser.add_argument("--readme", default=str(README), help="README to update (default README.md)")
    arguments = parser.parse_args()
    url = repository_url()
    out_of_date = []
    for path in sorted(Path(arguments.notebooks).glob("[0-9][0-9]_*.ipynb")):
        notebook, changes = updated_notebook(path, url)
        warnings = [change for change in changes if change.startswith("WARNING")]
        real_changes = [change for change in changes if not change.startswith("WARNING")]
        for warning in warnings:
            print(f"{path.name}: {warning}")
        if real_changes:
            out_of_date.append(path.name)
            print(f"{path.name}: {'; '.join(real_changes)}")
            if not arguments.check:
                nbformat.write(notebook, path)
    readme_path = Path(arguments.readme)
    readme_text = readme_path.read_text(encoding="utf-8")
    new_readme = updated_readme(readme_text, url)
    if new_readme != readme_text:
        out_of_date.append(readme_path.name)
        print(f"{readme_path.name}: Colab column of the course map updated")
        if not arguments.check:
            readme_path.write_text(new_readme, encoding="utf-8")
    if arguments.check and out_of_date:
        print(f"out of date: {', '.join(out_of_date)}; run python scripts/colab_links.py")
        return 1
    print(f"Colab links {'checked' if arguments.check else 'written'} for {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
