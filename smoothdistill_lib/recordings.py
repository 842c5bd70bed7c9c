"""Recordings: one tidy per-sample table for every dataset.

A :class:`Recording` is the first stage of the book's data flow
(recordings -> windows -> splits -> engine). Every loader (``wisdm``, ``mhealth``, ``sleep``,
``sleepsim``) returns one, so everything downstream is dataset-agnostic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

#: the signal channels of the shipped datasets (tri-axial accelerometers)
CHANNELS = ("x", "y", "z")
#: why a finite value of a raw file is still refused: every loader says it in these words
FLOAT32_OVERFLOW = (f"it does not fit in float32 (the training dtype, largest {np.finfo(np.float32).max:.3g}) "
                    "and would load as inf")
#: columns of :attr:`Recording.frame` besides the channels, and their dtypes (channels are float32)
LABEL_COLUMNS = {
    "subject": "int32",  # subject id as in the dataset (WISDM 1600.., MHEALTH 1..10, sleep 1..)
    "activity": "int16",  # task-1 label id: index into Recording.activity_names
    "placement": "int8",  # task-2 label id: index into Recording.placement_names
    "session": "int32",  # contiguous run of one subject/placement/activity (and file); increasing
}


@dataclass
class Recording:
    """All samples of a dataset in its documented stream order.

    ``frame`` has one row per sample: one float32 column per name in ``channels`` (the signal, e.g.
    ``x y z``, or ``ax ay az gx gy gz`` for accelerometer + gyroscope) and the columns of
    :data:`LABEL_COLUMNS`. The row order is the
    *stream order* that the paper's protocol windows over (e.g. WISDM: every phone file, sorted by
    name, then every watch file, sorted by name; rows in file order).
    """

    name: str
    frame: pd.DataFrame
    activity_names: list[str]
    placement_names: list[str]
    sampling_rate_hz: float  # nominal rate; per-session rates (if measured) live in ``info``
    info: dict = field(default_factory=dict)
    channels: tuple[str, ...] = CHANNELS

    def __post_init__(self) -> None:
        self.channels = tuple(self.channels)
        if not self.channels or len(set(self.channels)) != len(self.channels) \
                or set(self.channels) & set(LABEL_COLUMNS):
            raise ValueError(f"Recording {self.name!r}: channels {self.channels} must be distinct names other "
                             f"than {list(LABEL_COLUMNS)}")
        missing = [c for c in (*self.channels, *LABEL_COLUMNS) if c not in self.frame.columns]
        if missing:
            raise ValueError(f"Recording {self.name!r}: frame lacks columns {missing}")

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def signal(self) -> np.ndarray:
        """(n_samples, C) float32 signal, columns in ``channels`` order."""
        return self.frame[list(self.channels)].to_numpy(dtype=np.float32)

    @property
    def n_classes(self) -> tuple[int, int]:
        """(task-1 classes, task-2 classes)."""
        return len(self.activity_names), len(self.placement_names)

    def subjects(self) -> np.ndarray:
        return np.unique(self.frame["subject"].to_numpy())

    def class_table(self) -> pd.DataFrame:
        """Samples per activity (rows) and placement (columns), with names."""
        t = pd.crosstab(self.frame["activity"], self.frame["placement"])
        t.index = [self.activity_names[i] for i in t.index]
        t.columns = [self.placement_names[i] for i in t.columns]
        return t


def make_frame(channels: tuple[str, ...] = CHANNELS, **columns) -> pd.DataFrame:
    """A frame with the ``channels`` (float32) and :data:`LABEL_COLUMNS` (their dtypes), in that
    order. Every column must be given and no other: a column that is not named in ``channels``
    raises instead of being dropped silently."""
    channels = tuple(channels)
    want = (*channels, *LABEL_COLUMNS)
    extra = [c for c in columns if c not in want]
    missing = [c for c in want if c not in columns]
    if extra or missing:
        raise ValueError(f"make_frame: columns {extra} are not in channels {list(channels)} or the label "
                         f"columns" if extra else f"make_frame: missing columns {missing}")
    dtypes = {**dict.fromkeys(channels, "float32"), **LABEL_COLUMNS}
    return pd.DataFrame({c: np.asarray(columns[c]).astype(dt, copy=False) for c, dt in dtypes.items()})


def sessions_from_runs(*keys: np.ndarray) -> np.ndarray:
    """Session ids (0, 1, 2, ...) that change whenever any of ``keys`` changes along the stream."""
    n = len(keys[0])
    change = np.zeros(n, dtype=bool)
    if n:
        change[0] = True
    for k in keys:
        k = np.asarray(k)
        change[1:] |= k[1:] != k[:-1]
    return (np.cumsum(change) - 1).astype(np.int32)


def as_float32(values) -> np.ndarray:
    """``values`` cast to float32, overflow silently giving inf: the loaders check the result and
    report such a value with :data:`FLOAT32_OVERFLOW` (1e39 is finite in float64, inf in float32)."""
    with np.errstate(over="ignore"):
        return np.asarray(values, dtype=np.float64).astype(np.float32)
