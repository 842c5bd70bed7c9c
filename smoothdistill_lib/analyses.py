"""The result chapters' comparisons, computed from run records so that a chapter only calls them.

- :func:`comparable` and :func:`gains`: each method's paired difference to a baseline, with the
  paired t-test (:mod:`stats`);
- :func:`confusion_sums`: confusion matrices summed over runs;
- :func:`teacher_vs_student`: the EMA teacher beside its student;
- :func:`leakage_table`: the leakage meter of each split beside the protocol's choices;
- :func:`ema_scale_table` (rows of :func:`ema.run_scale`) and :func:`teacher_lag`: the EMA's horizon
  against a run's length, and the teacher's lag epoch by epoch;
- :func:`histories`: the training histories, the input of :func:`plots.plot_history`;
- :func:`as_roles`, :func:`role_means` and :func:`ranking`: a Smooth-Distill grid at lambda 0 and
  0.5 read as multitask / EMA weights / Smooth-Distill / its teacher (the paired effects, with the
  interval that fits the grid's design, are :mod:`verdicts`); :func:`grid_progress` and
  :func:`run_cost` say how far a grid has got and what the rest costs, :func:`cost_per_model` what
  one run costs per architecture, :func:`programme_estimate` what whole grids would cost on a GPU;
- :func:`lambda_sweep`: the long grid and the long lambda sweep read as one sweep;
- :func:`at_scales`: runs of a demo-sized and a long-mode grid in one table, each labelled with its
  EMA decay and run length (the input of :func:`plots.plot_scales`).

Inputs are the tidy frame (``records.load_records``) or :class:`records.Records` / raw records.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from smoothdistill_lib import stats
from smoothdistill_lib.compute import gpu_hours_estimate
from smoothdistill_lib.ema import run_scale
from smoothdistill_lib.methods import METHODS, known_first, paper_order
from smoothdistill_lib.models import MODELS
from smoothdistill_lib.records import Combined, Records, combine, raw_records
from smoothdistill_lib.report import median_epoch_seconds, one_setting, rows_where


def comparable(df: pd.DataFrame, dataset: str, min_runs: int = 2) -> pd.DataFrame | None:
    """The rows of ``dataset`` whose method has at least ``min_runs`` runs (a paired test needs two
    pairs), or None when fewer than two methods qualify."""
    d = df[df["dataset"] == dataset]
    runs = d.groupby("method", observed=True)["run_id"].nunique()
    keep = [m for m, n in runs.items() if n >= min_runs]
    return d[d["method"].isin(keep)] if len(keep) >= 2 else None



GAIN_COLUMNS = ["n", "gain", "p (paired t-test)"]


def gains(df: pd.DataFrame, protocol: str, task: int, baseline: str = "multitask", metric: str = "accuracy",
          split: str = "test", min_runs: int = 2) -> pd.DataFrame:
    """Each method's paired difference to ``baseline`` (``metric`` of the students on ``split``,
    points), per dataset, over the (seed, fold) cells both have.

    Rows ``(dataset, method)``; columns ``n`` (pairs), ``gain`` (mean of method - baseline), and the
    two-sided p-value of the paired t-test over those cells (:func:`stats.paired_test`; the cells
    share one test set, so it covers seed and fold variation, not test sampling). Datasets without ``baseline`` or with fewer than two comparable
    methods (:func:`comparable`) are left out; the frame is empty when none is left.
    """
    rows = []
    d = rows_where(df, protocol=protocol, task=task, split=split, who="student")
    for ds in sorted(d["dataset"].unique()):
        g = comparable(one_setting(d, dataset=ds), ds, min_runs)
        if g is None or baseline not in set(g["method"]):
            continue
        wide = g.assign(method=g["method"].astype(str)).pivot(index=["seed", "fold"], columns="method", values=metric)
        for m in paper_order(wide.columns):
            if m == baseline:
                continue
            both = wide[[m, baseline]].dropna()
            if len(both) < 2:
                continue
            t = stats.paired_test(both[m], both[baseline], "ttest")
            rows.append({"dataset": ds, "method": m, "n": t["n"], "gain": t["mean_diff"],
                         "p (paired t-test)": t["pvalue"]})
    return pd.DataFrame(rows, columns=["dataset", "method", *GAIN_COLUMNS]).set_index(["dataset", "method"])


def confusion_sums(df: pd.DataFrame, dataset: str, protocol: str | None = None, task: int = 1,
                   split: str = "test", who: str = "student", model: str | None = None) -> dict[str, np.ndarray]:
    """Confusion matrices (C, C) summed over the runs of each method (methods in table order; rows
    true, columns predicted). ``protocol``/``model`` must leave one setting per method."""
    d = one_setting(df, dataset=dataset, protocol=protocol, task=task, split=split, who=who, model=model)
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


def leakage_table(records: Records | dict[str, dict]) -> pd.DataFrame:
    """The leakage meter of each (dataset, protocol)'s split (percent of test windows) beside the
    pipeline options that differ between protocols, from the records' ``data`` section (mean over
    runs: the runs of one cell share their split)."""
    rows = []
    for rec in raw_records(records).values():
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


def ema_scale_table(records: Records | dict[str, dict], method: str = "smooth_distill") -> pd.DataFrame:
    """:func:`ema.run_scale` of the runs of ``method``: per (dataset, protocol) and EMA decay, the first
    run's fit windows, batch size and trained epochs (the length of its history). Index
    ``(dataset, protocol)``; a cell trained with several decays has one row per decay."""
    rows = {}
    for rec in raw_records(records).values():
        s = rec["spec"]
        if s["method"] != method or s.get("train_ratio") is not None:
            continue
        key = (s["dataset"], s["protocol"], s["train"]["ema_decay"])
        rows.setdefault(key, run_scale(rec["data"]["n_fit"], s["train"]["batch_size"], len(rec["history"]),
                                       s["train"]["ema_decay"]))
    t = pd.DataFrame.from_dict(rows, orient="index").sort_index()
    if len(t):
        t.index = t.index.droplevel(2).set_names(["dataset", "protocol"])
    return t


def histories(records: Records | dict[str, dict], method: str = "smooth_distill",
              protocol: str | None = "paper", lam: float | None = None) -> dict[str, list[pd.DataFrame]]:
    """The training histories (one DataFrame per run, one row per epoch) of ``method`` per dataset,
    runs of the training-ratio ablation left out (and runs of another ``lam``, when given); the input
    of :func:`plots.plot_history`."""
    out: dict[str, list[pd.DataFrame]] = {}
    for rid in sorted(raw_records(records)):
        rec = raw_records(records)[rid]
        s = rec["spec"]
        if (s["method"] == method and (protocol is None or s["protocol"] == protocol) and s.get("train_ratio") is None
                and (lam is None or s.get("lam") == lam)):
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
    for rec in raw_records(records).values():
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




# --------------------------------------------------------------------------------------------
# The long-mode grid: what the paper's claim looks like at its own EMA decay

#: How a Smooth-Distill run is read by its lambda and by who is evaluated. A lambda = 0 run trains
#: its student with exactly the multitask loss and random stream, so that student IS the multitask
#: run (bit-identical: tests/test_engine.py::test_lambda0_student_is_multitask), and its EMA teacher
#: is "EMA weights alone": weight averaging without distillation.
ROLES = {(0.0, "student"): "multitask", (0.0, "teacher"): "ema_weights",
         (0.5, "student"): "smooth_distill", (0.5, "teacher"): "sd_teacher"}
#: display order of the roles, then of the baselines (methods.paper_order for the rest)
ROLE_LABELS = {"multitask": "multitask (λ = 0 student)", "ema_weights": "EMA weights alone (λ = 0 teacher)",
               "smooth_distill": "Smooth-Distill (λ = 0.5 student)", "sd_teacher": "Smooth-Distill's teacher"}

def as_roles(df: pd.DataFrame, lam: float = 0.5) -> pd.DataFrame:
    """The student rows of ``df`` with Smooth-Distill runs renamed by :data:`ROLES` (student and
    teacher rows of lambda 0 and of ``lam`` become four "methods"); other methods' students are kept
    as they are. Smooth-Distill rows of any other lambda are left out."""
    roles = {(0.0, w): r for (x, w), r in ROLES.items() if x == 0.0}
    roles |= {(float(lam), w): r for (x, w), r in ROLES.items() if x != 0.0}
    sd = df["method"].astype(str) == "smooth_distill"
    other = df[~sd & (df["who"] == "student")]
    d = df[sd].copy()
    role = [roles.get((float(x), who)) for x, who in zip(d["lam"], d["who"])]
    d = d.assign(method=role, who="student")[[r is not None for r in role]]
    return pd.concat([other.assign(method=other["method"].astype(str)), d], ignore_index=True)


def role_means(df: pd.DataFrame, split: str = "test", lam: float = 0.5) -> pd.DataFrame:
    """Mean accuracy of each role (:func:`as_roles`, labelled by :data:`ROLE_LABELS`, in that order,
    then the baselines by their ``methods.METHODS`` label) per dataset and protocol, both tasks, with the number of seeds behind it."""
    r = as_roles(df, lam).query("split == @split")
    order = [*ROLE_LABELS, *sorted(set(r["method"]) - set(ROLE_LABELS))]
    r = r.assign(method=pd.Categorical(r["method"], order))
    t = r.pivot_table(index=["dataset", "protocol", "method"], columns="task", values="accuracy",
                      aggfunc=["mean", "count"], observed=True).round(2)
    out = pd.DataFrame({f"task {k} accuracy (%)": t[("mean", k)] for k in sorted(r["task"].unique())})
    out["seeds"] = t[("count", sorted(r["task"].unique())[0])].astype(int)
    labels = ROLE_LABELS | {m: METHODS[m].label for m in order if m in METHODS and m not in ROLE_LABELS}
    return out.rename(index=labels, level="method")


def grid_progress(plan, df: pd.DataFrame | None) -> pd.DataFrame:
    """Runs planned and finished per method, in the plan's order, the core-hours (training time) the
    finished runs took and those the pending runs would take. ``plan``: the grid's
    ``experiment.RunSpec`` list (``experiment.expand``); ``df``: its records (None: none yet).

    ``core-hours left (estimate)``: pending runs x the median training minutes of the method's
    finished runs; a method with none yet is scaled from the finished runs' median by the registry's
    ``run_cost`` (``methods.METHODS``: expected cost in multitask runs). Empty where nothing has
    finished (no measurement to scale).
    """
    done = set() if df is None else set(df["run_id"])
    d = pd.DataFrame([(s.method, s.run_id in done) for s in plan], columns=["method", "done"])
    out = d.groupby("method", sort=False).agg(runs=("done", "size"), finished=("done", "sum"))
    runs = None if df is None else df[df["run_id"].isin({s.run_id for s in plan})].drop_duplicates("run_id")
    if runs is None or runs.empty:
        return out
    seconds = runs["train_seconds"].groupby(runs["method"].astype(str))
    out["core-hours spent"] = (seconds.sum().reindex(out.index).fillna(0.0) / 3600).round(1)
    minutes = seconds.median() / 60
    # one multitask run's minutes, from every finished method (each divided by its own run_cost)
    per_cost = float(np.median([m / METHODS[k].run_cost for k, m in minutes.items() if k in METHODS]))
    each = [minutes.get(k, per_cost * METHODS[k].run_cost if k in METHODS else np.nan) for k in out.index]
    out["core-hours left (estimate)"] = ((out["runs"] - out["finished"]) * np.array(each) / 60).round(1)
    return out


def steps_per_run(runs: pd.DataFrame) -> pd.Series:
    """Optimizer steps of each run (one row per run): epochs x batches per epoch (one stage)."""
    return runs["epochs"] * np.ceil(runs["n_fit"] / runs["batch_size"])


def run_cost(df: pd.DataFrame) -> pd.DataFrame:
    """Median training minutes and optimizer steps per run (steps = epochs that ran x batches per
    epoch), per (dataset, protocol) and method: what one more run of a grid costs on its device."""
    runs = df.drop_duplicates("run_id")
    runs = runs.assign(minutes=runs["train_seconds"] / 60,
                       steps=steps_per_run(runs))
    return runs.pivot_table(index=["dataset", "protocol"], columns="method", values=["minutes", "steps"],
                            aggfunc="median").round(1)


def cost_per_model(df: pd.DataFrame, reference: str = "mtlnet") -> pd.DataFrame:
    """What one run costs per architecture, from its records (rows in the registry's order): ``runs``,
    ``steps per run`` (epochs x batches per epoch, median), ``minutes per run``, ``ms per step`` and
    ``x <reference>`` (the multiple of ``reference``'s minutes; NaN without its runs).

    Minutes are the median epoch time over the architecture's runs x its epochs per run
    (:func:`report.median_epoch_seconds`): on a shared machine a neighbour's burst slows single epochs,
    and a median ignores them. An epoch includes its validation pass, so ``ms per step`` does too.
    ``df``: one dataset, protocol and method (mixing them is refused with one line).
    """
    runs = df.drop_duplicates("run_id")
    for c in ("dataset", "protocol", "method"):
        if runs[c].nunique() > 1:
            raise ValueError(f"cost_per_model: the runs mix {c}s {sorted(map(str, runs[c].unique()))}; give one")
    median, _how = median_epoch_seconds(runs, ["method", "model"])
    steps = steps_per_run(runs).groupby(runs["model"]).median()
    out = pd.DataFrame({"runs": runs.groupby("model").size(), "steps per run": steps,
                        "minutes per run": median.droplevel("method") / 60})
    out["ms per step"] = 60_000 * out["minutes per run"] / out["steps per run"]
    out[f"x {reference}"] = (out["minutes per run"] / out.loc[reference, "minutes per run"]
                             if reference in out.index else np.nan)
    out.index.name = "model"
    return out.reindex(known_first(out.index, tuple(MODELS)))


def programme_estimate(plans: dict[str, list], frames: dict[str, pd.DataFrame | None],
                       min_steps: int) -> pd.DataFrame:
    """Per grid (``plans``: {name: ``experiment.expand`` list}): ``runs``, ``optimizer steps`` (a method
    with a first stage, Born-Again, takes its steps twice), ``steps from`` and the GPU-hours
    of :func:`compute.gpu_hours_estimate` (``GPU-hours low/high (est.)``), with a ``total`` row.

    A run's steps are the median over the records (``frames``, any grid) of its dataset, model and
    training ratio; where none has run yet, ``min_steps`` (the run mode's floor: then the steps are "at least").
    """
    def ratio(r):  # all the training data: None in a spec, NaN in a record
        return 1.0 if r is None or pd.isna(r) else float(r)

    steps_seen = {}
    for df in frames.values():
        if df is not None and not df.empty:
            runs = df.drop_duplicates("run_id")
            per = steps_per_run(runs).groupby(
                [runs["dataset"], runs["model"], runs["train_ratio"].map(ratio)])
            for key, v in per.median().items():
                steps_seen.setdefault(key, v)
    rows = {}
    for name, plan in plans.items():
        keys = [(s.dataset, s.model, ratio(s.train_ratio)) for s in plan]
        known = [k in steps_seen for k in keys]
        steps = sum(steps_seen.get(k, min_steps) * (2 if METHODS[s.method].stage1 else 1) for k, s in zip(keys, plan))
        low, high = gpu_hours_estimate(steps)
        rows[name] = {"runs": len(plan), "optimizer steps": steps,
                      "steps from": "records" if all(known) else ("the floor (at least)" if not any(known)
                                                                  else "records + floor"),
                      "GPU-hours low (est.)": low, "GPU-hours high (est.)": high}
    out = pd.DataFrame.from_dict(rows, orient="index")
    total = out[["runs", "optimizer steps", "GPU-hours low (est.)", "GPU-hours high (est.)"]].sum()
    out.loc["total"] = {**total.to_dict(), "steps from": ""}
    out.index.name = "grid"
    return out


def lambda_sweep(base: Records, sweep: Records, dataset: str = "wisdm", protocol: str = "paper") -> Combined:
    """A lambda sweep made of two grids, as one (:func:`records.combine`): ``base``'s Smooth-Distill
    runs of ``dataset`` x ``protocol`` (the long grid's lambda 0 and 0.5) at the seeds ``sweep`` has
    reached, beside ``sweep``'s runs (``long_lambda``: the other lambdas). Pairs by seed stay on one
    split, and each run's predictions are read where it keeps them."""
    seeds = set(sweep.df["seed"].unique())
    d = base.df
    d = d[(d["dataset"] == dataset) & (d["protocol"] == protocol) & (d["method"].astype(str) == "smooth_distill")
          & d["seed"].isin(seeds)]
    return combine([base, sweep], pd.concat([d, sweep.df], ignore_index=True))


def at_scales(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The rows of several grids' tidy frames in one, with a ``scale`` column naming each grid's run
    mode, EMA decay and optimizer steps per run, e.g. ``"demo: a = 0.97, 160-400 steps"``.

    ``frames``: {name: tidy frame} (the name is not shown: the label is computed from the rows, so it
    cannot disagree with them). A frame whose runs mix run modes or decays is refused (one line).
    Steps = epochs x batches per epoch (:func:`run_cost`); Born-Again's two stages are not summed.
    """
    parts = []
    for name, df in frames.items():
        if df is None or df.empty:
            continue
        runs = df.drop_duplicates("run_id")
        modes, decays = runs["mode"].unique(), runs["ema_decay"].unique()
        if len(modes) != 1 or len(decays) != 1:
            raise ValueError(f"at_scales: the runs of {name!r} mix run modes {list(modes)} or EMA decays "
                             f"{list(decays)}; give one frame per mode and decay")
        steps = steps_per_run(runs).astype(int)
        lo, hi = int(steps.min()), int(steps.max())
        span = f"{lo:,}" if lo == hi else f"{lo:,}-{hi:,}"
        parts.append(df.assign(scale=f"{modes[0]}: a = {float(decays[0]):g}, {span} steps"))
    if not parts:
        raise ValueError("at_scales: every frame is empty")
    return pd.concat(parts, ignore_index=True)


#: short names of the roles for prose (baselines: their ``methods.METHODS`` label)
ROLE_NAMES = {"multitask": "multitask", "ema_weights": "EMA weights alone", "smooth_distill": "Smooth-Distill",
              "sd_teacher": "Smooth-Distill's teacher"}


def role_name(role: str) -> str:
    """How prose names a role of :func:`as_roles` or a baseline method."""
    return ROLE_NAMES.get(role) or (METHODS[role].label if role in METHODS else role)


#: roles whose prose name is plural ("EMA weights alone are ...")
PLURAL_ROLES = frozenset({"ema_weights"})


def role_is(role: str) -> str:
    """The verb prose uses after :func:`role_name` ``(role)``: "are" for a plural name, else "is"."""
    return "are" if role in PLURAL_ROLES else "is"


def ranking(df: pd.DataFrame, task: int = 1, split: str = "test", metric: str = "accuracy",
            lam: float = 0.5) -> pd.DataFrame:
    """Every role (:func:`as_roles`) of each dataset x protocol ordered best first by its mean
    ``metric``: columns ``mean``, ``seeds`` and ``rank`` (1 = best), index (dataset, protocol, role).
    A ranking of means: :func:`verdicts.compare` says which of its steps the data can resolve."""
    r = rows_where(as_roles(df, lam), task=task, split=split, who="student")
    t = (r.groupby(["dataset", "protocol", "method"], observed=True)[metric]
         .agg(mean="mean", seeds="count").reset_index()
         .sort_values(["dataset", "protocol", "mean"], ascending=[True, True, False], kind="stable"))
    t["rank"] = t.groupby(["dataset", "protocol"]).cumcount() + 1
    return t.rename(columns={"method": "role"}).set_index(["dataset", "protocol", "role"])
