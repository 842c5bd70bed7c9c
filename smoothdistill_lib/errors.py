"""The library's own exception classes: refusals and bad input that the user can act on.

Design: every class here subclasses :class:`UserError`, which subclasses ``ValueError``. So

- the command line (``cli.main``) turns any of them into ONE line ``error: <message>`` and exit code
  2, like every other bad-input ``ValueError`` (no traceback: the message says what to do);
- callers that already catch ``ValueError`` keep working;
- a caller that wants to tell a refusal apart catches the subclass (e.g. :class:`ExperimentLocked`
  to wait and retry).

Messages name the file, key or argument at fault and say what to do next. ``--debug`` shows the
traceback.

:class:`IncompleteDataWarning`: a dataset folder holds only part of its documented files, so results
will differ from the full dataset's. Filter it like any warning, or opt in to the subset explicitly
(``subset_ok=True`` or ``SMOOTHDISTILL_ALLOW_SUBSET=1``, see :func:`warn_incomplete`).
"""

from __future__ import annotations

import numbers
import os
import warnings


class UserError(ValueError):
    """Bad input or a refusal the user can act on; the message is one complete line."""


class ConfigError(UserError):
    """An experiment config (YAML/JSON) or one of its keys is invalid; the message names the key."""


class ExperimentLocked(UserError):
    """Another ``run`` holds the experiment's lock (``results/<name>/.lock``)."""


class DirtyCheckout(UserError):
    """``run --require-clean`` and tracked files differ from the commit."""


class EnvironmentMismatch(UserError):
    """Adding runs would mix numeric environments (torch, device, threads) within one grid."""


class CheckpointError(UserError):
    """A checkpoint pair (``.pt`` + ``.json``) is missing, damaged or refused by ``weights_only``."""


class IncompleteDataWarning(UserWarning):
    """A dataset folder lacks some of its documented files; the message says which and how many."""


#: environment variable that opts in to using a dataset subset without a warning
ALLOW_SUBSET_ENV = "SMOOTHDISTILL_ALLOW_SUBSET"


def subset_allowed(subset_ok: bool | None = None) -> bool:
    """``subset_ok`` when given, else whether ``$SMOOTHDISTILL_ALLOW_SUBSET`` is set to a true value
    (``1``, ``true``, ``yes``, ``on``)."""
    if subset_ok is not None:
        return bool(subset_ok)
    return os.environ.get(ALLOW_SUBSET_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def warn_incomplete(message: str, subset_ok: bool | None = None, *, stacklevel: int = 3) -> bool:
    """Warn (one line, :class:`IncompleteDataWarning`) unless the caller opted in to a subset.

    Returns True when a warning was issued. The opt-in hint is appended to ``message``.
    """
    if subset_allowed(subset_ok):
        return False
    warnings.warn(
        f"{message}; results will differ from the full dataset's. To use this subset on purpose pass "
        f"subset_ok=True or set {ALLOW_SUBSET_ENV}=1",
        IncompleteDataWarning, stacklevel=stacklevel,
    )
    return True


#: the seeds every library here accepts: scikit-learn's ``random_state`` and numpy's legacy
#: ``RandomState`` take 0 .. 2**32 - 1 (torch takes more, negative ones too); a seed outside fails
#: deep inside one of them ("expected non-negative integer", "Overflow when unpacking long long")
MAX_SEED = 2**32 - 1
#: the longest window length or step (samples) a data option may ask for: int32 indices, far beyond
#: any recording (2**31 samples at 50 Hz are 16 months); a larger value fails inside numpy
MAX_SAMPLES = 2**31 - 1


def whole_number_problem(value, lo: int, hi: int | None = None) -> str | None:
    """None when ``value`` is a whole number (an ``int``, not a ``bool``; numpy integers count) in
    ``lo .. hi``; else what is wrong, for a message that names the key or option (``2.5 is not a
    whole number``, ``-5 is not a whole number from 0 to 4294967295``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return f"{value!r} is not a whole number"
    if value < lo or (hi is not None and value > hi):
        return f"{value!r} is not a whole number " + (f"from {lo} to {hi}" if hi is not None else f">= {lo}")
    return None


__all__ = ["ALLOW_SUBSET_ENV", "CheckpointError", "check_new_name", "ConfigError", "DirtyCheckout", "EnvironmentMismatch",
           "ExperimentLocked", "IncompleteDataWarning", "MAX_SAMPLES", "MAX_SEED", "UserError", "subset_allowed",
           "warn_incomplete", "whole_number_problem"]


def check_new_name(kind: str, name, registry, shipped, replace: bool) -> None:
    """The naming rule every registry (``datasets.register_dataset``, ``models.register_model``)
    applies to a new entry: a plain identifier, not a shipped name, not a registered one unless
    ``replace``. ``kind`` names the calling function in the message."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"{kind}: name {name!r} must be a plain identifier (letters, digits, _)")
    if name in shipped or (name in registry and not replace):
        raise ValueError(f"{kind}: {name!r} is already registered"
                         + ("" if name in shipped else " (pass replace=True to redefine it)"))
