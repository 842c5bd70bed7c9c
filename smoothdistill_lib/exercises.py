"""Self-checking exercises: the checks behind the chapters' exercise cells, with friendly messages.

Each converted exercise in a chapter is four cells (grouped by ``metadata["exercise"]``, e.g. ``"01.1"``):

- the question (markdown);
- a **stub** (tag ``exercise-stub``): the names the student must define, set to ``...`` (or a function
  whose body raises ``NotImplementedError``);
- the **solution** (tags ``solution`` and ``hide-input``): the same names, answered. The student edition
  (``tools/make_student_edition.py``) drops it, and drops every ``<details>`` solution in markdown;
- a **self-check** (tag ``exercise-check``) calling the helpers below. It raises :class:`NotAnswered`
  while a name is still the stub, :class:`WrongAnswer` with a hint when the answer is wrong, and prints
  one line when it is right.

Both exceptions are ``AssertionError``\\ s, so a check reads like an assertion to a student and
``tests/test_exercises.py`` can prove that every check fails on its stub and passes on its solution.
Messages never print the expected value: they say what is wrong and hint at how to find it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

__all__ = ["ExerciseError", "NotAnswered", "WrongAnswer", "MissingInput", "answered", "call", "check",
           "check_close", "check_equal", "needs", "passed"]


class ExerciseError(AssertionError):
    """A self-check that did not pass: the message says what to do next."""


class NotAnswered(ExerciseError):
    """The answer is still the stub (``...``, ``None`` or ``NotImplementedError``)."""


class WrongAnswer(ExerciseError):
    """The answer is there but not right; the message carries a hint."""


class MissingInput(RuntimeError):
    """What a check reads (run records, a dataset) is not on this machine: not the student's fault, so not
    an :class:`ExerciseError`; the message says how to get it."""


def needs(value: Any, what: str, how: str) -> Any:
    """Return ``value`` (e.g. a chapter's records), or raise :class:`MissingInput` when it is ``None``.

    ``what`` names the input (``"the lambda records (results/lambda)"``), ``how`` says how to make it.
    Checks call it first, so a student without the records learns that before anything else.
    """
    if value is None:
        raise MissingInput(f"This exercise reads {what}, which are not on this machine: {how}")
    return value


def _is_stub(value: Any) -> bool:
    return value is Ellipsis or value is None


def answered(name: str, value: Any) -> Any:
    """Return ``value``, or raise :class:`NotAnswered` when it is still the stub (``...`` or ``None``).

    Containers count as unanswered when any of their entries is ``...`` (a half-filled dict or tuple).
    """
    entries = value.values() if isinstance(value, dict) else value if isinstance(value, (tuple, list)) else ()
    if _is_stub(value) or any(e is Ellipsis for e in entries):
        raise NotAnswered(f"`{name}` is not answered yet: replace the `...` in the exercise cell with your "
                          "answer, run that cell, then run this check again.")
    return value


def call(name: str, function: Callable, *args, **kwargs) -> Any:
    """Call the student's ``function``; a ``NotImplementedError`` from the stub becomes :class:`NotAnswered`."""
    answered(name, function)
    try:
        return function(*args, **kwargs)
    except NotImplementedError:
        raise NotAnswered(f"`{name}` still raises NotImplementedError: write its body in the exercise "
                          "cell, run that cell, then run this check again.") from None


def check(condition: bool, hint: str) -> None:
    """Raise :class:`WrongAnswer` with ``hint`` unless ``condition`` holds."""
    if not condition:
        raise WrongAnswer(f"Not yet: {hint}")


def check_equal(name: str, value: Any, expected: Any, hint: str = "") -> None:
    """``value`` must equal ``expected`` (after :func:`answered`); the message hides ``expected``."""
    answered(name, value)
    check(value == expected, f"`{name}` = {value!r} is not right. {hint}".strip())


def check_close(name: str, value: Any, expected: float, *, rel: float = 1e-3, abs_tol: float = 0.0,
                hint: str = "") -> None:
    """``value`` must be a number within ``rel`` (relative) or ``abs_tol`` of ``expected``.

    The message says whether the answer is too large or too small, never the expected value.
    """
    answered(name, value)
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise WrongAnswer(f"`{name}` should be a number, got {type(value).__name__}.") from None
    if math.isclose(v, expected, rel_tol=rel, abs_tol=abs_tol):
        return
    side = "too large" if v > expected else "too small"
    raise WrongAnswer(f"Not yet: `{name}` = {v:g} is {side}. {hint}".strip())


def passed(exercise: str) -> None:
    """Print the one line a passing check shows."""
    print(f"Exercise {exercise}: correct.")
