"""Run modes and paths: the one switch for run size, and where data and results live.

``SMOOTHDISTILL_MODE`` = ``quick`` | ``demo`` | ``long`` | ``full`` selects a :class:`ModeSettings`. Every
chapter and every command runs the same code path in every mode; only the sizes below change.

``SMOOTHDISTILL_DATA`` is where datasets are looked for and downloaded (default
``~/.cache/smoothdistill``). ``SMOOTHDISTILL_CACHE`` is where parsed copies of data files are kept
(default ``~/.cache/smoothdistill/cache``): the library only ever reads data folders.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

MODES = ("quick", "demo", "long", "full")
DEFAULT_MODE = "demo"


@dataclass(frozen=True)
class ModeSettings:
    """Sizes of a run. ``None`` means "everything"."""

    name: str
    epochs: int  # training epochs per run
    n_seeds: int  # seeds per (method, dataset) in experiment grids
    n_folds: int  # of the 5 K-folds, how many are trained (the split always has 5)
    max_windows: int | None  # cap on windows per dataset (stratified subsample), None = all
    batch_size: int = 64
    # sleepsim size: subjects x seconds per posture. Full size (24 subjects, 74.4 s per posture and
    # placement at 50 Hz) gives ~53.5k paper-protocol windows, the paper's Sleep total (53,546).
    sleepsim_subjects: int = 24
    sleepsim_seconds: float = 74.4
    # WISDM subjects used (None = every subject found)
    wisdm_subjects: int | None = None
    # EMA teacher decay a. It is a size, not a method choice: the teacher averages the last ~1/(1-a)
    # optimizer steps, and the paper's a = 0.999 (a 1,000-step horizon, under one WISDM epoch at full
    # size) assumes runs of ~10^5 steps. A demo run has ~320 steps, after which a 0.999 teacher is still
    # 0.999^320 = 73 % its random initial net; a = 0.97 keeps the horizon under one demo epoch.
    # Chapter 5 derives this; records store the decay they used.
    ema_decay: float = 0.999
    # Train at least this many optimizer steps per stage: the epochs of a run are raised to
    # ceil(min_steps / batches per epoch) when ``epochs`` is too few for its data (``long`` mode:
    # ten EMA horizons at a = 0.999 whatever the dataset's size). None = ``epochs`` as given.
    min_steps: int | None = None

    def to_dict(self) -> dict:
        """The sizes as a dict. A size added after the first records were made is left out while it
        has its "off" value, so the run ids of older records (which hash these sizes) do not change."""
        d = asdict(self)
        for key, off in _ADDED_LATER.items():
            if d.get(key) == off:
                d.pop(key)
        return d


#: sizes added to ModeSettings after records existed, with the value that means "not used"
_ADDED_LATER = {"min_steps": None}


_SETTINGS = {
    # CI / CPU: seconds per run
    "quick": ModeSettings("quick", epochs=2, n_seeds=1, n_folds=1, max_windows=1200,
                          sleepsim_subjects=4, sleepsim_seconds=12.0, wisdm_subjects=3, ema_decay=0.9),
    # Colab / CPU: minutes per chapter
    "demo": ModeSettings("demo", epochs=8, n_seeds=3, n_folds=1, max_windows=4000,
                         sleepsim_subjects=12, sleepsim_seconds=30.0, wisdm_subjects=None, ema_decay=0.97),
    # CPU, one core per run for minutes: every window present, the paper's a = 0.999, and at least
    # 10,000 optimizer steps (ten EMA horizons) per run; 3 seeds, fold 0 (evidence at convergence)
    "long": ModeSettings("long", epochs=15, n_seeds=3, n_folds=1, max_windows=None, ema_decay=0.999,
                         min_steps=10_000),
    # GPU: the paper's protocol (300 epochs, 5 seeds x 5 folds, all data, a = 0.999)
    "full": ModeSettings("full", epochs=300, n_seeds=5, n_folds=5, max_windows=None),
}


def get_mode(name: str | None = None) -> ModeSettings:
    """Settings of mode ``name`` (default: ``$SMOOTHDISTILL_MODE``, else ``demo``)."""
    name = (name or os.environ.get("SMOOTHDISTILL_MODE") or DEFAULT_MODE).strip().lower()
    if name not in _SETTINGS:
        raise ValueError(
            f"unknown run mode {name!r} (from SMOOTHDISTILL_MODE or the mode argument); "
            f"choose one of {', '.join(MODES)}"
        )
    return _SETTINGS[name]


#: environment variable: ``0`` (or ``false``, ``no``, ``off``) hides the library's progress bars.
#: ``tools/execute_chapter.py`` sets it, so a chapter stored with its outputs holds no bar (a bar is
#: a widget or carriage-return text that only means something while it moves); a reader who runs the
#: chapter sees them.
PROGRESS_ENV = "SMOOTHDISTILL_PROGRESS"


def show_progress(progress: bool = True) -> bool:
    """``progress``, unless ``$SMOOTHDISTILL_PROGRESS`` turns the library's progress bars off."""
    return bool(progress) and os.environ.get(PROGRESS_ENV, "").strip().lower() not in ("0", "false", "no", "off")


def with_overrides(mode: ModeSettings, **changes) -> ModeSettings:
    """A copy of ``mode`` with some sizes changed (``None`` values are ignored)."""
    return replace(mode, **{k: v for k, v in changes.items() if v is not None})


def data_dir() -> Path:
    """Where datasets are looked for and downloaded: ``$SMOOTHDISTILL_DATA`` or ``~/.cache/smoothdistill``."""
    env = os.environ.get("SMOOTHDISTILL_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "smoothdistill"


def cache_dir() -> Path:
    """Where derived files (parsed copies of raw data) are kept: ``$SMOOTHDISTILL_CACHE``, else
    ``$XDG_CACHE_HOME/smoothdistill/cache``, else ``~/.cache/smoothdistill/cache``.

    Never a data folder: those are only read (a shared copy may be read-only, and writing next to
    someone's raw files is a surprise). Created on first use by whoever writes there.
    """
    env = os.environ.get("SMOOTHDISTILL_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "smoothdistill" / "cache"


def project_root() -> Path:
    """The repository root when the library runs from a checkout, else the working directory."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "_toc.yml").exists() else Path.cwd()


def results_dir() -> Path:
    """Where experiment records live: ``$SMOOTHDISTILL_RESULTS`` or ``<repo>/results``."""
    env = os.environ.get("SMOOTHDISTILL_RESULTS")
    return Path(env).expanduser() if env else project_root() / "results"
