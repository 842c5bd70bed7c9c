"""Tables 5-8 (and the lambda / training-ratio ablations) from run records only.

:func:`load_records` reads ``results/<experiment>/runs/*.json`` (written by :mod:`runner`) into one
tidy DataFrame: one row per run x split (val/test) x who (student/teacher) x task (1/2), with the
run's settings, its scalar metrics (percent, from :mod:`metrics`) and compute figures as columns,
and the per-class table, confusion matrix and training history as object columns.

The table functions return *numeric* DataFrames (pandas API for the chapters, e.g.
``table5(df).loc[("wisdm", "smooth_distill"), (1, "test", "accuracy", "mean")]``);
:func:`format_table` turns "mean/sd/n" columns into ``"68.59 ± 0.41"`` strings for display and
:func:`to_markdown` prints them. ``python -m smoothdistill_lib report EXPERIMENT`` does both and
writes one CSV per table.

The result chapters' analyses live here too, so that a chapter only calls them:
:func:`load_experiment` (frame, provenance and raw records in one :class:`Records`),
:func:`records_summary`, :func:`pick`, :func:`comparable`, :func:`gains` (paired differences with the
t-test and Nadeau-Bengio p-values), :func:`confusion_sums`, :func:`teacher_vs_student`,
:func:`leakage_table`, :func:`ema_scale` / :func:`ema_scale_table`, :func:`histories` and
:func:`teacher_lag`.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from smoothdistill_lib.config import MODES, results_dir
from smoothdistill_lib.ema import run_scale
from smoothdistill_lib.runner import LAM_METHODS, METHODS, scan_records

#: one row = one run x split x who x task; these identify the run's grid cell
RUN_COLUMNS = ["run_id", "experiment", "mode", "dataset", "protocol", "model", "method", "lam",
               "train_ratio", "seed", "fold"]
SCALARS = ("accuracy", "macro_f1", "weighted_f1", "balanced_accuracy")
SPLITS = ("val", "test")
PER_CLASS = ("accuracy", "sensitivity", "ppv", "npv")
# settings that, when they vary within a (dataset, method), become extra index levels of a table
_VARYING = ("protocol", "model", "lam", "train_ratio")


# ----------------------------------------------------------------------------- loading
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

    ``mode``: keep the records of that run mode; default: the largest mode present (full > demo >
    quick), with a warning naming the others. Invalid record files are skipped with a warning (the
    runner moves them aside and reruns them). Raises if two records fill the same grid cell with
    different settings: the tables would silently mix them.
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
    df["method"] = pd.Categorical(df["method"], _method_order(df["method"]))
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


def experiments(results_root: str | os.PathLike | None = None) -> pd.Series:
    """Number of record files per experiment folder under the results folder (index: name, sorted)."""
    root = Path(results_root) if results_root is not None else results_dir()
    found = {d.name: len(list((d / "runs").glob("*.json")))
             for d in sorted(root.glob("*")) if (d / "runs").is_dir()} if root.is_dir() else {}
    return pd.Series(found, dtype=int, name="records").rename_axis("experiment")


def _method_order(methods) -> list[str]:
    present = set(methods)
    return [m for m in METHODS if m in present] + sorted(present - set(METHODS))


def _rows(rec: dict, experiment: str) -> list[dict]:
    s = rec["spec"]
    base = {"run_id": rec["run_id"], "experiment": experiment, "mode": s["mode"], "dataset": s["dataset"],
            "protocol": s["protocol"], "model": s["model"], "method": s["method"],
            "lam": np.nan if s["lam"] is None else float(s["lam"]),
            "train_ratio": np.nan if s["train_ratio"] is None else float(s["train_ratio"]),
            "seed": s["seed"], "fold": s["fold"], "epochs": s["train"].get("epochs"),
            "batch_size": s["train"].get("batch_size"), "ema_decay": s["train"].get("ema_decay"),
            "best_epoch": rec["best_epoch"]}
    data = rec.get("data") or {}
    for k in ("n_fit", "n_val", "n_test"):
        base[k] = data.get(k)
    base.update(_compute_columns(rec.get("compute") or {}))
    base["history"] = rec["history"]
    out = []
    for e in rec["evaluation"]:
        row = {**base, "split": e["split"], "who": e["who"], "task": int(e["task"])}
        for k, v in e["metrics"].items():
            row[k] = np.nan if v is None else v
        names = data.get("activity_names" if row["task"] == 1 else "placement_names")
        row["class_names"] = names
        row["per_class"] = e.get("per_class")
        row["confusion"] = e.get("confusion")
        out.append(row)
    return out


def _compute_columns(compute: dict) -> dict:
    """Each compute figure ``{"value", "unit", "how"}`` -> columns ``<name>``, ``<name>_unit``,
    ``<name>_how``; nested groups (e.g. ``{"training": {...}}``) become ``<group>_<name>``."""
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
    cell = ["dataset", "protocol", "model", "method", "lam", "train_ratio", "seed", "fold"]
    ids = df.drop_duplicates("run_id").groupby(cell, dropna=False)["run_id"].agg(list)
    clash = ids[ids.map(len) > 1]
    if len(clash):
        where = ", ".join(f"{k}={v}" for k, v in zip(cell, clash.index[0]))
        raise ValueError(
            f"{folder}: {len(clash)} grid cell(s) hold records with different settings, e.g. run_ids "
            f"{clash.iloc[0]} at {where}: rerun the experiment's config (the runner moves stale records "
            f"aside) or remove the old records"
        )


# ----------------------------------------------------------------------------- summaries
def _keys(df: pd.DataFrame, base: list[str]) -> list[str]:
    """``base`` plus the settings that take several values within one ``base`` group."""
    extra = []
    for c in _VARYING:
        if c in base or c not in df:
            continue
        if df.groupby(base, observed=True, dropna=False)[c].nunique(dropna=False).max() > 1:
            extra.append(c)
    i = base.index("method") if "method" in base else len(base)
    return base[:i] + extra + base[i:]


def summarize(df: pd.DataFrame, by: list[str], columns: list[str], values=("accuracy", "macro_f1")) -> pd.DataFrame:
    """Mean, sd (ddof=1) and n of ``values`` over the runs of each ``by`` group (NaNs skipped).

    Rows: ``by``; columns: MultiIndex ``(*columns, metric, stat)`` with stat in mean/sd/n.
    """
    if df.empty:
        raise ValueError("no rows to summarise (check the filters: dataset, who, split ...)")
    long = df.melt(id_vars=[*by, *columns], value_vars=list(values), var_name="metric")
    # categoricals keep the display order (val before test, metrics as asked) through the sorting
    long["metric"] = pd.Categorical(long["metric"], list(values))
    if "split" in columns:
        long["split"] = pd.Categorical(long["split"], _ordered(long["split"], SPLITS))
    g = long.groupby([*by, *columns, "metric"], observed=True, dropna=False)["value"]
    stats = pd.concat({"mean": g.mean(), "sd": g.std(ddof=1), "n": g.count()}, axis=1)
    stats.columns = pd.CategoricalIndex(stats.columns, ["mean", "sd", "n"], name="stat")
    wide = stats.unstack([*columns, "metric"])
    wide = wide.reorder_levels([*columns, "metric", "stat"], axis=1).sort_index(axis=1)
    return wide


def _ordered(values, first) -> list:
    present = list(dict.fromkeys(values))
    return [v for v in first if v in present] + [v for v in present if v not in first]


def _only(df: pd.DataFrame, **eq) -> pd.DataFrame:
    for k, v in eq.items():
        if v is None:
            continue
        if v not in set(df[k]):
            raise ValueError(f"no records with {k}={v!r}; present: {sorted(map(str, set(df[k])))}")
        df = df[df[k] == v]
    return df


def _one_setting(df: pd.DataFrame, **eq) -> pd.DataFrame:
    """Rows matching ``eq`` (None = any), outside the ratio ablation, with one setting per method."""
    d = _only(df, **eq)
    d = d[d["train_ratio"].isna()]
    keys = _keys(d, ["dataset", "method"])
    varying = [k for k in keys if k not in ("dataset", "method")]
    if varying:
        values = {k: sorted(map(str, d[k].unique())) for k in varying}
        raise ValueError(f"the records vary in {values}: pick one (e.g. protocol=..., model=...)")
    return d


def table5(df: pd.DataFrame, who: str = "student", values=("accuracy", "macro_f1")) -> pd.DataFrame:
    """Table 5: accuracy and macro-F1 (percent) on val and test, both tasks, per dataset x method,
    mean/sd/n over seeds x folds. Runs of the ratio ablation are left out. Columns
    ``(task, split, metric, stat)``; settings varying within a method (protocol, model, lambda)
    become extra index levels."""
    d = _only(df, who=who)
    d = d[d["train_ratio"].isna()]
    return summarize(d, _keys(d, ["dataset", "method"]), ["task", "split"], values)


def table6(df: pd.DataFrame, dataset: str, task: int = 1, split: str = "test", who: str = "student",
           protocol: str | None = None, model: str | None = None) -> pd.DataFrame:
    """Table 6: per-class one-vs-rest Accuracy, Sensitivity, PPV, NPV (percent, mean over runs,
    undefined rates skipped) of ``task`` on ``dataset``. Rows: classes in label order; columns
    ``(method, metric)``. ``protocol``/``model`` pick one setting when the records hold several."""
    d = _one_setting(df, dataset=dataset, task=task, split=split, who=who, protocol=protocol, model=model)
    rows = []
    for r in d.itertuples(index=False):
        for pc in r.per_class or []:
            rows.append({"method": str(r.method), "class": str(pc["class"]),
                         **{m: np.nan if pc.get(m) is None else float(pc[m]) for m in PER_CLASS}})
    if not rows:
        raise ValueError(f"no per-class results for {dataset} task {task} {split}/{who}")
    long = pd.DataFrame(rows)
    names = next((n for n in d["class_names"] if n), None) or list(dict.fromkeys(long["class"]))
    t = long.groupby(["class", "method"], observed=True)[list(PER_CLASS)].mean().unstack("method")
    t = t.swaplevel(axis=1)
    methods = _ordered(long["method"], list(d["method"].cat.categories))
    t = t.reindex(columns=pd.MultiIndex.from_product([methods, list(PER_CLASS)], names=["method", "metric"]))
    return t.reindex([str(n) for n in names])


TIMES = ("total", "median_epoch")


def table7(df: pd.DataFrame, baseline: str = "singletask", time: str = "total") -> pd.DataFrame:
    """Table 7: inference params, size (MB), FLOPs per window, training seconds per run (mean),
    training-time ratio vs ``baseline`` (same dataset and settings), peak memory and energy per run
    (mean), with how each figure was obtained (``*_how`` columns).

    ``time`` chooses the training time behind ``time_ratio``: ``"total"``, the mean of the runs'
    measured training times (``train_seconds``); ``"median_epoch"``, a column
    ``train_seconds_median_epoch`` = the median epoch time of the cell's runs x the epochs of a run
    (per training stage, e.g. Born-Again's two), robust to epochs slowed by other work on a shared
    machine. ``time_ratio_how`` says which.
    """
    if time not in TIMES:
        raise ValueError(f"time must be one of {TIMES}, got {time!r}")
    runs = df[df["train_ratio"].isna()].drop_duplicates("run_id")
    keys = _keys(runs, ["dataset", "method"])
    figures = [c for c in runs.columns if c not in RUN_COLUMNS and f"{c}_how" in runs.columns
               and pd.api.types.is_numeric_dtype(runs[c])]
    if not figures:
        raise ValueError("the records hold no compute figures")
    g = runs.groupby(keys, observed=True, dropna=False)
    t = g[figures].mean()
    t.insert(0, "n", g.size())
    time_col = next((c for c in ("train_seconds", "training_seconds", "train_time") if c in t), None)
    if time == "median_epoch":
        median, how = _median_epoch_seconds(runs, keys)
        at = t.columns.get_loc(time_col) + 1 if time_col is not None else len(t.columns)
        t.insert(at, "train_seconds_median_epoch", median.reindex(t.index))
        time_col, t["train_seconds_median_epoch_unit"], t["train_seconds_median_epoch_how"] = \
            "train_seconds_median_epoch", "s", how
    if time_col is not None and baseline in set(runs["method"]):
        base = t.xs(baseline, level="method")[time_col]
        others = t.index.droplevel("method")
        t.insert(t.columns.get_loc(time_col) + 1, "time_ratio", t[time_col].to_numpy() / base.reindex(others).to_numpy())
        t["time_ratio_unit"] = f"multiple of {baseline}'s"
        t["time_ratio_how"] = f"{time_col} / {baseline}'s {time_col} (same dataset and settings)"
    for c in figures:
        for extra in ("unit", "how"):
            col = f"{c}_{extra}"
            if col in runs:
                t[col] = g[col].agg(lambda s: " | ".join(dict.fromkeys(map(str, s.dropna()))))
    return t


def _median_epoch_seconds(runs: pd.DataFrame, keys: list[str]) -> tuple[pd.Series, str]:
    """Per ``keys`` group: sum over training stages of (median epoch seconds over all epochs of the
    group's runs) x (median number of epochs of that stage per run); and how it was obtained.

    Epoch times come from each record's history (``epoch_seconds``); a history without them falls back
    to the stage's measured time spread evenly over its epochs (``stage_seconds``)."""
    rows, fallback = [], False
    for r in runs.itertuples(index=False):
        hist = pd.DataFrame(r.history or [])
        if hist.empty:
            continue
        stage = hist["stage"] if "stage" in hist else pd.Series(1, index=hist.index)
        sec = hist["epoch_seconds"] if "epoch_seconds" in hist else pd.Series(np.nan, index=hist.index)
        if sec.isna().any():  # older records: the stage's total time, evenly over its epochs
            fallback = True
            even = {k: getattr(r, f"stage_seconds_stage{k}", np.nan) / (stage == k).sum() for k in stage.unique()}
            sec = sec.fillna(stage.map(even))
        for k, v in zip(stage, sec):
            rows.append({**{c: getattr(r, c) for c in keys}, "run_id": r.run_id, "stage": k, "seconds": v})
    if not rows:
        raise ValueError("the records hold no training history to time epochs from")
    d = pd.DataFrame(rows)
    d["method"] = d["method"].astype(str)
    per_stage = d.groupby([*keys, "stage"], dropna=False)
    epochs = d.groupby([*keys, "stage", "run_id"], dropna=False).size().groupby([*keys, "stage"], dropna=False).median()
    median = (per_stage["seconds"].median(skipna=False) * epochs).groupby(keys, dropna=False).sum(min_count=1)
    how = ("median epoch time over the cell's runs (history epoch_seconds) x epochs per run, summed over "
           "training stages")
    if fallback:
        how += "; records without per-epoch times: stage_seconds / epochs of the stage"
    return median, how


def table8(df: pd.DataFrame, dataset: str, task: int = 1, test: str = "ttest", metric: str = "accuracy",
           split: str = "test", who: str = "student", adjust: str | None = None, protocol: str | None = None,
           model: str | None = None) -> pd.DataFrame:
    """Table 8: methods x methods p-values of ``metric`` paired on (seed, fold), via
    :func:`stats.pvalue_matrix` (``test="ttest"`` reproduces the paper's assumption; the book
    recommends ``test="corrected", adjust="holm"``)."""
    from smoothdistill_lib import stats

    d = _one_setting(df, dataset=dataset, task=task, split=split, who=who, protocol=protocol, model=model)
    tidy = d[["method", "seed", "fold", metric]].assign(method=d["method"].astype(str))
    # the corrected test's training/evaluation sizes (equal across the cells of one split up to rounding)
    n_eval = d["n_test" if split == "test" else "n_val"]
    n_train = int(d["n_fit"].mean()) if d["n_fit"].notna().any() else None
    n_test = int(n_eval.mean()) if n_eval.notna().any() else None
    return stats.pvalue_matrix(tidy, "method", metric, ("seed", "fold"), test=test, adjust=adjust,
                               n_train=n_train, n_test=n_test)


def lambda_table(df: pd.DataFrame, method: str = "smooth_distill", who: str = "student",
                 values=("accuracy", "macro_f1")) -> pd.DataFrame:
    """The lambda sweep (Fig. 4): rows (dataset, lambda), columns (task, split, metric, stat).
    lambda = 0 trains without distillation; its *teacher* (``who="teacher"``) is "EMA weights only"."""
    d = _only(df, method=method, who=who)
    d = d[d["train_ratio"].isna()]
    return summarize(d, _keys(d, ["dataset", "lam"]), ["task", "split"], values)


def ratio_table(df: pd.DataFrame, split: str = "test", who: str = "student",
                values=("accuracy", "macro_f1")) -> pd.DataFrame:
    """The training-ratio ablation (Figs. 5-7): rows (dataset, model, train_ratio), columns
    (task, metric, stat) on ``split``."""
    d = _only(df, split=split, who=who)
    d = d[d["train_ratio"].notna()]
    if d.empty:
        raise ValueError("no training-ratio runs in these records")
    return summarize(d, _keys(d, ["dataset", "model", "train_ratio"]), ["task"], values)


# ----------------------------------------------------------------------------- the chapters' analyses
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
            out[label] = ", ".join(_ordered(runs[col].astype(str), list(METHODS)))
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
        when = p["finished"] if "finished" in p else p.get("timestamp")
        if when is not None and when.notna().any():
            w = when.dropna().astype(str)
            out["finished (UTC)"] = f"{w.min()[:16]} .. {w.max()[:16]}"
    return pd.Series(out, dtype=object)


def pick(t: pd.DataFrame, stat: str = "mean", **levels) -> pd.Series | pd.DataFrame:
    """The ``stat`` columns of a :func:`summarize` table at the given column levels, e.g.
    ``pick(table5(df), task=1, split="test", metric="accuracy")``: mean test accuracy of task 1 per
    row. A Series when one column is left, else a DataFrame."""
    levels = {**levels, "stat": stat}
    missing = [k for k in levels if k not in t.columns.names]
    if missing:
        raise ValueError(f"the table has no column level(s) {missing}; levels: {list(t.columns.names)}")
    out = t.xs(tuple(levels.values()), axis=1, level=list(levels))
    return out.iloc[:, 0].rename(None) if out.shape[1] == 1 else out


def comparable(df: pd.DataFrame, dataset: str, min_runs: int = 2) -> pd.DataFrame | None:
    """The rows of ``dataset`` whose method has at least ``min_runs`` runs (a paired test needs two
    pairs), or None when fewer than two methods qualify."""
    d = df[df["dataset"] == dataset]
    runs = d.groupby("method", observed=True)["run_id"].nunique()
    keep = [m for m, n in runs.items() if n >= min_runs]
    return d[d["method"].isin(keep)] if len(keep) >= 2 else None


def _sizes(d: pd.DataFrame, split: str) -> tuple[int | None, int | None]:
    """(n_train, n_test) behind each result, for the corrected test (equal across cells up to rounding)."""
    n_eval = d["n_test" if split == "test" else "n_val"]
    n_train = int(d["n_fit"].mean()) if d["n_fit"].notna().any() else None
    return n_train, (int(n_eval.mean()) if n_eval.notna().any() else None)


GAIN_COLUMNS = ["n", "gain", "p (paired t-test)", "p (Nadeau-Bengio)"]


def gains(df: pd.DataFrame, protocol: str, task: int, baseline: str = "multitask", metric: str = "accuracy",
          split: str = "test", min_runs: int = 2) -> pd.DataFrame:
    """Each method's paired difference to ``baseline`` (``metric`` of the students on ``split``,
    points), per dataset, over the (seed, fold) cells both have.

    Rows ``(dataset, method)``; columns ``n`` (pairs), ``gain`` (mean of method - baseline), and the
    two-sided p-values of the paired t-test and of the Nadeau-Bengio corrected test
    (:func:`stats.paired_test`). Datasets without ``baseline`` or with fewer than two comparable
    methods (:func:`comparable`) are left out; the frame is empty when none is left.
    """
    from smoothdistill_lib import stats

    rows = []
    d = _only(df, protocol=protocol, task=task, split=split, who="student")
    for ds in sorted(d["dataset"].unique()):
        g = comparable(_one_setting(d, dataset=ds), ds, min_runs)
        if g is None or baseline not in set(g["method"]):
            continue
        wide = g.assign(method=g["method"].astype(str)).pivot(index=["seed", "fold"], columns="method", values=metric)
        n_train, n_test = _sizes(g, split)
        for m in _ordered(wide.columns, list(METHODS)):
            if m == baseline:
                continue
            both = wide[[m, baseline]].dropna()
            if len(both) < 2:
                continue
            t = stats.paired_test(both[m], both[baseline], "ttest")
            c = stats.paired_test(both[m], both[baseline], "corrected", n_train=n_train, n_test=n_test)
            rows.append({"dataset": ds, "method": m, "n": t["n"], "gain": t["mean_diff"],
                         "p (paired t-test)": t["pvalue"], "p (Nadeau-Bengio)": c["pvalue"]})
    return pd.DataFrame(rows, columns=["dataset", "method", *GAIN_COLUMNS]).set_index(["dataset", "method"])


def confusion_sums(df: pd.DataFrame, dataset: str, protocol: str | None = None, task: int = 1,
                   split: str = "test", who: str = "student", model: str | None = None) -> dict[str, np.ndarray]:
    """Confusion matrices (C, C) summed over the runs of each method (methods in table order; rows
    true, columns predicted). ``protocol``/``model`` must leave one setting per method."""
    d = _one_setting(df, dataset=dataset, protocol=protocol, task=task, split=split, who=who, model=model)
    out = {}
    for m, g in d.groupby("method", observed=True):
        mats = [np.asarray(c, dtype=np.int64) for c in g["confusion"] if c is not None]
        if mats:
            out[str(m)] = np.sum(mats, axis=0)
    return out


def teacher_vs_student(df: pd.DataFrame, method: str = "smooth_distill", split: str = "test",
                       metric: str = "accuracy") -> pd.DataFrame | None:
    """Mean ``metric`` of the student and of its EMA teacher over the runs of ``method``.

    Rows ``(dataset, protocol, task)``; columns ``student``, ``teacher``, ``student - teacher``,
    ``runs``. None when no record of ``method`` tested a teacher."""
    d = df[(df["method"] == method) & (df["split"] == split) & df["train_ratio"].isna()]
    if not (d["who"] == "teacher").any():
        return None
    keys = ["dataset", "protocol", "task"]
    t = d.pivot_table(index=keys, columns="who", values=metric, aggfunc="mean", observed=True)
    t = t[["student", "teacher"]].rename_axis(columns=None)
    t["student - teacher"] = t["student"] - t["teacher"]
    t["runs"] = d[d["who"] == "teacher"].groupby(keys)["run_id"].nunique()
    return t


def _raw(records) -> dict[str, dict]:
    return records.records if isinstance(records, Records) else dict(records)


def leakage_table(records: Records | dict[str, dict]) -> pd.DataFrame:
    """The leakage meter of each (dataset, protocol)'s split (percent of test windows) beside the
    pipeline options that differ between protocols, from the records' ``data`` section (mean over
    runs: the runs of one cell share their split)."""
    rows = []
    for rec in _raw(records).values():
        opts, leak = rec["data"].get("options") or {}, rec["data"].get("leakage") or {}
        rows.append({"dataset": rec["spec"]["dataset"], "protocol": rec["spec"]["protocol"],
                     "test windows with any leak (%)": 100 * leak.get("any_fraction", np.nan),
                     "sharing samples (%)": 100 * leak.get("shared_samples_fraction", np.nan),
                     "subject seen in training (%)": 100 * leak.get("subject_in_train_fraction", np.nan),
                     "windows cut from": {"paper": "one stream", "session": "each recording"}.get(
                         opts.get("stream"), opts.get("stream")),
                     "label rule": opts.get("label_rule"), "normalisation": opts.get("normalise")})
    if not rows:
        raise ValueError("no records to read the leakage meter from")
    d = pd.DataFrame(rows)
    text = ["windows cut from", "label rule", "normalisation"]
    g = d.groupby(["dataset", "protocol"], dropna=False)
    return pd.concat([g[[c for c in d.columns if "(%)" in c]].mean(), g[text].first()], axis=1)


# one row of ema_scale_table: the EMA's horizon against a run's length (defined with the EMA)
ema_scale = run_scale


def ema_scale_table(records: Records | dict[str, dict], method: str = "smooth_distill") -> pd.DataFrame:
    """:func:`ema_scale` of the runs of ``method``: per (dataset, protocol) and EMA decay, the first
    run's fit windows, batch size and trained epochs (the length of its history). Index
    ``(dataset, protocol)``; a cell trained with several decays has one row per decay."""
    rows = {}
    for rec in _raw(records).values():
        s = rec["spec"]
        if s["method"] != method or s.get("train_ratio") is not None:
            continue
        key = (s["dataset"], s["protocol"], s["train"]["ema_decay"])
        rows.setdefault(key, ema_scale(rec["data"]["n_fit"], s["train"]["batch_size"], len(rec["history"]),
                                       s["train"]["ema_decay"]))
    t = pd.DataFrame.from_dict(rows, orient="index").sort_index()
    if len(t):
        t.index = t.index.droplevel(2).set_names(["dataset", "protocol"])
    return t


def histories(records: Records | dict[str, dict], method: str = "smooth_distill",
              protocol: str | None = "paper") -> dict[str, list[pd.DataFrame]]:
    """The training histories (one DataFrame per run, one row per epoch) of ``method`` per dataset,
    runs of the training-ratio ablation left out; the input of :func:`plots.plot_history`."""
    out: dict[str, list[pd.DataFrame]] = {}
    for rid in sorted(_raw(records)):
        rec = _raw(records)[rid]
        s = rec["spec"]
        if s["method"] == method and (protocol is None or s["protocol"] == protocol) and s.get("train_ratio") is None:
            out.setdefault(s["dataset"], []).append(pd.DataFrame(rec["history"]))
    return dict(sorted(out.items()))


def teacher_lag(records: Records | dict[str, dict], method: str = "smooth_distill", protocol: str | None = "paper",
                task: int = 1) -> pd.DataFrame:
    """Epoch by epoch, the student's and the EMA teacher's validation accuracy and loss of ``task``
    (mean over runs) beside the optimizer steps so far and the weight ``decay^steps`` the teacher
    still gives to the initial network.

    Rows ``(dataset, epoch)``; columns ``runs``, ``steps``, ``initial net's weight in the teacher``,
    ``student val acc``, ``teacher val acc``, ``student val loss``, ``teacher val loss``.
    """
    rows = []
    for rec in _raw(records).values():
        s = rec["spec"]
        if s["method"] != method or (protocol is not None and s["protocol"] != protocol) \
                or s.get("train_ratio") is not None:
            continue
        steps = math.ceil(rec["data"]["n_fit"] / s["train"]["batch_size"])
        for h in rec["history"]:
            if f"teacher_val_acc_task{task}" not in h:
                raise ValueError(f"run {rec['run_id']}: its history has no teacher columns (eval_teacher off?)")
            rows.append({"dataset": s["dataset"], "epoch": h["epoch"], "run_id": rec["run_id"],
                         "steps": h["epoch"] * steps,
                         "initial net's weight in the teacher": s["train"]["ema_decay"] ** (h["epoch"] * steps),
                         "student val acc": h[f"val_acc_task{task}"],
                         "teacher val acc": h[f"teacher_val_acc_task{task}"],
                         "student val loss": h.get(f"val_loss_task{task}"),
                         "teacher val loss": h.get(f"teacher_val_loss_task{task}")})
    if not rows:
        raise ValueError(f"no {method} records" + (f" under the {protocol} protocol" if protocol else ""))
    d = pd.DataFrame(rows)
    g = d.groupby(["dataset", "epoch"])
    return pd.concat([g["run_id"].nunique().rename("runs"), g[[c for c in d.columns if c not in
                     ("dataset", "epoch", "run_id")]].mean()], axis=1)


# ----------------------------------------------------------------------------- display
def format_table(t: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """Strings for display: ``(..., metric, stat)`` columns become ``"mean ± sd"``; an ``n`` column
    is added when n is the same across a row, else ``"mean ± sd (n)"``. Other tables are rounded."""
    if not (isinstance(t.columns, pd.MultiIndex) and t.columns.names[-1] == "stat"):
        out = t.copy()
        for c in out.columns:
            if pd.api.types.is_numeric_dtype(out[c]):
                out[c] = out[c].map(lambda v: _num(v, digits)).astype(object)
        return out
    mean = t.xs("mean", axis=1, level="stat")
    sd = t.xs("sd", axis=1, level="stat")
    n = t.xs("n", axis=1, level="stat")
    same_n = (n.nunique(axis=1, dropna=True) <= 1).all()
    out = pd.DataFrame(index=t.index, columns=mean.columns, dtype=object)
    for c in mean.columns:
        for i in range(len(t)):
            m, s, k = mean[c].iloc[i], sd[c].iloc[i], n[c].iloc[i]
            if math.isnan(m):  # no run in this cell (e.g. no teacher)
                txt = "–"
            else:
                txt = f"{m:.{digits}f}" + ("" if math.isnan(s) else f" ± {s:.{digits}f}")
                txt = txt if same_n else f"{txt} ({int(k)})"
            out.iloc[i, out.columns.get_loc(c)] = txt
    if same_n:
        levels = out.columns.nlevels
        out["n" if levels == 1 else ("n",) + ("",) * (levels - 1)] = n.max(axis=1).astype(int)
    return out


def _num(v, digits: int) -> str:
    """``digits`` decimals; integers without; tiny values (p-values, kWh) with 3 significant digits."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if float(v).is_integer():
        return f"{int(v)}"
    if abs(v) < 10.0**-digits:
        return f"{v:.3g}"
    return f"{v:.{digits}f}"


def to_markdown(t: pd.DataFrame, digits: int = 2) -> str:
    """A markdown table of :func:`format_table` ``(t)``, MultiIndex levels joined with spaces."""
    f = format_table(t, digits)
    f.columns = _labels(f.columns)
    f = f.reset_index() if isinstance(f.index, pd.MultiIndex) or f.index.name else f.reset_index(names="")
    try:
        return f.to_markdown(index=False, disable_numparse=True)  # keep format_table's strings
    except ImportError:  # pandas needs `tabulate` for to_markdown; a plain pipe table is 4 lines
        cells = [[str(c) for c in f.columns]] + [[str(v) for v in row] for row in f.itertuples(index=False)]
        lines = ["| " + " | ".join(r) + " |" for r in cells]
        lines.insert(1, "|" + "|".join("---" for _ in f.columns) + "|")
        return "\n".join(lines)


def _labels(columns: pd.Index, sep: str = " ") -> list[str]:
    """Column MultiIndex -> flat names joined by ``sep``; task ids read ``task1``, ``task2``."""
    if not isinstance(columns, pd.MultiIndex):
        return [str(c) for c in columns]
    names = list(columns.names)
    return [sep.join(f"task{x}" if name == "task" and isinstance(x, int | np.integer) else str(x)
                     for name, x in zip(names, c) if str(x) != "") for c in columns]


def flat(t: pd.DataFrame) -> pd.DataFrame:
    """``t`` with its column MultiIndex joined by ``_`` (for CSV files), e.g. ``task1_test_accuracy_mean``."""
    f = t.copy()
    f.columns = _labels(f.columns, "_")
    return f


def all_tables(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Every table the records support, by name (``table5``, ``table6_<dataset>``, ...; a
    ``_<protocol>`` / ``_<model>`` suffix when the records hold several)."""
    out: dict[str, pd.DataFrame] = {}
    cv = df[df["train_ratio"].isna()]
    if len(cv):
        out["table5"] = table5(df)
        with contextlib.suppress(ValueError):  # records without compute figures
            out["table7"] = table7(df)
        settings = cv[["dataset", "protocol", "model"]].drop_duplicates().itertuples(index=False)
        several = {k: cv[k].nunique() > 1 for k in ("protocol", "model")}
        for ds, protocol, model in settings:
            sub = cv[(cv["dataset"] == ds) & (cv["protocol"] == protocol) & (cv["model"] == model)]
            tag = ds + (f"_{protocol}" if several["protocol"] else "") + (f"_{model}" if several["model"] else "")
            sel = {"protocol": protocol, "model": model}
            try:
                out[f"table6_{tag}"] = table6(sub, ds, **sel)
                runs = sub[sub["who"] == "student"].groupby("method", observed=True)["run_id"].nunique()
                if (runs > 0).sum() >= 2 and runs[runs > 0].min() >= 2:  # a paired test needs >= 2 cells
                    for task in (1, 2):
                        out[f"table8_{tag}_task{task}"] = table8(sub, ds, task, **sel)
            except ValueError as e:  # e.g. several lambdas of one method: no single Table 6/8
                print(f"tables 6/8 for {tag}: {e}", file=sys.stderr)
        lam = cv[cv["method"].isin(LAM_METHODS)]
        if lam["lam"].nunique(dropna=False) > 1:
            out["lambda"] = lambda_table(df)
    if df["train_ratio"].notna().any():
        out["ratio"] = ratio_table(df)
    return out


def cli_report(args) -> int:
    """``python -m smoothdistill_lib report EXPERIMENT [--out DIR]``: markdown to stdout, CSVs to DIR."""
    folder = experiment_folder(args.experiment)
    df = load_records(folder)
    out = Path(args.out) if args.out else folder
    out.mkdir(parents=True, exist_ok=True)
    n_runs = df["run_id"].nunique()
    print(f"# {folder.name} ({df['mode'].iloc[0]} mode, {n_runs} runs)\n")
    for name, t in all_tables(df).items():
        flat(t).to_csv(out / f"{name}.csv")
        notes = [c for c in t.columns if isinstance(c, str) and c.endswith(("_how", "_unit"))]
        print(f"## {name}\n\n{to_markdown(t.drop(columns=notes))}\n")
        for c in notes:  # Table 7's units and how each figure was measured, as footnotes
            if c.endswith("_how"):
                fig = c[: -len("_how")]
                unit = t[f"{fig}_unit"].iloc[0] if f"{fig}_unit" in t else ""
                print(f"- {fig} [{unit}]: {' | '.join(dict.fromkeys(t[c].astype(str)))}")
        print()
    print(f"CSV files: {out}", file=sys.stderr)
    return 0
