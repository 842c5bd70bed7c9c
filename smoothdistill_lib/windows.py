"""Sliding windows over a :class:`~smoothdistill_lib.recordings.Recording`.

The second stage of the data flow (recordings -> **windows** -> splits -> engine). The paper's
windows are 100 samples long with a step of 60 (40 samples of overlap) over ONE concatenated stream,
labelled by the window's last sample (book/12_authors_code.ipynb). Two switches give the cleaner variant:
``stream="session"`` (windows never cross a subject/placement/session boundary) and
``label_rule="majority"`` (the paper's text).

Layouts of ``X`` (N, 1, C, L), C = the recording's channels (x, y, z: 3; book/12_authors_code.ipynb):

- ``"axes"``: rows are the channels over time (a transpose of the (N, L, C) windows); what every
  model except the faithful MTL-net expects.
- ``"faithful"``: the authors' no-transpose ``reshape(-1, 1, C, L)`` of the (N, L, C) windows, so
  row 0 is ``x0, y0, z0, x1, y1, z1, ...``: what the faithful ``mtlnet`` is fed.

:func:`to_layout` converts between them (numpy arrays or torch tensors).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from smoothdistill_lib.recordings import Recording, sessions_from_runs

STREAMS = ("paper", "session")
LABEL_RULES = ("last", "majority")
LAYOUTS = ("axes", "faithful")


@dataclass
class Windows:
    """Windows of one recording (contract in CONTRIBUTING.md).

    ``X`` (N, 1, C, L) float32 in ``layout`` (C = ``len(channels)``); ``y1`` (task 1: activity/posture) and ``y2`` (task 2:
    placement) (N,) int64; ``subject``, ``placement``, ``session`` (N,) of the window's LAST sample;
    ``start`` (N,) int64, index of the window's first sample in the recording's stream.
    ``sessions`` (optional) has one row per contiguous subject/placement/session run of the stream
    (columns ``start, n_samples, subject, placement, activity, occurrence``); the leakage meter uses
    it to find "the same moment at another placement".
    """

    X: np.ndarray
    y1: np.ndarray
    y2: np.ndarray
    subject: np.ndarray
    placement: np.ndarray
    session: np.ndarray
    start: np.ndarray
    length: int
    step: int
    stream: str
    label_rule: str
    layout: str
    activity_names: list[str]
    placement_names: list[str]
    dataset: str = ""
    sessions: pd.DataFrame | None = field(default=None, repr=False)
    channels: tuple[str, ...] = ("x", "y", "z")

    _PER_WINDOW = ("X", "y1", "y2", "subject", "placement", "session", "start")

    def __post_init__(self) -> None:
        n = len(self.X)
        bad = [k for k in self._PER_WINDOW if len(getattr(self, k)) != n]
        if bad:
            raise ValueError(f"Windows({self.dataset!r}): {bad} do not have len(X) = {n} entries")
        if self.layout not in LAYOUTS:
            raise ValueError(f"Windows: layout={self.layout!r}; choose one of {LAYOUTS}")

    def __len__(self) -> int:
        return len(self.X)

    @property
    def n_classes(self) -> tuple[int, int]:
        """(task-1 classes, task-2 classes), from the recording's label names."""
        return len(self.activity_names), len(self.placement_names)

    def subset(self, indices) -> Windows:
        """The windows at ``indices`` (any integer index array), everything else unchanged."""
        idx = np.asarray(indices, dtype=np.int64)
        return replace(self, **{k: getattr(self, k)[idx] for k in self._PER_WINDOW})

    def class_counts(self, task: int = 1) -> dict[str, int]:
        """Windows per class name of ``task`` (1 or 2), every class listed (0 when absent)."""
        y, names = (self.y1, self.activity_names) if task == 1 else (self.y2, self.placement_names)
        counts = np.bincount(y, minlength=len(names))
        return {name: int(c) for name, c in zip(names, counts)}


def window_starts(n: int, length: int = 100, step: int = 60, segment_starts=None) -> np.ndarray:
    """Start indices (int64) of the windows of a stream of ``n`` samples.

    Without ``segment_starts`` the stream is one segment: starts 0, step, ... up to ``n - length``,
    i.e. ``(n - length) // step + 1`` windows (the authors' ``generate_data``). With
    ``segment_starts`` (sorted indices where a segment begins, the first being 0) windows restart at
    each segment and never cross into the next one.
    """
    if length < 1 or step < 1:
        raise ValueError(f"window length and step must be >= 1 (got length={length}, step={step})")
    bounds = np.append(np.asarray([0] if segment_starts is None else segment_starts, dtype=np.int64), n)
    if bounds[0] != 0 or np.any(np.diff(bounds) <= 0):
        raise ValueError("segment_starts must be increasing, start at 0 and stay below n")
    lens = np.diff(bounds)
    counts = np.where(lens >= length, (lens - length) // step + 1, 0)
    # vectorised "for each segment: range(seg_start, seg_end - length + 1, step)"
    first = np.repeat(bounds[:-1], counts)
    rank = np.arange(counts.sum(), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    return first + rank * step


def _run_table(rec: Recording) -> tuple[np.ndarray, pd.DataFrame]:
    """Run starts and a table of the stream's contiguous subject/placement/session runs."""
    f = rec.frame
    ids = sessions_from_runs(f["subject"].to_numpy(), f["placement"].to_numpy(), f["session"].to_numpy())
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.zeros(0, np.int64)
    runs = pd.DataFrame({
        "start": starts.astype(np.int64),
        "n_samples": np.diff(np.append(starts, len(ids))).astype(np.int64),
        "subject": f["subject"].to_numpy()[starts],
        "placement": f["placement"].to_numpy()[starts],
        "activity": f["activity"].to_numpy()[starts],
    })
    # k-th run of this activity for this subject at this placement: the key under which simultaneous
    # recordings at two placements (WISDM phone/watch, MHEALTH chest/ankle/arm) pair up
    runs["occurrence"] = runs.groupby(["subject", "placement", "activity"]).cumcount()
    return starts, runs


def _labels(y: np.ndarray, starts: np.ndarray, length: int, rule: str, chunk: int = 16384) -> np.ndarray:
    """Window labels (int64) from per-sample labels ``y``: last sample, or the most frequent.

    Majority ties: the last sample's label when it is among the most frequent (agrees with the
    authors' rule; a window straddling two runs 50/50 ends in one of them), else the smallest id.
    """
    last = y[starts + length - 1].astype(np.int64)
    if rule == "last":
        return last
    n_cls = int(y.max()) + 1 if len(y) else 1
    view = sliding_window_view(y, length)
    out = np.empty(len(starts), dtype=np.int64)
    # hand-written (scipy.stats.mode has no "prefer the last sample" tie rule); per-window
    # bincount via offset labels, in chunks to bound memory at ~chunk*length ints
    for a in range(0, len(starts), chunk):
        w = view[starts[a : a + chunk]].astype(np.int64)
        m = len(w)
        counts = np.bincount((w + n_cls * np.arange(m)[:, None]).ravel(), minlength=m * n_cls)
        counts = counts.reshape(m, n_cls)
        lst = last[a : a + chunk]
        tied = counts[np.arange(m), lst] == counts.max(axis=1)
        out[a : a + chunk] = np.where(tied, lst, counts.argmax(axis=1))
    return out


def make_windows(
    rec: Recording,
    length: int = 100,
    step: int = 60,
    stream: str = "paper",
    label_rule: str = "last",
    layout: str = "axes",
) -> Windows:
    """Cut ``rec`` into windows of ``length`` samples every ``step`` samples.

    ``stream="paper"``: one concatenated stream (windows may straddle two files/subjects/placements,
    as in the authors' code); ``"session"``: windows restart in every subject/placement/session run.
    ``label_rule``: ``"last"`` (authors' code) or ``"majority"`` (paper text; ties in :func:`_labels`).
    Returns :class:`Windows` with ``X`` (N, 1, C, length) float32 in ``layout``, C = the
    recording's channels (``rec.channels``).
    """
    for name, value, allowed in (("stream", stream, STREAMS), ("label_rule", label_rule, LABEL_RULES),
                                 ("layout", layout, LAYOUTS)):
        if value not in allowed:
            raise ValueError(f"make_windows: {name}={value!r}; choose one of {allowed}")
    n = len(rec)
    run_starts, runs = _run_table(rec)
    starts = window_starts(n, length, step, run_starts if stream == "session" else None)
    if len(starts) == 0:
        raise ValueError(
            f"make_windows: recording {rec.name!r} has {n} samples; no window of length {length} fits "
            f"(stream={stream!r}, longest run {int(runs['n_samples'].max()) if len(runs) else 0})"
        )
    f = rec.frame
    sig = np.ascontiguousarray(rec.signal, dtype=np.float32)  # (n, C)
    c = sig.shape[1]
    if layout == "axes":
        # sliding_window_view over time gives (n - L + 1, C, L): already rows = channels
        X = sliding_window_view(sig, length, axis=0)[starts][:, None]
    else:
        # authors: windows (N, L, C) reshaped with no transpose = L*C consecutive interleaved values
        X = sliding_window_view(sig.reshape(-1), c * length)[c * starts].reshape(-1, 1, c, length)
    end = starts + length - 1
    return Windows(
        X=np.ascontiguousarray(X, dtype=np.float32),
        y1=_labels(f["activity"].to_numpy(), starts, length, label_rule),
        y2=_labels(f["placement"].to_numpy(), starts, length, label_rule),
        subject=f["subject"].to_numpy()[end],
        placement=f["placement"].to_numpy()[end],
        session=f["session"].to_numpy()[end],
        start=starts.astype(np.int64),
        length=int(length),
        step=int(step),
        stream=stream,
        label_rule=label_rule,
        layout=layout,
        activity_names=list(rec.activity_names),
        placement_names=list(rec.placement_names),
        dataset=rec.name,
        sessions=runs,
        channels=tuple(rec.channels),
    )


def to_layout(X, src: str, dst: str):
    """Convert windows ``X`` (N, 1, C, L) from layout ``src`` to ``dst`` (numpy array or torch tensor).

    ``axes -> faithful`` is the authors' reshape of the (N, L, C) windows; ``faithful -> axes`` undoes it.
    """
    for name, value in (("src", src), ("dst", dst)):
        if value not in LAYOUTS:
            raise ValueError(f"to_layout: {name}={value!r}; choose one of {LAYOUTS}")
    if src == dst:
        return X
    if X.ndim != 4 or X.shape[1] != 1:
        raise ValueError(f"to_layout: X must have shape (N, 1, C, L), got {tuple(X.shape)}")
    n, c, length = X.shape[0], X.shape[2], X.shape[3]
    is_torch = hasattr(X, "permute")

    def swap_last_two(a):  # (N, A, B) -> (N, B, A) for numpy and torch alike
        return a.permute(0, 2, 1) if is_torch else a.transpose(0, 2, 1)

    if src == "axes":  # (N,1,C,L) -> (N,L,C) windows -> the authors' reshape
        out = swap_last_two(X[:, 0]).reshape(n, 1, c, length)
    else:  # faithful rows are the flattened (L, C) windows: undo the reshape, then transpose
        out = swap_last_two(X.reshape(n, length, c))[:, None]
    return out.contiguous() if is_torch else np.ascontiguousarray(out)
