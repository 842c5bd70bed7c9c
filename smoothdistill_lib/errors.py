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


__all__ = ["ALLOW_SUBSET_ENV", "CheckpointError", "check_new_name", "ConfigError", "DirtyCheckout", "EnvironmentMismatch",
           "ExperimentLocked", "IncompleteDataWarning", "UserError", "subset_allowed", "warn_incomplete"]


def check_new_name(kind: str, name, registry, shipped, replace: bool) -> None:
    """The naming rule every registry (``datasets.register_dataset``, ``models.register_model``)
    applies to a new entry: a plain identifier, not a shipped name, not a registered one unless
    ``replace``. ``kind`` names the calling function in the message."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"{kind}: name {name!r} must be a plain identifier (letters, digits, _)")
    if name in shipped or (name in registry and not replace):
        raise ValueError(f"{kind}: {name!r} is already registered"
                         + ("" if name in shipped else " (pass replace=True to redefine it)"))
