"""The library's own exception and warning classes: what the command line reports in one line.

* :class:`UserError`: an expected failure whose message is the whole story (a bad argument, a
  refusal, a damaged file). The command line prints ``error: <message>`` and exits non-zero, with no
  traceback (``--debug`` shows it). Modules raise a subclass, or a ``ValueError`` /
  ``FileNotFoundError`` with a message that names the file, line or argument.
* :class:`IncompleteDataWarning`: a dataset folder holds only part of its documented files, so
  results will differ from the full dataset's. Filter it like any warning
  (``warnings.simplefilter("ignore", IncompleteDataWarning)``), or opt in to the subset explicitly
  (``subset_ok=True`` or ``SMOOTHDISTILL_ALLOW_SUBSET=1``, see :func:`warn_incomplete`).
"""

from __future__ import annotations

import os
import warnings


class UserError(Exception):
    """An expected failure whose message is the whole story: the CLI prints it as one line."""


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


__all__ = ["ALLOW_SUBSET_ENV", "IncompleteDataWarning", "UserError", "subset_allowed", "warn_incomplete"]
