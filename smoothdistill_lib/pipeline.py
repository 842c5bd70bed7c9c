"""One call from a dataset name to model-ready windows and a split: :func:`prepare`.

recording -> windows -> (mode-sized cap) -> split -> leakage meter -> normalisation. Two presets:

=============  ==========  ===========  ============  ================
protocol       stream      label_rule   split         normalise
=============  ==========  ===========  ============  ================
``paper``      paper       last         paper_split   none (raw units)
``subject``    session     majority     subject_split standardize
=============  ==========  ===========  ============  ================

Any preset choice can be overridden by argument. ``X`` is kept in ONE layout (default ``"axes"``);
callers feeding the faithful MTL-net (model ``mtlnet``) convert with
``windows.to_layout(X, "axes", "faithful")`` or ask for ``layout=MODELS["mtlnet"].layout`` here.
``engine.fit`` refuses windows in another layout than its model's (one line saying both).

The mode chosen here (``mode=``) sizes the data; ``Prepared.settings`` hands its sizes on to
training (``engine.TrainConfig.for_mode(prepared)``), so data and training are sized by one mode.

Normalisation: with ``normalise="standardize"`` a :class:`~smoothdistill_lib.splits.Standardizer`
is fitted on ``split.train`` only (fit + validation windows of every fold; never a test window)
and APPLIED to ``Prepared.windows.X`` here, so the engine needs no normalisation step. The fitted
statistics (a mean and a std per channel) are stored in ``Prepared.standardizer`` (and by
``checkpoints.fit_or_load`` with the weights, to scale new recordings alike). Validation windows do
contribute to them: 2 numbers per channel, a negligible leak we accept for one shared ``X``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from smoothdistill_lib import datasets
from smoothdistill_lib.config import ModeSettings, get_mode
from smoothdistill_lib.errors import MAX_SAMPLES, MAX_SEED, UserError, whole_number_problem
from smoothdistill_lib.recordings import Recording
from smoothdistill_lib.splits import (
    PROTOCOLS,
    Split,
    Standardizer,
    contiguous_cap,
    leakage,
    paper_split,
    subject_split,
)
from smoothdistill_lib.windows import Windows, make_windows

#: protocol -> the choices it implies (each overridable by an argument of :func:`prepare`)
PRESETS = {
    "paper": {"stream": "paper", "label_rule": "last", "normalise": "none", "layout": "axes"},
    "subject": {"stream": "session", "label_rule": "majority", "normalise": "standardize", "layout": "axes"},
}
NORMALISE = ("none", "standardize")
#: whole-number arguments of :func:`prepare` and their ranges (``None``: no upper bound); an
#: experiment's ``data_options`` are checked against the same when its config is read
PREPARE_RANGES = {"length": (1, MAX_SAMPLES), "step": (1, MAX_SAMPLES), "n_folds": (2, None),
                  "max_windows": (1, None), "n_test_folds": (2, None), "test_fold": (0, None)}


@dataclass
class Prepared:
    """Everything the engine, runner and chapters need for one dataset/protocol/seed."""

    windows: Windows
    split: Split
    recording: dict  # name, n_samples, subjects, activity/placement names, sampling rate
    options: dict  # every choice used (JSON-able): dataset, protocol, mode, seed, stream, ...
    leakage: dict  # splits.leakage(windows, split)
    standardizer: Standardizer  # identity when normalise="none"

    @property
    def settings(self) -> ModeSettings:
        """The sizes of the mode these data were prepared in (``options["mode"]``), so that training
        takes its sizes from the same mode: ``engine.TrainConfig.for_mode(prepared)``."""
        return get_mode(self.options["mode"])

    @property
    def layout(self) -> str:
        """The layout of ``windows.X`` (``"axes"`` or ``"faithful"``; ``models.MODELS[name].layout``
        says which one a model is fed)."""
        return self.windows.layout

    def summary(self) -> dict:
        """Counts, classes, split sizes and leakage as one JSON-able dict (what CLI ``windows`` prints)."""
        w = self.windows
        c1, c2 = w.n_classes
        return {
            "dataset": self.options["dataset"], "protocol": self.options["protocol"],
            "seed": self.options["seed"], "mode": self.options["mode"],
            "n_windows": len(w), "n_train": len(self.split.train), "n_test": len(self.split.test),
            "n_folds": self.split.n_folds,
            "fold_sizes": [[len(f), len(v)] for f, v in self.split.folds],
            "n_classes_task1": c1, "n_classes_task2": c2,
            "class_counts_task1": w.class_counts(1), "class_counts_task2": w.class_counts(2),
            "n_subjects": len(np.unique(w.subject)),
            "leakage": self.leakage, "notes": list(self.split.notes),
            "options": self.options, "recording": self.recording,
            "standardizer": self.standardizer.to_dict(),
        }


def _jsonable(d: dict) -> dict:
    return json.loads(json.dumps(d, default=str))


def prepare(
    dataset: str | Recording,
    protocol: str = "paper",
    mode: str | None = None,
    seed: int = 42,
    label_rule: str | None = None,
    layout: str | None = None,
    normalise: str | None = None,
    stream: str | None = None,
    max_windows: int | None = None,
    length: int = 100,
    step: int = 60,
    n_folds: int = 5,
    test_subjects=None,
    test_fold: int | None = None,
    n_test_folds: int = 5,
    **load_options,
) -> Prepared:
    """Load ``dataset`` (a registry name, or a :class:`Recording` already loaded), window it, cap it
    to the mode's ``max_windows`` (the same share of every session, as one contiguous block, so
    neighbouring windows and their leakage survive the cap; see ``splits.contiguous_cap``), split it by ``protocol`` with ``seed``, measure leakage and normalise.

    ``mode`` (quick | demo | full, default ``$SMOOTHDISTILL_MODE``) sizes the data: the loader gets it
    (e.g. quick mode loads 3 WISDM subjects) and ``max_windows`` defaults to its cap.
    ``test_subjects`` (subject protocol only) holds out those subjects instead of drawing them;
    ``test_fold`` = k (subject protocol only) holds out the k-th of ``n_test_folds`` subject groups
    (subject-wise cross-validation, ``splits.subject_split``).
    ``load_options`` go to ``datasets.load_recording``.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"prepare: protocol={protocol!r}; choose one of {PROTOCOLS}")
    # whole numbers in range before numpy sees them (a float length failed as a casting error deep
    # in the windowing, a huge step as an overflow); None = the mode's cap / no held-out group
    given = {"length": length, "step": step, "n_folds": n_folds, "max_windows": max_windows,
             "n_test_folds": n_test_folds, "test_fold": test_fold}
    for name, (lo, hi) in PREPARE_RANGES.items():
        if given[name] is not None or name not in ("max_windows", "test_fold"):
            why = whole_number_problem(given[name], lo, hi)
            if why is not None:
                raise UserError(f"prepare: {name}={why}")
    why = whole_number_problem(seed, 0, MAX_SEED)
    if why is not None:
        raise UserError(f"prepare: seed={why} (the split seed is scikit-learn's random_state)")
    preset = PRESETS[protocol]
    stream = stream or preset["stream"]
    label_rule = label_rule or preset["label_rule"]
    layout = layout or preset["layout"]
    normalise = normalise or preset["normalise"]
    if normalise not in NORMALISE:
        raise ValueError(f"prepare: normalise={normalise!r}; choose one of {NORMALISE}")
    settings = get_mode(mode)
    cap = settings.max_windows if max_windows is None else max_windows

    if isinstance(dataset, Recording):
        rec = dataset
    else:
        rec = datasets.load_recording(dataset, mode=settings.name, **load_options)
    check_recording(rec, rec.name if isinstance(dataset, Recording) else dataset)
    windows = make_windows(rec, length=length, step=step, stream=stream, label_rule=label_rule, layout=layout)
    n_uncapped = len(windows)
    if cap is not None and n_uncapped > cap:
        windows = windows.subset(contiguous_cap(windows, cap, seed))

    if protocol == "paper":
        if test_subjects is not None or test_fold is not None:
            raise ValueError("prepare: test_subjects and test_fold apply to protocol='subject' only (the paper "
                             "protocol draws a new random test split with another seed)")
        split = paper_split(windows, seed=seed, n_folds=n_folds)
    else:
        split = subject_split(windows, seed=seed, n_folds=n_folds, test_subjects=test_subjects,
                              test_fold=test_fold, n_test_folds=n_test_folds)
    if len(windows) < n_uncapped:
        split.notes.append(f"capped to {len(windows)} of {n_uncapped} windows (a contiguous block per session, seed {seed})")
    meter = leakage(windows, split)

    if normalise == "standardize":
        standardizer = Standardizer.fit(windows.X, split.train, layout=layout)
        windows.X = standardizer.transform(windows.X)
    else:
        standardizer = Standardizer.identity(layout, windows.X.shape[2])

    options = _jsonable({
        "dataset": rec.name if isinstance(dataset, Recording) else dataset, "protocol": protocol,
        "mode": settings.name, "seed": seed, "stream": stream, "label_rule": label_rule,
        "layout": layout, "normalise": normalise, "length": length, "step": step, "n_folds": n_folds,
        "max_windows": cap, "n_windows_uncapped": n_uncapped, "load_options": load_options,
        **({} if test_subjects is None else {"test_subjects": sorted(test_subjects)}),
        **({} if test_fold is None else {"test_fold": test_fold, "n_test_folds": n_test_folds}),
    })
    recording = _jsonable({
        "name": rec.name, "n_samples": len(rec), "subjects": [int(s) for s in rec.subjects()],
        "activity_names": list(rec.activity_names), "placement_names": list(rec.placement_names),
        "sampling_rate_hz": float(rec.sampling_rate_hz), "channels": list(rec.channels),
    })
    return Prepared(windows, split, recording, options, meter, standardizer)


def check_recording(rec: Recording, name: str | None = None) -> None:
    """Refuse a recording whose samples are not finite or whose labels are not class ids, in ONE line
    naming the dataset, the column and the first row at fault (0-based, in the loader's frame).

    Where data enter the pipeline: a registered loader can return anything, and one NaN sample
    reaches every window that covers it, the standardiser's mean (so every standardised value of
    its channel), and the training loss. Shipped loaders check their files already; this check is
    for every source alike. Labels must index ``activity_names`` / ``placement_names``. ``name``:
    the dataset's registry name (default: the recording's own)."""
    name = name or rec.name
    f = rec.frame
    for col in rec.channels:
        values = f[col].to_numpy()
        bad = ~np.isfinite(values)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise UserError(
                f"dataset {name!r}: column {col!r}, row {row} (subject {int(f['subject'].iloc[row])}) is "
                f"{values[row]}; {int(bad.sum()):,} of {len(values):,} samples of {col!r} are not finite. "
                "A loader must return finite samples: drop or interpolate the gaps")
    for col, names in (("activity", rec.activity_names), ("placement", rec.placement_names)):
        labels = f[col].to_numpy()
        bad = (labels < 0) | (labels >= len(names))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            what = "activity_names" if col == "activity" else "placement_names"
            raise UserError(
                f"dataset {name!r}: column {col!r}, row {row} holds label {int(labels[row])}, but the "
                f"dataset has {len(names)} {what} (ids 0..{len(names) - 1}); {int(bad.sum()):,} rows are out of range")


def cli_windows(args) -> int:
    """``python -m smoothdistill_lib windows --dataset NAME [--protocol P] [--seed S] [--mode M]``:
    prints one JSON object (:meth:`Prepared.summary`)."""
    if (why := whole_number_problem(args.seed, 0, MAX_SEED)) is not None:  # name the option, not prepare's argument
        raise UserError(f"--seed: {why}")
    prepared = prepare(args.dataset, protocol=args.protocol, mode=args.mode, seed=args.seed)
    print(json.dumps(prepared.summary()))
    return 0
