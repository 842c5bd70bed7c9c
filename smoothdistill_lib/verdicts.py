"""Verdicts: the book's questions answered from run records, each with the interval that fits the
design that made the records, and a direction stated only where that interval excludes zero.

The questions (:data:`QUESTIONS`) compare the four networks a Smooth-Distill grid at lambda = 0 and
lambda = 0.5 yields (:data:`analyses.ROLES`): multitask (the lambda = 0 student), EMA weights alone
(its teacher), the Smooth-Distill student and its teacher. For every dataset x protocol cell and
both tasks, :func:`compare` finds the cell's design (:func:`design_of`) and computes

- ``"resamples"`` (split and seed varied together, ``configs/long_cv.yaml``): the corrected
  resampled t (:func:`stats.resampled_interval`) with each resample's own sizes;
- ``"seeds"`` (seeds on one fixed split, ``configs/long.yaml``): when every run kept its
  predictions, the hull of the paired t over seeds and the paired bootstrap over test windows and
  seeds (:func:`stats.paired_bootstrap`), so a direction needs both to exclude zero (the t covers a
  handful of seeds properly, the bootstrap the test sample); else the paired t alone, marked as
  leaving out test-sampling error;

beside P(A beats B) with its exact interval, and Holm-adjusted p-values over the whole family of
questions asked (the rows of the table). :func:`sentence` turns a row into plain language by one
rule: a direction only when the interval excludes zero; otherwise "the data cannot tell", with how
many resamples would be needed at the observed spread.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from smoothdistill_lib import predictions, stats
from smoothdistill_lib.analyses import ROLES, role_is, role_name
from smoothdistill_lib.prose import count, listing
from smoothdistill_lib.records import Records
from smoothdistill_lib.wisdm import PAPER_WINDOWS

#: (key, role a, role b, the question): a - b is the effect. Roles are those of analyses.ROLES
#: (networks of Smooth-Distill runs at lambda 0 and 0.5) or a baseline method's student.
QUESTIONS = (
    ("beats_multitask", "smooth_distill", "multitask", "Does Smooth-Distill beat multitask?"),
    ("averaging", "ema_weights", "multitask", "Does weight averaging alone beat multitask?"),
    ("distillation", "smooth_distill", "ema_weights", "Does distillation add to weight averaging?"),
    ("teacher", "sd_teacher", "smooth_distill", "Is Smooth-Distill's teacher better than its student?"),
)
#: the baselines' questions, asked where a grid has their runs (configs/long.yaml)
BASELINE_QUESTIONS = (
    ("born_again", "born_again", "smooth_distill", "Does Born-Again match Smooth-Distill?"),
    ("singletask", "singletask", "multitask", "Does single-task training beat multitask?"),
    ("sd_dropout", "sd_dropout", "multitask", "Does SD-Dropout beat multitask?"),
)
COLUMNS = ["question", "dataset", "protocol", "model", "train_ratio", "task", "design", "interval", "n", "a", "b", "mean_a", "mean_b",
           "effect", "ci_low", "ci_high", "pvalue", "p_holm", "p_win", "p_win_low", "p_win_high", "pairs_needed",
           "test_sampling"]
DATASET_NAMES = {"wisdm": "WISDM", "sleepsim": "simulated sleep data", "mhealth": "MHEALTH", "sleep": "sleep data"}
PROTOCOL_NAMES = {"paper": "random windows", "subject": "unseen subjects"}


def design_of(runs: pd.DataFrame) -> str:
    """``"resamples"`` when the runs of a cell were tested on more than one split (another split
    seed or held-out subject group), else ``"seeds"``. ``runs``: rows of one dataset x protocol cell
    with the records' ``split_seed`` and ``test_fold`` columns."""
    cols = [c for c in ("split_seed", "test_fold") if c in runs]
    if not cols:  # frames made before these columns existed: every grid then used one split
        return "seeds"
    splits = runs[cols].astype(float).fillna(-1).drop_duplicates()
    return "resamples" if len(splits) > 1 else "seeds"


def _role_runs(cell: pd.DataFrame, role: str, lam: float) -> pd.DataFrame:
    """The rows of one role in a cell, indexed by (seed, fold): a Smooth-Distill network of
    :data:`analyses.ROLES` (its lambda's runs, student or teacher), else a method's students."""
    found = [(x, w) for (x, w), r in ROLES.items() if r == role]
    if not found:
        return cell[(cell["method"].astype(str) == role) & (cell["who"] == "student")].set_index(["seed", "fold"])
    want_lam, who = found[0]
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


def _pair(records, ra: pd.DataFrame, rb: pd.DataFrame, who_a: str, who_b: str, task: int, design: str,
          metric: str, confidence: float, n_boot: int, boot_seed: int) -> dict:
    """The interval, P(A beats B) and effect of runs ``ra`` against ``rb`` (rows of one role each,
    indexed by their paired (seed, fold) cells, same order): the design's interval for two pairs or
    more; one pair gives its difference and no interval (``design`` "one run")."""
    xa, xb = ra[metric].to_numpy(float), rb[metric].to_numpy(float)
    row = {"n": len(xa), "mean_a": xa.mean(), "mean_b": xb.mean(), "pairs_needed": None,
           "effect": float(np.mean(xa - xb))}
    if len(xa) < 2:
        r = {"interval": "one run: no interval", "ci_low": np.nan, "ci_high": np.nan, "pvalue": np.nan}
        row.update(design="one run", test_sampling=False)
    elif design == "resamples":
        r = stats.resampled_interval(xa, xb, n_train=ra["n_fit"].to_numpy(float),
                                     n_test=ra["n_test"].to_numpy(float), confidence=confidence)
        d = xa - xb
        row.update(design=design, test_sampling=True,
                   pairs_needed=stats.pairs_needed(d.mean(), d.std(ddof=1), ratio=r["ratio"], confidence=confidence))
    else:
        ca = _correct(records, ra["run_id"], who_a, task) if metric == "accuracy" else None
        cb = _correct(records, rb["run_id"], who_b, task) if ca is not None else None
        if cb is not None:
            # Both intervals, and a direction only where both exclude zero: their hull. The bootstrap
            # puts the test sample in, but resampling three seeds understates their spread (ten
            # distinct draws, no small-sample correction); the paired t covers the seeds properly but
            # not the test sample.
            boot = stats.paired_bootstrap(ca, cb, n_boot=n_boot, seed=boot_seed, confidence=confidence)
            t = stats.seed_interval(xa, xb, confidence=confidence)
            r = {"interval": f"{t['interval']} and {boot['interval']}, the wider at each end",
                 "ci_low": min(t["ci_low"], boot["ci_low"]), "ci_high": max(t["ci_high"], boot["ci_high"]),
                 "pvalue": max(t["pvalue"], boot["pvalue"])}
            row.update(design=design, test_sampling=True)
        else:
            r = stats.seed_interval(xa, xb, confidence=confidence)
            row.update(design=design, test_sampling=False)
    w = stats.prob_a_beats_b(xa, xb, confidence)
    row.update(interval=r["interval"], ci_low=float(r["ci_low"]), ci_high=float(r["ci_high"]),
               pvalue=float(r["pvalue"]), p_win=w["p_win"], p_win_low=w["ci_low"], p_win_high=w["ci_high"])
    return row


def _cells(records, protocol: str | None, train_ratio):
    """The test rows of ``records`` grouped into cells: (dataset, protocol, model, train_ratio) ->
    rows. ``train_ratio``: None keeps runs on all their training data, "any" every ratio."""
    if isinstance(records, pd.DataFrame):
        records = _FrameOnly(records)
    df = records.df[records.df["split"] == "test"]
    df = df.assign(**{c: df[c] if c in df else v for c, v in (("model", "mtlnet"), ("train_ratio", np.nan))})
    if train_ratio is None:
        df = df[df["train_ratio"].isna()]
    if protocol is not None:
        df = df[df["protocol"] == protocol]
    keys = ["dataset", "protocol", "model", "train_ratio"]
    return records, df.groupby(keys, sort=True, dropna=False)


def _finish(rows: list[dict], confidence: float) -> pd.DataFrame:
    out = pd.DataFrame(rows, columns=COLUMNS)
    tested = out["pvalue"].notna()
    out["p_holm"] = np.nan
    if tested.any():
        out.loc[tested, "p_holm"] = stats.holm(out.loc[tested, "pvalue"].to_numpy())
    out.attrs.update(confidence=confidence, family=int(tested.sum()))
    return out


def join(*tables: pd.DataFrame) -> pd.DataFrame:
    """Several :func:`compare` tables (e.g. chapter 9's training ratios beside the full-data grid) as
    one family: rows concatenated and Holm's adjustment redone over all of them, so ``p_holm`` and the
    family size the sentences name agree. Tables of different confidence levels are refused."""
    tables = [t for t in tables if t is not None and len(t)]
    levels = {t.attrs.get("confidence") for t in tables}
    if len(levels) > 1:
        raise ValueError(f"join: the tables have different confidence levels {sorted(map(str, levels))}")
    rows = pd.concat(tables, ignore_index=True).drop(columns="p_holm").to_dict("records") if tables else []
    return _finish(rows, levels.pop() if levels else 0.95)


def ratio_gains(ratio: Records | pd.DataFrame | None, full: Records | pd.DataFrame | None = None, *,
                dataset: str = "wisdm", protocol: str = "paper") -> pd.DataFrame:
    """Smooth-Distill against multitask at each training ratio of ``ratio`` (chapter 9's
    ``configs/long_ratio.yaml``) and, from ``full`` (a grid on all the training data, e.g.
    ``configs/long_cv.yaml``), on all of it (``train_ratio`` 1.0): one :func:`join` ed family, so
    Holm's adjustment covers every share shown. A share needs two resamples for an interval."""
    parts = []
    if ratio is not None:
        parts.append(compare(ratio, questions=QUESTIONS[:1], train_ratio="any", protocol=protocol))
    if full is not None:
        f = compare(full, questions=QUESTIONS[:1], protocol=protocol)
        parts.append(f[f["dataset"] == dataset].assign(train_ratio=1.0))
    parts = [t[t["dataset"] == dataset] for t in parts if len(t)]
    return join(*parts)


def compare(records: Records | pd.DataFrame, *, questions=QUESTIONS + BASELINE_QUESTIONS, lam: float = 0.5,
            metric: str = "accuracy", confidence: float = 0.95, n_boot: int = 2000, boot_seed: int = 0,
            protocol: str | None = None, train_ratio: str | None = None, min_pairs: int = 2) -> pd.DataFrame:
    """Every question of ``questions`` for each cell (dataset x protocol x model x training ratio) and
    task of ``records`` whose two roles share at least ``min_pairs`` (seed, fold) cells (columns
    :data:`COLUMNS`, one row each; questions whose runs are absent have no rows). ``records``:
    :class:`records.Records` (predictions read where kept) or a tidy frame (no predictions).
    ``protocol``: only that protocol's cells; ``train_ratio="any"``: the training-ratio runs too
    (default: only runs on all their training data); ``min_pairs=1`` lets one seed through, as a
    difference without an interval (design "one run").

    ``effect`` = mean of a - b in points of test ``metric``; ``ci_low``/``ci_high`` and ``pvalue``
    come from the design's interval (``interval`` names it); ``p_holm`` is Holm over every row with
    an interval (the family of questions this table asks); ``p_win`` is P(A beats B) over the paired
    runs with its exact interval; ``pairs_needed`` (resampled designs) how many resamples would
    resolve the effect at the observed spread (None: none would); ``test_sampling`` whether the
    interval includes test-sampling error. The bootstrap works on accuracy: another ``metric`` uses
    the seed t.
    """
    records, cells = _cells(records, protocol, train_ratio)
    rows = []
    for (ds, cell_protocol, model, ratio), cell in cells:
        design = design_of(cell.drop_duplicates("run_id"))
        for task in (1, 2):
            c = cell[cell["task"] == task]
            for _key, a, b, question in questions:
                ra, rb = _role_runs(c, a, lam), _role_runs(c, b, lam)
                seeds = sorted(set(ra.index) & set(rb.index))  # paired (seed, fold) cells
                if len(seeds) < max(1, min_pairs):
                    continue
                row = {"question": question, "dataset": ds, "protocol": cell_protocol, "model": model,
                       "train_ratio": ratio, "task": task, "a": a, "b": b,
                       **_pair(records, ra.loc[seeds], rb.loc[seeds], _who(a), _who(b), task, design, metric,
                               confidence, n_boot, boot_seed)}
                rows.append(row)
    return _finish(rows, confidence)


def compare_lambdas(records: Records | pd.DataFrame, *, reference: float = 0.5, who: str = "student",
                    metric: str = "accuracy", confidence: float = 0.95, n_boot: int = 2000, boot_seed: int = 0,
                    protocol: str | None = None) -> pd.DataFrame:
    """Each distillation weight against ``reference``: the Smooth-Distill ``who`` (student or
    teacher) at lambda minus the same network at ``reference``, paired by (seed, fold) on each cell,
    with the design's interval (columns :data:`COLUMNS`; ``question`` reads "lambda = x against
    lambda = reference", ``a``/``b`` hold the two lambdas). Which lambda is best is a set of such
    comparisons, not a ranking of means."""
    records, cells = _cells(records, protocol, None)
    rows = []
    for (ds, cell_protocol, model, ratio), cell in cells:
        sd = cell[(cell["method"].astype(str) == "smooth_distill") & (cell["who"] == who)]
        design = design_of(sd.drop_duplicates("run_id"))
        for task in (1, 2):
            c = sd[sd["task"] == task]
            ref = c[c["lam"] == reference].set_index(["seed", "fold"])
            for lam in sorted(set(c["lam"].dropna()) - {reference}):
                other = c[c["lam"] == lam].set_index(["seed", "fold"])
                seeds = sorted(set(ref.index) & set(other.index))
                if not seeds:
                    continue
                rows.append({"question": f"lambda = {lam:g} against lambda = {reference:g}", "dataset": ds,
                             "protocol": cell_protocol, "model": model, "train_ratio": ratio, "task": task,
                             "a": f"lambda {lam:g}", "b": f"lambda {reference:g}",
                             **_pair(records, other.loc[seeds], ref.loc[seeds], who, who, task, design, metric,
                                     confidence, n_boot, boot_seed)})
    return _finish(rows, confidence)


def _who(role: str) -> str:
    return next((w for (_x, w), r in ROLES.items() if r == role), "student")


class _FrameOnly:
    """A tidy frame seen as records without stored predictions (demo grids, hand-made tables)."""

    def __init__(self, df: pd.DataFrame):
        self.df = df

    def has_predictions(self, run_id: str) -> bool:
        return False


def direction(row) -> int:
    """+1 when the interval lies above zero, -1 below, 0 when it includes zero or there is none
    (one run): the verdict rule."""
    if row["ci_low"] > 0:
        return 1
    if row["ci_high"] < 0:
        return -1
    return 0


def where(row) -> str:
    """"WISDM, random windows, task 1" (task 1: activity or posture; task 2: placement), first letter
    up; the model and the training ratio are named when the row has them (an ablation)."""
    text = f"{DATASET_NAMES.get(row['dataset'], row['dataset'])}, {PROTOCOL_NAMES.get(row['protocol'], row['protocol'])}"
    model = row.get("model") if hasattr(row, "get") else None
    if isinstance(model, str) and model != "mtlnet":
        text += f", {model}"
    ratio = row.get("train_ratio") if hasattr(row, "get") else None
    if ratio is not None and not pd.isna(ratio):
        text += f", {ratio:.0%} of the training windows"
    text += f", task {int(row['task'])}"
    return text[:1].upper() + text[1:]


def sentence(row, family: int | None = None) -> str:
    """One row of :func:`compare` in plain language, by the verdict rule (:func:`direction`).

    A direction is stated only when the interval excludes zero; if the Holm-adjusted p over the
    family is not below 0.05 the sentence says so. Otherwise the sentence says the data cannot
    tell, and (resampled designs) how many resamples would be needed at the observed spread."""
    a, b = role_name(row["a"]), role_name(row["b"])
    a = a[:1].upper() + a[1:]
    if row["design"] == "one run":
        return (f"{where(row)}: {a} − {b} = {row['effect']:+.2f} points in one run; one run gives no interval, "
                "so the data cannot tell.")
    interval = f"{row['effect']:+.2f} points, 95 % interval {row['ci_low']:+.2f} to {row['ci_high']:+.2f}"
    won = f"ahead in {row['p_win']:.0%} of {int(row['n'])} paired runs"
    sign = direction(row)
    if sign:
        verb = f"{role_is(row['a'])} {'more' if sign > 0 else 'less'} accurate than"
        text = f"{where(row)}: {a} {verb} {b} ({interval}; {won})."
        if family and row["p_holm"] >= 0.05:
            text += f" Not after adjusting for the {family} comparisons asked (Holm p = {row['p_holm']:.2f})."
        return text
    text = (f"{where(row)}: the data cannot tell whether {a} {role_is(row['a'])} more accurate than {b} "
            f"({interval}; {won}).")
    if row["design"] == "resamples":
        need = row["pairs_needed"]
        if need is None or (isinstance(need, float) and np.isnan(need)):
            text += " At this spread no number of resamples of this size would resolve it."
        else:
            text += f" At this spread about {int(need)} resamples would be needed."
    elif not row["test_sampling"]:
        text += " (Seed interval only: test-sampling error is not in it.)"
    return text


def brief(table: pd.DataFrame | None, dataset: str, question: str, task: int = 1, protocol: str | None = None) -> str:
    """One case of a :func:`compare` table in a few words, by the verdict rule: "+2.46 points (95 %
    seed interval -2.3 to +7.2, 3 seeds: cannot tell)"; a direction that Holm's adjustment over the
    table's family does not keep says so; "not in the records" when absent."""
    if table is None or table.empty:
        return "not in the records"
    rows = table[(table["dataset"] == dataset) & (table["question"] == question) & (table["task"] == task)]
    if protocol is not None:
        rows = rows[rows["protocol"] == protocol]
    if rows.empty:
        return "not in the records"
    r = rows.iloc[0]
    kind = {"seeds": "seed interval" if not r["test_sampling"] else "interval over seeds and test windows",
            "resamples": "corrected resampled interval"}[r["design"]]
    what = {1: "A better", -1: "A worse", 0: "cannot tell"}[direction(r)]
    if direction(r) and not r["p_holm"] < 0.05:  # a direction the family's adjustment does not keep
        what += f", only without Holm's adjustment for the {table.attrs.get('family', len(table))} comparisons"
    return f"{r['effect']:+.2f} points (95 % {kind} {r['ci_low']:+.1f} to {r['ci_high']:+.1f}, {int(r['n'])} runs: {what})"


def sentences(table: pd.DataFrame, question: str | None = None) -> list[str]:
    """:func:`sentence` of every row (of one ``question``), family size from the table."""
    rows = table if question is None else table[table["question"] == question]
    family = table.attrs.get("family", len(table))
    return [sentence(r, family) for _, r in rows.iterrows()]


def lambda_directions(table: pd.DataFrame, task: int, dataset: str | None = None) -> str:
    """One task of a :func:`compare_lambdas` table in a few words, by the verdict rule: "worse at 0,
    0.1; better at none; cannot tell at 1" (each lambda against the table's reference; "none" where
    no lambda falls in a group; a direction whose Holm-adjusted p over the table is not below 0.05
    is marked "only without Holm's adjustment"). ``dataset``: one dataset's rows (default: all)."""
    rows = table[table["task"] == task]
    if dataset is not None:
        rows = rows[rows["dataset"] == dataset]
    if rows.empty:
        raise ValueError(f"lambda_directions: no rows for task {task}" + (f" on {dataset}" if dataset else ""))
    return _by_direction(rows, lambda r: r["a"].split()[1])


def ratio_directions(table: pd.DataFrame, task: int) -> str:
    """One task of a :func:`ratio_gains` table in a few words, as :func:`lambda_directions`: "better
    at 50% (only without Holm's adjustment), 100%, worse at none, cannot tell at 10%, 25%" (A, e.g.
    Smooth-Distill, against B at each share of the training windows)."""
    rows = table[table["task"] == task].sort_values("train_ratio")
    if rows.empty:
        raise ValueError(f"ratio_directions: no rows for task {task}")
    return _by_direction(rows, lambda r: f"{r['train_ratio']:.0%}", order=(1, -1, 0))


def _by_direction(rows: pd.DataFrame, label, order=(-1, 1, 0)) -> str:
    """``rows`` grouped by the verdict rule's direction, each named by ``label(row)``: "worse at ...,
    better at ..., cannot tell at ..." in ``order``; "none" for an empty group; a direction whose
    Holm-adjusted p is not below 0.05 is marked "only without Holm's adjustment"."""
    def named(r) -> str:
        return label(r) if direction(r) == 0 or r["p_holm"] < 0.05 else f"{label(r)} (only without Holm's adjustment)"

    words = {-1: "worse", 1: "better", 0: "cannot tell"}
    pick = {k: ", ".join(named(r) for _, r in rows.iterrows() if direction(r) == k) or "none" for k in order}
    return ", ".join(f"{words[k]} at {pick[k]}" for k in order)


def tally(table: pd.DataFrame, question: str) -> dict:
    """How many rows of ``question`` resolve: ``{"rows", "above", "below", "unresolved"}``."""
    rows = table[table["question"] == question]
    signs = [direction(r) for _, r in rows.iterrows()]
    return {"rows": len(signs), "above": signs.count(1), "below": signs.count(-1), "unresolved": signs.count(0)}


def _place(row) -> str:
    """"WISDM with random windows" for lists."""
    return f"{DATASET_NAMES.get(row['dataset'], row['dataset'])} with {PROTOCOL_NAMES.get(row['protocol'], row['protocol'])}"


def _cases(rows: list) -> str:
    """Rows as a list of cases, the tasks of one place together: "WISDM with random windows, tasks 1
    and 2; simulated sleep data with random windows, task 1" (places in the rows' order)."""
    tasks: dict[str, list[int]] = {}
    for r in rows:
        tasks.setdefault(_place(r), []).append(int(r["task"]))
    return "; ".join(f"{place}, task {ts[0]}" if len(ts) == 1 else f"{place}, tasks {listing(sorted(ts))}"
                     for place, ts in tasks.items())


def headline(table: pd.DataFrame, question: str) -> str | None:
    """One plain sentence for ``question`` over all its rows: where the interval says A is more
    (or less) accurate than B, and in how many cases the data cannot tell. A case whose interval
    excludes zero but whose Holm-adjusted p over the table's family is not below 0.05 is named
    apart ("only without Holm's adjustment"). None when the table has no row for it. Task 1 is the
    activity or posture, task 2 the placement."""
    rows = table[table["question"] == question]
    if rows.empty:
        return None
    family = table.attrs.get("family", len(table))
    a, b = (role_name(rows.iloc[0][k]) for k in ("a", "b"))
    a, be = a[:1].upper() + a[1:], role_is(rows.iloc[0]["a"])
    signs = [direction(r) for _, r in rows.iterrows()]
    n, unsure = len(signs), signs.count(0)

    def cases(sign: int) -> str:
        held = [r for (_, r), d in zip(rows.iterrows(), signs) if d == sign]
        strong = _cases([r for r in held if r["p_holm"] < 0.05])
        weak = _cases([r for r in held if not r["p_holm"] < 0.05])
        caveat = f"only without Holm's adjustment for the {family} comparisons asked"
        if not weak:
            return strong
        if not strong:
            return f"{weak} ({caveat})"
        return f"{strong}, and, {caveat}, on {weak}"

    parts = []
    if 1 in signs:
        parts.append(f"{a} {be} more accurate than {b} on {cases(1)}")
    if -1 in signs:
        parts.append(f"{a} {be} less accurate than {b} on {cases(-1)}")
    if not parts:
        return f"{a} against {b}: the data cannot tell in any of the {n} cases (dataset, protocol, task)."
    text = ", and ".join(parts)
    if unsure:
        text += f"; in the other {unsure} of {n} cases the data cannot tell"
    return text + "."


def answers(table: pd.DataFrame) -> dict[str, str]:
    """``{question: paragraph}`` in :data:`QUESTIONS` order (then the baselines'): the headline,
    then every resolved row as a sentence with its interval. Questions without rows are left out."""
    out = {}
    family = table.attrs.get("family", len(table))
    for _key, _a, _b, question in QUESTIONS + BASELINE_QUESTIONS:
        head = headline(table, question)
        if head is None:
            continue
        rows = table[table["question"] == question]
        resolved = [sentence(r, family) for _, r in rows.iterrows() if direction(r) != 0]
        out[question] = " ".join([head, *resolved])
    return out


def disagreements(fixed: pd.DataFrame, cv: pd.DataFrame) -> pd.DataFrame:
    """Rows where a fixed-split table (seeds on one split) and a cross-validated one give different
    verdicts for the same question, dataset, protocol and task: columns ``question, dataset,
    protocol, task, fixed, cv`` (each "+", "-" or "?"), and both effects and intervals."""
    keys = ["question", "dataset", "protocol", "task"]
    sign = {1: "+", -1: "-", 0: "?"}
    f = fixed.assign(verdict=[sign[direction(r)] for _, r in fixed.iterrows()])
    c = cv.assign(verdict=[sign[direction(r)] for _, r in cv.iterrows()])
    cols = [*keys, "verdict", "effect", "ci_low", "ci_high"]
    both = f[cols].merge(c[cols], on=keys, suffixes=(" (one split)", " (cross-validated)"))
    return both[both["verdict (one split)"] != both["verdict (cross-validated)"]].reset_index(drop=True)


def scope(records: Records, table: pd.DataFrame | None = None) -> str:
    """The caveats every verdict from ``records`` carries, as one sentence: how many runs and
    resamples or seeds, on what share of WISDM, and that the sleep data are simulated."""
    runs = records.df.drop_duplicates("run_id")
    design = design_of(runs) if len(runs) else "seeds"
    per = runs.groupby(["dataset", "protocol"])["seed"].nunique()  # resamples (or seeds) in each cell
    parts = [f"{len(runs)} runs of the `{records.name}` grid"]
    if design == "resamples":
        lo, hi = int(per.min()), int(per.max())
        parts.append(f"{count(lo, 'resample')} of test split and seed per cell" if lo == hi
                     else f"{lo} to {hi} resamples of test split and seed per cell")
    else:
        parts.append(f"{count(runs['seed'].nunique(), 'seed')} on one fixed split per cell")
    wisdm = [records.records[r]["data"]["n_windows"] for r in runs.loc[(runs["dataset"] == "wisdm")
                                                                         & (runs["protocol"] == "paper"), "run_id"]]
    if wisdm:
        parts.append(f"WISDM: the {max(wisdm):,} windows of the subjects present, "
                     f"{max(wisdm) / PAPER_WINDOWS:.0%} of the paper's {PAPER_WINDOWS:,}")
    if "sleepsim" in set(runs["dataset"]):
        parts.append("sleep postures: simulated data (the paper's recordings are not public)")
    parts.append("MTL-net, $\\lambda = 0.5$, the paper's decay $a = 0.999$")
    if table is not None and len(table):
        parts.append(f"Holm's adjustment over the {len(table)} comparisons asked")
    return "; ".join(parts) + "."


def disagreement_table(fixed: pd.DataFrame, cv: pd.DataFrame) -> pd.DataFrame:
    """:func:`disagreements` for reading, narrow enough for the page: index (question, case), one
    column per design, each "+1.23 (-0.40 to +2.86): A better / A worse / cannot tell"."""
    d = disagreements(fixed, cv)
    word = {"+": "A better", "-": "A worse", "?": "cannot tell"}
    out = pd.DataFrame({
        "question": d["question"].str.replace("?", "", regex=False),
        "case": [f"{DATASET_NAMES.get(ds, ds)}, {PROTOCOL_NAMES.get(p, p)}, task {int(t)}"
                 for ds, p, t in zip(d["dataset"], d["protocol"], d["task"])]})
    for design in ("one split", "cross-validated"):
        out[design] = [f"{e:+.2f} ({lo:+.2f} to {hi:+.2f}): {word[v]}" for e, lo, hi, v in
                       zip(d[f"effect ({design})"], d[f"ci_low ({design})"], d[f"ci_high ({design})"],
                           d[f"verdict ({design})"])]
    return out.set_index(["question", "case"])


def reading_table(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`compare` for reading: one row per question x case, columns effect, 95 % interval,
    P(A beats B) with its interval, Holm p and the verdict ("A better", "A worse", "cannot tell";
    ", not after Holm" where the adjusted p is not below 0.05), numbers as text with one format
    (two decimals for points)."""
    word = {1: "A better", -1: "A worse", 0: "cannot tell"}
    order = {q: k for k, (_, _, _, q) in enumerate(QUESTIONS + BASELINE_QUESTIONS)}
    keys = ["_q", "dataset", "protocol", *[k for k in ("model", "train_ratio") if k in table], "task"]
    table = table.assign(_q=table["question"].map(order).fillna(len(order))).sort_values(keys, kind="stable")
    out = pd.DataFrame({
        "question": table["question"].str.replace("?", "", regex=False),
        "case": [where(r) for _, r in table.iterrows()],  # names the model and training ratio where set
        "runs": table["n"].astype(int),
        "A − B (points)": [f"{e:+.2f}" for e in table["effect"]],
        "95 % interval": [f"{lo:+.2f} to {hi:+.2f}" for lo, hi in zip(table["ci_low"], table["ci_high"])],
        "P(A beats B)": [f"{p:.2f} ({lo:.2f}–{hi:.2f})" for p, lo, hi in
                         zip(table["p_win"], table["p_win_low"], table["p_win_high"])],
        "Holm p": [f"{p:.3f}" for p in table["p_holm"]],
        # a direction Holm's adjustment over the family does not keep says so, as in brief()
        "verdict": [word[direction(r)] + (", not after Holm" if direction(r) and not r["p_holm"] < 0.05 else "")
                    for _, r in table.iterrows()],
    })
    return out.set_index(["question", "case"])


__all__ = ["answers", "brief", "compare_lambdas", "disagreement_table", "disagreements", "headline", "ratio_directions", "ratio_gains", "reading_table", "scope", "BASELINE_QUESTIONS", "COLUMNS", "QUESTIONS", "compare", "design_of", "direction", "sentence", "sentences", "tally", "where"]
