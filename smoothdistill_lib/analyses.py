"""The result chapters' comparisons, computed from run records so that a chapter only calls them.

- :func:`comparable` and :func:`gains`: each method's paired difference to a baseline, with the
  paired t-test and the Nadeau-Bengio corrected test (:mod:`stats`);
- :func:`confusion_sums`: confusion matrices summed over runs;
- :func:`teacher_vs_student`: the EMA teacher beside its student;
- :func:`leakage_table`: the leakage meter of each split beside the protocol's choices;
- :func:`ema_scale_table` (rows of :func:`ema.run_scale`) and :func:`teacher_lag`: the EMA's horizon
  against a run's length, and the teacher's lag epoch by epoch;
- :func:`histories`: the training histories, the input of :func:`plots.plot_history`;
- :func:`as_roles` and :func:`convergence_effects`: the long-mode grid (``configs/long.yaml``) read
  as multitask / EMA weights / Smooth-Distill, and the paired effects that answer the paper's
  question with intervals and Holm-adjusted p-values; :func:`ranking` and :func:`convergence_answers`
  turn them into the chapters' answers; :func:`grid_progress` and :func:`run_cost` say how far the
  grid has got and what the rest costs.

Inputs are the tidy frame (``records.load_records``) or :class:`records.Records` / raw records.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from smoothdistill_lib import stats
from smoothdistill_lib.ema import run_scale
from smoothdistill_lib.methods import METHODS, paper_order
from smoothdistill_lib.records import Records, raw_records
from smoothdistill_lib.report import eval_sizes, one_setting, rows_where


def comparable(df: pd.DataFrame, dataset: str, min_runs: int = 2) -> pd.DataFrame | None:
    """The rows of ``dataset`` whose method has at least ``min_runs`` runs (a paired test needs two
    pairs), or None when fewer than two methods qualify."""
    d = df[df["dataset"] == dataset]
    runs = d.groupby("method", observed=True)["run_id"].nunique()
    keep = [m for m, n in runs.items() if n >= min_runs]
    return d[d["method"].isin(keep)] if len(keep) >= 2 else None



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
    rows = []
    d = rows_where(df, protocol=protocol, task=task, split=split, who="student")
    for ds in sorted(d["dataset"].unique()):
        g = comparable(one_setting(d, dataset=ds), ds, min_runs)
        if g is None or baseline not in set(g["method"]):
            continue
        wide = g.assign(method=g["method"].astype(str)).pivot(index=["seed", "fold"], columns="method", values=metric)
        n_train, n_test = eval_sizes(g, split)
        for m in paper_order(wide.columns):
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

#: (a, b, what a - b measures); rows whose methods are absent are skipped
COMPARISONS = (
    ("smooth_distill", "multitask", "Smooth-Distill over multitask"),
    ("ema_weights", "multitask", "weight averaging alone"),
    ("smooth_distill", "ema_weights", "distillation beyond averaging"),
    ("sd_teacher", "smooth_distill", "Smooth-Distill's teacher over its student"),
    ("born_again", "smooth_distill", "Born-Again over Smooth-Distill"),
    ("born_again", "multitask", "Born-Again over multitask"),
    ("singletask", "multitask", "single-task over multitask"),
    ("sd_dropout", "multitask", "SD-Dropout over multitask"),
)


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


def convergence_effects(df: pd.DataFrame, task: int = 1, metric: str = "accuracy", split: str = "test",
                        comparisons=COMPARISONS, confidence: float = 0.95, lam: float = 0.5) -> pd.DataFrame:
    """Paired effects (points of ``metric``) for each dataset x protocol x comparison of
    :data:`COMPARISONS` whose two roles (:func:`as_roles`) share at least two (seed, fold) cells.

    Columns: ``n`` (pairs), ``a`` and ``b`` (means), ``effect`` (mean of a - b), ``ci`` (t interval),
    ``nb_ci`` (Nadeau-Bengio corrected interval), ``p (paired t-test)``, ``p (Nadeau-Bengio)`` and
    ``p (NB, Holm)``: Holm over every row of the table (one family: all questions asked at once).
    ``lam``: the Smooth-Distill lambda compared with lambda = 0 (:func:`as_roles`).
    """
    d = rows_where(as_roles(df, lam), task=task, split=split, who="student")
    rows = []
    for (ds, protocol), g in d.groupby(["dataset", "protocol"], sort=True):
        wide = g.pivot_table(index=["seed", "fold"], columns="method", values=metric, aggfunc="first")
        n_train, n_test = eval_sizes(g, split)
        for a, b, what in comparisons:
            if a not in wide or b not in wide:
                continue
            both = wide[[a, b]].dropna()
            if len(both) < 2:
                continue
            e = stats.paired_difference(both[a], both[b], n_train=n_train, n_test=n_test, confidence=confidence)
            rows.append({"dataset": ds, "protocol": protocol, "comparison": what, "n": e["n"],
                         "a": float(both[a].mean()), "b": float(both[b].mean()), "effect": e["mean_diff"],
                         "ci": (e["ci_low"], e["ci_high"]), "nb_ci": (e["cc_low"], e["cc_high"]),
                         "p (paired t-test)": e["p_ttest"], "p (Nadeau-Bengio)": e["p_corrected"]})
    out = pd.DataFrame(rows, columns=["dataset", "protocol", "comparison", "n", "a", "b", "effect", "ci", "nb_ci",
                                      "p (paired t-test)", "p (Nadeau-Bengio)"])
    out["p (NB, Holm)"] = stats.holm(out["p (Nadeau-Bengio)"].to_numpy()) if len(out) else []
    return out.set_index(["dataset", "protocol", "comparison"])


def effect_phrase(effects: pd.DataFrame, dataset: str, protocol: str, comparison: str) -> str | None:
    """One row of :func:`convergence_effects` as prose ("+1.23 points (95 % NB interval ..., Holm
    p = ..., 3 seeds)"), or None when the table has no such row."""
    if (dataset, protocol, comparison) not in effects.index:
        return None
    e = effects.loc[(dataset, protocol, comparison)]
    lo, hi = e["nb_ci"]
    return (f"{e['effect']:+.2f} points (95 % Nadeau-Bengio interval {lo:+.2f} to {hi:+.2f}, "
            f"Holm-adjusted p = {e['p (NB, Holm)']:.3f}, {int(e['n'])} seeds)")


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


def run_cost(df: pd.DataFrame) -> pd.DataFrame:
    """Median training minutes and optimizer steps per run (steps = epochs that ran x batches per
    epoch), per (dataset, protocol) and method: what one more run of a grid costs on its device."""
    runs = df.drop_duplicates("run_id")
    runs = runs.assign(minutes=runs["train_seconds"] / 60,
                       steps=runs["epochs"] * np.ceil(runs["n_fit"] / runs["batch_size"]))
    return runs.pivot_table(index=["dataset", "protocol"], columns="method", values=["minutes", "steps"],
                            aggfunc="median").round(1)


#: short names of the roles for prose (baselines: their ``methods.METHODS`` label)
ROLE_NAMES = {"multitask": "multitask", "ema_weights": "EMA weights alone", "smooth_distill": "Smooth-Distill",
              "sd_teacher": "Smooth-Distill's teacher"}


def role_name(role: str) -> str:
    """How prose names a role of :func:`as_roles` or a baseline method."""
    return ROLE_NAMES.get(role) or (METHODS[role].label if role in METHODS else role)


def ranking(df: pd.DataFrame, task: int = 1, split: str = "test", metric: str = "accuracy",
            lam: float = 0.5) -> pd.DataFrame:
    """Every role (:func:`as_roles`) of each dataset x protocol ordered best first by its mean
    ``metric``: columns ``mean``, ``seeds`` and ``rank`` (1 = best), index (dataset, protocol, role).
    A ranking of means: :func:`convergence_effects` says which of its steps the seeds can resolve."""
    r = rows_where(as_roles(df, lam), task=task, split=split, who="student")
    t = (r.groupby(["dataset", "protocol", "method"], observed=True)[metric]
         .agg(mean="mean", seeds="count").reset_index()
         .sort_values(["dataset", "protocol", "mean"], ascending=[True, True, False], kind="stable"))
    t["rank"] = t.groupby(["dataset", "protocol"]).cumcount() + 1
    return t.rename(columns={"method": "role"}).set_index(["dataset", "protocol", "role"])


def _brief(effects: pd.DataFrame, key: tuple[str, str, str]) -> str:
    """One effect row in a few characters: "+2.36 [-1.10, +5.82], Holm p = 1.000"."""
    e = effects.loc[key]
    lo, hi = e["nb_ci"]
    return f"{e['effect']:+.2f} [{lo:+.2f}, {hi:+.2f}], Holm p = {e['p (NB, Holm)']:.3f}"


def _cells(effects: pd.DataFrame, comparison: str) -> tuple[str, str]:
    """Every dataset x protocol row of one comparison in brief, and how many of their Nadeau-Bengio
    intervals lie above / below zero, as text."""
    if effects.empty or comparison not in set(effects.index.get_level_values("comparison")):
        return "", ""
    rows = effects.xs(comparison, level="comparison")
    text = "; ".join(f"{ds} {protocol} {_brief(effects, (ds, protocol, comparison))}"
                     for ds, protocol in rows.index)
    above = int(sum(lo > 0 for lo, _ in rows["nb_ci"]))
    below = int(sum(hi < 0 for _, hi in rows["nb_ci"]))
    n = len(rows)
    if above == below == 0:
        return text, f"none of the {n} intervals excludes zero"
    return text, f"intervals wholly above zero: {above} of {n}, wholly below: {below} of {n}"


def _sentence(text: str) -> str:
    """First letter up (str.capitalize would lower every other letter: "Smooth-Distill")."""
    return text[:1].upper() + text[1:]


def convergence_answers(df: pd.DataFrame, task: int = 1, metric: str = "accuracy", split: str = "test",
                        lam: float = 0.5) -> dict[str, str]:
    """The long-mode grid's answers to the paper's questions, as sentences built from the records:
    ``{question: answer}`` in the order the chapters ask them. Effects are paired differences in
    points of ``metric`` with 95 % Nadeau-Bengio intervals and Holm-adjusted p-values over the whole
    :func:`convergence_effects` table (one family); a question whose runs are missing says so."""
    e = convergence_effects(df, task=task, metric=metric, split=split, lam=lam)
    rank = ranking(df, task=task, split=split, metric=metric, lam=lam)
    out = {}

    text, resolved = _cells(e, "Smooth-Distill over multitask")
    out["Does Smooth-Distill beat multitask at the paper's decay?"] = (
        f"Smooth-Distill minus multitask, points of task-{task} {split} {metric} (95 % Nadeau-Bengio interval, "
        f"Holm-adjusted p): {text}. {_sentence(resolved)}. Each interval is 95 % for its own comparison; the "
        f"Holm-adjusted p-values account for every comparison of the table at once." if text
        else f"Not yet: no cell has two seeds of both $\\lambda = 0$ and $\\lambda = {lam:g}$.")

    avg, avg_resolved = _cells(e, "weight averaging alone")
    dist, dist_resolved = _cells(e, "distillation beyond averaging")
    out["How much of the gain is weight averaging, how much distillation?"] = (
        f"Weight averaging alone (the $\\lambda = 0$ teacher minus its student): {avg}; {avg_resolved}. "
        f"Distillation beyond averaging (Smooth-Distill minus the $\\lambda = 0$ teacher): {dist}; "
        f"{dist_resolved}." if avg else "Not yet.")

    lines = []
    for ds in sorted({k[0] for k in rank.index}):
        cell = {p: rank.loc[(ds, p)]["mean"] for p in ("paper", "subject") if (ds, p) in rank.index.droplevel(2)}
        if len(cell) < 2 or "multitask" not in cell["paper"] or "multitask" not in cell["subject"]:
            continue
        gains = {p: f"{e.loc[(ds, p, 'Smooth-Distill over multitask')]['effect']:+.2f}"
                 if (ds, p, "Smooth-Distill over multitask") in e.index else "not yet paired" for p in cell}
        lines.append(f"on {ds}, multitask falls from {cell['paper']['multitask']:.1f} % (random windows) to "
                     f"{cell['subject']['multitask']:.1f} % (unseen subjects), and Smooth-Distill's gain over it "
                     f"is {gains['paper']} points with random windows and {gains['subject']} with unseen subjects")
    out["How much survives held-out subjects?"] = (_sentence("; ".join(lines)) + "." if lines
                                                   else "Not yet: both protocols of a dataset are needed.")

    order = []
    for (ds, protocol), g in rank.groupby(level=["dataset", "protocol"], sort=True):
        g = g.droplevel(["dataset", "protocol"])
        lo, hi = int(g["seeds"].min()), int(g["seeds"].max())
        seeds = f"{lo} seeds" if lo == hi else f"{lo}-{hi} seeds"
        order.append(f"{ds} {protocol}: " + " > ".join(f"{role_name(r)} {m:.1f}" for r, m in g["mean"].items())
                     + f" ({seeds})")
    out["How do the methods rank?"] = (f"By mean task-{task} {split} {metric} (%), best first: " + "; ".join(order)
                                       + ". A ranking of means; the intervals above say which steps the seeds resolve."
                                       if order else "Not yet.")

    means = rank["mean"].unstack("role")
    if {"sd_teacher", "smooth_distill", "ema_weights"} <= set(means.columns):
        best = rank[rank["rank"] == 1].index.get_level_values("role")
        n_best = int(sum(r in ("sd_teacher", "ema_weights") for r in best))
        n_avg = int((means["ema_weights"] >= means["smooth_distill"]).sum())
        lead = "An EMA teacher" if 2 * n_best > len(means) else "Not clearly a teacher"
        out["Which network would you deploy?"] = (
            f"{lead}: in {n_best} of the {len(means)} cells the most accurate network on average is an EMA teacher "
            f"(Smooth-Distill's or the $\\lambda = 0$ run's), and in {n_avg} of {len(means)} the EMA weights alone, "
            "trained without any distillation, are at least as accurate as the distilled Smooth-Distill student. "
            "The teacher costs nothing extra at inference: it is a network of the same size.")

    ba, ba_resolved = _cells(e, "Born-Again over Smooth-Distill")
    minutes = df.drop_duplicates("run_id").groupby("method", observed=True)["train_seconds"].median()
    cost = minutes.get("born_again", np.nan) / minutes.get("smooth_distill", np.nan)
    out["Does Born-Again match Smooth-Distill, as the paper says?"] = (
        f"Born-Again minus Smooth-Distill: {ba}; {ba_resolved}. Born-Again trains two networks one after "
        f"the other: a run took {cost:.1f} times as long as a Smooth-Distill run (median training times of "
        f"the records)." if ba else
        "Not yet: no Born-Again records with two seeds (`run configs/long.yaml --methods born_again`).")
    return out


def ema_vs_distillation(df: pd.DataFrame, lam: float = 0.5, task: int = 1, metric: str = "accuracy",
                        split: str = "test", protocol: str = "paper") -> pd.DataFrame:
    """What Smooth-Distill's two ingredients add, per dataset: the two steps of
    :func:`convergence_effects` for one protocol, from records holding lambda = 0 and ``lam``.

    ``"weight averaging"``: the EMA teacher at lambda = 0 minus its student (plain multitask);
    ``"distillation"``: the student at ``lam`` minus that teacher. Columns: ``n`` (seeds paired),
    ``gain`` (mean difference, points), ``ci_low``/``ci_high`` (t-based 95 % interval of the paired
    difference) and ``p`` (two-sided paired t-test; the records' seeds share one fold).
    """
    steps = (("ema_weights", "multitask", "weight averaging"), ("smooth_distill", "ema_weights", "distillation"))
    e = convergence_effects(df, task=task, metric=metric, split=split, comparisons=steps, lam=lam)
    cols = ["dataset", "step", "n", "gain", "ci_low", "ci_high", "p"]
    if e.empty or protocol not in set(e.index.get_level_values("protocol")):
        return pd.DataFrame(columns=cols).set_index(["dataset", "step"])
    e = e.xs(protocol, level="protocol")
    out = pd.DataFrame({"n": e["n"], "gain": e["effect"], "ci_low": e["ci"].map(lambda c: c[0]),
                        "ci_high": e["ci"].map(lambda c: c[1]), "p": e["p (paired t-test)"]})
    return out.rename_axis(["dataset", "step"])
