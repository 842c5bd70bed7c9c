"""The library's own exception classes: refusals and bad input that the user can act on.

Design: every class here subclasses :class:`UserError`, which subclasses ``ValueError``. So

- the command line (``cli.main``) turns any of them into ONE line ``error: <message>`` and exit code
  2, like every other bad-input ``ValueError`` (no traceback: the message says what to do);
- callers that already catch ``ValueError`` keep working;
- a caller that wants to tell a refusal apart catches the subclass (e.g. :class:`ExperimentLocked`
  to wait and retry).

Messages name the file, key or argument at fault and say what to do next.
"""

from __future__ import annotations


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
