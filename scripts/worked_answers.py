"""Worked answers: each notebook with its exercises filled in from the checks' reference solutions.

    python scripts/worked_answers.py                 # writes build/answers/NN_name.ipynb
    python scripts/worked_answers.py --out DIR

A notebook's exercises are code cells that end in `exercises.check_xxx(answer)`,
where `exercises` is the notebook's `sdnotes.exercises.nbNN` module and the
lines above define `answer` (`answer = ...` or `def answer(...): return ...`).
Each module's REFERENCE_SOLUTIONS["check_xxx"]["right"] is the answer, so it is
written once, in the module, and turned into notebook code here:

* a number, string, list or set: `answer = 37` (its repr, sets sorted);
* a function: its source from the module, renamed to the notebook's name, with
  the imports it needs from the module's namespace above it;
* anything else: read from the module's REFERENCE_SOLUTIONS.

The learner's notebooks in notebooks/ are never changed; the output goes to
build/ (ignored by git). tests/test_site.py executes every answer cell in a
Jupyter kernel and checks that each check prints "correct!". The teacher's page
(scripts/teacher_page.py) shows the same answers.
"""

import argparse
import ast
import copy
import dis
import importlib
import inspect
import re
import sys
import textwrap
import types
from pathlib import Path

import nbformat

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
DEFAULT_OUT = REPO_ROOT / "build" / "answers"
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # import this checkout's sdnotes, installed or not

EXERCISES_IMPORT = re.compile(r"from sdnotes\.exercises import (nb\d+) as exercises")
CHECK_CALL = re.compile(r"^exercises\.(check_\w+)\((\w+)\)\s*$", re.MULTILINE)


def notebooks():
    """The course's notebooks, in order (whatever exist now)."""
    return sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))


def exercises_module(notebook):
    """The sdnotes.exercises.nbNN module a notebook imports as `exercises` (None if it has none)."""
    for cell in notebook.cells:
        if cell.cell_type == "code":
            match = EXERCISES_IMPORT.search(cell.source)
            if match:
                return importlib.import_module(f"sdnotes.exercises.{match.group(1)}")
    return None


def _literal_code(value):
    """Python source for a plain value, or None when it has no readable literal form."""
    if isinstance(value, (set, frozenset)):
        items = sorted(_literal_code(item) or "?" for item in value)
        if "?" in items:
            return None
        return "{" + ", ".join(items) + "}" if items else "set()"
    text = repr(value)
    try:
        if ast.literal_eval(text) != value:
            return None
    except (ValueError, SyntaxError):
        return None
    return text


def _global_names(code):
    """The global names a function's code reads (attribute names such as `.mean` are not globals)."""
    names = set()
    for instruction in dis.get_instructions(code):
        if instruction.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
            names.add(instruction.argval)
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            names |= _global_names(constant)
    return names


def _imports_for(function, module):
    """Import lines for the module-level names a reference function uses."""
    lines = []
    from_module = []
    for name in sorted(_global_names(function.__code__)):
        if name not in module.__dict__:
            continue  # a builtin such as len or int
        value = module.__dict__[name]
        if isinstance(value, types.ModuleType):
            if value.__name__ == name:
                lines.append(f"import {name}")
            else:
                lines.append(f"import {value.__name__} as {name}")
        else:
            from_module.append(name)
    if from_module:
        lines.append(f"from {module.__name__} import {', '.join(from_module)}")
    return lines


def _function_code(function, module, answer_name):
    source = textwrap.dedent(inspect.getsource(function))
    header = f"def {function.__name__}("
    if function.__name__ == "<lambda>" or not source.startswith(header):
        return None
    source = f"def {answer_name}(" + source[len(header):]
    lines = _imports_for(function, module)
    if lines:
        return "\n".join(lines) + "\n\n\n" + source.rstrip()
    return source.rstrip()


def answer_code(module, check_name, answer_name):
    """Notebook code that defines `answer_name` as the reference solution of `check_name`."""
    right = module.REFERENCE_SOLUTIONS[check_name]["right"]
    if inspect.isfunction(right):
        code = _function_code(right, module, answer_name)
        if code is not None:
            return code
    literal = _literal_code(right)
    if literal is not None:
        return f"{answer_name} = {literal}"
    return f'{answer_name} = exercises.REFERENCE_SOLUTIONS["{check_name}"]["right"]'


def _defines(source, answer_name):
    pattern = rf"^(?:{answer_name}\s*=|def\s+{answer_name}\s*\()"
    return re.search(pattern, source, re.MULTILINE) is not None


def exercise_cells(notebook):
    """[(cell index, check name, answer name)] for every exercise cell."""
    found = []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        match = CHECK_CALL.search(cell.source)
        if match:
            found.append((index, match.group(1), match.group(2)))
    return found


def exercise_statement(notebook, cell_index):
    """The Markdown paragraph(s) just above an exercise cell that start with **Exercise."""
    for index in range(cell_index - 1, -1, -1):
        cell = notebook.cells[index]
        if cell.cell_type != "markdown":
            return ""
        position = cell.source.rfind("**Exercise")
        if position >= 0:
            return cell.source[position:].strip()
        return cell.source.strip()
    return ""


def worked_exercises(notebook_path):
    """Every exercise of a notebook: dicts with the statement, the filled-in cell and any problem."""
    notebook = nbformat.read(notebook_path, as_version=4)
    module = exercises_module(notebook)
    results = []
    for index, check_name, answer_name in exercise_cells(notebook):
        source = notebook.cells[index].source
        result = {"cell_index": index, "check": check_name, "answer_name": answer_name,
                  "statement": exercise_statement(notebook, index), "module": module, "problem": None}
        if module is None:
            result["problem"] = "the notebook does not import `from sdnotes.exercises import nbNN as exercises`"
        elif check_name not in getattr(module, "REFERENCE_SOLUTIONS", {}):
            result["problem"] = f"{module.__name__}.REFERENCE_SOLUTIONS has no entry {check_name!r}"
        else:
            call = CHECK_CALL.search(source)
            before, after = source[:call.start()], source[call.start():]
            if not _defines(before, answer_name):
                result["problem"] = f"the cell does not define {answer_name} above the check"
            else:
                code = answer_code(module, check_name, answer_name)
                gap = "\n\n\n" if code.lstrip().startswith(("def ", "import ", "from ")) else "\n\n"
                result["code"] = code
                result["source"] = (
                    f"# Worked answer, from REFERENCE_SOLUTIONS in sdnotes/exercises/{module.__name__.rsplit('.', 1)[-1]}.py\n"
                    f"{code}{gap}{after}"
                )
        results.append(result)
    return results


def worked_notebook(notebook_path):
    """(the notebook with every fillable exercise answered, the list of exercises)."""
    notebook = nbformat.read(notebook_path, as_version=4)
    exercises = worked_exercises(notebook_path)
    for exercise in exercises:
        if exercise["problem"] is None:
            notebook.cells[exercise["cell_index"]].source = exercise["source"]
    heading = nbformat.v4.new_markdown_cell(
        "**Teacher's copy: worked answers.** The exercise cells at the end are filled in from the "
        "reference solutions in `sdnotes/exercises/`, by `scripts/worked_answers.py`. "
        "The learner's copy is in `notebooks/`."
    )
    heading.id = "worked-answers-note"
    notebook = copy.deepcopy(notebook)
    notebook.cells.insert(1, heading)
    return notebook, exercises


def write_worked_notebooks(out_dir=DEFAULT_OUT):
    """Write build/answers/NN_name.ipynb for each notebook; returns {notebook name: exercises}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for path in notebooks():
        notebook, exercises = worked_notebook(path)
        nbformat.write(notebook, out_dir / path.name)
        written[path.name] = exercises
    return written


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="folder for the worked notebooks")
    arguments = parser.parse_args()
    written = write_worked_notebooks(arguments.out)
    problems = 0
    for name, exercises in written.items():
        filled = [exercise for exercise in exercises if exercise["problem"] is None]
        print(f"{name}: {len(filled)} of {len(exercises)} exercises filled in")
        for exercise in exercises:
            if exercise["problem"]:
                problems += 1
                print(f"  {exercise['check']}: NOT filled: {exercise['problem']}")
    print(f"wrote {len(written)} notebooks to {arguments.out}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
