"""Verdicts: the book's questions answered from run records, each with the interval that fits the
design that made the records, and a direction stated only where that interval excludes zero.

The questions (:data:`QUESTIONS`) compare the four networks a Smooth-Distill grid at lambda = 0 and
lambda = 0.5 yields (:data:`analyses.ROLES`): multitask (the lambda = 0 student), EMA weights alone
(its teacher), the Smooth-Distill student and its teacher. For every dataset x protocol cell and
both tasks, :func:`compare` finds the cell's design (:func:`design_of`) and computes

- ``"resamples"`` (split and seed varied together, ``configs/long_cv.yaml``): the corrected
  resampled t (:func:`stats.resampled_interval`) with each resample's own sizes;
- ``"seeds"`` (seeds on one fixed split, ``configs/long.yaml``): the paired bootstrap over test
  windows and seeds (:func:`stats.paired_bootstrap`) when every run kept its predictions, else the
  paired t over seeds, marked as leaving out test-sampling error;

beside P(A beats B) with its exact interval, and Holm-adjusted p-values over the whole family of
questions asked (the rows of the table). :func:`sentence` turns a row into plain language by one
rule: a direction only when the interval excludes zero; otherwise "the data cannot tell", with how
many resamples would be needed at the observed spread.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from smoothdistill_lib import predictions, stats
from smoothdistill_lib.analyses import ROLES, role_name
from smoothdistill_lib.records import Records

#: (key, role a, role b, the question): a - b is the effect
QUESTIONS = (
    ("beats_multitask", "smooth_distill", "multitask", "Does Smooth-Distill beat multitask?"),
    ("averaging", "ema_weights", "multitask", "Does weight averaging alone beat multitask?"),
    ("distillation", "smooth_distill", "ema_weights", "Does distillation add to weight averaging?"),
    ("teacher", "sd_teacher", "smooth_distill", "Is Smooth-Distill's teacher better than its student?"),
)
COLUMNS = ["question", "dataset", "protocol", "task", "design", "interval", "n", "a", "b", "mean_a", "mean_b",
           "effect", "ci_low", "ci_high", "pvalue", "p_holm", "p_win", "p_win_low", "p_win_high", "pairs_needed",
           "test_sampling"]
DATASET_NAMES = {"wisdm": "WISDM", "sleepsim": "simulated sleep data", "mhealth": "MHEALTH", "sleep": "sleep data"}
PROTOCOL_NAMES = {"paper": "random windows", "subject": "unseen subjects"}


def design_of(runs: pd.DataFrame) -> str:
    """``"resamples"`` when the runs of a cell were tested on more than one split (another split
    seed or held-out subject group), else ``"seeds"``. ``runs``: rows of one dataset x protocol cell
    with the records' ``split_seed`` and ``test_fold`` columns."""
    splits = runs[["split_seed", "test_fold"]].astype(float).fillna(-1).drop_duplicates()
    return "resamples" if len(splits) > 1 else "seeds"


def _role_runs(cell: pd.DataFrame, role: str, lam: float) -> pd.DataFrame:
    """The rows of one role in a cell: its lambda's runs, its network (student or teacher)."""
    want_lam, who = next(((x, w) for (x, w), r in ROLES.items() if r == role))
    want_lam = 0.0 if want_lam == 0.0 else float(lam)
    d = cell[(cell["method"].astype(str) == "smooth_distill") & (cell["lam"] == want_lam) & (cell["who"] == who)]
    return d.set_index(["seed", "fold"])


def _correct(records: Records, run_ids, who: str, task: int) -> np.ndarray | None:
    """(S, N) correctness of ``who`` on the test windows of the runs (seed order), or None when a run
    has no stored predictions. The runs must share their test windows (one split)."""
    rows, index = [], None
    for rid in run_ids:
        if not records.has_predictions(rid):
            return None
        arrays = records.predictions(rid)
        if index is None:
            index = arrays["test_index"]
        elif not np.array_equal(index, arrays["test_index"]):
            raise ValueError(f"run {rid}: its test windows differ from the other runs' of its cell; a paired "
                             "bootstrap over windows needs one split")
        rows.append(predictions.correct(arrays, "test", who, task))
    return np.stack(rows)


def compare(records: Records, *, lam: float = 0.5, metric: str = "accuracy", confidence: float = 0.95,
            n_boot: int = 2000, boot_seed: int = 0) -> pd.DataFrame:
    """Every question of :data:`QUESTIONS` for each dataset x protocol x task of ``records`` whose two
    roles share at least two seeds (columns :data:`COLUMNS`, one row each).

    ``effect`` = mean of a - b in points of test ``metric``; ``ci_low``/``ci_high`` and ``pvalue``
    come from the design's interval (``interval`` names it); ``p_holm`` is Holm over every row (the
    family of questions this table asks); ``p_win`` is P(A beats B) over the paired runs with its
    exact interval; ``pairs_needed`` (resampled designs) how many resamples would resolve the effect
    at the observed spread (None: none would); ``test_sampling`` whether the interval includes
    test-sampling error. The bootstrap works on accuracy: another ``metric`` uses the seed t.
    """
    df = records.df[records.df["split"] == "test"]
    rows = []
    for (ds, protocol), cell in df.groupby(["dataset", "protocol"], sort=True):
        design = design_of(cell.drop_duplicates("run_id"))
        for task in (1, 2):
            c = cell[cell["task"] == task]
            for _key, a, b, question in QUESTIONS:
                ra, rb = _role_runs(c, a, lam), _role_runs(c, b, lam)
                seeds = sorted(set(ra.index) & set(rb.index))  # paired (seed, fold) cells
                if len(seeds) < 2:
                    continue
                ra, rb = ra.loc[seeds], rb.loc[seeds]
                xa, xb = ra[metric].to_numpy(float), rb[metric].to_numpy(float)
                row = {"question": question, "dataset": ds, "protocol": protocol, "task": task, "design": design,
                       "n": len(seeds), "a": a, "b": b, "mean_a": xa.mean(), "mean_b": xb.mean(),
                       "pairs_needed": None}
                if design == "resamples":
                    r = stats.resampled_interval(xa, xb, n_train=ra["n_fit"].to_numpy(float),
                                                 n_test=ra["n_test"].to_numpy(float), confidence=confidence)
                    row["test_sampling"] = True
                    d = xa - xb
                    row["pairs_needed"] = stats.pairs_needed(d.mean(), d.std(ddof=1), ratio=r["ratio"],
                                                             confidence=confidence)
                else:
                    ca = _correct(records, ra["run_id"], _who(a), task) if metric == "accuracy" else None
                    cb = _correct(records, rb["run_id"], _who(b), task) if ca is not None else None
                    if cb is not None:
                        r = stats.paired_bootstrap(ca, cb, n_boot=n_boot, seed=boot_seed, confidence=confidence)
                        row["test_sampling"] = True
                    else:
                        r = stats.seed_interval(xa, xb, confidence=confidence)
                        row["test_sampling"] = False
                w = stats.prob_a_beats_b(xa, xb, confidence)
                row.update(interval=r["interval"], effect=float(np.mean(xa - xb)), ci_low=float(r["ci_low"]),
                           ci_high=float(r["ci_high"]), pvalue=float(r["pvalue"]), p_win=w["p_win"],
                           p_win_low=w["ci_low"], p_win_high=w["ci_high"])
                rows.append(row)
    out = pd.DataFrame(rows, columns=COLUMNS)
    out["p_holm"] = stats.holm(out["pvalue"].to_numpy()) if len(out) else []
    out.attrs.update(confidence=confidence, family=len(out))
    return out


def _who(role: str) -> str:
    return next(w for (_x, w), r in ROLES.items() if r == role)


def direction(row) -> int:
    """+1 when the interval lies above zero, -1 below, 0 when it includes zero: the verdict rule."""
    if row["ci_low"] > 0:
        return 1
    if row["ci_high"] < 0:
        return -1
    return 0


def where(row) -> str:
    """"WISDM, random windows, task 1" (task 1: activity or posture; task 2: placement)."""
    return (f"{DATASET_NAMES.get(row['dataset'], row['dataset'])}, {PROTOCOL_NAMES.get(row['protocol'], row['protocol'])}, "
            f"task {int(row['task'])}")


def sentence(row, family: int | None = None) -> str:
    """One row of :func:`compare` in plain language, by the verdict rule (:func:`direction`).

    A direction is stated only when the interval excludes zero; if the Holm-adjusted p over the
    family is not below 0.05 the sentence says so. Otherwise the sentence says the data cannot
    tell, and (resampled designs) how many resamples would be needed at the observed spread."""
    a, b = role_name(row["a"]), role_name(row["b"])
    a = a[:1].upper() + a[1:]
    interval = f"{row['effect']:+.2f} points, 95 % interval {row['ci_low']:+.2f} to {row['ci_high']:+.2f}"
    won = f"it won {row['p_win']:.0%} of {int(row['n'])} paired runs"
    sign = direction(row)
    if sign:
        verb = "is more accurate than" if sign > 0 else "is less accurate than"
        text = f"{where(row)}: {a} {verb} {b} ({interval}; {won})."
        if family and row["p_holm"] >= 0.05:
            text += f" Not after adjusting for the {family} comparisons asked (Holm p = {row['p_holm']:.2f})."
        return text
    text = f"{where(row)}: the data cannot tell whether {a} is more accurate than {b} ({interval}; {won})."
    if row["design"] == "resamples":
        need = row["pairs_needed"]
        if need is None or (isinstance(need, float) and np.isnan(need)):
            text += " At this spread no number of resamples of this size would resolve it."
        else:
            text += f" At this spread about {int(need)} resamples would be needed."
    elif not row["test_sampling"]:
        text += " (Seed interval only: test-sampling error is not in it.)"
    return text


def sentences(table: pd.DataFrame, question: str | None = None) -> list[str]:
    """:func:`sentence` of every row (of one ``question``), family size from the table."""
    rows = table if question is None else table[table["question"] == question]
    family = table.attrs.get("family", len(table))
    return [sentence(r, family) for _, r in rows.iterrows()]


def tally(table: pd.DataFrame, question: str) -> dict:
    """How many rows of ``question`` resolve: ``{"rows", "above", "below", "unresolved"}``."""
    rows = table[table["question"] == question]
    signs = [direction(r) for _, r in rows.iterrows()]
    return {"rows": len(signs), "above": signs.count(1), "below": signs.count(-1), "unresolved": signs.count(0)}


__all__ = ["COLUMNS", "QUESTIONS", "compare", "design_of", "direction", "sentence", "sentences", "tally", "where"]
