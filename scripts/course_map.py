"""The README's course map: the one parser for every script that reads or rewrites it.

The course map is the Markdown table in README.md whose header row starts with
`| notebook |`. Each row that links `notebooks/NN_name.ipynb` in its first cell
is a notebook; other rows (the "advanced track" heading row) are kept as they
are. Cells are separated by `|`; no cell may contain one.

* `read_course_map()`: {notebook file name: {column name (lower case): text}},
  for the teacher's page (scripts/teacher_page.py) and the site's index
  (scripts/build_site.py).
* `table_lines(lines)` and `split_row(line)`: where the table is and its
  cells, for scripts that rewrite it (scripts/colab_links.py's Colab column).
* `python scripts/course_map.py LOG`: sets the "run time" column from the
  "notebook run times" table at the end of a test run's log (.ci/run's).
"""

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
HEADER_START = "| notebook |"
NOTEBOOK_LINK = re.compile(r"\(notebooks/([^)]+\.ipynb)\)")


def split_row(line):
    """The cells of one table row, stripped: '| a | b |' -> ['a', 'b']."""
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def table_lines(lines):
    """(index of the header line, index after the last row) of the course map in `lines`;
    (None, None) if there is no course map."""
    for header_index, line in enumerate(lines):
        if line.startswith(HEADER_START):
            end = header_index + 1
            while end < len(lines) and lines[end].startswith("|"):
                end += 1
            return header_index, end
    return None, None


def notebook_of_row(cells):
    """The notebook file a row links in its first cell, or None (heading rows)."""
    link = NOTEBOOK_LINK.search(cells[0]) if cells else None
    return link.group(1) if link else None


def read_course_map(readme_text=None):
    """{notebook file name: {column name in lower case: cell text}} from the README's course map."""
    if readme_text is None:
        readme_text = README.read_text(encoding="utf-8")
    lines = readme_text.splitlines()
    header_index, end = table_lines(lines)
    if header_index is None:
        return {}
    header = [cell.lower() for cell in split_row(lines[header_index])]
    rows = {}
    for line in lines[header_index + 2:end]:  # after the header and its |---| line
        cells = split_row(line)
        name = notebook_of_row(cells)
        if name:
            rows[name] = dict(zip(header, cells))
    return rows


def run_times_from_log(log_text):
    """{notebook file name: seconds} from the "notebook run times" table a test run prints (conftest.py)."""
    times = {}
    for match in re.finditer(r"notebooks/(\d\d_\w+\.ipynb)::\S+: ([\d.]+) s", log_text):
        times[match.group(1)] = float(match.group(2))
    return times


def with_run_times(readme_text, times):
    """The README text with the course map's "run time" cells set from `times` (whole seconds)."""
    lines = readme_text.splitlines(keepends=True)
    header_index, end = table_lines(lines)
    header = [cell.lower() for cell in split_row(lines[header_index])]
    column = header.index("run time")
    for index in range(header_index + 2, end):
        cells = split_row(lines[index])
        name = notebook_of_row(cells)
        if name in times:
            cells[column] = f"{times[name]:.0f} s"
            lines[index] = "| " + " | ".join(cells) + " |\n"
    return "".join(lines)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Set the README course map's run times from a test log: "
                                                 "python scripts/course_map.py ci.log (the log of .ci/run or of the test command)")
    parser.add_argument("log")
    arguments = parser.parse_args()
    found = run_times_from_log(open(arguments.log, encoding="utf-8", errors="replace").read())
    if not found:
        raise SystemExit(f"{arguments.log}: no 'notebook run times' table (conftest.py prints it at the end of a test run)")
    README.write_text(with_run_times(README.read_text(encoding="utf-8"), found), encoding="utf-8")
    print(f"README.md: run times of {len(found)} notebooks set from {arguments.log}")
