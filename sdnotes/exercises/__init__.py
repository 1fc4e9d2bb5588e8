"""Checks for the exercises at the end of each notebook.

Every notebook NN has a module ``sdnotes.exercises.nbNN`` with one
``check_...`` function per exercise. A check behaves the same way everywhere:

* the learner's answer is still ``...`` (Ellipsis): it prints
  "not answered yet" and returns, so the notebook keeps running;
* the answer is wrong: it raises ``AssertionError`` with a hint;
* the answer is right: it prints a short success message.

Each module also defines ``REFERENCE_SOLUTIONS``: for every check, one right
and one wrong answer. ``tests/test_exercises.py`` runs every check with both
(and with ``...``), so a broken check fails the tests.

This file imports nothing else from ``sdnotes``: the checks must not depend
on the model-loading code.
"""

import numbers

NOT_ANSWERED_MESSAGE = "not answered yet"


def is_unanswered(value):
    """True if ``value`` is the placeholder ``...`` the notebook starts with."""
    return value is Ellipsis


def not_answered(exercise):
    """Say that an exercise is still open (this is not an error)."""
    print(f"{exercise}: {NOT_ANSWERED_MESSAGE} (replace the ... with your answer)")


def passed(exercise, detail=""):
    """Print the success message for an exercise."""
    message = f"{exercise}: correct!"
    if detail:
        message = f"{message} {detail}"
    print(message)


def as_number(exercise, answer):
    """``answer`` as a plain Python number; one-element tensors and NumPy numbers are fine.

    Raises AssertionError (with a hint) for anything else.
    """
    if hasattr(answer, "item"):  # a torch tensor or a NumPy number
        try:
            answer = answer.item()
        except (ValueError, RuntimeError):
            raise AssertionError(f"{exercise}: expected a single number, got many values.") from None
    if isinstance(answer, bool) or not isinstance(answer, numbers.Real):
        raise AssertionError(
            f"{exercise}: expected a number, got {answer!r} of type {type(answer).__name__}."
        )
    return answer
