"""Per-window predictions of a run, stored beside its record: ``runs/<run_id>.pred.npz``.

A record's accuracies are means over test windows. To put test-sampling error into an interval
(a paired bootstrap over windows, :func:`stats.paired_bootstrap`) or to score two methods on the
same windows, a reader needs each window's prediction. The runner keeps them in a small ``.npz``:

============================  =======  ==============================================
array                         dtype    shape / meaning
============================  =======  ==============================================
``{split}_index``             int32    (n_split,) absolute window indices (``prep.windows``), sorted
``{split}_y{task}_true``      uint8*   (n_split,) true labels of task 1 / task 2
``{split}_{who}_y{task}_pred`` uint8*  (n_split,) predicted labels; who = student | teacher
============================  =======  ==============================================

``split`` is ``val`` or ``test``; ``*`` uint16 when a task has more than 255 classes. Every array of
a split is ordered by window index: runs on one split line up window for window, and neighbouring
windows (which share labels) sit together, which halves the compressed size. The record
names the file and its sha256 (``record["predictions"]``); :func:`read` refuses a file whose hash
differs. The file is written byte-for-byte deterministically (fixed zip timestamps), so the same
predictions always have the same sha256 and a re-run that reproduces a run reproduces its hash.
Adding predictions changes no run id: the id hashes the run's spec only.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from smoothdistill_lib.errors import UserError
from smoothdistill_lib.fileio import atomic_write, sha256_file

SUFFIX = ".pred.npz"
SPLITS = ("val", "test")
WHOS = ("student", "teacher")
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest zip timestamp: same bytes for the same arrays


class PredictionsError(UserError):
    """A predictions file is missing, damaged or not the one its record names."""


def path_for(runs_dir: str | os.PathLike, run_id: str) -> Path:
    """``runs_dir/<run_id>.pred.npz``."""
    return Path(runs_dir) / f"{run_id}{SUFFIX}"


def _label_dtype(*arrays) -> np.dtype:
    top = max((int(a.max()) for a in arrays if len(a)), default=0)
    return np.dtype(np.uint8 if top < 256 else np.uint16)


def arrays_from(predictions: Mapping) -> dict[str, np.ndarray]:
    """The compact arrays of an engine ``FitResult.predictions`` dict (``(split, who)`` -> numpy
    ``y1_true, y1_pred, y2_true, y2_pred, index, ...``): labels as small unsigned integers,
    probabilities left out. The true labels and indices of a split are stored once."""
    out: dict[str, np.ndarray] = {}
    for (split, who), p in sorted(predictions.items()):
        if split not in SPLITS or who not in WHOS:
            continue
        order = np.argsort(np.asarray(p["index"]), kind="stable")
        index = np.asarray(p["index"])[order]
        if f"{split}_index" in out:
            if not np.array_equal(out[f"{split}_index"], index):
                raise ValueError(f"predictions: {split} windows of {who} differ from the other network's")
        else:
            out[f"{split}_index"] = index.astype(np.int32)
        for task in (1, 2):
            true, pred = np.asarray(p[f"y{task}_true"])[order], np.asarray(p[f"y{task}_pred"])[order]
            dtype = _label_dtype(true, pred)
            out.setdefault(f"{split}_y{task}_true", true.astype(dtype))
            out[f"{split}_{who}_y{task}_pred"] = pred.astype(dtype)
    return out


def _npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    # Hand-written instead of np.savez_compressed: numpy stamps each zip entry with the current
    # time, so the same arrays would get a new sha256 on every write. Same format, fixed stamp.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            z.writestr(info, member.getvalue())
    return buf.getvalue()


def write(runs_dir: str | os.PathLike, run_id: str, arrays: Mapping[str, np.ndarray]) -> dict:
    """Write ``arrays`` atomically to :func:`path_for` and return the record's reference
    ``{"file", "sha256", "bytes", "arrays": {name: length}}``."""
    data = _npz_bytes(arrays)
    path = atomic_write(path_for(runs_dir, run_id), lambda f: f.write(data), binary=True)
    return {"file": path.name, "sha256": sha256_file(path), "bytes": len(data),
            "arrays": {k: int(len(v)) for k, v in sorted(arrays.items())}}


def read(runs_dir: str | os.PathLike, record: Mapping) -> dict[str, np.ndarray]:
    """The arrays a record's ``predictions`` reference names, checked against its sha256.
    Raises :class:`PredictionsError` (one line naming the file) when the record has none, the file
    is missing, or its hash or contents differ from the reference."""
    ref = record.get("predictions")
    run_id = record.get("run_id", "?")
    if not isinstance(ref, Mapping) or "file" not in ref or "sha256" not in ref:
        raise PredictionsError(f"run {run_id}: its record holds no per-window predictions (made before they "
                               "were stored; `python -m smoothdistill_lib backfill` re-runs it to add them)")
    path = Path(runs_dir) / str(ref["file"])
    if Path(ref["file"]).name != ref["file"]:
        raise PredictionsError(f"run {run_id}: predictions file {ref['file']!r} must be a plain file name")
    if not path.is_file():
        raise PredictionsError(f"{path}: predictions file of run {run_id} is missing")
    sha = sha256_file(path)
    if sha != ref["sha256"]:
        raise PredictionsError(f"{path}: sha256 {sha[:12]}… differs from the record's {str(ref['sha256'])[:12]}…")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise PredictionsError(f"{path}: not a readable .npz ({e})") from None
    expected = ref.get("arrays")
    if isinstance(expected, Mapping):
        got = {k: int(len(v)) for k, v in arrays.items()}
        if got != {k: int(v) for k, v in expected.items()}:
            raise PredictionsError(f"{path}: arrays {sorted(got)} do not match the record's {sorted(expected)}")
    return arrays


def correct(arrays: Mapping[str, np.ndarray], split: str = "test", who: str = "student",
            task: int = 1) -> np.ndarray:
    """(n_split,) bool: which windows ``who`` got right on ``task``. Raises ``KeyError`` naming the
    array when the run has no such network (e.g. no teacher)."""
    key = f"{split}_{who}_y{task}_pred"
    if key not in arrays:
        raise KeyError(f"no {key} in these predictions (arrays: {', '.join(sorted(arrays))})")
    return np.asarray(arrays[key]) == np.asarray(arrays[f"{split}_y{task}_true"])


__all__ = ["PredictionsError", "SUFFIX", "arrays_from", "correct", "path_for", "read", "write"]
