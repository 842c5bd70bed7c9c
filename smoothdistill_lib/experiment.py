"""Experiments: the declarative grid of runs in ``configs/*.yaml`` and the identity of each run.

An :class:`Experiment` names datasets x protocols x models x methods x lambdas x training ratios x
seeds x folds. :func:`expand` turns it into :class:`RunSpec` s, each with a stable ``run_id``: 12 hex
digits of sha256 of the run's canonical JSON (:func:`fileio.canonical_json`) of data options, the
fully resolved training config, the mode's sizes and the library version. A changed config is
therefore a *new* run, never silently mixed with old records. Options added to ``TrainConfig`` or
``ModeSettings`` after records existed are left out of the identity while they are off
(:data:`TRAIN_ADDED_LATER`, ``config._ADDED_LATER``), so recorded run ids stay valid.

Which names are allowed comes from the registries: ``datasets.DATASETS`` (including datasets a
reader registered with ``datasets.register_dataset``), ``models.MODELS`` (and each model's input
layout), ``methods.METHODS`` (and which of them sweep lambda), ``splits.PROTOCOLS``.

Mode precedence: the ``mode`` argument (``run --mode``) > the config's ``mode:`` >
``$SMOOTHDISTILL_MODE`` > ``demo``. The shipped configs leave ``mode`` out: one file serves every mode.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from smoothdistill_lib import __version__, datasets
from smoothdistill_lib.config import MODES, ModeSettings, get_mode
from smoothdistill_lib.engine import TrainConfig
from smoothdistill_lib.errors import MAX_SEED, ConfigError, whole_number_problem
from smoothdistill_lib.fileio import canonical_json, json_hash, jsonable
from smoothdistill_lib.methods import LAM_METHODS, METHODS
from smoothdistill_lib.models import MODELS
from smoothdistill_lib.pipeline import PREPARE_RANGES, prepare
from smoothdistill_lib.splits import PROTOCOLS, subsample_ratio

#: TrainConfig fields added after records existed, with their "off" value (left out of run ids)
TRAIN_ADDED_LATER = {"min_steps": None, "precision": "fp32"}
#: whole-number data options (``pipeline.prepare`` arguments) and their ranges, checked when a config
#: is read (``pipeline.prepare`` checks the same when called directly)
DATA_OPTION_RANGES = PREPARE_RANGES
_NULLABLE_DATA_OPTIONS = ("max_windows", "test_fold")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_TRAIN_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))


@dataclass
class Experiment:
    """A declarative grid of runs. ``None`` seeds/folds mean "as many as the mode says"
    (``range(n_seeds)``, ``range(n_folds)``); a ``None`` lambda means the engine's default; a
    ``None`` training ratio means all training data with K-fold validation, a number r in (0, 1]
    means the paper's ratio ablation: fixed split (fold 0 only), fit indices subsampled to r."""

    name: str
    datasets: list[str]
    methods: list[str]
    models: list[str] = field(default_factory=lambda: ["mtlnet"])
    protocols: list[str] = field(default_factory=lambda: ["paper"])
    seeds: list[int] | None = None
    folds: list[int] | None = None
    lams: list[float | None] = field(default_factory=lambda: [None])
    train_ratios: list[float | None] = field(default_factory=lambda: [None])
    mode: str | None = None
    epochs: int | None = None  # None = the mode's epochs
    split_seed: int = 42  # the authors fix the split seed: identical folds for every method and seed
    # Cross-validated design (None = the classic grid: seeds x folds on ONE split). R >= 2: R runs per
    # cell, the r-th on its own test split AND its own seed (seeds[r], default r), validation fold 0:
    # the paper protocol redraws its random 20 % test split with split_seed + r; the subject protocol
    # holds out the r-th of R subject groups (data option test_fold = r, n_test_folds = R). Varying
    # split and seed together is what lets an interval cover split-to-split variation (stats module).
    resamples: int | None = None
    train_options: dict = field(default_factory=dict)  # extra engine.TrainConfig fields
    data_options: dict = field(default_factory=dict)  # extra pipeline.prepare keyword arguments
    description: str = ""

    @classmethod
    def from_dict(cls, d: Mapping, source: str = "<dict>") -> Experiment:
        """Validate and build; a :class:`~smoothdistill_lib.errors.ConfigError` names ``source`` and the bad key."""
        if not isinstance(d, Mapping):
            raise ConfigError(f"{source}: an experiment config must be a mapping of keys, got {type(d).__name__}")
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in d if k not in allowed]
        if unknown:
            raise ConfigError(f"{source}: unknown key {unknown[0]!r}; allowed keys: {', '.join(allowed)}")
        missing = [k for k in ("name", "datasets", "methods") if d.get(k) in (None, [], "")]
        if missing:
            raise ConfigError(f"{source}: missing required key {missing[0]!r}")
        v = dict(d)
        for key in ("datasets", "methods", "models", "protocols", "seeds", "folds", "lams", "train_ratios"):
            if key in v and v[key] is not None and not isinstance(v[key], list):
                v[key] = [v[key]]  # a scalar is a one-element list
        exp = cls(**v)
        exp._check(source)
        return exp

    def _check(self, source: str) -> None:
        def bad(key: str, why: str) -> ConfigError:
            return ConfigError(f"{source}: key {key!r}: {why}")

        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise bad("name", f"{self.name!r} must be a folder-safe name (letters, digits, _ . -)")
        for key in ("datasets", "methods", "models", "protocols"):
            vals = getattr(self, key)
            if not vals or not all(isinstance(x, str) and x for x in vals):
                raise bad(key, f"must be a non-empty list of names, got {vals!r}")
            if len(set(vals)) != len(vals):
                raise bad(key, f"has duplicates: {vals!r}")
        for key, known in (("datasets", datasets.DATASETS), ("models", MODELS), ("methods", METHODS),
                           ("protocols", PROTOCOLS)):
            for x in getattr(self, key):
                if x not in known:
                    raise bad(key, f"unknown name {x!r}; choose from {', '.join(known)}")
        for key, hi in (("seeds", MAX_SEED), ("folds", None)):
            vals = getattr(self, key)
            if vals is not None and (not vals or any(whole_number_problem(x, 0, hi) for x in vals)):
                upto = f"from 0 to {hi}" if hi is not None else ">= 0"
                raise bad(key, f"must be null or a non-empty list of integers {upto}, got {vals!r}")
        for lam in self.lams:
            if lam is not None and (not _is_num(lam) or lam < 0):
                raise bad("lams", f"{lam!r} is not null or a number >= 0")
        for r in self.train_ratios:
            if r is not None and (not _is_num(r) or not 0 < r <= 1):
                raise bad("train_ratios", f"{r!r} is not null or a fraction in (0, 1]")
        if self.mode is not None and self.mode not in MODES:
            raise bad("mode", f"{self.mode!r}; choose from {', '.join(MODES)} or leave it out")
        if self.epochs is not None and (not _is_int(self.epochs) or self.epochs < 1):
            raise bad("epochs", f"{self.epochs!r} is not a positive integer")
        if self.resamples is not None:
            if not _is_int(self.resamples) or self.resamples < 2:
                raise bad("resamples", f"{self.resamples!r} is not null or an integer >= 2")
            if self.folds is not None:
                raise bad("folds", "a cross-validated grid (resamples) uses validation fold 0 of each "
                                   "resample; leave folds out")
            if self.seeds is not None and len(self.seeds) != self.resamples:
                raise bad("seeds", f"a cross-validated grid takes one seed per resample: {self.resamples} "
                                   f"seeds, got {len(self.seeds)}")
        # scikit-learn's random_state takes 0 .. 2**32 - 1; a cross-validated paper-protocol grid
        # draws resample r's test split with split_seed + r, so the last one must fit too
        top = MAX_SEED - (self.resamples - 1 if self.resamples is not None else 0)
        if not _is_int(self.split_seed) or not 0 <= self.split_seed <= top:
            more = "" if top == MAX_SEED else f" (resample r uses split_seed + r, up to {MAX_SEED})"
            raise bad("split_seed", f"{self.split_seed!r} is not an integer from 0 to {top}{more}")
        for key in ("train_options", "data_options"):
            if not isinstance(getattr(self, key), dict):
                raise bad(key, "must be a mapping")
        reserved = {"method", "model", "epochs", "seed", "lam", "device"} & set(self.train_options)
        if reserved:
            raise bad("train_options", f"{sorted(reserved)[0]!r} is set by the grid (use the top-level key)")
        bad_opts = [k for k in self.train_options if k not in _TRAIN_FIELDS]
        if bad_opts:
            raise bad("train_options", f"{bad_opts[0]!r} is not an engine.TrainConfig field")
        for k, v in self.train_options.items():  # each value on its own, so the message names its key
            try:
                TrainConfig(**{"method": self.methods[0], "epochs": 1, "ema_decay": 0.9, k: v})
            except (TypeError, ValueError) as e:
                raise bad(f"train_options.{k}", str(e)) from None
        for k, (lo, hi) in DATA_OPTION_RANGES.items():  # checked here, so the message names the file
            v = self.data_options.get(k)
            if k in self.data_options and not (v is None and k in _NULLABLE_DATA_OPTIONS):
                why = whole_number_problem(v, lo, hi)
                if why is not None:
                    raise bad(f"data_options.{k}", why)
        reserved = {"dataset", "protocol", "mode", "seed", "layout"} & set(self.data_options)
        if self.resamples is not None:
            reserved |= {"test_fold", "n_test_folds", "test_subjects"} & set(self.data_options)
        if reserved:
            raise bad("data_options", f"{sorted(reserved)[0]!r} is set by the grid")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def read_config(path: str | os.PathLike) -> Experiment:
    """Read an experiment from a YAML (or JSON: YAML is a superset) file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"experiment config {path} not found (see configs/ for examples)")
    try:
        d = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML/JSON: {e}") from e
    return Experiment.from_dict(d, source=str(path))


def write_config(experiment: Experiment, path: str | os.PathLike) -> Path:
    """Write ``experiment`` as YAML (or JSON when ``path`` ends in ``.json``)."""
    path = Path(path)
    d = experiment.to_dict()
    text = json.dumps(d, indent=2) if path.suffix == ".json" else yaml.safe_dump(d, sort_keys=False)
    path.write_text(text)
    return path


def as_experiment(experiment: Experiment | str | os.PathLike) -> Experiment:
    """``experiment`` itself, or the experiment read from a config path."""
    return experiment if isinstance(experiment, Experiment) else read_config(experiment)


# ----------------------------------------------------------------------------- the grid
@dataclass(frozen=True, eq=False)
class RunSpec:
    """One run of the grid. ``train`` is the fully resolved ``engine.TrainConfig`` (minus device),
    so engine defaults are part of the run's identity. The fields, their order and the hashing
    rule are frozen: the run ids of the committed records depend on them."""

    experiment: str
    dataset: str
    protocol: str
    model: str
    method: str
    seed: int
    fold: int
    lam: float | None  # the resolved lambda for LAM_METHODS, None for the others
    train_ratio: float | None
    layout: str
    split_seed: int
    mode: str
    mode_sizes: dict
    train: dict
    data_options: dict
    version: str

    def identity(self) -> dict:
        """What the run_id hashes: everything but the experiment's name. Training options added
        after records existed are left out while they are off, so older run ids stay valid."""
        d = dataclasses.asdict(self)
        d.pop("experiment")
        d["train"] = {k: v for k, v in d["train"].items()
                      if not (k in TRAIN_ADDED_LATER and v == TRAIN_ADDED_LATER[k])}
        return d

    @property
    def run_id(self) -> str:
        return spec_hash(self.identity())

    @property
    def label(self) -> str:
        parts = [self.dataset, self.protocol, self.model, self.method, f"s{self.seed}", f"f{self.fold}"]
        if self.lam is not None and self.method in LAM_METHODS:
            parts.append(f"lam{self.lam:g}")
        if self.train_ratio is not None:
            parts.append(f"r{self.train_ratio:g}")
        if self.data_options.get("test_fold") is not None:
            parts.append(f"test{self.data_options['test_fold']}of{self.data_options.get('n_test_folds', 5)}")
        if self.split_seed != Experiment.split_seed:
            parts.append(f"split{self.split_seed}")
        return "/".join(parts)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> RunSpec:
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls)})


def spec_hash(identity: Mapping) -> str:
    """12 hex digits of sha256 of the canonical JSON (48 bits: collisions are not a concern here)."""
    return json_hash(identity, 12)


def resolve_mode(experiment: Experiment, mode: str | None = None) -> ModeSettings:
    """The run size: ``mode`` argument > the config's ``mode`` > ``$SMOOTHDISTILL_MODE`` > demo."""
    return get_mode(mode or experiment.mode)


def expand(experiment: Experiment, mode: str | None = None) -> list[RunSpec]:
    """The experiment's grid, seed-major: every (dataset, protocol, method) cell of one seed comes
    before the next seed, so a grid stopped part-way (and resumed later, in chunks) is still a
    balanced, fair comparison with fewer seeds."""
    ms = resolve_mode(experiment, mode)
    seeds = experiment.seeds if experiment.seeds is not None else list(range(experiment.resamples or ms.n_seeds))
    folds = experiment.folds if experiment.folds is not None else list(range(ms.n_folds))
    epochs = experiment.epochs if experiment.epochs is not None else ms.epochs
    if experiment.resamples is not None:  # resample r: seed r, its own test split, validation fold 0
        rounds = [(seed, [0], r) for r, seed in enumerate(seeds)]
    else:
        rounds = [(seed, folds, None) for seed in seeds]
    specs: list[RunSpec] = []
    seen: set[str] = set()
    for seed, seed_folds, resample in rounds:
        for dataset in experiment.datasets:
            for protocol in experiment.protocols:
                split_seed, data_options = experiment.split_seed, dict(experiment.data_options)
                if resample is not None and protocol == "paper":
                    split_seed += resample
                elif resample is not None:
                    data_options.update(test_fold=resample, n_test_folds=experiment.resamples)
                for ratio in experiment.train_ratios:
                    # the paper's ratio ablation has no cross-validation: one fixed split = fold 0
                    for fold in (seed_folds if ratio is None else [0]):
                        for model in experiment.models:
                            for method in experiment.methods:
                                for lam in (experiment.lams if method in LAM_METHODS else [None]):
                                    train = _resolve_train(ms, method=method, model=model, epochs=epochs,
                                                           seed=seed, lam=lam, options=experiment.train_options)
                                    spec = RunSpec(
                                        experiment=experiment.name, dataset=dataset, protocol=protocol,
                                        model=model, method=method, seed=int(seed), fold=int(fold),
                                        lam=train.get("lam") if method in LAM_METHODS else None,
                                        train_ratio=None if ratio is None else float(ratio),
                                        layout=MODELS[model].layout,
                                        split_seed=split_seed, mode=ms.name,
                                        mode_sizes=ms.to_dict(), train=train,
                                        data_options=data_options, version=__version__,
                                    )
                                    if spec.run_id not in seen:  # e.g. lams [None, 0.5] coincide
                                        seen.add(spec.run_id)
                                        specs.append(spec)
    return specs


def _resolve_train(ms: ModeSettings, *, method, model, epochs, seed, lam, options) -> dict:
    """The full TrainConfig as a JSON-able dict (device left out: it does not change the run).
    Sizes come from the grid's mode ``ms`` (``TrainConfig.for_mode``, not ``$SMOOTHDISTILL_MODE``),
    the mode's ``min_steps`` included even when the config gives ``epochs``; the config's options may
    override. The values, hence the run ids, are those of the committed records."""
    kw = {"min_steps": ms.min_steps, **options, "method": method, "model": model, "epochs": int(epochs),
          "seed": int(seed)}
    if lam is not None:
        kw["lam"] = float(lam)
    d = jsonable(dataclasses.asdict(TrainConfig.for_mode(ms, **kw)))
    d.pop("device", None)
    return d


def missing_datasets(experiment: Experiment | str | os.PathLike) -> dict[str, str]:
    """The datasets of ``experiment`` that are not on this machine: name -> a one-line reason with
    what to do. Nothing is downloaded (``run`` would download WISDM and MHEALTH). Chapters use it
    to run a grid only when its data are here."""
    return {name: why for name in as_experiment(experiment).datasets
            if (why := datasets.absence(name)) is not None}


# ----------------------------------------------------------------------------- a run's inputs
@functools.lru_cache(maxsize=8)  # (dataset, protocol, layout) cells of a grid: a few MB each
def _prepare_cached(dataset: str, protocol: str, mode: str, split_seed: int, layout: str,
                    data_options_json: str):
    return prepare(dataset, protocol=protocol, mode=mode, seed=split_seed, layout=layout,
                   **json.loads(data_options_json))


def prepare_for(spec: RunSpec):
    """``pipeline.prepare`` for ``spec``, cached within the process (same data, layout and mode)."""
    return _prepare_cached(spec.dataset, spec.protocol, spec.mode, spec.split_seed, spec.layout,
                           canonical_json(spec.data_options))


def run_inputs(spec: RunSpec, prep, device: str | None = None) -> tuple:
    """``(fit_idx, val_idx, test_idx, TrainConfig)`` of ``spec`` on its prepared data ``prep``
    (:func:`prepare_for`), as ``engine.fit`` takes them: the fold's fit/val indices (subsampled for a
    training ratio), the split's test indices, the run's config on ``device``."""
    if spec.mode_sizes != get_mode(spec.mode).to_dict():
        raise ValueError(f"run {spec.label}: the sizes of mode {spec.mode!r} changed since the grid was expanded")
    w, split = prep.windows, prep.split
    if spec.fold >= len(split.folds):
        raise ValueError(f"run {spec.label}: fold {spec.fold} requested but the {spec.protocol} split of "
                         f"{spec.dataset} has {len(split.folds)} folds ({'; '.join(split.notes)})")
    fit_idx, val_idx = (np.asarray(i) for i in split.folds[spec.fold])
    if spec.train_ratio is not None:
        by = "subject" if spec.protocol == "subject" else "window"
        fit_idx = np.asarray(subsample_ratio(fit_idx, w, spec.train_ratio, seed=spec.seed, by=by))
    return fit_idx, val_idx, np.asarray(split.test), TrainConfig(**spec.train, device=device)
