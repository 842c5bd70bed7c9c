"""Run records on disk: validate, read, scan, and load an experiment's records into one frame.

One JSON file per finished run, ``results/<experiment>/runs/<run_id>.json`` (written by
:mod:`runner` with :func:`fileio.atomic_write_json`). A record holds :data:`RECORD_KEYS`;
:func:`validate_record` checks what every reader needs (the spec hashes to the run id, and each
``evaluation`` entry has ``split``, ``who``, ``task`` and numeric ``metrics`` in their ranges), so a
damaged record is refused with a reason instead of failing later inside a table, or of being
averaged into one (an accuracy of 250). :func:`scan_records` moves such
files aside to ``*.corrupt`` (the runner reruns them) or, read-only, skips them with the reason.

:func:`load_records` turns the records of one run mode into one tidy DataFrame: one row per run x
split (val/test) x who (student/teacher) x task (1/2), with the run's settings, its scalar metrics
(percent) and compute figures as columns, and the per-class table, confusion matrix and training
history as object columns. :func:`load_experiment` returns that frame, the provenance and the raw
records together as :class:`Records`; :func:`records_summary` describes them in one column.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from smoothdistill_lib import checkpoints, compute, metrics, predictions, provenance
from smoothdistill_lib.config import MODES, results_dir
from smoothdistill_lib.experiment import RunSpec
from smoothdistill_lib.fileio import canonical_json
from smoothdistill_lib.methods import paper_order

SCHEMA = 1
#: keys every record must hold; a file without them is treated as corrupt and rerun
RECORD_KEYS = ("schema", "run_id", "spec", "config", "data", "best_epoch", "evaluation", "history",
               "compute", "provenance")
#: keys of each ``evaluation`` entry
EVALUATION_KEYS = ("split", "who", "task", "metrics")
STALE_TEMP_SECONDS = 3600  # leftover temp files older than this are removed
#: one row of the frame = one run x split x who x task; these identify the run's grid cell
RUN_COLUMNS = ["run_id", "experiment", "mode", "dataset", "protocol", "model", "method", "lam",
               "train_ratio", "seed", "fold"]


# ----------------------------------------------------------------------------- a record's body
def record_body(spec: RunSpec, prep, fit_idx, val_idx, result, meter, *, started: str, finished: str,
                group: list[str] | None = None) -> dict:
    """The body of ``spec``'s record (all but ``schema``, ``run_id``, ``spec``, which the runner adds):
    config, data, best epochs, evaluation, history, compute and provenance of one finished
    ``engine.FitResult`` on the prepared data ``prep``, timed by the ``compute.CostMeter`` ``meter``.

    The one place a record is assembled, for a run trained alone (``runner.run_one``) and for each
    run of a group trained together (``stack.run_group``, ``group`` = the group's run ids): the
    meter then saw the whole group, so its time is shared out and its peak memory is the group's;
    a replica-stacked result (``result.stack_info``) adds ``provenance["stack"]``. Two entries are
    not JSON yet: ``predictions`` (numpy arrays) and ``networks`` (state dicts and their metadata,
    :func:`checkpoints.network_payloads`); the runner writes them beside the record and puts their
    references in their place."""
    w, split = prep.windows, prep.split
    names = (list(w.activity_names), list(w.placement_names))
    data = {"n_windows": len(w), "n_fit": len(fit_idx), "n_val": len(val_idx), "n_test": len(split.test),
            "activity_names": names[0], "placement_names": names[1], "options": prep.options,
            "leakage": prep.leakage, "notes": list(split.notes)}
    prov = provenance.provenance(mode=spec.mode, data={"dataset": spec.dataset, "protocol": spec.protocol,
                                                       "n_windows": len(w)}, device=result.device)
    prov.update({"started": started, "finished": finished})
    cost = run_compute(spec, result, meter, tuple(len(n) for n in names), tuple(w.X.shape[1:]))
    if group is not None:
        k = len(group)
        cost["fit_seconds"] = {**cost["fit_seconds"], "value": cost["fit_seconds"]["value"] / k,
                               "how": f"{cost['fit_seconds']['how']}; a group of {k} runs trained together: "
                                      f"its time / {k}"}
        cost["peak_memory"] = {**cost["peak_memory"],
                               "how": cost["peak_memory"]["how"] + f"; the whole group of {k} runs"}
        info = getattr(result, "stack_info", None)
        if info is not None:
            r = info["replicas"]
            prov["stack"] = {**info, "group": list(group)}
            cost["train_seconds"] = {**cost["train_seconds"], "how": cost["train_seconds"]["how"]
                                     + f"; stacked with {r} replicas: the stack's time / {r}"}
    return {
        "config": result.config.to_dict(),
        "data": data,
        "best_epoch": result.best_epoch,
        "best_epochs": result.best_epochs,
        "evaluation": evaluate(result.predictions, names),
        "history": result.history.to_dict(orient="records"),
        "compute": cost,
        "provenance": prov,
        # numpy arrays: the runner writes them beside the record and keeps only their reference
        "predictions": predictions.arrays_from(result.predictions),
        # the trained networks (state dicts + checkpoint metadata): the runner saves them beside the
        # record (checkpoints.save_networks) unless told not to, and keeps only their references
        "networks": checkpoints.network_payloads(result, prep, fit_idx, val_idx),
    }


def run_compute(spec: RunSpec, result, meter, n_classes: tuple[int, int], input_shape: tuple) -> dict:
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


# ----------------------------------------------------------------------------- one record
def validate_record(rec: Any, source: str = "<record>") -> None:
    """Raise ``ValueError`` naming ``source`` and what is wrong, unless ``rec`` is a complete record
    whose values are possible ones (:func:`_check_ranges`: rates in [0, 100], confusion matrices of
    the task's classes summing to the evaluation's count) and whose ``predictions`` and
    ``networks`` references name files inside the runs folder with their sha256."""
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
    for key, kind in (("data", dict), ("compute", dict), ("provenance", dict), ("history", list)):
        if not isinstance(rec[key], kind):
            raise ValueError(f"{source}: {key!r} must be a JSON {'object' if kind is dict else 'list'}")
    if not isinstance(rec["evaluation"], list) or not rec["evaluation"]:
        raise ValueError(f"{source}: record has no evaluation entries")
    for i, e in enumerate(rec["evaluation"]):
        where = f"{source}: evaluation[{i}]"
        if not isinstance(e, dict) or any(k not in e for k in EVALUATION_KEYS):
            raise ValueError(f"{where} lacks one of the keys {list(EVALUATION_KEYS)}")
        if e["task"] not in (1, 2) or not isinstance(e["metrics"], dict) or "accuracy" not in e["metrics"]:
            raise ValueError(f"{where}: needs task 1 or 2 and metrics with an accuracy")
        bad = [k for k, v in e["metrics"].items()
               if v is not None and (isinstance(v, bool) or not isinstance(v, int | float))]
        if bad:
            raise ValueError(f"{where}: metric {bad[0]!r} is not a number")
        _check_ranges(e, where, rec["data"].get("activity_names" if e["task"] == 1 else "placement_names"))
    ref = rec.get("predictions")
    if ref is not None and not (isinstance(ref, dict) and isinstance(ref.get("file"), str)
                                and isinstance(ref.get("sha256"), str)):
        raise ValueError(f"{source}: 'predictions' must name a file and its sha256")
    nets = rec.get("networks")
    if nets is not None:
        if not isinstance(nets, dict) or not nets or not set(nets) <= {"student", "teacher"}:
            raise ValueError(f"{source}: 'networks' must map 'student' (and 'teacher') to saved checkpoints")
        for who, r in nets.items():
            f = r.get("file") if isinstance(r, dict) else None
            if not (isinstance(f, str) and isinstance(r.get("sha256"), str)) or Path(f).is_absolute() or ".." in Path(f).parts:
                raise ValueError(f"{source}: networks[{who!r}] must name a file inside the runs folder and its sha256")


#: metrics of an ``evaluation`` entry that are percentages, and the per-class table's rates
PERCENT_METRICS = metrics.SCALAR_METRICS
PERCENT_PER_CLASS = tuple(c for c in metrics.PER_CLASS_COLUMNS if c != "support")


def _check_ranges(e: dict, where: str, class_names) -> None:
    """Values a reader averages must be possible ones: rates in [0, 100] (percent), ``n`` a count,
    the confusion matrix a C x C table of counts (C = the task's classes) that sums to ``n``. A
    record that breaks one is refused like a damaged file (moved aside and rerun by ``run``,
    skipped by ``report``), never averaged into a table."""
    m = e["metrics"]
    for k in PERCENT_METRICS:
        v = m.get(k)
        if v is not None and not 0 <= v <= 100:
            raise ValueError(f"{where}: metric {k!r} is {v}, outside [0, 100] (percent)")
    n = m.get("n")
    if n is not None and (not isinstance(n, int) or n < 0):
        raise ValueError(f"{where}: metric 'n' is {n!r}, not a count of windows")
    for row in e.get("per_class") or []:
        for k in PERCENT_PER_CLASS:
            v = row.get(k) if isinstance(row, dict) else None
            if v is not None and (not isinstance(v, int | float) or not 0 <= v <= 100):
                raise ValueError(f"{where}: per_class {k!r} of class {row.get('class')!r} is {v!r}, outside [0, 100]")
    cm = e.get("confusion")
    if cm is None:
        return
    c = len(cm) if isinstance(cm, list) else -1
    if c < 1 or not all(isinstance(r, list) and len(r) == c and all(isinstance(x, int) and not isinstance(x, bool)
                                                                   and x >= 0 for x in r) for r in cm):
        raise ValueError(f"{where}: 'confusion' must be a square table of counts")
    if isinstance(class_names, list) and len(class_names) != c:
        raise ValueError(f"{where}: the confusion matrix is {c} x {c}, the task has {len(class_names)} classes")
    total = sum(map(sum, cm))
    if n is not None and total != n:
        raise ValueError(f"{where}: the confusion matrix counts {total} windows, its metrics n = {n}")


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


@dataclass
class ScanResult:
    valid: dict[str, dict]  # run_id -> record
    corrupt: list[tuple[Path, str]]  # (moved-to path, or the file itself when not moved; reason)


def scan_records(runs_dir: Path, quarantine: bool = True) -> ScanResult:
    """Read every ``*.json`` record in ``runs_dir``. Invalid ones are listed with the reason and,
    when ``quarantine``, moved to ``*.corrupt`` (beside it, ``*.corrupt.why`` holds the reason);
    leftover temp files of a killed writer are then removed too."""
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
                target = free_name(path.with_name(path.name + ".corrupt"))
                os.replace(path, target)
                target.with_name(target.name + ".why").write_text(f"{e}\n")
            corrupt.append((target, str(e)))
    return ScanResult(valid, corrupt)


def free_name(path: Path) -> Path:
    """``path``, or ``path.1``, ``path.2`` ... : the first that does not exist."""
    i, p = 1, path
    while p.exists():
        p = path.with_name(f"{path.name}.{i}")
        i += 1
    return p


# ----------------------------------------------------------------------------- an experiment's records
def experiment_folder(experiment: str | os.PathLike, results_root: str | os.PathLike | None = None) -> Path:
    """The folder of ``experiment``: a path holding ``runs/``, or a name under the results folder."""
    p = Path(experiment)
    if (p / "runs").is_dir():
        return p
    root = Path(results_root) if results_root is not None else results_dir()
    if (root / str(experiment) / "runs").is_dir():
        return root / str(experiment)
    found = sorted(d.name for d in root.glob("*") if (d / "runs").is_dir()) if root.is_dir() else []
    raise FileNotFoundError(
        f"no records for experiment {experiment!r} under {root} (experiments there: {found or 'none'}); "
        f"run `python -m smoothdistill_lib run configs/{p.name}.yaml` first"
    )


def load_records(experiment: str | os.PathLike, mode: str | None = None,
                 results_root: str | os.PathLike | None = None) -> pd.DataFrame:
    """All records of ``experiment`` in one tidy DataFrame (see the module docstring).

    ``mode``: keep the records of that run mode; default: the largest mode present (full > long >
    demo > quick), with a warning naming the others. Invalid record files are skipped with a warning
    saying why (the runner moves them aside and reruns them). Raises if two records fill the same
    grid cell with different settings: the tables would silently mix them.
    """
    return _load(experiment_folder(experiment, results_root), mode)[0]


def _load(folder: Path, mode: str | None) -> tuple[pd.DataFrame, dict[str, dict]]:
    """The tidy frame of the records of ``mode`` in ``folder`` and those raw records by run_id."""
    scan = scan_records(folder / "runs", quarantine=False)
    for _path, why in scan.corrupt:
        warnings.warn(f"skipping invalid record {why}", stacklevel=3)
    if not scan.valid:
        raise FileNotFoundError(f"no valid records in {folder / 'runs'}")
    present = sorted({r["spec"]["mode"] for r in scan.valid.values()}, key=MODES.index)
    if mode is None:
        mode = present[-1]
        if len(present) > 1:
            warnings.warn(f"{folder.name}: records of modes {present}; using {mode!r} "
                          f"(pass mode=... to choose)", stacklevel=3)
    elif mode not in present:
        raise ValueError(f"{folder.name}: no records of mode {mode!r}; modes present: {present}")
    records = {k: r for k, r in scan.valid.items() if r["spec"]["mode"] == mode}
    rows = [row for rec in records.values() for row in _rows(rec, folder.name)]
    df = pd.DataFrame(rows)
    _check_cells(df, folder)
    df["method"] = pd.Categorical(df["method"], paper_order(df["method"]))
    df = df.sort_values(["dataset", "protocol", "model", "method", "lam", "train_ratio", "seed", "fold",
                         "split", "who", "task"], kind="stable").reset_index(drop=True)
    return df, records


@dataclass(frozen=True, eq=False)
class Records:
    """One experiment's records, as the chapters use them.

    ``df``: the tidy frame of :func:`load_records`; ``provenance``: one row per run (index
    ``run_id``, the record's ``provenance`` keys as columns); ``records``: run_id -> raw record;
    ``folder``: ``results/<experiment>``.
    """

    df: pd.DataFrame
    provenance: pd.DataFrame
    records: dict[str, dict]
    folder: Path

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def mode(self) -> str:
        return str(self.df["mode"].iloc[0])

    def predictions(self, run_id: str) -> dict:
        """The per-window predictions of run ``run_id`` (:func:`predictions.read`: arrays named
        ``{split}_index``, ``{split}_y{task}_true``, ``{split}_{who}_y{task}_pred``), checked
        against the sha256 in its record; :class:`predictions.PredictionsError` when it has none."""
        if run_id not in self.records:
            raise KeyError(f"run {run_id} is not among the records of {self.name}")
        return predictions.read(self.folder / "runs", self.records[run_id])

    def has_predictions(self, run_id: str) -> bool:
        """Whether run ``run_id``'s record names a predictions file (not checked: see :meth:`predictions`)."""
        return isinstance(self.records.get(run_id, {}).get("predictions"), dict)


@dataclass(frozen=True, eq=False)
class Combined:
    """Runs of several experiments read as one, e.g. chapter 9's long-mode lambda sweep (the long
    grid's lambda 0 and 0.5 beside ``long_lambda``'s other values): ``df`` holds the rows kept, and
    predictions are read from the experiment that holds each run (so a paired bootstrap over test
    windows works across them). Made by :func:`combine`."""

    df: pd.DataFrame
    parts: tuple[Records, ...]

    def _owner(self, run_id: str) -> Records | None:
        return next((p for p in self.parts if run_id in p.records), None)

    def has_predictions(self, run_id: str) -> bool:
        owner = self._owner(run_id)
        return owner is not None and owner.has_predictions(run_id)

    def predictions(self, run_id: str) -> dict:
        owner = self._owner(run_id)
        if owner is None:
            raise KeyError(f"run {run_id} is not among the records of {', '.join(p.name for p in self.parts)}")
        return owner.predictions(run_id)


def combine(parts: list[Records], df: pd.DataFrame | None = None) -> Combined:
    """:class:`Combined` of ``parts``; ``df``: the rows to keep (default: all of every part's). Rows of
    a run that none of the parts holds are refused (one line): their predictions could not be found."""
    parts = tuple(p for p in parts if p is not None)
    if df is None:
        df = pd.concat([p.df for p in parts], ignore_index=True)
    stray = sorted(set(df["run_id"]) - {rid for p in parts for rid in p.records})
    if stray:
        raise ValueError(f"combine: runs {stray[:3]} are in the rows but in none of the experiments "
                         f"{[p.name for p in parts]}")
    return Combined(df, parts)


def load_experiment(experiment: str | os.PathLike, results_root: str | os.PathLike | None = None,
                    mode: str | None = None) -> Records | None:
    """:class:`Records` of ``experiment`` (the largest run mode present unless ``mode``), or None when
    the experiment has no records yet. Records of other modes are left out silently: the chapters
    show the mode they use (:func:`records_summary`)."""
    try:
        folder = experiment_folder(experiment, results_root)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*records of modes")
            df, records = _load(folder, mode)
    except FileNotFoundError:
        return None
    prov = pd.DataFrame([{"run_id": k, **(r.get("provenance") or {})} for k, r in records.items()])
    return Records(df, prov.set_index("run_id"), records, folder)


def raw_records(records: Records | dict[str, dict]) -> dict[str, dict]:
    """run_id -> raw record, from :class:`Records` or such a dict."""
    return records.records if isinstance(records, Records) else dict(records)


def experiments(results_root: str | os.PathLike | None = None) -> pd.Series:
    """Number of record files per experiment folder under the results folder (index: name, sorted)."""
    root = Path(results_root) if results_root is not None else results_dir()
    found = {d.name: len(list((d / "runs").glob("*.json")))
             for d in sorted(root.glob("*")) if (d / "runs").is_dir()} if root.is_dir() else {}
    return pd.Series(found, dtype=int, name="records").rename_axis("experiment")


def _rows(rec: dict, experiment: str) -> list[dict]:
    s = rec["spec"]
    base = {"run_id": rec["run_id"], "experiment": experiment, "mode": s["mode"], "dataset": s["dataset"],
            "protocol": s["protocol"], "model": s["model"], "method": s["method"],
            "lam": np.nan if s["lam"] is None else float(s["lam"]),
            "train_ratio": np.nan if s["train_ratio"] is None else float(s["train_ratio"]),
            # the epochs that ran: the config the engine returns (``min_steps`` may raise the spec's)
            "seed": s["seed"], "fold": s["fold"], "split_seed": s["split_seed"],
            # the held-out subject group of a cross-validated subject-protocol run (NaN otherwise)
            "test_fold": (s["data_options"] or {}).get("test_fold", np.nan), "epochs": (rec.get("config") or s["train"]).get("epochs"),
            "batch_size": s["train"].get("batch_size"), "ema_decay": s["train"].get("ema_decay"),
            "best_epoch": rec["best_epoch"]}
    data = rec["data"]
    for k in ("n_fit", "n_val", "n_test"):
        base[k] = data.get(k)
    base.update(_compute_columns(rec["compute"]))
    base["history"] = rec["history"]
    out = []
    for e in rec["evaluation"]:
        row = {**base, "split": e["split"], "who": e["who"], "task": int(e["task"])}
        for k, v in e["metrics"].items():
            row[k] = np.nan if v is None else v
        row["class_names"] = data.get("activity_names" if row["task"] == 1 else "placement_names")
        row["per_class"] = e.get("per_class")
        row["confusion"] = e.get("confusion")
        out.append(row)
    return out


def _compute_columns(compute: dict) -> dict:
    """Each compute figure ``{"value", "unit", "how"}`` -> columns ``<name>``, ``<name>_unit``,
    ``<name>_how``; nested groups (e.g. ``{"stage_seconds": {...}}``) become ``<group>_<name>``."""
    out: dict = {}

    def walk(prefix: str, d):
        if isinstance(d, dict) and "value" in d:
            out[prefix] = np.nan if d["value"] is None else d["value"]
            for extra in ("unit", "how"):
                if extra in d:
                    out[f"{prefix}_{extra}"] = d[extra]
        elif isinstance(d, dict):
            for k, v in d.items():
                walk(f"{prefix}_{k}" if prefix else k, v)
        elif isinstance(d, int | float | str) or d is None:
            out[prefix] = np.nan if d is None else d

    walk("", compute)
    return out


def _check_cells(df: pd.DataFrame, folder: Path) -> None:
    cell = ["dataset", "protocol", "model", "method", "lam", "train_ratio", "seed", "fold", "split_seed", "test_fold"]
    ids = df.drop_duplicates("run_id").groupby(cell, dropna=False)["run_id"].agg(list)
    clash = ids[ids.map(len) > 1]
    if len(clash):
        where = ", ".join(f"{k}={v}" for k, v in zip(cell, clash.index[0]))
        raise ValueError(
            f"{folder}: {len(clash)} grid cell(s) hold records with different settings, e.g. run_ids "
            f"{clash.iloc[0]} at {where}: rerun the experiment's config (the runner moves stale records "
            f"aside) or remove the old records"
        )


def _joined(values) -> str:
    return ", ".join(map(str, sorted(set(values), key=lambda v: (str(type(v)), v))))


def records_summary(records_or_df: Records | pd.DataFrame, provenance: pd.DataFrame | None = None) -> pd.Series:
    """One column describing a set of records: the grid's sizes, and where, when and from which
    library commit it ran.

    Rows: mode, runs, datasets, protocols, models, methods, epochs, EMA decay, seeds, folds and, with
    provenance, device, torch, library commit, grid started (UTC, when the records say) and finished
    (UTC, first .. last run). The commit is the one captured when the grid started
    (``provenance["grid"]``), else each record's own; "+ local changes" marks a dirty checkout.
    """
    if isinstance(records_or_df, Records):
        df, provenance = records_or_df.df, records_or_df.provenance if provenance is None else provenance
    else:
        df = records_or_df
    runs = df.drop_duplicates("run_id")
    out = {"mode": _joined(runs["mode"]), "runs": len(runs)}
    for col, label in (("dataset", "datasets"), ("protocol", "protocols"), ("model", "models"),
                       ("method", "methods"), ("epochs", "epochs"), ("ema_decay", "EMA decay"),
                       ("seed", "seeds"), ("fold", "folds")):
        if col == "method" and col in runs:  # the paper's order, not the alphabet's
            out[label] = ", ".join(paper_order(runs[col].astype(str)))
        elif col in runs:
            out[label] = _joined(runs[col].dropna())
    if provenance is not None:
        p = provenance.reindex(runs["run_id"])
        for col, label in (("device", "device"), ("torch", "torch")):
            if col in p:
                out[label] = _joined(p[col].dropna().astype(str))
        grid = p["grid"] if "grid" in p else pd.Series(None, index=p.index, dtype=object)
        commits, started = set(), set()
        for g, commit, dirty in zip(grid, p.get("commit", [None] * len(p)), p.get("dirty", [None] * len(p))):
            if isinstance(g, dict):  # captured once when run_experiment started: one commit per grid
                commit, dirty = g.get("commit"), g.get("dirty")
                if g.get("started"):
                    started.add(str(g["started"])[:16])
            commits.add(f"{commit}{' + local changes' if dirty is True else ''}")
        out["library commit"] = ", ".join(sorted(commits))
        if started:
            out["grid started (UTC)"] = ", ".join(sorted(started))
        if "finished" in p and p["finished"].notna().any():
            w = p["finished"].dropna().astype(str)
            out["finished (UTC)"] = f"{w.min()[:16]} .. {w.max()[:16]}"
    return pd.Series(out, dtype=object)
