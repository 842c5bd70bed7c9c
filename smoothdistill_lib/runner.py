"""Experiment runner: a declarative grid of runs, one atomic JSON record per finished run, resumable.

An :class:`Experiment` (a YAML/JSON file under ``configs/``) names datasets x protocols x models x
methods x lambdas x training ratios x seeds x folds. :func:`expand` turns it into :class:`RunSpec` s,
each with a stable ``run_id`` (a short sha256 of the run's canonical JSON: data options, the fully
resolved training config, the mode's sizes and the library version). A changed config is therefore a
*new* run, never silently mixed with old records.

:func:`run_experiment` runs the pending specs one by one; each finished run becomes
``results/<experiment>/runs/<run_id>.json``, written atomically (temp file in the same folder, fsync,
``os.replace``). Killed at any moment and restarted, it skips the finished runs; a corrupt record
(bad JSON, missing keys, hash mismatch) is moved aside to ``*.corrupt``, reported and rerun.

Records of *other* modes in the same folder are left alone (``report`` picks a mode); records of the
*same* mode whose run_id is no longer in the grid (the config changed) are reported as stale and
moved to ``results/<experiment>/stale/`` so that tables never mix old and new settings.

Mode precedence: ``--mode`` (or the ``mode`` argument) > the config's ``mode:`` > ``$SMOOTHDISTILL_MODE``
> ``demo``. The shipped configs leave ``mode`` out: one file serves quick, demo and full.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from smoothdistill_lib import __version__, shards
from smoothdistill_lib.config import MODES, ModeSettings, get_mode, results_dir

SCHEMA = 1
#: the paper's method order (Tables 5-8)
METHODS = ("singletask", "multitask", "sd_dropout", "born_again", "smooth_distill")
PROTOCOLS = ("paper", "subject")
#: methods whose loss has the distillation weight lambda swept by ``lams`` (others get one run)
LAM_METHODS = ("smooth_distill",)
#: models fed the authors' no-transpose window layout (reference notes 1.2); all others get "axes"
FAITHFUL_MODELS = ("mtlnet",)
#: keys every record must hold; a file without them is treated as corrupt and rerun
RECORD_KEYS = ("schema", "run_id", "spec", "config", "data", "best_epoch", "evaluation", "history",
               "compute", "provenance")
#: TrainConfig fields added after records existed, with their "off" value (left out of run ids)
TRAIN_ADDED_LATER = {"min_steps": None, "precision": "fp32"}
STALE_TEMP_SECONDS = 3600  # leftover temp files older than this are removed
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


# ----------------------------------------------------------------------------- experiment config
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
    train_options: dict = field(default_factory=dict)  # extra engine.TrainConfig fields
    data_options: dict = field(default_factory=dict)  # extra pipeline.prepare keyword arguments
    description: str = ""

    @classmethod
    def from_dict(cls, d: Mapping, source: str = "<dict>") -> Experiment:
        """Validate and build; errors name ``source`` and the bad key."""
        if not isinstance(d, Mapping):
            raise ValueError(f"{source}: an experiment config must be a mapping of keys, got {type(d).__name__}")
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in d if k not in allowed]
        if unknown:
            raise ValueError(f"{source}: unknown key {unknown[0]!r}; allowed keys: {', '.join(allowed)}")
        missing = [k for k in ("name", "datasets", "methods") if d.get(k) in (None, [], "")]
        if missing:
            raise ValueError(f"{source}: missing required key {missing[0]!r}")
        v = dict(d)
        for key in ("datasets", "methods", "models", "protocols", "seeds", "folds", "lams", "train_ratios"):
            if key in v and v[key] is not None and not isinstance(v[key], list):
                v[key] = [v[key]]  # a scalar is a one-element list
        exp = cls(**v)
        exp._check(source)
        return exp

    def _check(self, source: str) -> None:
        def bad(key: str, why: str) -> ValueError:
            return ValueError(f"{source}: key {key!r}: {why}")

        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise bad("name", f"{self.name!r} must be a folder-safe name (letters, digits, _ . -)")
        for key in ("datasets", "methods", "models", "protocols"):
            vals = getattr(self, key)
            if not vals or not all(isinstance(x, str) and x for x in vals):
                raise bad(key, f"must be a non-empty list of names, got {vals!r}")
            if len(set(vals)) != len(vals):
                raise bad(key, f"has duplicates: {vals!r}")
        from smoothdistill_lib.datasets import DATASETS
        from smoothdistill_lib.models import MODELS

        for key, names, known in (("datasets", self.datasets, DATASETS), ("models", self.models, MODELS)):
            for x in names:
                if x not in known:
                    raise bad(key, f"unknown name {x!r}; choose from {', '.join(known)}")
        for m in self.methods:
            if m not in METHODS:
                raise bad("methods", f"unknown method {m!r}; choose from {', '.join(METHODS)}")
        for p in self.protocols:
            if p not in PROTOCOLS:
                raise bad("protocols", f"unknown protocol {p!r}; choose from {', '.join(PROTOCOLS)}")
        for key in ("seeds", "folds"):
            vals = getattr(self, key)
            if vals is not None and (not vals or not all(_is_int(x) and x >= 0 for x in vals)):
                raise bad(key, f"must be null or a non-empty list of integers >= 0, got {vals!r}")
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
        if not _is_int(self.split_seed):
            raise bad("split_seed", f"{self.split_seed!r} is not an integer")
        for key in ("train_options", "data_options"):
            if not isinstance(getattr(self, key), dict):
                raise bad(key, "must be a mapping")
        reserved = {"method", "model", "epochs", "seed", "lam", "device"} & set(self.train_options)
        if reserved:
            raise bad("train_options", f"{sorted(reserved)[0]!r} is set by the grid (use the top-level key)")
        fields_ = _train_config_fields()
        bad_opts = [k for k in self.train_options if k not in fields_]
        if bad_opts:
            raise bad("train_options", f"{bad_opts[0]!r} is not an engine.TrainConfig field")
        reserved = {"dataset", "protocol", "mode", "seed", "layout"} & set(self.data_options)
        if reserved:
            raise bad("data_options", f"{sorted(reserved)[0]!r} is set by the grid")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def load_experiment(path: str | os.PathLike) -> Experiment:
    """Read an experiment from a YAML (or JSON: YAML is a superset) file."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"experiment config {path} not found (see configs/ for examples)")
    try:
        d = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML/JSON: {e}") from e
    return Experiment.from_dict(d, source=str(path))


def save_experiment(experiment: Experiment, path: str | os.PathLike) -> Path:
    """Write ``experiment`` as YAML (or JSON when ``path`` ends in ``.json``)."""
    import yaml

    path = Path(path)
    d = experiment.to_dict()
    text = json.dumps(d, indent=2) if path.suffix == ".json" else yaml.safe_dump(d, sort_keys=False)
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------- the grid
@dataclass(frozen=True, eq=False)
class RunSpec:
    """One run of the grid. ``train`` is the fully resolved ``engine.TrainConfig`` (minus device),
    so engine defaults are part of the run's identity."""

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
        return "/".join(parts)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> RunSpec:
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls)})


def canonical_json(obj: Any) -> str:
    return json.dumps(_jsonable(obj), sort_keys=True, separators=(",", ":"))


def spec_hash(identity: Mapping) -> str:
    """12 hex digits of sha256 of the canonical JSON (48 bits: collisions are not a concern here)."""
    return hashlib.sha256(canonical_json(identity).encode()).hexdigest()[:12]


def resolve_mode(experiment: Experiment, mode: str | None = None) -> ModeSettings:
    """The run size: ``mode`` argument > the config's ``mode`` > ``$SMOOTHDISTILL_MODE`` > demo."""
    return get_mode(mode or experiment.mode)


def expand(experiment: Experiment, mode: str | None = None) -> list[RunSpec]:
    """The experiment's grid, seed-major: every (dataset, protocol, method) cell of one seed comes
    before the next seed, so a grid stopped part-way (and resumed later, in chunks) is still a
    balanced, fair comparison with fewer seeds. Prepared data is cached per process, so the order
    costs no reloading."""
    ms = resolve_mode(experiment, mode)
    seeds = experiment.seeds if experiment.seeds is not None else list(range(ms.n_seeds))
    folds = experiment.folds if experiment.folds is not None else list(range(ms.n_folds))
    epochs = experiment.epochs if experiment.epochs is not None else ms.epochs
    specs: list[RunSpec] = []
    seen: set[str] = set()
    for seed in seeds:
        for dataset in experiment.datasets:
            for protocol in experiment.protocols:
                for ratio in experiment.train_ratios:
                    # the paper's ratio ablation has no cross-validation: one fixed split = fold 0
                    for fold in (folds if ratio is None else [0]):
                        for model in experiment.models:
                            for method in experiment.methods:
                                for lam in (experiment.lams if method in LAM_METHODS else [None]):
                                    train = _resolve_train(method=method, model=model, epochs=epochs,
                                                           seed=seed, lam=lam, batch_size=ms.batch_size,
                                                           ema_decay=ms.ema_decay, min_steps=ms.min_steps,
                                                           options=experiment.train_options)
                                    spec = RunSpec(
                                        experiment=experiment.name, dataset=dataset, protocol=protocol,
                                        model=model, method=method, seed=int(seed), fold=int(fold),
                                        lam=train.get("lam") if method in LAM_METHODS else None,
                                        train_ratio=None if ratio is None else float(ratio),
                                        layout="faithful" if model in FAITHFUL_MODELS else "axes",
                                        split_seed=experiment.split_seed, mode=ms.name,
                                        mode_sizes=ms.to_dict(), train=train,
                                        data_options=dict(experiment.data_options), version=__version__,
                                    )
                                    if spec.run_id not in seen:  # e.g. lams [None, 0.5] coincide
                                        seen.add(spec.run_id)
                                        specs.append(spec)
    return specs


def _train_config_fields() -> set[str]:
    from smoothdistill_lib.engine import TrainConfig

    return {f.name for f in dataclasses.fields(TrainConfig)}


def _resolve_train(*, method, model, epochs, seed, lam, batch_size, ema_decay, options, min_steps=None) -> dict:
    """The full TrainConfig as a JSON-able dict (device left out: it does not change the run).
    Sizes come from the grid's mode (not ``$SMOOTHDISTILL_MODE``); the config's options may override."""
    from smoothdistill_lib.engine import TrainConfig

    kw = {"batch_size": batch_size, "ema_decay": ema_decay, "min_steps": min_steps, **options, "method": method, "model": model,
          "epochs": int(epochs), "seed": int(seed)}
    if lam is not None:
        kw["lam"] = float(lam)
    d = _jsonable(dataclasses.asdict(TrainConfig(**kw)))
    d.pop("device", None)
    return d


# ----------------------------------------------------------------------------- records on disk
def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write JSON so that ``path`` holds either its old content or the complete new one, never a
    part: temp file in the same folder, flush + fsync, ``os.replace`` (atomic on POSIX and Windows),
    then fsync the folder so the rename itself survives a power cut."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_jsonable(obj), indent=1, allow_nan=False)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if hasattr(os, "O_DIRECTORY"):  # folder fsync: POSIX only
        dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    return path


def read_record(path: str | os.PathLike) -> dict:
    """Load and validate one record; raises ``ValueError`` saying what is wrong."""
    path = Path(path)
    try:
        rec = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    validate_record(rec, source=str(path))
    if rec["run_id"] != path.stem:
        raise ValueError(f"{path}: run_id {rec['run_id']!r} does not match the file name")
    return rec


def validate_record(rec: Any, source: str = "<record>") -> None:
    if not isinstance(rec, dict):
        raise ValueError(f"{source}: a record must be a JSON object")
    missing = [k for k in RECORD_KEYS if k not in rec]
    if missing:
        raise ValueError(f"{source}: record lacks keys {missing}")
    if rec["schema"] != SCHEMA:
        raise ValueError(f"{source}: record schema {rec['schema']!r}, expected {SCHEMA}")
    try:
        spec = RunSpec.from_dict(rec["spec"])
    except (KeyError, TypeError) as e:
        raise ValueError(f"{source}: malformed spec ({e})") from e
    if spec.run_id != rec["run_id"]:
        raise ValueError(f"{source}: spec hashes to {spec.run_id}, not its run_id {rec['run_id']}")
    if not isinstance(rec["evaluation"], list) or not rec["evaluation"]:
        raise ValueError(f"{source}: record has no evaluation entries")


@dataclass
class ScanResult:
    valid: dict[str, dict]  # run_id -> record
    corrupt: list[tuple[Path, str]]  # (moved-to path, reason)


def scan_records(runs_dir: Path, quarantine: bool = True) -> ScanResult:
    """Read every ``*.json`` record in ``runs_dir``; invalid ones are moved to ``*.corrupt`` (when
    ``quarantine``) and listed. Leftover temp files of a killed writer are removed."""
    valid: dict[str, dict] = {}
    corrupt: list[tuple[Path, str]] = []
    if not runs_dir.is_dir():
        return ScanResult(valid, corrupt)
    if quarantine:
        # Temp files of a writer killed between mkstemp and os.replace are never read (not *.json);
        # remove the old ones only, so a runner working in the same folder keeps its file.
        for tmp in runs_dir.glob(".*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                if time.time() - tmp.stat().st_mtime > STALE_TEMP_SECONDS:
                    tmp.unlink()
    for path in sorted(runs_dir.glob("*.json")):
        try:
            valid[path.stem] = read_record(path)
        except ValueError as e:
            target = path
            if quarantine:
                target = _free_name(path.with_name(path.name + ".corrupt"))
                os.replace(path, target)
            corrupt.append((target, str(e)))
    return ScanResult(valid, corrupt)


def _free_name(path: Path) -> Path:
    i, p = 1, path
    while p.exists():
        p = path.with_name(f"{path.name}.{i}")
        i += 1
    return p


# ----------------------------------------------------------------------------- running
@dataclass
class RunSummary:
    """What :func:`run_experiment` did (also printed by the CLI)."""

    experiment: str
    mode: str
    folder: Path
    n_grid: int
    done_before: int
    ran: list[str] = field(default_factory=list)
    pending: int = 0  # still to run after this call (``limit``)
    corrupt: list[str] = field(default_factory=list)  # "file: reason", moved aside and rerun
    stale: list[str] = field(default_factory=list)  # run_ids moved to stale/
    other_modes: dict[str, int] = field(default_factory=dict)  # mode -> records left in place

    def lines(self) -> list[str]:
        out = [f"experiment {self.experiment} [{self.mode}]: {self.n_grid} runs in the grid, "
               f"{self.done_before} done before, {len(self.ran)} run now, {self.pending} pending",
               f"records: {self.folder / 'runs'}"]
        out += [f"corrupt record moved aside and rerun: {c}" for c in self.corrupt]
        if self.stale:
            out.append(f"{len(self.stale)} stale record(s) of mode {self.mode} not in this grid (config "
                       f"changed) moved to {self.folder / 'stale'}")
        out += [f"{n} record(s) of mode {m} left in place" for m, n in sorted(self.other_modes.items())]
        return out


RunFn = Callable[[RunSpec, "str | None"], dict]


@contextlib.contextmanager
def experiment_lock(folder: Path, name: str, lock: str = ".lock"):
    """Hold an exclusive lock on ``folder/.lock`` while a grid runs, so two ``run`` commands on one
    experiment cannot train the same run twice. ``flock`` is released by the kernel when the process
    ends, even by SIGKILL, so a killed run never leaves a stale lock. No-op where ``fcntl`` is missing."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; resume still keeps records valid
        yield
        return
    path = Path(folder) / lock
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise RuntimeError(f"experiment {name}: another `run` holds {path} ({holder}); wait for it to "
                               "finish or stop it, then run again (finished runs are kept)") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}\n")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def run_experiment(experiment: Experiment | str | os.PathLike, results_root: str | os.PathLike | None = None,
                   device: str | None = None, limit: int | None = None, run_fn: RunFn | None = None,
                   progress: bool = True, mode: str | None = None, require_clean: bool = False,
                   methods: list[str] | None = None, stack: bool | None = None,
                   shard: str | None = None) -> RunSummary:
    """Run the pending runs of ``experiment`` (an :class:`Experiment` or a config path).

    ``results_root`` defaults to :func:`config.results_dir`; records go to
    ``<results_root>/<name>/runs/``. ``run_fn(spec, device) -> record body`` defaults to
    :func:`run_one` (tests inject a stub). ``limit`` stops after that many runs.
    The library's commit is read once, before the first run, and every record of this invocation
    carries it as ``provenance["grid"]``: the code that made a grid is named once, even if the
    checkout changes while it runs. ``require_clean`` refuses to start when tracked files differ
    from that commit (records made so name code that no commit holds; otherwise a warning).
    ``methods`` runs only the pending runs of these methods now (a long grid in stages: the rest
    stays pending, never stale). ``stack``: train compatible runs as replica-stacked models
    (``stack.py``; None = on for CUDA). ``shard`` ``"K/N"``: only this shard's runs (``shards.py``).
    """
    from datetime import datetime, timezone

    from tqdm.auto import tqdm

    from smoothdistill_lib.provenance import git_commit

    if not isinstance(experiment, Experiment):
        experiment = load_experiment(experiment)
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    specs = expand(experiment, mode)
    grid = {s.run_id: s for s in specs}  # the whole grid, whatever the shard: nothing of it is stale
    specs = shards.select(specs, shard)
    ms = resolve_mode(experiment, mode)
    if methods is not None:
        unknown = [m for m in methods if m not in experiment.methods]
        if unknown or not methods:
            raise ValueError(f"--methods: {unknown[0] if unknown else 'nothing'!r} is not a method of experiment "
                             f"{experiment.name} ({', '.join(experiment.methods)})")
    folder = Path(results_root or results_dir()) / experiment.name
    runs_dir = folder / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    with experiment_lock(folder, experiment.name, shards.lock_name(shard)):
        scan = scan_records(runs_dir)
        summary = RunSummary(experiment.name, ms.name, folder, len(specs), 0,
                             corrupt=[f"{p.name}: {why}" for p, why in scan.corrupt])
        for run_id, rec in scan.valid.items():
            if run_id in grid:
                continue
            rec_mode = rec["spec"]["mode"]
            if rec_mode == ms.name:
                stale_dir = folder / "stale"
                stale_dir.mkdir(exist_ok=True)
                os.replace(runs_dir / f"{run_id}.json", _free_name(stale_dir / f"{run_id}.json"))
                summary.stale.append(run_id)
            else:
                summary.other_modes[rec_mode] = summary.other_modes.get(rec_mode, 0) + 1
        pending = [s for s in specs if s.run_id not in scan.valid and (methods is None or s.method in methods)]
        summary.done_before = sum(s.run_id in scan.valid for s in specs)
        for line in summary.lines()[2:]:
            print(line, file=sys.stderr)
        todo = pending if limit is None else pending[:limit]
        summary.pending = len(specs) - summary.done_before - len(todo)
        if todo:  # one grid, one numeric environment: refuse to mix (docs: README, "Run identity")
            from smoothdistill_lib.engine import resolve_device
            from smoothdistill_lib.provenance import environment_conflicts, numeric_environment

            env = numeric_environment(resolve_device(device))
            done = [scan.valid[s.run_id] for s in specs if s.run_id in scan.valid]
            conflicts = environment_conflicts(done, env)
            if conflicts:
                what = "; ".join(f"{k} {', '.join(map(str, sorted(v, key=str)))} in the records, {env[k]} here"
                                 for k, v in sorted(conflicts.items()))
                raise RuntimeError(
                    f"experiment {experiment.name} [{ms.name}]: {len(done)} finished run(s) in {runs_dir} were "
                    f"made in another numeric environment ({what}); adding runs would mix numbers that differ "
                    "in the last digits. Match it (e.g. OMP_NUM_THREADS=1), or use another results folder "
                    "(SMOOTHDISTILL_RESULTS)")
        commit, dirty = git_commit()
        if todo and dirty:
            why = (f"the checkout has uncommitted changes to tracked files (commit {commit}): records would name "
                   "code that no commit holds")
            if require_clean:
                raise RuntimeError(f"experiment {experiment.name}: {why}. Commit or stash them, or run without "
                                   "--require-clean")
            print(f"warning: {why}; they are marked dirty", file=sys.stderr)
        grid_prov = {"experiment": experiment.name, "commit": commit, "dirty": dirty, "runs_in_grid": len(specs),
                "pending_at_start": len(todo), "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        with tqdm(total=len(todo), desc=f"{experiment.name} [{ms.name}]", unit="run",
                  disable=not progress or not todo) as bar:
            for spec, body in _bodies(todo, device, run_fn, stack, progress):
                bar.set_postfix_str(spec.label)
                bar.update(1)
                body = dict(body)
                body["provenance"] = {**(body.get("provenance") or {}), "grid": grid_prov}
                record = _jsonable({"schema": SCHEMA, "run_id": spec.run_id, "spec": spec.to_dict(), **body})
                validate_record(record, source=f"run {spec.label}")
                atomic_write_json(runs_dir / f"{spec.run_id}.json", record)
                summary.ran.append(spec.run_id)
        return summary


def _bodies(todo: list[RunSpec], device, run_fn: RunFn | None, stack: bool | None, progress: bool):
    """``(spec, record body)`` of each run of ``todo``: replica-stacked groups when stacking is on
    (``stack.py``; default on for CUDA only), else one run at a time with ``run_fn`` (default run_one)."""
    from smoothdistill_lib import stack as stacking

    if run_fn is None and stacking.enabled(stack, device):
        yield from stacking.run_specs(todo, device, progress=progress)
        return
    run = run_fn if run_fn is not None else functools.partial(run_one, progress=progress)
    for spec in todo:
        yield spec, run(spec, device)


def missing_datasets(experiment: Experiment | str | os.PathLike) -> dict[str, str]:
    """The datasets of ``experiment`` that are not on this machine: name -> a one-line reason with
    what to do. Nothing is downloaded (``run`` would download WISDM and MHEALTH); sleepsim is
    always present. Chapters use it to run a grid only when its data are here."""
    from smoothdistill_lib import datasets

    if not isinstance(experiment, Experiment):
        experiment = load_experiment(experiment)
    out = {}
    for name in experiment.datasets:
        if name == "sleepsim" or datasets.locate(name) is not None:
            continue
        info = datasets.DATASETS[name]
        where = " or ".join(str(d) for d in datasets.search_dirs())
        todo = (f"`python -m smoothdistill_lib run` downloads it ({info.source})" if info.downloadable
                else f"the data are {info.source}")
        out[name] = f"{name} is not under {where} (expected {info.layout}); {todo}"
    return out


def cli_run(args) -> int:
    """``python -m smoothdistill_lib run CONFIG [--mode M] [--device D] [--limit N] [--require-clean]``."""
    exp = load_experiment(args.config)
    methods = [m.strip() for m in args.methods.split(",")] if getattr(args, "methods", None) else None
    summary = run_experiment(exp, device=args.device, limit=args.limit, mode=args.mode,
                             require_clean=getattr(args, "require_clean", False), methods=methods,
                             stack=getattr(args, "stack", None), shard=getattr(args, "shard", None))
    print("\n".join(summary.lines()))
    return 0


# ----------------------------------------------------------------------------- one run
@functools.lru_cache(maxsize=8)  # (dataset, protocol, layout) cells of a grid: a few MB each
def _prepare_cached(dataset: str, protocol: str, mode: str, split_seed: int, layout: str,
                    data_options_json: str):
    from smoothdistill_lib.pipeline import prepare

    return prepare(dataset, protocol=protocol, mode=mode, seed=split_seed, layout=layout,
                   **json.loads(data_options_json))


def prepare_for(spec: RunSpec):
    """``pipeline.prepare`` for ``spec``, cached within the process (same data, layout and mode)."""
    return _prepare_cached(spec.dataset, spec.protocol, spec.mode, spec.split_seed, spec.layout,
                           canonical_json(spec.data_options))


def run_one(spec: RunSpec, device: str | None = None, progress: bool = True) -> dict:
    """Prepare the data, train with ``engine.fit``, evaluate; return the record body (JSON-able)."""
    from datetime import datetime, timezone

    from smoothdistill_lib import compute, engine, provenance
    from smoothdistill_lib.splits import subsample_ratio

    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if spec.mode_sizes != get_mode(spec.mode).to_dict():
        raise ValueError(f"run {spec.label}: the sizes of mode {spec.mode!r} changed since the grid was expanded")
    prep = prepare_for(spec)
    w, split = prep.windows, prep.split
    if spec.fold >= len(split.folds):
        raise ValueError(f"run {spec.label}: fold {spec.fold} requested but the {spec.protocol} split of "
                         f"{spec.dataset} has {len(split.folds)} folds ({'; '.join(split.notes)})")
    fit_idx, val_idx = (np.asarray(i) for i in split.folds[spec.fold])
    if spec.train_ratio is not None:
        by = "subject" if spec.protocol == "subject" else "window"
        fit_idx = np.asarray(subsample_ratio(fit_idx, w, spec.train_ratio, seed=spec.seed, by=by))
    config = engine.TrainConfig(**spec.train, device=device)
    with compute.CostMeter(engine.resolve_device(device)) as meter:
        result = engine.fit(w, fit_idx, val_idx, np.asarray(split.test), config, progress=progress)
    names = (list(w.activity_names), list(w.placement_names))
    finished = datetime.now(timezone.utc).isoformat(timespec="seconds")
    data = {"n_windows": len(w), "n_fit": len(fit_idx), "n_val": len(val_idx), "n_test": len(split.test),
            "activity_names": names[0], "placement_names": names[1], "options": prep.options,
            "leakage": prep.leakage, "notes": list(split.notes)}
    prov = provenance.provenance(mode=spec.mode, data={"dataset": spec.dataset, "protocol": spec.protocol,
                                                       "n_windows": len(w)}, device=result.device)
    prov.update({"started": started, "finished": finished})
    return {
        "config": result.config.to_dict(),
        "data": data,
        "best_epoch": result.best_epoch,
        "best_epochs": result.best_epochs,
        "evaluation": evaluate(result.predictions, names),
        "history": result.history.to_dict(orient="records"),
        "compute": _run_compute(spec, result, meter, tuple(len(n) for n in names), tuple(w.X.shape[1:])),
        "provenance": prov,
    }


def _run_compute(spec: RunSpec, result, meter, n_classes: tuple[int, int], input_shape: tuple) -> dict:
    """Table 7 figures of one run, each ``{"value", "unit", "how"}`` (see :mod:`compute`)."""
    from smoothdistill_lib import compute, provenance

    static = _method_cost(spec.method, spec.model, n_classes, input_shape,
                          canonical_json(spec.train.get("model_options") or {}))
    measured = meter.records()
    out = {k: static[k] for k in ("params", "size_mb", "flops", "train_params", "train_flops")}
    out["train_seconds"] = {"value": result.train_seconds, "unit": "s", "how": (
        "engine.fit training time: every epoch's steps and student validation, device-synchronised "
        f"(teacher diagnostics and final predictions excluded); {result.device}")}
    out["fit_seconds"] = measured["seconds"]
    out["peak_memory"] = measured["peak_memory"]
    # Energy of the training time (comparable across methods: the teacher diagnostics of
    # smooth_distill are not part of its cost); an NVML measurement, when there is one, covers the
    # whole fit and is kept beside it.
    name = provenance.device_description(result.device)
    out["energy"] = compute.energy_estimate(result.train_seconds, device_name=name)
    if measured["energy"].get("estimate") is False:
        out["energy_measured_fit"] = measured["energy"]
    out["models_trained"] = static["models_trained"]
    out["models_at_inference"] = static["models_at_inference"]
    out["stage_seconds"] = dict(result.stage_seconds)
    return out


@functools.lru_cache(maxsize=64)
def _method_cost(method: str, model: str, n_classes: tuple, input_shape: tuple, options_json: str) -> dict:
    from smoothdistill_lib import compute

    opts = {"window_length": input_shape[-1], **json.loads(options_json)}
    return compute.method_cost(method, model, n_classes, input_shape=input_shape, **opts)


def evaluate(predictions: Mapping, class_names: tuple[list[str], list[str]]) -> list[dict]:
    """The record's ``evaluation``: one entry per (split, who, task) of an engine ``predictions``
    dict, with the scalar metrics (percent), the per-class table (Table 6) and the confusion matrix."""
    from smoothdistill_lib import metrics

    out = []
    for (split_name, who), pred in sorted(predictions.items()):
        for task in (1, 2):
            y_true, y_pred = pred.get(f"y{task}_true"), pred.get(f"y{task}_pred")
            if y_true is None or y_pred is None:
                continue
            names = class_names[task - 1]
            m = metrics.classification_metrics(y_true, y_pred, n_classes=len(names))
            confusion = m.pop("confusion")
            per_class = metrics.per_class_from_confusion(confusion, names)
            out.append({"split": split_name, "who": who, "task": task, "metrics": m,
                        "per_class": per_class.reset_index().to_dict(orient="records"),
                        "confusion": confusion})
    return out


# ----------------------------------------------------------------------------- JSON helpers
# one JSON-cleaning rule for checkpoints and run records
from smoothdistill_lib.checkpoints import _jsonable  # noqa: E402
