"""Running an experiment: the pending runs of its grid, one atomic JSON record per finished run.

:func:`run_experiment` expands an :class:`~smoothdistill_lib.experiment.Experiment`, scans the
records already in ``results/<experiment>/runs/`` (:func:`records.scan_records`) and runs the pending
specs one by one with :func:`run_one`; each finished run becomes ``<run_id>.json``, written
atomically (:func:`fileio.atomic_write_json`). Killed at any moment and restarted, it skips the
finished runs; a corrupt record (bad JSON, missing keys, hash mismatch) is moved aside to
``*.corrupt`` with its reason, reported and rerun.

Records of *other* modes in the same folder are left alone (``report`` picks a mode); records of the
*same* mode whose run_id is no longer in the grid (the config changed) are reported as stale and
moved to ``results/<experiment>/stale/`` so that tables never mix old and new settings.

Refusals (another ``run`` holds the experiment, ``--require-clean`` on a dirty checkout, finished
runs made in another numeric environment) raise subclasses of :class:`errors.UserError`, which the
command line prints as one line. ``python -m smoothdistill_lib run CONFIG`` is :func:`cli_run`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from smoothdistill_lib import compute, engine, metrics, provenance
from smoothdistill_lib.config import get_mode, results_dir
from smoothdistill_lib.errors import DirtyCheckout, EnvironmentMismatch, ExperimentLocked
from smoothdistill_lib.experiment import Experiment, RunSpec, as_experiment, expand, resolve_mode
from smoothdistill_lib.fileio import LockHeld, atomic_write_json, canonical_json, file_lock, jsonable
from smoothdistill_lib.pipeline import prepare
from smoothdistill_lib.records import SCHEMA, free_name, scan_records, validate_record
from smoothdistill_lib.splits import subsample_ratio


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
def experiment_lock(folder: Path, name: str):
    """Hold an exclusive lock on ``folder/.lock`` while a grid runs, so two ``run`` commands on one
    experiment cannot train the same run twice (:func:`fileio.file_lock`: released by the kernel
    when the process ends, even by SIGKILL). Held: :class:`errors.ExperimentLocked`."""
    try:
        with file_lock(Path(folder) / ".lock", wait=False):
            yield
    except LockHeld as e:
        raise ExperimentLocked(f"experiment {name}: another `run` holds {e.path} ({e.holder}); wait for it to "
                               "finish or stop it, then run again (finished runs are kept)") from None


def run_experiment(experiment: Experiment | str | os.PathLike, results_root: str | os.PathLike | None = None,
                   device: str | None = None, limit: int | None = None, run_fn: RunFn | None = None,
                   progress: bool = True, mode: str | None = None, require_clean: bool = False,
                   methods: list[str] | None = None) -> RunSummary:
    """Run the pending runs of ``experiment`` (an :class:`Experiment` or a config path).

    ``results_root`` defaults to :func:`config.results_dir`; records go to
    ``<results_root>/<name>/runs/``. ``run_fn(spec, device) -> record body`` defaults to
    :func:`run_one` (tests inject a stub). ``limit`` stops after that many runs.
    The library's commit is read once, before the first run, and every record of this invocation
    carries it as ``provenance["grid"]``: the code that made a grid is named once, even if the
    checkout changes while it runs. ``require_clean`` refuses to start when tracked files differ
    from that commit (records made so name code that no commit holds; otherwise a warning).
    ``methods`` runs only the pending runs of these methods now (a long grid in stages: the rest
    stays pending, never stale). Refusals raise :class:`errors.UserError` subclasses.
    """
    experiment = as_experiment(experiment)
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    specs = expand(experiment, mode)
    ms = resolve_mode(experiment, mode)
    if methods is not None:
        unknown = [m for m in methods if m not in experiment.methods]
        if unknown or not methods:
            raise ValueError(f"--methods: {unknown[0] if unknown else 'nothing'!r} is not a method of experiment "
                             f"{experiment.name} ({', '.join(experiment.methods)})")
    folder = Path(results_root or results_dir()) / experiment.name
    runs_dir = folder / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    with experiment_lock(folder, experiment.name):
        scan = scan_records(runs_dir)
        grid = {s.run_id: s for s in specs}
        summary = RunSummary(experiment.name, ms.name, folder, len(specs), 0,
                             corrupt=[f"{p.name}: {why}" for p, why in scan.corrupt])
        for run_id, rec in scan.valid.items():
            if run_id in grid:
                continue
            rec_mode = rec["spec"]["mode"]
            if rec_mode == ms.name:
                stale_dir = folder / "stale"
                stale_dir.mkdir(exist_ok=True)
                os.replace(runs_dir / f"{run_id}.json", free_name(stale_dir / f"{run_id}.json"))
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
            env = provenance.numeric_environment(engine.resolve_device(device))
            done = [scan.valid[s.run_id] for s in specs if s.run_id in scan.valid]
            conflicts = provenance.environment_conflicts(done, env)
            if conflicts:
                what = "; ".join(f"{k} {', '.join(map(str, sorted(v, key=str)))} in the records, {env[k]} here"
                                 for k, v in sorted(conflicts.items()))
                raise EnvironmentMismatch(
                    f"experiment {experiment.name} [{ms.name}]: {len(done)} finished run(s) in {runs_dir} were "
                    f"made in another numeric environment ({what}); adding runs would mix numbers that differ "
                    "in the last digits. Match it (e.g. OMP_NUM_THREADS=1), or use another results folder "
                    "(SMOOTHDISTILL_RESULTS)")
        commit, dirty = provenance.git_commit()
        if todo and dirty:
            why = (f"the checkout has uncommitted changes to tracked files (commit {commit}): records would name "
                   "code that no commit holds")
            if require_clean:
                raise DirtyCheckout(f"experiment {experiment.name}: {why}. Commit or stash them, or run without "
                                    "--require-clean")
            print(f"warning: {why}; they are marked dirty", file=sys.stderr)
        grid_prov = {"experiment": experiment.name, "commit": commit, "dirty": dirty, "runs_in_grid": len(specs),
                     "pending_at_start": len(todo), "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        run = run_fn if run_fn is not None else functools.partial(run_one, progress=progress)
        with tqdm(todo, desc=f"{experiment.name} [{ms.name}]", unit="run", disable=not progress or not todo) as bar:
            for spec in bar:
                bar.set_postfix_str(spec.label)
                body = dict(run(spec, device))
                body["provenance"] = {**(body.get("provenance") or {}), "grid": grid_prov}
                record = jsonable({"schema": SCHEMA, "run_id": spec.run_id, "spec": spec.to_dict(), **body})
                validate_record(record, source=f"run {spec.label}")
                atomic_write_json(runs_dir / f"{spec.run_id}.json", record)
                summary.ran.append(spec.run_id)
        return summary


def cli_run(args) -> int:
    """``python -m smoothdistill_lib run CONFIG [--mode M] [--device D] [--limit N] [--methods A,B]
    [--require-clean]``."""
    methods = [m.strip() for m in args.methods.split(",")] if getattr(args, "methods", None) else None
    summary = run_experiment(args.config, device=args.device, limit=args.limit, mode=args.mode,
                             require_clean=getattr(args, "require_clean", False), methods=methods)
    print("\n".join(summary.lines()))
    return 0


# ----------------------------------------------------------------------------- one run
@functools.lru_cache(maxsize=8)  # (dataset, protocol, layout) cells of a grid: a few MB each
def _prepare_cached(dataset: str, protocol: str, mode: str, split_seed: int, layout: str,
                    data_options_json: str):
    return prepare(dataset, protocol=protocol, mode=mode, seed=split_seed, layout=layout,
                   **json.loads(data_options_json))


def prepare_for(spec: RunSpec):
    """``pipeline.prepare`` for ``spec``, cached within the process (same data, layout and mode)."""
    return _prepare_cached(spec.dataset, spec.protocol, spec.mode, spec.split_seed, spec.layout,
                           canonical_json(spec.data_options))


def run_one(spec: RunSpec, device: str | None = None, progress: bool = True) -> dict:
    """Prepare the data, train with ``engine.fit``, evaluate; return the record body (JSON-able)."""
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
    opts = {"window_length": input_shape[-1], **json.loads(options_json)}
    return compute.method_cost(method, model, n_classes, input_shape=input_shape, **opts)


def evaluate(predictions: Mapping, class_names: tuple[list[str], list[str]]) -> list[dict]:
    """The record's ``evaluation``: one entry per (split, who, task) of an engine ``predictions``
    dict, with the scalar metrics (percent), the per-class table (Table 6) and the confusion matrix."""
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
