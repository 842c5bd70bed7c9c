"""Self-checking exercises: the checks behind the chapters' exercise cells, with friendly messages.

Each converted exercise in a chapter is four cells (grouped by ``metadata["exercise"]``, e.g. ``"01.1"``):

- the question (markdown);
- a **stub** (tag ``exercise-stub``): the names the student must define, set to ``...`` (or a function
  whose body raises ``NotImplementedError``);
- the **solution** (tags ``solution`` and ``hide-input``): the same names, answered. The student edition
  (``tools/make_student_edition.py``) drops it, and drops every ``<details>`` solution in markdown;
- a **self-check** (tag ``exercise-check``): ONE call, ``exercises.verify("1.1", steps_to_half=steps_to_half)``,
  passing the student's answers and the chapter's names the check reads. It raises :class:`NotAnswered`
  while a name is still the stub, :class:`WrongAnswer` with a hint when the answer is wrong, and prints
  one line when it is right.

**Why the checks live here and not in the check cells.** A check cell that computed its expected
value in the open (e.g. by calling the very function the exercise asks for) would show the answer
to anyone who reads it. So every check is a function of this module, registered in
:data:`EXERCISES` with the exercise's number, and the check cell only calls :func:`verify`. The
functions compute what they compare with from the library (``EMATeacher``, ``models.build_model``,
``splits.leakage``, ``report.table5``, ...), never from code printed in the student's notebook.

**Checks that discriminate.** Each check is built so that the plausible wrong answers (off by one,
another column, a total instead of a per-update time, a percentage for a share, floor for ceil, ...)
give a different value on the data it uses; where the chapter's own data could not tell a wrong
answer from the right one (e.g. a count that divides exactly, two rules that happen to pick the
same epoch), the exercise asks for a function and the check also calls it on inputs made for that.
``tests/test_exercise_checks.py`` lists at least three wrong answers per exercise and proves that
each is rejected while the official solution and a differently written correct answer pass.

**Grading.** :func:`grade` runs the same check on a notebook's global names (``hidden=False``: the
public check a student sees), or the exercise's hidden check (inputs the student never sees, for the
exercises that ask for a function); ``smoothdistill_lib.grading`` and ``tools/export_otter.py`` turn
them into otter-grader tests with points (:attr:`Exercise.points`).

**One line in Jupyter.** :class:`ExerciseError` and :class:`MissingInput` define IPython's
``_render_traceback_``, so a failing check shows ONE line (``Exercise 1.1: wrong: ...``) instead of a
traceback into this module; a passing one prints ``Exercise 1.1: correct.``. Both exceptions are
``AssertionError``\\ s, so a check reads like an assertion and ``tests/test_exercises.py`` can prove that
every check fails on its stub and passes on its solution. Messages never print the expected value:
they say what is wrong and hint at how to find it.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import numbers
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from smoothdistill_lib import compute, engine, models, report, sleep, sleepsim, splits, stats, windows, wisdm
from smoothdistill_lib.config import get_mode
from smoothdistill_lib.ema import EMATeacher, run_scale
from smoothdistill_lib.methods import METHODS

__all__ = ["ExerciseError", "NotAnswered", "WrongAnswer", "MissingInput", "Exercise", "EXERCISES", "answered",
           "call", "check", "check_close", "check_equal", "needs", "passed", "verify", "grade", "whole", "number",
           "one_line"]


class ExerciseError(AssertionError):
    """A self-check that did not pass: the message says what to do next.

    ``exercise`` (set by :func:`verify`) names the exercise in the one line Jupyter shows.
    """

    exercise: str | None = None

    def _render_traceback_(self) -> list[str]:
        """What IPython shows instead of a traceback (it looks this method up on any exception): one
        line, since the traceback would only lead into this module, never to the student's mistake."""
        return [one_line(self)]


class NotAnswered(ExerciseError):
    """The answer is still the stub (``...``, ``None`` or ``NotImplementedError``)."""


class WrongAnswer(ExerciseError):
    """The answer is there but not right; the message (``wrong: ...``) carries a hint."""


class MissingInput(RuntimeError):
    """What a check reads (run records, a dataset) is not on this machine: not the student's fault, so not
    an :class:`ExerciseError`; the message says how to get it."""

    exercise: str | None = None

    def _render_traceback_(self) -> list[str]:
        """One line in Jupyter, as for :class:`ExerciseError`."""
        return [one_line(self)]


def one_line(error: BaseException) -> str:
    """The line a failed check shows: ``Exercise 1.1: wrong: ...`` (whitespace collapsed: a hint written
    over several source lines still reads as one line)."""
    where = getattr(error, "exercise", None)
    text = " ".join(str(error).split())
    if isinstance(error, MissingInput):
        text = f"cannot check yet: {text}"
    return f"Exercise {where}: {text}" if where else text


# ----------------------------------------------------------------------------------------------------
# the building blocks of every check
# ----------------------------------------------------------------------------------------------------


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
    """Call the student's ``function``; a ``NotImplementedError`` from the stub becomes :class:`NotAnswered`.

    Any other exception raised by the student's function becomes :class:`WrongAnswer` naming the call
    and the error in one line: the student can call the function in a cell of their own to see where.
    """
    answered(name, function)
    if not callable(function):
        raise WrongAnswer(f"wrong: `{name}` should be a function (def {name}(...): ...), "
                          f"got {type(function).__name__}.")
    try:
        return function(*args, **kwargs)
    except NotImplementedError:
        raise NotAnswered(f"`{name}` still raises NotImplementedError: write its body in the exercise "
                          "cell, run that cell, then run this check again.") from None
    except Exception as e:  # noqa: BLE001  (the student's code: any error is a wrong answer)
        shown = ", ".join([*(_short(a) for a in args), *(f"{k}={_short(v)}" for k, v in kwargs.items())])
        raise WrongAnswer(f"wrong: calling `{name}({shown})` raised {type(e).__name__}: {e}. Call it in a "
                          "cell of your own to see where.") from None


def _short(value: Any) -> str:
    """A short description of an argument for a message (a table is named, not printed)."""
    if isinstance(value, pd.DataFrame):
        return f"<a table of {len(value)} rows>"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check(condition: bool, hint: str) -> None:
    """Raise :class:`WrongAnswer` with ``hint`` unless ``condition`` holds."""
    if not condition:
        raise WrongAnswer(f"wrong: {hint}")


def check_equal(name: str, value: Any, expected: Any, hint: str = "") -> None:
    """``value`` must equal ``expected`` (after :func:`answered`); the message hides ``expected``."""
    answered(name, value)
    check(value == expected, f"`{name}` = {value!r} is not right. {hint}".strip())


def number(name: str, value: Any) -> float:
    """``value`` as a float (a Python or numpy number, or a one-element tensor), else :class:`WrongAnswer`
    saying that a number was expected and what came instead."""
    answered(name, value)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.number)):
        raise WrongAnswer(f"wrong: `{name}` should be a number, got {type(value).__name__} {_short(value)}.")
    return float(value)


def whole(name: str, value: Any, what: str = "a whole number") -> int:
    """``value`` as an int: ints (numpy's too) and floats without a fraction (``69.0``) pass; anything else
    is :class:`WrongAnswer` saying that ``what`` (an int) was expected, e.g. for a float ``68.97``."""
    answered(name, value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.number)):
        raise WrongAnswer(f"wrong: `{name}` should be {what} (an int), got {type(value).__name__} "
                          f"{_short(value)}.")
    if not float(value).is_integer():
        raise WrongAnswer(f"wrong: `{name}` should be {what} (an int), got {type(value).__name__} {value!r}: "
                          "round it the way the question needs (math.ceil, math.floor or int).")
    return int(value)


def _share(name: str, value: Any) -> float:
    """A share between 0 and 1; a percentage (1 < value <= 100) gets its own message."""
    v = number(name, value)
    check(not 1 < v <= 100, f"`{name}` = {v:g} looks like a percentage: give a share between 0 and 1.")
    check(0 <= v <= 1, f"`{name}` = {v:g} is not a share: it should lie between 0 and 1.")
    return v


def check_close(name: str, value: Any, expected: float, *, rel: float = 1e-3, abs_tol: float = 0.0,
                hint: str = "") -> None:
    """``value`` must be a number within ``rel`` (relative) or ``abs_tol`` of ``expected``.

    The message says whether the answer is too large or too small, never the expected value.
    """
    v = number(name, value)
    if math.isclose(v, expected, rel_tol=rel, abs_tol=abs_tol):
        return
    side = "too large" if v > expected else "too small"
    raise WrongAnswer(f"wrong: `{name}` = {v:g} is {side}. {hint}".strip())


def _names_set(name: str, value: Any, allowed: Iterable[str]) -> set[str]:
    """A set (or list/tuple) of names from ``allowed``; a bare string is refused with its own message
    (``set("abc")`` would silently split it into letters)."""
    answered(name, value)
    allowed = list(allowed)
    check(not isinstance(value, str), f'`{name}` should be a set of names, e.g. {{"{allowed[0]}"}}, not one string.')
    check(isinstance(value, (set, frozenset, list, tuple)), f"`{name}` should be a set of names from {allowed}, "
          f"got {type(value).__name__}.")
    check(set(value) <= set(allowed), f"give a set of names from {allowed}.")
    return set(value)


def passed(exercise: str) -> None:
    """Print the one line a passing check shows."""
    print(f"Exercise {exercise}: correct.")


# ----------------------------------------------------------------------------------------------------
# the registry: one check per exercise, what the grader runs, and its points
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exercise:
    """One self-checking exercise: ``number`` (``"1.1"``), its public ``check`` (the self-check the student
    runs; its parameters are the notebook names it reads: the answers and the chapter's values), an
    optional ``hidden`` check for the grader (inputs the student never sees; None: the grader runs the
    public check again, for an answer that is one value) and its ``points`` (1 for the public check,
    the rest for the hidden one)."""

    number: str
    check: Callable[..., None]
    points: int = 2
    hidden: Callable[..., None] | None = None

    @property
    def names(self) -> tuple[str, ...]:
        """The notebook names the public check reads, in its parameters' order."""
        return tuple(inspect.signature(self.check).parameters)

    @property
    def hidden_points(self) -> int:
        """The points of the hidden check (the public check is worth 1)."""
        return self.points - 1


#: every registered exercise, by number ("1.1", ..., "12.2")
EXERCISES: dict[str, Exercise] = {}


def _exercise(number: str, *, points: int = 2, hidden: Callable[..., None] | None = None):
    """Register the decorated function as the public check of exercise ``number``."""
    def register(fn: Callable[..., None]) -> Callable[..., None]:
        if hidden is not None and list(inspect.signature(hidden).parameters) != list(inspect.signature(fn).parameters):
            raise ValueError(f"exercise {number}: the hidden check must read the same names as the public one")
        EXERCISES[number] = Exercise(number, fn, points, hidden)
        return fn
    return register


def _get(number_: str) -> Exercise:
    try:
        return EXERCISES[number_]
    except KeyError:
        raise ValueError(f"no exercise {number_!r}; known: {', '.join(EXERCISES)}") from None


def verify(exercise: str, **names: Any) -> None:
    """The self-check of ``exercise`` on the student's answers and the chapter's ``names``; prints
    ``Exercise N.K: correct.`` or raises (one line in Jupyter) :class:`NotAnswered` / :class:`WrongAnswer`
    / :class:`MissingInput`. The names must be exactly those the check reads (a typo in a check cell
    is the book's bug, so it is a ``TypeError``, not a student's wrong answer)."""
    ex = _get(exercise)
    missing = set(ex.names) ^ set(names)
    if missing:
        raise TypeError(f"exercise {exercise} reads {list(ex.names)}, got {sorted(names)}")
    try:
        ex.check(**names)
    except (ExerciseError, MissingInput) as e:
        e.exercise = exercise
        raise
    passed(exercise)


def grade(exercise: str, env: Mapping[str, Any], hidden: bool = False) -> None:
    """The grader's check of ``exercise`` on a notebook's global names ``env`` (what otter passes to a
    test): the public check, or with ``hidden=True`` the hidden one (the public one again where the
    exercise has none). Raises like :func:`verify`; prints nothing."""
    ex = _get(exercise)
    fn = ex.hidden if hidden and ex.hidden is not None else ex.check
    absent = [n for n in ex.names if n not in env]
    if absent:
        raise NotAnswered(f"`{absent[0]}` is not defined in the notebook: run the chapter's cells and the "
                          "exercise cell before this check.")
    try:
        fn(**{n: env[n] for n in ex.names})
    except (ExerciseError, MissingInput) as e:
        e.exercise = exercise
        raise


def _near(value: float, candidates: Mapping[str, float], rel: float = 1e-6) -> str:
    """The hint of the first known wrong value that ``value`` matches ("" if none): a targeted message
    for a common slip, still without the right value."""
    return next((hint for hint, c in candidates.items() if math.isclose(value, c, rel_tol=rel)), "")


# ----------------------------------------------------------------------------------------------------
# chapter 1
# ----------------------------------------------------------------------------------------------------


def _teacher_trace(decay: float, steps: int, warmup: bool = False) -> list[float]:
    """The weight of a one-weight ``EMATeacher`` started at 1 after each of ``steps`` updates towards a
    student frozen at 0: the share of the initial network left in the teacher (measured, not a formula)."""
    net = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(1.0)
    teacher = EMATeacher(net, decay, warmup=warmup)
    with torch.no_grad():
        net.weight.fill_(0.0)
    trace = []
    for _ in range(steps):
        teacher.update()
        trace.append(teacher.module.weight.item())
    return trace


@_exercise("1.1")
def _check_1_1(steps_to_half):
    """The first number of EMA updates (a = 0.99) after which the teacher has closed half of the gap."""
    n = whole("steps_to_half", steps_to_half, "a number of EMA updates")
    left = _teacher_trace(0.99, 1000)  # the gap left after 1, 2, ... updates, measured with EMATeacher
    first = 1 + next(i for i, g in enumerate(left) if g <= 0.5)
    check(n >= first, "after that many updates the teacher has not closed half of the gap yet: count more "
                      "steps (the gap shrinks by a factor a per update).")
    check(n <= first, "fewer updates already close half of the gap: look for the FIRST step count that does "
                      "(solve a^t = 0.5 for t, then round the way a count of whole steps needs).")


# ----------------------------------------------------------------------------------------------------
# chapter 2
# ----------------------------------------------------------------------------------------------------


def _neighbour_gaps() -> dict[str, float]:
    """Distance (g) between the noise-free readings of neighbouring postures (30 degrees apart) at each
    placement: the mean over the 12 pairs around the ring (equal at one placement, see exercise 2.1)."""
    angles = np.array(sleep.POSTURE_ANGLES_DEG, float)
    out = {}
    for placement in sleep.PLACEMENT_NAMES:
        g = sleepsim.gravity_vector(angles, placement)
        out[placement] = float(np.linalg.norm(g - np.roll(g, -1, axis=0), axis=1).mean())
    return out


@_exercise("2.1")
def _check_2_1(neighbour_gap, closest_placement):
    """The distance between neighbouring postures at each placement, and where it is smallest."""
    gaps = answered("neighbour_gap", neighbour_gap)
    expected = _neighbour_gaps()
    check(isinstance(gaps, Mapping) and set(gaps) == set(expected),
          f"`neighbour_gap` should be a dict with one distance per placement: {{{', '.join(map(repr, expected))}}}.")
    for placement, want in expected.items():
        v = number(f'neighbour_gap["{placement}"]', gaps[placement])
        hint = _near(v, {"That is the squared distance: take its square root (np.linalg.norm).": want**2},
                     rel=1e-3)
        check_close(f'neighbour_gap["{placement}"]', v, want, rel=1e-3, hint=hint or (
            "Take two NEIGHBOURING postures (30 degrees apart), their noise-free readings at this placement "
            "(sleepsim.gravity_vector, which includes how the segment lies on the pillow) and the Euclidean "
            "distance between them (np.linalg.norm)."))
    answered("closest_placement", closest_placement)
    check(closest_placement in expected, f"`closest_placement` should be one of {list(expected)}.")
    check(expected[closest_placement] == min(expected.values()),
          "at another placement neighbouring postures are closer: compare your three distances.")


# ----------------------------------------------------------------------------------------------------
# chapter 3
# ----------------------------------------------------------------------------------------------------


def _simulated_leak_share(test_share: float = 0.2, length: int = 100, step: int = 60, n: int = 200_000,
                          seed: int = 0) -> float:
    """Share of test windows that overlap a training window in a long stream split at random: windows
    from ``windows.window_starts`` (which neighbours overlap follows from length and step), each in the
    test set with probability ``test_share``. A simulation, so the check does not print the formula."""
    starts = windows.window_starts(step * (n - 1) + length, length=length, step=step)
    reach = int(np.searchsorted(starts, starts[0] + length) - 1)  # neighbours on each side that overlap
    test = np.random.default_rng(seed).random(len(starts)) < test_share
    touches = np.zeros(len(starts), bool)
    for k in range(1, reach + 1):
        touches[k:] |= ~test[:-k]
        touches[:-k] |= ~test[k:]
    inner = slice(reach, len(starts) - reach)  # the ends of the stream have fewer neighbours
    return float(touches[inner][test[inner]].mean())


@_exercise("3.1")
def _check_3_1(expected_share):
    """Share of test windows (100 samples every 60, random 80/20 split) that share samples with training."""
    v = _share("expected_share", expected_share)
    check_close("expected_share", v, _simulated_leak_share(), abs_tol=0.005,
                hint="Which windows overlap a test window, and how likely are they ALL to be test windows?")


_LEAK_KINDS = ("shared_samples", "subject_in_train", "same_moment_other_placement")


@_exercise("3.2")
def _check_3_2(drops_to_zero, recordings):
    """The leak kinds whose fraction is 0 with non-overlapping windows (step 100) on the simulated recording."""
    answer = _names_set("drops_to_zero", drops_to_zero, _LEAK_KINDS)
    w = windows.make_windows(recordings["sleepsim"], step=100)
    meter = splits.leakage(w, splits.paper_split(w, seed=42))
    zero = {k for k in _LEAK_KINDS if meter[k + "_fraction"] == 0}
    check(answer <= zero, "some of those kinds still leak: run the meter on windows made with step=100 and "
                          "look for fractions of exactly 0.")
    check(answer >= zero, "another kind also drops to zero: look at all three fractions.")


# ----------------------------------------------------------------------------------------------------
# chapter 4
# ----------------------------------------------------------------------------------------------------


@_exercise("4.1")
def _check_4_1(flat_dim_128, n_params_128, N_CLASSES):
    """The faithful MTL-net for 128-sample windows: flattened size before fc.0 and trainable parameters."""
    flat = whole("flat_dim_128", flat_dim_128, "a size")
    n = whole("n_params_128", n_params_128, "a count of parameters")
    net = models.build_model("mtlnet", N_CLASSES, window_length=128)
    check(flat == net.flat_dim, f"`flat_dim_128` = {flat} is not right. Each convolution removes 8 samples, each "
                                "pooling halves (rounding down); times 64 channels.")
    check(n == models.count_parameters(net), f"`n_params_128` = {n} is not right. Count every trainable weight AND "
                                              "bias of the network built for 128 samples (models.count_parameters).")


# ----------------------------------------------------------------------------------------------------
# chapter 5
# ----------------------------------------------------------------------------------------------------


def _wisdm_steps_per_epoch() -> int:
    """Optimizer steps per epoch of WISDM's fold 1 (documented size, paper protocol, the default batch):
    the row of chapter 5's horizons table, recomputed here from the library."""
    fit = len(splits.paper_split(wisdm.PAPER_WINDOWS, seed=42).folds[0][0])
    return run_scale(fit, engine.TrainConfig(epochs=1).batch_size, 1, 0.5)["steps/epoch"]


@_exercise("5.1")
def _check_5_1(a_one_epoch):
    """The decay whose horizon 1/(1 - a) is one WISDM epoch."""
    a = number("a_one_epoch", a_one_epoch)
    check(0 < a < 1, "a decay lies between 0 and 1.")
    check_close("1 / (1 - a_one_epoch)", 1 / (1 - a), _wisdm_steps_per_epoch(), rel=1e-6,
                hint="The horizon must equal WISDM's optimizer steps per epoch (the horizons table): steps, "
                     "not windows, and the last smaller batch is a step too.")


@_exercise("5.2")
def _check_5_2(a_max_1pct, mode_steps):
    """The decay below which the teacher holds < 1 % of the initial network after one epoch of this mode."""
    a = number("a_max_1pct", a_max_1pct)
    check(0 < a < 1, "a decay lies between 0 and 1.")
    check_close("a_max_1pct ** mode_steps", a ** mode_steps, 0.01, rel=1e-6,
                hint="After one epoch the teacher holds a to the power of the epoch's updates (`mode_steps`, "
                     "not the whole run) of the initial network: solve a^steps = 0.01 for a.")


@_exercise("5.3")
def _check_5_3(updates_below_1pct):
    """The first update after which the constant-decay teacher (the paper's a) holds < 1 %."""
    n = whole("updates_below_1pct", updates_below_1pct, "a number of updates")
    a = get_mode("full").ema_decay
    # in float64: the crossing lies 0.02 % from 0.01, closer than 4,603 float32 updates can be trusted
    check(a ** n < 0.01, "after that many updates the teacher still holds 1 % or more of the initial network: "
                         "look further along init_share (and use the paper's a).")
    check(a ** (n - 1) >= 0.01, "an earlier update already gets below 1 %: find the FIRST one (np.argmax on a "
                                "boolean array finds the first True; count updates from 1).")


# ----------------------------------------------------------------------------------------------------
# chapter 6
# ----------------------------------------------------------------------------------------------------


def _selected_epoch(history: pd.DataFrame, selection: str) -> int:
    """The epoch the engine keeps with ``selection``: ``engine._score`` of each row, replaced only on a
    strictly better score (``engine._Best.offer``), so the FIRST best epoch wins a tie."""
    best, epoch = -math.inf, None
    for row in pd.DataFrame(history).itertuples(index=False):
        score = engine._score(row.val_acc_task1, row.val_acc_task2, selection)
        if score > best:
            best, epoch = score, int(row.epoch)
    return epoch


def _history(acc1, acc2, epochs=None, index=None) -> pd.DataFrame:
    """A made-up run history with the columns the engine writes that the selection rules read."""
    epochs = list(range(1, len(acc1) + 1)) if epochs is None else list(epochs)
    loss = np.linspace(1.0, 0.5, len(acc1))
    return pd.DataFrame({"epoch": epochs, "stage": 1, "val_loss": loss, "val_acc_task1": acc1,
                         "val_acc_task2": acc2}, index=index)


# The made-up histories the checks of 6.1 feed the student's function: in the first, the mean of both
# tasks peaks at epoch 3, task 1 ties at epochs 2 and 4 (the first is kept), task 2 peaks at 5 and the
# row position of the best (1) is not an epoch number; the hidden ones add a table whose index is not
# 0, 1, 2, ... and a run that is best at its first epoch.
_HISTORIES_6_1 = {"a made-up run where the rules disagree": _history([50, 70, 65, 70, 60], [50, 40, 90, 80, 95])}
_HIDDEN_HISTORIES_6_1 = {
    "a run whose table index is not 0, 1, 2, ...": _history([61, 64, 66, 66, 63], [90, 95, 20, 30, 40],
                                                            index=[10, 11, 12, 13, 14]),
    "a run that is best at its first epoch": _history([80, 75, 70, 71], [10, 90, 95, 99]),
}


def _check_selection(function, histories: Mapping[str, pd.DataFrame]) -> None:
    for label, h in histories.items():
        got = call("best_epoch_task1", function, h.copy())
        n = whole(f"best_epoch_task1(<{label}>)", got, "an epoch number")
        want = _selected_epoch(h, "task1")
        if n == want:
            continue
        check(n in set(h["epoch"]), f"on {label}, `best_epoch_task1` returned {n}, which is not an epoch of the "
                                    "history: give the `epoch` column's value, not a row position.")
        check(n != _selected_epoch(h, "mean"), f"on {label}, that is the engine's rule (the mean of both tasks): "
                                               "the authors' rule reads `val_acc_task1` only.")
        accuracy = h.set_index("epoch")["val_acc_task1"]
        check(accuracy[n] == accuracy.max(), f"on {label}, another epoch has a higher task-1 validation accuracy.")
        check(False, f"on {label}, an earlier epoch has the same task-1 accuracy: the engine replaces its best "
                     "epoch only on a strictly better score, so the FIRST best epoch is kept.")


def _hidden_6_1(best_epoch_task1, results):
    _check_6_1(best_epoch_task1, results)
    _check_selection(best_epoch_task1, _HIDDEN_HISTORIES_6_1)


@_exercise("6.1", points=3, hidden=_hidden_6_1)
def _check_6_1(best_epoch_task1, results):
    """``best_epoch_task1(history)``: the epoch the authors' task-1-only rule selects."""
    run = pd.DataFrame(results["multitask"].metadata["history"])
    _check_selection(best_epoch_task1, {"the multitask run's history": run, **_HISTORIES_6_1})


def _fresh_step_loss(method: str, N_CLASSES, BATCH, cfg, teacher=None) -> float:
    """The loss of ``method``'s step on BATCH for a network built right after ``torch.manual_seed(0)``
    (as chapter 6's ``one_step``); the caller's random state is left as it was."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = models.build_model("mtlnet", N_CLASSES)
        opt = engine.make_optimizer(net.parameters(), cfg.lr, torch.device("cpu"))
        return float(METHODS[method].step({"student": net}, opt, teacher, BATCH, cfg)["loss"])


#: exercise 6.3's alpha: not 0.5, where task weights swapped by mistake would give the same loss
ALPHA_6_3 = 0.7


@_exercise("6.3")
def _check_6_3(ba_loss_lam0, BATCH, CFG, N_CLASSES):
    """The loss of one Born-Again step with lam = 0 and alpha = 0.7: the multitask loss with that alpha."""
    v = number("ba_loss_lam0", ba_loss_lam0)
    cfg = dataclasses.replace(CFG, alpha=ALPHA_6_3)
    want = _fresh_step_loss("multitask", N_CLASSES, BATCH, cfg)
    hint = _near(v, {
        f"That is the loss with alpha = {CFG.alpha}: set alpha to {ALPHA_6_3} as well (dataclasses.replace).":
            _fresh_step_loss("multitask", N_CLASSES, BATCH, CFG),
        "The two tasks' weights are swapped: alpha weighs task 1 (the posture), 1 - alpha task 2.":
            _fresh_step_loss("multitask", N_CLASSES, BATCH, dataclasses.replace(cfg, alpha=1 - ALPHA_6_3)),
    }, rel=1e-5)
    check_close("ba_loss_lam0", v, want, rel=1e-5, hint=hint or (
        f"Use `dataclasses.replace(CFG, ba_lam=0.0, alpha={ALPHA_6_3})` and a network built right after "
        "`torch.manual_seed(0)`, as `one_step` does; with lam = 0 the KD terms weigh nothing."))


# ----------------------------------------------------------------------------------------------------
# chapter 7
# ----------------------------------------------------------------------------------------------------


def _ema_update_ms(N_CLASSES, decay: float, updates: int = 20, rounds: int = 5) -> float:
    """Process CPU ms per ``EMATeacher.update`` on the faithful MTL-net, measured here with ONE torch
    thread: the fastest of ``rounds`` rounds (a time depends on the machine, so the check measures it
    on the student's). One thread, because on a busy CPU a second torch thread that waits for the
    first still burns process time: measured with two threads while other work ran, one update took
    from 0.2 to 16 ms; with one, 0.15 to 0.18 ms. The fastest round, because other work only ever
    makes a round slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        teacher = EMATeacher(models.build_model("mtlnet", N_CLASSES), decay)
        teacher.update()  # the first call pays one-off costs
        per_round = []
        for _ in range(rounds):
            t0 = time.process_time()
            for _ in range(updates):
                teacher.update()
            per_round.append(1000 * (time.process_time() - t0) / updates)
    finally:
        torch.set_num_threads(threads)
    return float(min(per_round))


#: how far (a factor, either way) a student's time per update may lie from the check's own measurement:
#: wide for machine load and noise (both are single-thread process times), narrow enough that a total
#: over 100 updates (x100), seconds (/1000) or microseconds (x1000) fall outside
TIME_FACTOR_7_1 = 10.0


@_exercise("7.1")
def _check_7_1(ema_update_ms, ema_share_of_extra, cpu_ms, N_CLASSES, CFG):
    """Process CPU ms of one EMA update, and its share of Smooth-Distill's extra cost per step."""
    ms = number("ema_update_ms", ema_update_ms)
    check(ms > 0, "`ema_update_ms` should be a positive time.")
    here = _ema_update_ms(N_CLASSES, CFG.ema_decay)
    check(ms <= TIME_FACTOR_7_1 * here, "`ema_update_ms` is far more than ONE update takes on this machine: divide "
                                        "the total time by the number of updates, give milliseconds, and time with "
                                        "one thread (torch.set_num_threads(1)): on a busy CPU a second thread "
                                        "waiting for the first counts as process time too.")
    check(ms >= here / TIME_FACTOR_7_1, "`ema_update_ms` is far less than one update takes on this machine: give "
                                        "milliseconds (seconds x 1000), for one update.")
    extra = cpu_ms["smooth_distill"] - cpu_ms["multitask"]
    share = number("ema_share_of_extra", ema_share_of_extra)
    hint = _near(share, {"That looks like a percentage: give a share (not x 100).": 100 * ms / extra,
                         "Divide by the EXTRA time of a Smooth-Distill step (its ms minus multitask's), not "
                         "by its whole time.": ms / cpu_ms["smooth_distill"]})
    check_close("ema_share_of_extra", share, ms / extra, rel=1e-6, hint=hint or (
        "Divide your `ema_update_ms` by the difference of the two methods' entries of `cpu_ms`."))


def _check_init_left(function, cases: Iterable[tuple[float, int, bool]]) -> None:
    for a, steps, warmup in cases:
        shown = f"init_left({a}, {steps}, warmup={warmup})"
        got = number(shown, call("init_left", function, a, steps, warmup))
        want = _teacher_trace(a, steps, warmup)[-1] if steps else 1.0
        side = "too large" if got > want else "too small"
        if math.isclose(got, want, rel_tol=1e-4):
            continue
        hint = ("Each update keeps a share a of what the teacher held." if not warmup else
                "With the warm-up, update t (from 0) keeps a share a_t = min(a, (1 + t)/(10 + t)): the cap a "
                "matters once (1 + t)/(10 + t) exceeds it.")
        raise WrongAnswer(f"wrong: `{shown}` = {got:g} is {side}. {hint}")


def _hidden_7_2(init_left, run_decay, steps_per_epoch):
    _check_7_2(init_left, run_decay, steps_per_epoch)
    _check_init_left(init_left, [(0.99, 1000, True), (0.5, 1, True), (0.97, 0, True), (0.999, 50, False)])


@_exercise("7.2", points=3, hidden=_hidden_7_2)
def _check_7_2(init_left, run_decay, steps_per_epoch):
    """``init_left(a, steps, warmup)``: the initial network's weight in the teacher after ``steps`` updates;
    also at a = 0.9 over 200 updates, where the warm-up's cap a binds (it never does in one short epoch)."""
    _check_init_left(init_left, [(run_decay, steps_per_epoch, False), (run_decay, steps_per_epoch, True),
                                 (0.9, 200, False), (0.9, 200, True)])


# ----------------------------------------------------------------------------------------------------
# chapter 8
# ----------------------------------------------------------------------------------------------------


def _teacher_minus_student(records: pd.DataFrame) -> pd.DataFrame:
    """Smooth-Distill's Table 5 test cells: the EMA teachers' mean minus the students' mean."""
    sd = records[records["method"] == "smooth_distill"]
    return (report.table5(sd, who="teacher").xs("mean", axis=1, level="stat")
            - report.table5(sd).xs("mean", axis=1, level="stat")).xs("test", axis=1, level="split")


@_exercise("8.1")
def _check_8_1(teacher_wins, MAIN):
    """The Table 5 test cells (dataset, protocol, task, metric) where the EMA teacher's mean beats its student's."""
    rows = needs(MAIN, "the main records (results/main/runs)",
                 "run `python -m smoothdistill_lib run configs/main.yaml`, then this chapter's cells again.")
    gap = _teacher_minus_student(rows)
    expected = {(ds, protocol, int(task), metric) for (ds, protocol, _), row in gap.iterrows()
                for (task, metric), d in row.items() if d > 0}
    wins = answered("teacher_wins", teacher_wins)
    check(isinstance(wins, (set, frozenset, list, tuple)) and not isinstance(wins, str),
          '`teacher_wins` should be a set of (dataset, protocol, task, metric) tuples.')
    check(all(isinstance(w, tuple) and len(w) == 4 for w in wins),
          "give (dataset, protocol, task, metric) tuples, e.g. (\"wisdm\", \"paper\", 1, \"accuracy\").")
    check(all(isinstance(w[2], (numbers.Integral, np.integer, str)) and str(w[2]).isdigit() for w in wins),
          "the task is 1 or 2.")
    answer = {(ds, protocol, int(task), metric) for ds, protocol, task, metric in wins}
    check(answer <= {(ds, p, int(t), m) for (ds, p, _) in gap.index for (t, m) in gap.columns},
          "some tuples are not cells of Table 5's test columns (metrics: accuracy, macro_f1; tasks 1, 2).")
    check(answer == expected, "not the right cells: subtract the students' means (`report.table5(...)`) from the "
                              "teachers' (`who=\"teacher\"`) on Smooth-Distill's rows, test split, and keep the "
                              "positive ones.")


def _exact_wilcoxon_floor(n: int) -> float:
    """The exact two-sided Wilcoxon p-value of n pairs all of one sign, from ``stats.paired_test``."""
    return stats.paired_test(np.arange(1.0, n + 1), np.zeros(n), test="wilcoxon")["pvalue"]


def _check_smallest_p(function, ns: Iterable[int]) -> None:
    for n in ns:
        got = number(f"smallest_p({n})", call("smallest_p", function, n))
        check_close(f"smallest_p({n})", got, _exact_wilcoxon_floor(n), rel=1e-9,
                    hint="The smallest p comes when all n differences have the same sign; the test is "
                         "two-sided and exact.")


def _hidden_8_3(smallest_p):
    _check_smallest_p(smallest_p, (2, 4, 6, 10, 12))


@_exercise("8.3", points=3, hidden=_hidden_8_3)
def _check_8_3(smallest_p):
    """``smallest_p(n)``: the smallest exact two-sided Wilcoxon p-value with n pairs."""
    _check_smallest_p(smallest_p, (3, 5, 8))


# ----------------------------------------------------------------------------------------------------
# chapter 9
# ----------------------------------------------------------------------------------------------------


def _lambda_accuracy(records: pd.DataFrame, who: str) -> pd.Series:
    return report.pick(report.lambda_table(records, who=who), task=1, split="test", metric="accuracy")


@_exercise("9.1")
def _check_9_1(best_teacher_lam, teacher_wins, LAM):
    """Where the EMA teacher of the lambda sweep is best, and where it beats its student (task 1, test)."""
    rows = needs(LAM, "the lambda records (results/lambda/runs)",
                 "run `python -m smoothdistill_lib run configs/lambda.yaml`, then this chapter's cells again.")
    t, s = _lambda_accuracy(rows, "teacher"), _lambda_accuracy(rows, "student")
    best = answered("best_teacher_lam", best_teacher_lam)
    check(isinstance(best, Mapping) and set(best) == set(t.index.unique("dataset")),
          "give one lambda for each dataset of the records (a dict: dataset name -> lambda).")
    for ds, lam in best.items():
        lam = number(f"best_teacher_lam[{ds!r}]", lam)
        at = [v for (d, sweep_lam), v in t.items() if d == ds and abs(sweep_lam - lam) < 1e-9]
        check(len(at) == 1, f"{lam!r} is not one of the sweep's lambdas for {ds}.")
        check(at[0] == t.loc[ds].max(), f"on {ds} the teacher scores higher at another lambda: use the teacher's "
                                        "table (`who=\"teacher\"`), task 1, test accuracy, mean.")
    wins = answered("teacher_wins", teacher_wins)
    check(isinstance(wins, (set, frozenset, list, tuple)) and all(isinstance(w, tuple) and len(w) == 2 for w in wins),
          "give a set of (dataset, lambda) pairs.")
    expected = {(ds, round(float(lam), 9)) for (ds, lam), d in (t - s).items() if d > 0}
    got = {(ds, round(number(f"the lambda of {(ds, lam)!r}", lam), 9)) for ds, lam in wins}
    check(got == expected, "not the right cells: compare the teacher's and the student's mean task-1 test accuracy "
                           "at each (dataset, lambda), and keep those where the teacher is strictly higher.")


def _check_init_weight(function, cases: Iterable[tuple[int, int, int, float]]) -> None:
    for n_fit, batch, epochs, a in cases:
        shown = f"init_weight_left({n_fit}, {batch}, {epochs}, {a})"
        got = number(shown, call("init_weight_left", function, n_fit, batch, epochs, a))
        want = run_scale(n_fit, batch, epochs, a)["weight of the initial net in the final teacher"]
        check_close(shown, got, want, rel=1e-9, hint=(
            "After t optimizer steps the teacher holds a^t of the initial network; an epoch has "
            "ceil(fit windows / batch size) steps (the last, smaller batch is a step too)."))


#: a run whose fit windows do not divide into whole batches: floor and ceil give different step counts
#: (the lambda records' 2,560 windows in batches of 64 divide exactly)
UNEVEN_RUN_9_2 = (2561, 64, 8, 0.999)


def _hidden_9_2(init_weight_left, EXPERIMENTS):
    _check_9_2(init_weight_left, EXPERIMENTS)
    _check_init_weight(init_weight_left, [(63, 64, 3, 0.99), (1000, 32, 2, 0.9), (5000, 128, 15, 0.999)])


@_exercise("9.2", points=3, hidden=_hidden_9_2)
def _check_9_2(init_weight_left, EXPERIMENTS):
    """``init_weight_left(n_fit, batch_size, epochs, a)`` on the lambda records' runs (paper's a) and on a run
    whose windows do not divide into whole batches."""
    lam = needs((EXPERIMENTS or {}).get("lambda"), "the lambda records (results/lambda/runs)",
                "run `python -m smoothdistill_lib run configs/lambda.yaml`, then this chapter's cells again.")
    a = get_mode("full").ema_decay
    runs = {(r["data"]["n_fit"], r["spec"]["train"]["batch_size"], len(r["history"]), a) for r in lam.records.values()}
    _check_init_weight(init_weight_left, sorted(runs) + [UNEVEN_RUN_9_2])


@_exercise("9.3")
def _check_9_3(smallest_ratio_95, RAT):
    """Per (dataset, model), the smallest training ratio reaching 95 % of the accuracy at the largest ratio."""
    rows = needs(RAT, "the training-ratio records (results/ratio*/runs)",
                 "run `python -m smoothdistill_lib run configs/ratio.yaml`, then this chapter's cells again.")
    curve = report.pick(report.ratio_table(rows), task=1, metric="accuracy").unstack("train_ratio")
    raw = answered("smallest_ratio_95", smallest_ratio_95)
    check(isinstance(raw, (Mapping, pd.Series)), "give a dict {(dataset, model): ratio}, or a Series indexed by "
                                                 "(dataset, model).")
    answer = dict(raw)
    check(set(answer) == set(curve.index), "give one ratio for each (dataset, model) of the ratio records.")
    top = curve.iloc[:, -1]
    for key, ratio in answer.items():
        ratio = number(f"smallest_ratio_95[{key!r}]", ratio)
        ratios = [r for r in curve.columns if abs(r - ratio) < 1e-9]
        check(len(ratios) == 1, f"{ratio!r} is not one of the records' training ratios ({key}).")
        check(curve.loc[key, ratios[0]] >= 0.95 * top[key],
              f"for {key} that ratio stays below 95 % of the accuracy at the largest ratio.")
        check(not (curve.loc[key, curve.columns < ratios[0]] >= 0.95 * top[key]).any(),
              f"for {key} a smaller ratio already reaches 95 % of the accuracy at the largest ratio.")


# ----------------------------------------------------------------------------------------------------
# chapters 10 to 12
# ----------------------------------------------------------------------------------------------------


@_exercise("10.3")
def _check_10_3(single_network_seconds):
    """Seconds of ONE single-task network over the paper's protocol, from E = P t at the paper's power."""
    s = number("single_network_seconds", single_network_seconds)
    both_kwh = 2 * compute.PAPER_POWER_WATTS * s / 3.6e6  # two networks, J -> kWh
    hint = _near(s, {"That is hours: give seconds.": compute.PAPER_ENERGY_KWH["singletask"] / 2 * 1000
                     / compute.PAPER_POWER_WATTS}, rel=1e-3)
    check_close("the energy of two such networks (kWh)", both_kwh, compute.PAPER_ENERGY_KWH["singletask"], rel=1e-3,
                hint=hint or "1 kWh = 3.6e6 J, and the single-task energy counts both networks.")


#: exercise 11.4's file budget (kB)
BUDGET_KB_11_4 = 100


@_exercise("11.4")
def _check_11_4(pick, DEP):
    """Per dataset, the student whose file fits in 100 kB with the best validation accuracy on task 1
    (``val acc task 1``, mean over seeds; the test windows play no part): ``(model, precision)``."""
    answered("pick", pick)
    check(isinstance(pick, Mapping) and set(pick) == set(DEP["dataset"]),
          "give one entry per dataset of DEP: {dataset: (model, precision)}.")
    for ds, choice in pick.items():
        check(isinstance(choice, (tuple, list)) and len(choice) == 2, f"{ds}: give a (model, precision) pair.")
        fits = DEP[(DEP["dataset"] == ds) & (DEP["kB"] <= BUDGET_KB_11_4) & ~DEP["model"].str.contains("teacher")]
        row = fits[(fits["model"] == choice[0]) & (fits["precision"] == choice[1])]
        check(len(row) == 1, f"{ds}: {tuple(choice)} is not a student (model, precision) whose file fits in "
                             f"{BUDGET_KB_11_4} kB.")
        check(row["val acc task 1"].iloc[0] == fits["val acc task 1"].max(),
              f"{ds}: another student within {BUDGET_KB_11_4} kB validates better on task 1 (choose on "
              "validation, never on the test windows).")


@_exercise("12.2")
def _check_12_2(first_samples):
    """The samples of each axis the faithful network reads in a 60-sample window, from its start."""
    n = whole("first_samples", first_samples, "a number of samples")
    reach = np.asarray(models.input_influence(models.build_model("mtlnet", (12, 3), window_length=60))) > 0
    check(n == int(reach.sum(axis=1).max()),
          f"`first_samples` = {n} is not right. Count the values in row 0 of the reshaped window, then share them "
          "out over the axes.")
