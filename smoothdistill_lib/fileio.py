"""Files the library writes: canonical JSON, content hashes, atomic writes and advisory locks.

One home for these rules, shared by :mod:`checkpoints` (weights + metadata), :mod:`runner` (run
records, the experiment lock), :mod:`experiment` (run ids) and :mod:`nb` (the chapters' timings):

- :func:`jsonable` / :func:`canonical_json` / :func:`json_hash`: the one JSON-cleaning rule
  (numpy -> Python, tuples -> lists, NaN/inf -> None, dataclasses -> dicts, paths -> str) and the
  one canonical text (sorted keys, no spaces) that run ids and config hashes are sha256 prefixes of.
  Changing either would change every run id: ``tests/test_runner.py`` guards the recorded ones.
- :func:`atomic_write`: temp file in the same folder, flush + fsync, ``os.replace`` (atomic on POSIX
  and Windows), then fsync of the folder, so a path holds its old content or the new, never a part.
- :func:`sha256_file`: chunked sha256 of a file.
- :func:`file_lock`: an exclusive ``flock`` (released by the kernel when the process dies, even by
  SIGKILL); a no-op where ``fcntl`` does not exist (Windows).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

try:  # POSIX only; without it locks are skipped (resume still keeps records valid)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


class LockHeld(Exception):
    """:func:`file_lock` with ``wait=False`` found the lock held; ``holder`` is what the file says."""

    def __init__(self, path: Path, holder: str):
        super().__init__(f"{path} is held by {holder}")
        self.path, self.holder = path, holder


def jsonable(obj: Any) -> Any:
    """Plain JSON values: numpy -> Python, tuples -> lists, NaN/inf -> None, dataclasses -> dicts."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return jsonable(dataclasses.asdict(obj))
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def canonical_json(obj: Any) -> str:
    """The canonical text of ``obj``: :func:`jsonable`, sorted keys, no whitespace."""
    return json.dumps(jsonable(obj), sort_keys=True, separators=(",", ":"))


def json_hash(obj: Any, digits: int) -> str:
    """The first ``digits`` hex digits of sha256 of :func:`canonical_json` ``(obj)``."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:digits]


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of the file at ``path``, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write(path: str | os.PathLike, write: Callable[[IO], None], binary: bool = False) -> Path:
    """Call ``write(f)`` on a temp file beside ``path`` and move it into place atomically.

    The temp file is ``.<name>.<random>.tmp`` in the same folder (a rename across file systems is
    not atomic); it is fsynced before ``os.replace`` and the folder after it (POSIX), so the rename
    itself survives a power cut. On any error the temp file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if hasattr(os, "O_DIRECTORY"):  # folder fsync: POSIX only
        dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    return path


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int = 1, sort_keys: bool = False) -> Path:
    """:func:`atomic_write` of ``obj`` as JSON (:func:`jsonable` first; NaN is refused, never written)."""
    text = json.dumps(jsonable(obj), indent=indent, sort_keys=sort_keys, allow_nan=False) + "\n"
    return atomic_write(path, lambda f: f.write(text))


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, wait: bool = True) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if needed) for the ``with`` block.

    ``wait=False`` raises :class:`LockHeld` at once when another process holds it; the holder writes
    ``pid <n>`` into the file so that the message can name it. No-op where ``fcntl`` is missing.
    """
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            f.seek(0)
            raise LockHeld(path, f.read().strip() or "another process") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}\n")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
