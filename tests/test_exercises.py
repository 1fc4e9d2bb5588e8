"""Every exercise check works: right answer passes, ... is "not answered", wrong answer fails.

The modules sdnotes/exercises/nbNN.py are discovered with pkgutil, so a new
notebook's checks are tested as soon as its module exists.
"""

import importlib
import pkgutil

import pytest

import sdnotes.exercises
from sdnotes.exercises import NOT_ANSWERED_MESSAGE


def exercise_modules():
    modules = []
    for module_info in pkgutil.iter_modules(sdnotes.exercises.__path__):
        if module_info.name.startswith("nb"):
            modules.append(importlib.import_module(f"sdnotes.exercises.{module_info.name}"))
    return modules


def all_checks():
    cases = []
    for module in exercise_modules():
        for check_name in sorted(module.REFERENCE_SOLUTIONS):
            case_id = f"{module.__name__.rsplit('.', 1)[-1]}.{check_name}"
            cases.append(pytest.param(module, check_name, id=case_id))
    return cases


def test_there_are_exercise_modules():
    assert exercise_modules(), "no sdnotes/exercises/nbNN.py module found"


def module_id(module):
    return module.__name__


@pytest.mark.parametrize("module", exercise_modules(), ids=module_id)
def test_every_check_has_reference_solutions(module):
    check_names = set()
    for name in dir(module):
        if name.startswith("check_") and callable(getattr(module, name)):
            check_names.add(name)
    assert check_names, f"{module.__name__} defines no check_ functions"
    missing = check_names - set(module.REFERENCE_SOLUTIONS)
    assert not missing, f"{module.__name__}: no REFERENCE_SOLUTIONS entry for {sorted(missing)}"
    unknown = set(module.REFERENCE_SOLUTIONS) - check_names
    assert not unknown, f"{module.__name__}: REFERENCE_SOLUTIONS names unknown checks {sorted(unknown)}"


@pytest.mark.parametrize(("module", "check_name"), all_checks())
def test_right_answer_passes(module, check_name, capsys):
    check = getattr(module, check_name)
    check(module.REFERENCE_SOLUTIONS[check_name]["right"])
    printed = capsys.readouterr().out
    assert "correct" in printed.lower()
    assert NOT_ANSWERED_MESSAGE not in printed


@pytest.mark.parametrize(("module", "check_name"), all_checks())
def test_unanswered_prints_and_does_not_fail(module, check_name, capsys):
    check = getattr(module, check_name)
    check(...)
    assert NOT_ANSWERED_MESSAGE in capsys.readouterr().out


@pytest.mark.parametrize(("module", "check_name"), all_checks())
def test_wrong_answer_raises_with_a_hint(module, check_name):
    check = getattr(module, check_name)
    with pytest.raises(AssertionError) as excinfo:
        check(module.REFERENCE_SOLUTIONS[check_name]["wrong"])
    assert len(str(excinfo.value)) > 20, "the AssertionError should carry a hint"
