"""Splits of a :class:`~smoothdistill_lib.windows.Windows`: protocols, folds, ratios, caps,
normalisation and the leakage meter.

Two protocols (book/12_authors_code.ipynb):

- ``paper_split``: the authors' random 80/20 window split (``train_test_split(test_size=0.2,
  random_state=42)``, test = ceil(0.2 n)), then ``KFold(5, shuffle=True, random_state=42)`` on the
  training part. Windows of one subject, one session and even overlapping windows land on both sides.
- ``subject_split``: whole subjects held out for test (all placements of a subject on one side) and
  validation folds grouped by subject.

:func:`leakage` measures how much a split leaks. All splitters are scikit-learn's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold, GroupShuffleSplit, KFold, train_test_split

from smoothdistill_lib.windows import LAYOUTS, Windows, to_layout

PROTOCOLS = ("paper", "subject")


@dataclass
class Split:
    """Absolute indices into a :class:`Windows` (contract in CONTRIBUTING.md).

    ``train`` and ``test`` are disjoint; ``folds`` is a list of ``(fit, val)`` pairs, each
    partitioning ``train``. ``notes`` says where the split departs from what was asked (fewer folds
    than requested on few-subject data, ...).
    """

    train: np.ndarray
    test: np.ndarray
    folds: list[tuple[np.ndarray, np.ndarray]]
    protocol: str
    seed: int
    notes: list[str] = field(default_factory=list)

    @property
    def n_folds(self) -> int:
        return len(self.folds)

    def summary(self) -> dict:
        """Sizes as a JSON-able dict."""
        return {
            "protocol": self.protocol, "seed": self.seed, "n_train": len(self.train),
            "n_test": len(self.test), "n_folds": self.n_folds,
            "fold_sizes": [[len(f), len(v)] for f, v in self.folds], "notes": list(self.notes),
        }


def _n(windows_or_n) -> int:
    return int(windows_or_n) if isinstance(windows_or_n, (int, np.integer)) else len(windows_or_n)


def _as_index(a) -> np.ndarray:
    return np.asarray(a, dtype=np.int64)


def paper_split(windows_or_n, seed: int = 42, test_size: float = 0.2, n_folds: int = 5) -> Split:
    """The authors' split of ``n`` windows: random train/test (test = ceil(test_size * n)), then
    shuffled K-folds on train. ``train`` keeps scikit-learn's shuffled order, so fold k is exactly
    the authors' ``KFold`` fold k mapped to absolute indices."""
    n = _n(windows_or_n)
    if n < 3:
        raise ValueError(f"paper_split: need at least 3 windows, got {n}")
    train, test = train_test_split(np.arange(n), test_size=test_size, random_state=seed)
    k = min(n_folds, len(train))
    notes = [] if k == n_folds else [f"only {len(train)} training windows: {k} folds instead of {n_folds}"]
    folds = [(train[f], train[v]) for f, v in KFold(k, shuffle=True, random_state=seed).split(train)]
    return Split(_as_index(train), _as_index(test), folds, "paper", seed, notes)


def subject_split(windows: Windows, seed: int = 42, test_fraction: float = 0.2, n_folds: int = 5,
                  test_subjects=None, test_fold: int | None = None, n_test_folds: int = 5) -> Split:
    """Hold out whole subjects for test: the ``test_subjects`` given (subject ids as in
    ``windows.subject``); or, with ``test_fold`` = k, the k-th of ``n_test_folds`` subject groups
    (``GroupKFold`` shuffled with ``seed``: the groups partition the subjects, so k = 0 .. K-1 is
    subject-wise K-fold cross-validation); else ceil(test_fraction * n_subjects) drawn with ``seed``
    (``GroupShuffleSplit``). Validation folds are grouped by subject (``GroupKFold`` shuffled with
    ``seed``). With fewer training subjects than ``n_folds`` it uses one fold per training subject;
    with a single training subject the folds fall back to a window-wise ``KFold`` (both said in
    ``notes``)."""
    subjects = np.asarray(windows.subject)
    n_subjects = len(np.unique(subjects))
    if n_subjects < 2:
        raise ValueError(
            f"subject_split: dataset {windows.dataset!r} has {n_subjects} subject(s); the subject "
            "protocol needs at least 2 (use protocol='paper')"
        )
    idx = np.arange(len(windows))
    if test_fold is not None:
        if test_subjects is not None:
            raise ValueError("subject_split: give test_subjects or test_fold, not both")
        if not (isinstance(n_test_folds, int | np.integer) and 2 <= n_test_folds <= n_subjects):
            raise ValueError(f"subject_split: n_test_folds={n_test_folds!r} must be an integer from 2 to the "
                             f"{n_subjects} subjects of {windows.dataset!r}")
        if not (isinstance(test_fold, int | np.integer) and 0 <= test_fold < n_test_folds):
            raise ValueError(f"subject_split: test_fold={test_fold!r} must be an integer from 0 to {n_test_folds - 1}")
        outer = GroupKFold(int(n_test_folds), shuffle=True, random_state=seed)
        _, held_pos = list(outer.split(idx, groups=subjects))[int(test_fold)]
        test_subjects = np.unique(subjects[held_pos])
    if test_subjects is None:
        gss = GroupShuffleSplit(n_splits=1, test_size=test_fraction, random_state=seed)
        train, test = next(gss.split(idx, groups=subjects))
    else:
        chosen = np.unique(np.asarray(list(test_subjects)))
        unknown = sorted(set(chosen.tolist()) - set(np.unique(subjects).tolist()))
        if unknown or len(chosen) == 0 or len(chosen) == n_subjects:
            raise ValueError(f"subject_split: test_subjects {chosen.tolist()} must be some, not all, of the "
                             f"subjects of {windows.dataset!r} ({np.unique(subjects).tolist()})"
                             + (f"; unknown: {unknown}" if unknown else ""))
        held = np.isin(subjects, chosen)
        train, test = idx[~held], idx[held]
    train_subjects = np.unique(subjects[train])
    notes = [f"test subjects: {sorted(int(s) for s in np.unique(subjects[test]))}"]
    if test_fold is not None:
        notes.append(f"subject group {int(test_fold)} of {int(n_test_folds)} held out (split seed {seed})")
    k = min(n_folds, len(train_subjects))
    if k >= 2:
        splitter = GroupKFold(k, shuffle=True, random_state=seed)
        folds = [(train[f], train[v]) for f, v in splitter.split(train, groups=subjects[train])]
        if k < n_folds:
            notes.append(f"only {len(train_subjects)} training subjects: {k} subject-grouped folds "
                         f"instead of {n_folds}")
    else:
        k = min(n_folds, len(train))
        folds = [(train[f], train[v]) for f, v in KFold(k, shuffle=True, random_state=seed).split(train)]
        notes.append(f"one training subject: {k} window-wise validation folds (not subject-grouped)")
    return Split(_as_index(train), _as_index(test), folds, "subject", seed, notes)


def _sample(items: np.ndarray, k: int, seed: int, stratify=None) -> np.ndarray:
    """``k`` of ``items`` without replacement (scikit-learn's shuffle), in their original order."""
    if k >= len(items):
        return items
    pos, _ = train_test_split(np.arange(len(items)), train_size=k, random_state=seed, stratify=stratify)
    return items[np.sort(pos)]


def subsample_ratio(split_or_indices, windows: Windows, ratio: float, seed: int = 0, by: str = "window"):
    """Keep ``ratio`` (0 < ratio <= 1) of some training data: the training-ratio ablation.

    ``by="window"`` keeps round(ratio * n) windows; ``by="subject"`` keeps round(ratio * n_subjects)
    whole subjects (at least one). Given indices, returns the kept indices in their original order.
    Given a :class:`Split`, returns a new Split with the same ``test``, ``train`` subsampled and every
    fold restricted to it (folds left with an empty part are dropped, noted).
    """
    if not 0 < ratio <= 1:
        raise ValueError(f"subsample_ratio: ratio must be in (0, 1], got {ratio}")
    if by not in ("window", "subject"):
        raise ValueError(f"subsample_ratio: by={by!r}; choose 'window' or 'subject'")
    split = split_or_indices if isinstance(split_or_indices, Split) else None
    idx = _as_index(split.train if split else split_or_indices)
    if by == "window":
        kept = _sample(idx, max(1, round(ratio * len(idx))), seed)
    else:
        subjects = np.unique(windows.subject[idx])
        chosen = _sample(subjects, max(1, round(ratio * len(subjects))), seed)
        kept = idx[np.isin(windows.subject[idx], chosen)]
    if split is None:
        return kept
    folds = [(f[np.isin(f, kept)], v[np.isin(v, kept)]) for f, v in split.folds]
    note = f"training ratio {ratio} by {by}: {len(kept)} of {len(idx)} training windows"
    dropped = sum(1 for f, v in folds if len(f) == 0 or len(v) == 0)
    if dropped:
        note += f"; {dropped} fold(s) with an empty part dropped"
    folds = [(f, v) for f, v in folds if len(f) and len(v)]
    return Split(kept, split.test, folds, split.protocol, split.seed, [*split.notes, note])


def contiguous_cap(windows: Windows, max_windows: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most ``max_windows`` windows: from every session the same share of its
    windows, as ONE contiguous block at a random offset.

    Why not a random sample: the paper protocol's main leak is that neighbouring, overlapping
    windows fall on both sides of a random split. A random subsample thins the neighbours out and
    hides that leak in small runs; contiguous blocks keep it, so quick/demo runs measure the same
    kind of leakage as full runs. Sessions carry one label, so the cap is also stratified by label,
    subject and placement.
    """
    n = len(windows)
    if max_windows is None or n <= max_windows:
        return np.arange(n, dtype=np.int64)
    if max_windows < 1:
        raise ValueError(f"contiguous_cap: max_windows must be >= 1, got {max_windows}")
    sessions, first, counts = np.unique(np.asarray(windows.session), return_index=True, return_counts=True)
    order = np.argsort(np.asarray(windows.session), kind="stable")
    quota = counts * (max_windows / n)
    keep = np.floor(quota).astype(np.int64)
    # largest remainders get the leftover windows, so the total is exactly max_windows
    rest = max_windows - int(keep.sum())
    if rest > 0:
        keep[np.argsort(-(quota - keep), kind="stable")[:rest]] += 1
    rng = np.random.default_rng(seed)
    chosen = []
    pos = 0
    for count, k in zip(counts, keep):
        members = order[pos : pos + count]  # this session's windows, in stream order
        pos += count
        if k:
            off = int(rng.integers(0, count - k + 1))
            chosen.append(members[off : off + k])
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def stratified_cap(windows: Windows, max_windows: int, seed: int = 0, by_subject: bool = False) -> np.ndarray:
    """Sorted indices of at most ``max_windows`` windows, stratified by the task-1 label (and by
    subject too when ``by_subject``, so each subject keeps its share: the subject protocol's cap).

    Falls back to coarser strata when a stratum is too small for scikit-learn's stratified sampler
    (subject x label -> label -> none).
    """
    n = len(windows)
    if max_windows is None or n <= max_windows:
        return np.arange(n, dtype=np.int64)
    if max_windows < 1:
        raise ValueError(f"stratified_cap: max_windows must be >= 1, got {max_windows}")
    y = np.asarray(windows.y1, dtype=np.int64)
    strata = [y * (int(windows.subject.max()) + 1) + windows.subject] if by_subject else []
    strata += [y, None]
    idx = np.arange(n, dtype=np.int64)
    for s in strata:
        try:
            return _sample(idx, max_windows, seed, stratify=s)
        except ValueError:  # a stratum with < 2 members or more strata than max_windows
            continue
    raise AssertionError("unreachable: the unstratified sample cannot fail")


@dataclass
class Standardizer:
    """Per-channel mean and std (x, y, z, or any C channels), fitted on training windows only.

    Works in either layout: statistics are per channel, and :meth:`transform` maps them onto the
    positions of ``layout`` (in the faithful layout a channel is every C-th interleaved value).
    A checkpoint stores :meth:`to_dict` so that new recordings are scaled as the training data were.
    """

    mean: np.ndarray  # (C,) float64, in channel order
    std: np.ndarray  # (C,) float64, in channel order
    layout: str = "axes"

    @classmethod
    def fit(cls, X: np.ndarray, indices=None, layout: str = "axes", chunk: int = 8192) -> Standardizer:
        """Fit on ``X[indices]`` (N, 1, C, L) (all rows when ``indices`` is None); rows outside are
        never read. Chunked float64 sums, so no copy of the training set is made."""
        if layout not in LAYOUTS:
            raise ValueError(f"Standardizer.fit: layout={layout!r}; choose one of {LAYOUTS}")
        idx = np.arange(len(X)) if indices is None else _as_index(indices)
        if len(idx) == 0:
            raise ValueError("Standardizer.fit: no training windows to fit on")
        s = np.zeros(X.shape[2])
        ss = np.zeros(X.shape[2])
        for a in range(0, len(idx), chunk):
            xa = to_layout(X[idx[a : a + chunk]], layout, "axes")[:, 0].astype(np.float64)
            s += xa.sum(axis=(0, 2))
            ss += (xa * xa).sum(axis=(0, 2))
        if not (np.isfinite(s).all() and np.isfinite(ss).all()):
            # one NaN would make its channel's mean NaN, and so every standardised value of it
            bad = int(np.flatnonzero(~(np.isfinite(s) & np.isfinite(ss)))[0])
            raise ValueError(f"Standardizer.fit: the training windows hold non-finite values in channel {bad} "
                             "(pipeline.prepare refuses such recordings, naming the row)")
        count = len(idx) * X.shape[-1]
        mean = s / count
        std = np.sqrt(np.maximum(ss / count - mean**2, 0.0))
        return cls(mean, np.where(std > 1e-8, std, 1.0), layout)  # constant axis: leave its scale

    @classmethod
    def identity(cls, layout: str = "axes", n_channels: int = 3) -> Standardizer:
        """``normalise="none"``: transform is a no-op (the paper feeds raw units)."""
        return cls(np.zeros(n_channels), np.ones(n_channels), layout)

    @classmethod
    def from_dict(cls, d) -> Standardizer:
        """The inverse of :meth:`to_dict`."""
        return cls(np.asarray(d["mean"], dtype=np.float64), np.asarray(d["std"], dtype=np.float64),
                   d.get("layout", "axes"))

    def transform(self, X: np.ndarray) -> np.ndarray:
        """``(X - mean) / std`` per channel, float32, same shape and layout as ``X``."""
        if X.shape[2] != len(self.mean):
            raise ValueError(f"Standardizer: fitted on {len(self.mean)} channels, X has {X.shape[2]} "
                             f"(shape {tuple(X.shape)})")
        length = X.shape[-1]
        mean = to_layout(np.repeat(self.mean[None, None, :, None], length, axis=3), "axes", self.layout)
        std = to_layout(np.repeat(self.std[None, None, :, None], length, axis=3), "axes", self.layout)
        return ((X - mean) / std).astype(np.float32)

    def to_dict(self) -> dict:
        return {"mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std],
                "layout": self.layout}


def _moments(windows: Windows, idx: np.ndarray) -> pd.DataFrame:
    """Each window's "moment": the key (subject, activity, occurrence) of the run its last sample is
    in, its placement, and its span [a, b) as a fraction of that run's length."""
    runs = windows.sessions
    start = windows.start[idx]
    r = np.searchsorted(runs["start"].to_numpy(), start + windows.length - 1, side="right") - 1
    rs = runs["start"].to_numpy()[r]
    rn = runs["n_samples"].to_numpy()[r]
    return pd.DataFrame({
        "subject": runs["subject"].to_numpy()[r].astype(np.int64),
        "activity": runs["activity"].to_numpy()[r].astype(np.int64),
        "occurrence": runs["occurrence"].to_numpy()[r].astype(np.int64),
        "placement": runs["placement"].to_numpy()[r].astype(np.int64),
        "a": (start - rs) / rn,
        "b": (start + windows.length - rs) / rn,
        "row": np.arange(len(idx)),
    })


def _same_moment(windows: Windows, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Mask over ``test``: a training window of the same subject at ANOTHER placement covers the
    same moment (same key, overlapping fractional span). Sort-based (``merge_asof``): O(N log N)."""
    hit = np.zeros(len(test), dtype=bool)
    if windows.sessions is None or len(train) == 0 or len(test) == 0:
        return hit
    q, t = _moments(windows, test), _moments(windows, train)
    key = ["subject", "activity", "occurrence"]
    for p in np.unique(t["placement"]):
        left = q[q["placement"] != p].sort_values("b")
        right = t.loc[t["placement"] == p, [*key, "a", "b"]].rename(columns={"a": "ta", "b": "tb"})
        if left.empty:
            continue
        # the training span at placement p starting last before the test span ends; all spans of one
        # run have the same width, so if this one ends before the test span starts, all earlier do
        m = pd.merge_asof(left, right.sort_values("ta"), left_on="b", right_on="ta", by=key,
                          direction="backward", allow_exact_matches=False)
        ok = (m["tb"] > m["a"]).to_numpy()
        hit[m["row"].to_numpy()[ok]] = True
    return hit


def leakage(windows: Windows, split: Split) -> dict:
    """The leakage meter: how many test windows are not really unseen. Counts and fractions of
    test windows that

    - ``shared_samples``: share raw samples with a training window (fit or validation): their
      stream index ranges [start, start + length) overlap;
    - ``subject_in_train``: come from a subject (of the window's last sample) that has training windows;
    - ``same_moment_other_placement``: were recorded at the same moment as a training window of the
      same subject at another placement. "Moment": the run of the window's last sample (one subject,
      placement, activity) is paired with the same subject's k-th run of the same activity at the
      other placement, and the windows' spans, as fractions of their runs, overlap. For MHEALTH
      (three placements stacked from the same rows) this is the same within-subject sample index;
      for WISDM (phone and watch recorded together, separate clocks) it is the same relative
      position in the activity's ~3-minute block;
    - ``any``: any of the three.

    Sort-based, O(N log N). Needs ``windows.sessions`` for the third count (else it is 0).
    """
    train, test = _as_index(split.train), _as_index(split.test)
    length = windows.length
    s = windows.start[test]
    ts = np.sort(windows.start[train])
    if len(ts):
        pos = np.searchsorted(ts, s)  # nearest training starts on either side of each test start
        right = np.abs(ts[np.minimum(pos, len(ts) - 1)] - s) < length
        left = np.abs(s - ts[np.maximum(pos - 1, 0)]) < length
        shared = right | left
    else:
        shared = np.zeros(len(test), dtype=bool)
    subject = np.isin(windows.subject[test], np.unique(windows.subject[train]))
    moment = _same_moment(windows, train, test)
    out: dict = {"n_train": len(train), "n_test": len(test)}
    for name, mask in (("shared_samples", shared), ("subject_in_train", subject),
                       ("same_moment_other_placement", moment), ("any", shared | subject | moment)):
        count = int(mask.sum())
        out[f"{name}_count"] = count
        out[f"{name}_fraction"] = count / len(test) if len(test) else 0.0
    return out
