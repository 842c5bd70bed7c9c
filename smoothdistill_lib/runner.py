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
runs made in another numeric environment, a shard without runs) raise subclasses of
:class:`errors.UserError`, which the command line prints as one line. ``python -m smoothdistill_lib
run CONFIG`` is :func:`cli_run`.

Each run also takes its own lock, ``runs/.<run_id>.lock`` (:func:`run_lock`), without waiting: a run
that another process holds is skipped, and one whose record appeared meanwhile is not trained
again. The experiment lock only keeps two identical ``run`` commands apart; a whole-grid ``run`` and
a ``run --shard K/N`` (or two shardings of one grid) take different experiment locks, and the run
locks keep them from training a run twice.

Each run keeps its networks (student, and teacher where the method has one) beside its record,
``runs/networks/<run_id>.<network>.pt`` + ``.json`` (:func:`checkpoints.save_networks`; git-ignored),
named with their sha256 in ``record["networks"]``; ``run --no-networks`` keeps none.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from tqdm.auto import tqdm

from smoothdistill_lib import checkpoints, compute, engine, predictions, provenance, shards
from smoothdistill_lib import stack as stacking
from smoothdistill_lib.config import MODES, results_dir
from smoothdistill_lib.errors import DirtyCheckout, EnvironmentMismatch, ExperimentLocked, UserError
from smoothdistill_lib.experiment import (
    TRAIN_ADDED_LATER,
    Experiment,
    RunSpec,
    as_experiment,
    expand,
    prepare_for,
    resolve_mode,
    run_inputs,
)
from smoothdistill_lib.fileio import LockHeld, atomic_write_json, file_lock, jsonable
from smoothdistill_lib.records import SCHEMA, evaluate, free_name, record_body, scan_records, validate_record


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
    shard: tuple[int, int] | None = None  # (K, N) of ``--shard K/N``; n_grid then counts the shard's runs
    n_all: int | None = None  # runs in the whole grid (with a shard)
    skipped: list[str] = field(default_factory=list)  # "run_id (label): why": another process had it

    def lines(self) -> list[str]:
        where = ("in the grid" if self.shard is None else
                 f"in shard {self.shard[0]} of {self.shard[1]} (the grid has {self.n_all})")
        out = [f"experiment {self.experiment} [{self.mode}]: {self.n_grid} runs {where}, "
               f"{self.done_before} done before, {len(self.ran)} run now, {self.pending} pending",
               f"records: {self.folder / 'runs'}"]
        out += [f"run skipped: {k}" for k in self.skipped]
        out += [f"corrupt record moved aside and rerun: {c}" for c in self.corrupt]
        if self.stale:
            out.append(f"{len(self.stale)} stale record(s) of mode {self.mode} not in this grid (config "
                       f"changed) moved to {self.folder / 'stale'}")
        out += [f"{n} record(s) of mode {m} left in place" for m, n in sorted(self.other_modes.items())]
        return out


RunFn = Callable[[RunSpec, "str | None"], dict]


def run_lock(runs_dir: Path, run_id: str) -> Path:
    """The lock file of one run, ``runs/.<run_id>.lock`` (kept: removing a lock file another
    process has open would let two processes hold "the" lock)."""
    return Path(runs_dir) / f".{run_id}.lock"


@contextlib.contextmanager
def _held_runs(runs_dir: Path, specs: list[RunSpec], skipped: list[str]):
    """Take the lock of each run of ``specs`` without waiting (:func:`run_lock`) and yield those
    this process now holds whose record does not exist yet; the others go to ``skipped`` with the
    reason. The locks are held until the ``with`` block ends, i.e. until their records are written."""
    with contextlib.ExitStack() as locks:
        mine = []
        for spec in specs:
            try:
                locks.enter_context(file_lock(run_lock(runs_dir, spec.run_id), wait=False))
            except LockHeld as e:
                skipped.append(f"{spec.run_id} ({spec.label}): another process is running it ({e.holder})")
                continue
            # the scan was a while ago: another process may have finished it since (and released it)
            if (runs_dir / f"{spec.run_id}.json").exists():
                skipped.append(f"{spec.run_id} ({spec.label}): another process finished it meanwhile")
                continue
            mine.append(spec)
        yield mine


@contextlib.contextmanager
def experiment_lock(folder: Path, name: str, lock: str = ".lock"):
    """Hold an exclusive lock on ``folder/<lock>`` while a grid runs, so two ``run`` commands on one
    experiment (or one shard of it: :func:`shards.lock_name`) cannot train the same run twice
    (:func:`fileio.file_lock`: released by the kernel when the process ends, even by SIGKILL).
    Held: :class:`errors.ExperimentLocked`."""
    try:
        with file_lock(Path(folder) / lock, wait=False):
            yield
    except LockHeld as e:
        raise ExperimentLocked(f"experiment {name}: another `run` holds {e.path} ({e.holder}); wait for it to "
                               "finish or stop it, then run again (finished runs are kept)") from None


def run_experiment(experiment: Experiment | str | os.PathLike, results_root: str | os.PathLike | None = None,
                   device: str | None = None, limit: int | None = None, run_fn: RunFn | None = None,
                   progress: bool = True, mode: str | None = None, require_clean: bool = False,
                   methods: list[str] | None = None, stack: bool | None = None,
                   shard: str | tuple[int, int] | None = None, networks: bool = True) -> RunSummary:
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
    (:mod:`stack`; None = off, opt-in everywhere until checked on a GPU). ``shard`` ``"K/N"``: only this shard's runs (:mod:`shards`).
    ``networks``: keep each run's trained networks beside its record (see the module doc; False
    for huge grids). Each run is trained under its own lock (:func:`run_lock`): one another process
    holds, or finished meanwhile, is skipped (``RunSummary.skipped``).
    Refusals raise :class:`errors.UserError` subclasses.
    """
    experiment = as_experiment(experiment)
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    specs = expand(experiment, mode)
    # the whole grid, so that other shards' records are never taken for stale ones
    grid = {s.run_id: s for s in specs}
    specs = shards.select(specs, shard)
    kn = shards.parse_shard(shard)
    if kn is not None and not specs:
        raise UserError(f"--shard {kn[0]}/{kn[1]}: shard {kn[0]} of {kn[1]} has no runs (the grid has {len(grid)}); "
                        f"split it into at most {len(grid)} shards")
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
                             corrupt=[f"{p.name}: {why}" for p, why in scan.corrupt],
                             shard=kn, n_all=len(grid) if kn is not None else None)
        for run_id, rec in scan.valid.items():
            if run_id in grid:
                continue
            rec_mode = rec["spec"]["mode"]
            if rec_mode == ms.name:
                stale_dir = folder / "stale"
                stale_dir.mkdir(exist_ok=True)
                os.replace(runs_dir / f"{run_id}.json", free_name(stale_dir / f"{run_id}.json"))
                pred = predictions.path_for(runs_dir, run_id)
                if pred.exists():  # its predictions go with it
                    os.replace(pred, free_name(predictions.path_for(stale_dir, run_id)))
                for net in checkpoints.network_files(runs_dir, run_id):  # and its networks
                    (stale_dir / checkpoints.NETWORKS_DIR).mkdir(exist_ok=True)
                    os.replace(net, free_name(stale_dir / checkpoints.NETWORKS_DIR / net.name))
                summary.stale.append(run_id)
            else:
                summary.other_modes[rec_mode] = summary.other_modes.get(rec_mode, 0) + 1
        pending = [s for s in specs if s.run_id not in scan.valid and (methods is None or s.method in methods)]
        summary.done_before = sum(s.run_id in scan.valid for s in specs)
        for line in summary.lines()[2:]:
            print(line, file=sys.stderr)
        todo = pending if limit is None else pending[:limit]
        summary.pending = len(specs) - summary.done_before - len(todo)
        # stacked runs are their own numeric environment (stacked and unstacked records of one run id
        # differed by up to 2.9 points on a CPU); what _bodies will do, recorded in every record
        stacked = run_fn is None and stacking.enabled(stack, device)
        if todo:  # one grid, one numeric environment: refuse to mix (docs: README, "Run identity")
            env = provenance.numeric_environment(engine.resolve_device(device), stacked=stacked)
            done = [scan.valid[s.run_id] for s in specs if s.run_id in scan.valid]
            conflicts = provenance.environment_conflicts(done, env)
            if conflicts:
                what = "; ".join(f"{k} {', '.join(map(str, sorted(v, key=str)))} in the records, {env[k]} here"
                                 for k, v in sorted(conflicts.items()))
                # count the runs that differ, not every finished one
                differ = sum(bool(provenance.environment_conflicts([r], env)) for r in done)
                match = ("run with --stack" if not stacked else "run with --no-stack") if "stacked" in conflicts \
                    else "e.g. OMP_NUM_THREADS=1"
                raise EnvironmentMismatch(
                    f"experiment {experiment.name} [{ms.name}]: {differ} of the {len(done)} finished run(s) in "
                    f"{runs_dir} were made in another numeric environment ({what}); adding runs would mix numbers that differ "
                    f"in the last digits. Match it ({match}), or use another results folder "
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
        with tqdm(total=len(todo), desc=f"{experiment.name} [{ms.name}]", unit="run",
                  disable=not progress or not todo) as bar:
            for spec, body in _bodies(todo, device, run_fn, stack, progress, runs_dir=runs_dir,
                                      skipped=summary.skipped):
                bar.set_postfix_str(spec.label)
                bar.update(1)
                body = dict(body)
                arrays = body.pop("predictions", None)
                if arrays is not None:  # the per-window predictions first, then the record naming them
                    body["predictions"] = predictions.write(runs_dir, spec.run_id, arrays)
                nets = body.pop("networks", None)
                if nets is not None and networks:  # so are the networks
                    body["networks"] = checkpoints.save_networks(
                        runs_dir, spec.run_id, nets,
                        run={"run_id": spec.run_id, "label": spec.label, "experiment": experiment.name})
                body["provenance"] = {**(body.get("provenance") or {}), "stacked": stacked, "grid": grid_prov}
                record = jsonable({"schema": SCHEMA, "run_id": spec.run_id, "spec": spec.to_dict(), **body})
                validate_record(record, source=f"run {spec.label}")
                atomic_write_json(runs_dir / f"{spec.run_id}.json", record)
                summary.ran.append(spec.run_id)
        for line in summary.lines()[2:2 + len(summary.skipped)]:
            print(line, file=sys.stderr)
        return summary


def _bodies(todo: list[RunSpec], device, run_fn: RunFn | None, stack: bool | None, progress: bool,
            runs_dir: Path | None = None, skipped: list[str] | None = None):
    """``(spec, record body)`` of each run of ``todo``: replica-stacked groups when stacking is on
    (:mod:`stack`; ``--stack``, off by default), else one run at a time with ``run_fn`` (default
    :func:`run_one`). With ``runs_dir``, each run is trained under its own lock, held until the
    caller has written its record (the generator waits at ``yield``): one run at a time, or a stack
    group at a time; runs another process has go to ``skipped`` (:func:`_held_runs`)."""
    run = run_fn if run_fn is not None else functools.partial(run_one, progress=progress)
    held = ((lambda specs: _held_runs(runs_dir, specs, skipped if skipped is not None else []))
            if runs_dir is not None else (lambda specs: contextlib.nullcontext(specs)))
    if stack is None and todo and engine.resolve_device(device).type == "cuda":
        print(stacking.CUDA_NOTE, file=sys.stderr)  # opt-in until checked on a GPU (stack.enabled)
    if run_fn is None and stacking.enabled(stack, device):
        # a group's locks together (its runs train as one), one group at a time: a huge grid never
        # holds a file open per run
        for group in stacking.group_specs(todo):
            with held(group) as mine:
                yield from stacking.run_specs(mine, device, progress=progress, run_alone=run)
        return
    for spec in todo:
        with held([spec]) as mine:
            for s in mine:
                yield s, run(s, device)


def cli_run(args) -> int:
    """``python -m smoothdistill_lib run CONFIG [--mode M] [--device D] [--limit N] [--methods A,B]
    [--require-clean] [--stack/--no-stack] [--shard K/N] [--no-networks]``."""
    methods = [m.strip() for m in args.methods.split(",")] if getattr(args, "methods", None) else None
    summary = run_experiment(args.config, device=args.device, limit=args.limit, mode=args.mode,
                             require_clean=getattr(args, "require_clean", False), methods=methods,
                             stack=getattr(args, "stack", None), shard=getattr(args, "shard", None),
                             networks=getattr(args, "networks", True))
    print("\n".join(summary.lines()))
    return 0


# ----------------------------------------------------------------------------- backfilling predictions
#: the parts of a record a re-run must reproduce exactly (timings and provenance may differ)
REPRODUCED = ("config", "data", "best_epoch", "best_epochs", "evaluation", "history")
_TIMING_COLUMNS = ("epoch_seconds",)


def _reproducible(rec: dict) -> dict:
    """The parts of a record (or record body) in :data:`REPRODUCED`, timing columns of the history left out."""
    out = {k: rec.get(k) for k in REPRODUCED}
    # how the device was named ("cpu" or left to the engine) is not a number; its kind is checked
    # with the numeric environment
    # (options added to the engine later are absent from older records while off: TRAIN_ADDED_LATER)
    out["config"] = {k: v for k, v in (out["config"] or {}).items()
                     if k != "device" and not (k in TRAIN_ADDED_LATER and v == TRAIN_ADDED_LATER[k])}
    out["history"] = [{k: v for k, v in row.items() if k not in _TIMING_COLUMNS} for row in rec.get("history") or []]
    return jsonable(out)


def _leaves(obj, path: str = "") -> dict[str, object]:
    """Every scalar of a JSON value by its path ("evaluation[3].metrics.accuracy")."""
    if isinstance(obj, dict):
        return {k: v for key, val in obj.items() for k, v in _leaves(val, f"{path}.{key}" if path else str(key)).items()}
    if isinstance(obj, list):
        return {k: v for i, val in enumerate(obj) for k, v in _leaves(val, f"{path}[{i}]").items()}
    return {path: obj}


def reproduction_diff(record: dict, body: dict) -> tuple[int, list[str]]:
    """``(values compared, paths that differ)`` between a committed record and a re-run's body, over
    :data:`REPRODUCED` (floats compared exactly, as JSON stores them)."""
    a, b = _leaves(_reproducible(record)), _leaves(_reproducible(body))
    paths = sorted(set(a) | set(b))
    return len(paths), [k for k in paths if a.get(k, "<absent>") != b.get(k, "<absent>")]


@dataclass
class BackfillSummary:
    """What :func:`backfill_predictions` did (also printed by the CLI)."""

    experiment: str
    had: int = 0  # records that already kept predictions
    added: list[str] = field(default_factory=list)  # "run_id: N values reproduced"
    differed: list[str] = field(default_factory=list)  # "run_id: K of N values differ (first ...)"
    pending: int = 0

    def lines(self) -> list[str]:
        return ([f"experiment {self.experiment}: {self.had} record(s) had predictions, {len(self.added)} backfilled, "
                 f"{len(self.differed)} not reproduced, {self.pending} still without"]
                + [f"backfilled {a}" for a in self.added]
                + [f"NOT reproduced, record left as it was: {d}" for d in self.differed])


def backfill_predictions(experiment: Experiment | str | os.PathLike, results_root: str | os.PathLike | None = None,
                         limit: int | None = None, methods: list[str] | None = None, require_clean: bool = False,
                         datasets: list[str] | None = None, protocols: list[str] | None = None,
                         run_fn: RunFn | None = None, progress: bool = True) -> BackfillSummary:
    """Give the records of ``experiment`` that keep no per-window predictions their predictions, by
    re-running each one: a re-run must reproduce its record exactly (every value of
    :data:`REPRODUCED`, floats to the last digit) before its predictions are written and the record
    names them (``provenance["predictions_backfill"]`` says from which commit). A run that does not
    reproduce is reported and left as it was: its predictions would describe other networks.

    The numeric environment (torch, device, threads) must match the records' (else
    :class:`errors.EnvironmentMismatch`); ``limit`` stops after that many re-runs; ``methods``
    re-runs only those methods' records (``datasets``, ``protocols`` likewise: the cells a chapter
    needs first). Runs on the CPU, one run at a time (no stacking)."""
    experiment = as_experiment(experiment)
    folder = Path(results_root or results_dir()) / experiment.name
    runs_dir = folder / "runs"
    grid = {s.run_id: s for m in MODES for s in _expand_quietly(experiment, m)}
    summary = BackfillSummary(experiment.name)
    # its own lock: a backfill only rewrites finished records, so a `run` may add new ones meanwhile
    with experiment_lock(folder, experiment.name, ".lock-backfill"):
        scan = scan_records(runs_dir, quarantine=False)
        mine = {rid: rec for rid, rec in scan.valid.items() if rid in grid
                and (methods is None or rec["spec"]["method"] in methods)
                and (datasets is None or rec["spec"]["dataset"] in datasets)
                and (protocols is None or rec["spec"]["protocol"] in protocols)}
        todo = [rid for rid, rec in sorted(mine.items()) if "predictions" not in rec]
        summary.had = len(mine) - len(todo)
        if limit is not None:
            summary.pending = max(0, len(todo) - limit)
            todo = todo[:limit]
        if not todo:
            return summary
        env = provenance.numeric_environment("cpu")
        conflicts = provenance.environment_conflicts([mine[r] for r in todo], env)
        if conflicts:
            what = "; ".join(f"{k} {', '.join(map(str, sorted(v, key=str)))} in the records, {env[k]} here"
                             for k, v in sorted(conflicts.items()))
            match = ("a backfill re-runs each record alone, unstacked" if "stacked" in conflicts
                     else "Match it (e.g. OMP_NUM_THREADS=1)")
            raise EnvironmentMismatch(f"backfill {experiment.name}: the records were made in another numeric "
                                      f"environment ({what}); a re-run here cannot reproduce them. {match}")
        commit, dirty = provenance.git_commit()
        if dirty and require_clean:
            raise DirtyCheckout(f"backfill {experiment.name}: the checkout has uncommitted changes to tracked files "
                                f"(commit {commit}). Commit or stash them, or run without --require-clean")
        run = run_fn if run_fn is not None else functools.partial(run_one, progress=progress)
        for rid in tqdm(todo, desc=f"backfill {experiment.name}", unit="run", disable=not progress):
            rec = mine[rid]
            body = dict(run(grid[rid], "cpu"))
            arrays = body.pop("predictions", None)
            n, diff = reproduction_diff(rec, body)
            label = grid[rid].label
            if arrays is None or diff:
                why = "the run gave no predictions" if arrays is None else f"{len(diff)} of {n} values differ (first: {diff[0]})"
                summary.differed.append(f"{rid} ({label}): {why}")
                continue
            ref = predictions.write(runs_dir, rid, arrays)
            new = {**rec, "predictions": ref}
            new["provenance"] = {**rec["provenance"], "predictions_backfill": {
                "commit": commit, "dirty": dirty, "values_reproduced": n,
                "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}}
            validate_record(new, source=f"backfill {label}")
            atomic_write_json(runs_dir / f"{rid}.json", new)
            summary.added.append(f"{rid} ({label}): {n} values reproduced")
    return summary


def _expand_quietly(experiment: Experiment, mode: str) -> list[RunSpec]:
    """The grid of ``experiment`` in ``mode``, or none when it cannot be expanded in that mode."""
    try:
        return expand(experiment, mode)
    except ValueError:
        return []


def cli_backfill(args) -> int:
    """``python -m smoothdistill_lib backfill CONFIG [--limit N] [--methods A,B] [--datasets A,B]
    [--protocols P] [--require-clean]``: exit 1 when a re-run did not reproduce its record."""
    def names(option):
        value = getattr(args, option, None)
        return [m.strip() for m in value.split(",")] if value else None

    summary = backfill_predictions(args.config, limit=args.limit, methods=names("methods"),
                                   datasets=names("datasets"), protocols=names("protocols"),
                                   require_clean=getattr(args, "require_clean", False))
    print("\n".join(summary.lines()))
    return 1 if summary.differed else 0


# ----------------------------------------------------------------------------- one run
def run_one(spec: RunSpec, device: str | None = None, progress: bool = True) -> dict:
    """Prepare the data, train with ``engine.fit``, evaluate; return the record body (JSON-able,
    :func:`records.record_body`)."""
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    prep = prepare_for(spec)
    fit_idx, val_idx, test_idx, config = run_inputs(spec, prep, device)
    with compute.CostMeter(engine.resolve_device(device)) as meter:
        result = engine.fit(prep.windows, fit_idx, val_idx, test_idx, config, progress=progress)
    finished = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return record_body(spec, prep, fit_idx, val_idx, result, meter, started=started, finished=finished)


__all__ = ["BackfillSummary", "RunSummary", "backfill_predictions", "cli_backfill", "cli_run", "reproduction_diff", "evaluate", "experiment_lock", "prepare_for", "run_experiment", "run_lock", "run_one"]
