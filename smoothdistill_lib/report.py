"""The paper's tables from run records: Tables 5-8 and the lambda / training-ratio ablations.

Input: the tidy frame of :func:`records.load_records` (one row per run x split x who x task). The
table functions return *numeric* DataFrames (pandas API for the chapters, e.g.
``table5(df).loc[("wisdm", "smooth_distill"), (1, "test", "accuracy", "mean")]``, or
:func:`pick`); :func:`format_table` turns "mean/sd/n" columns into ``"68.59 ± 0.41"`` strings for
display and :func:`to_markdown` prints them. ``python -m smoothdistill_lib report EXPERIMENT``
(:func:`cli_report`) does both and writes one CSV per table.

The chapters' further comparisons (gains with p-values, teacher vs student, leakage, EMA scale,
histories) live in :mod:`analyses`; loading the records in :mod:`records`.
"""

from __future__ import annotations

import contextlib
import math
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from smoothdistill_lib import stats
from smoothdistill_lib.methods import LAM_METHODS, METHODS, known_first
from smoothdistill_lib.records import RUN_COLUMNS, experiment_folder, load_records

SCALARS = ("accuracy", "macro_f1", "weighted_f1", "balanced_accuracy")
SPLITS = ("val", "test")
PER_CLASS = ("accuracy", "sensitivity", "ppv", "npv")
# settings that, when they vary within a (dataset, method), become extra index levels of a table
_VARYING = ("protocol", "model", "lam", "train_ratio")


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
        long["split"] = pd.Categorical(long["split"], known_first(long["split"], SPLITS))
    g = long.groupby([*by, *columns, "metric"], observed=True, dropna=False)["value"]
    stats = pd.concat({"mean": g.mean(), "sd": g.std(ddof=1), "n": g.count()}, axis=1)
    stats.columns = pd.CategoricalIndex(stats.columns, ["mean", "sd", "n"], name="stat")
    wide = stats.unstack([*columns, "metric"])
    wide = wide.reorder_levels([*columns, "metric", "stat"], axis=1).sort_index(axis=1)
    return wide


def rows_where(df: pd.DataFrame, **eq) -> pd.DataFrame:
    """Rows with ``column == value`` for each ``eq`` item (None = any); a value absent from the
    records raises, naming the values present."""
    for k, v in eq.items():
        if v is None:
            continue
        if v not in set(df[k]):
            raise ValueError(f"no records with {k}={v!r}; present: {sorted(map(str, set(df[k])))}")
        df = df[df[k] == v]
    return df


def one_setting(df: pd.DataFrame, **eq) -> pd.DataFrame:
    """Rows matching ``eq`` (None = any), outside the ratio ablation, with one setting per method."""
    d = rows_where(df, **eq)
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
    d = rows_where(df, who=who)
    d = d[d["train_ratio"].isna()]
    return summarize(d, _keys(d, ["dataset", "method"]), ["task", "split"], values)


def table6(df: pd.DataFrame, dataset: str, task: int = 1, split: str = "test", who: str = "student",
           protocol: str | None = None, model: str | None = None) -> pd.DataFrame:
    """Table 6: per-class one-vs-rest Accuracy, Sensitivity, PPV, NPV (percent, mean over runs,
    undefined rates skipped) of ``task`` on ``dataset``. Rows: classes in label order; columns
    ``(method, metric)``. ``protocol``/``model`` pick one setting when the records hold several."""
    d = one_setting(df, dataset=dataset, task=task, split=split, who=who, protocol=protocol, model=model)
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
    methods = known_first(long["method"], list(d["method"].cat.categories))
    t = t.reindex(columns=pd.MultiIndex.from_product([methods, list(PER_CLASS)], names=["method", "metric"]))
    return t.reindex([str(n) for n in names])


TIMES = ("total", "median_epoch")


def table7(df: pd.DataFrame, baseline: str = "singletask", time: str = "total") -> pd.DataFrame:
    """Table 7: inference params, size (MB), FLOPs per window, training seconds per run (mean),
    training-time ratio vs ONE network of ``baseline`` (a single-task run trains two: the paper's
    convention, ``methods.METHODS[baseline].models_trained``), peak memory and energy per run
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
    time_col = "train_seconds" if "train_seconds" in t else None
    if time == "median_epoch":
        median, how = median_epoch_seconds(runs, keys)
        at = t.columns.get_loc(time_col) + 1 if time_col is not None else len(t.columns)
        t.insert(at, "train_seconds_median_epoch", median.reindex(t.index))
        time_col, t["train_seconds_median_epoch_unit"], t["train_seconds_median_epoch_how"] = \
            "train_seconds_median_epoch", "s", how
    if time_col is not None and baseline in set(runs["method"]):
        # the paper's convention: a multiple of ONE baseline network's time (a single-task run trains two)
        nets = METHODS[baseline].models_trained if baseline in METHODS else 1
        base = t.xs(baseline, level="method")[time_col] / nets
        others = t.index.droplevel("method")
        t.insert(t.columns.get_loc(time_col) + 1, "time_ratio", t[time_col].to_numpy() / base.reindex(others).to_numpy())
        t["time_ratio_unit"] = f"multiple of one {baseline} network's"
        t["time_ratio_how"] = (f"{time_col} / one {baseline} network's: {baseline}'s {time_col} / the {nets} "
                               "network(s) its run trains (same dataset and settings)")
    for c in figures:
        for extra in ("unit", "how"):
            col = f"{c}_{extra}"
            if col in runs:
                t[col] = g[col].agg(lambda s: " | ".join(dict.fromkeys(map(str, s.dropna()))))
    return t


def median_epoch_seconds(runs: pd.DataFrame, keys: list[str]) -> tuple[pd.Series, str]:
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
           model: str | None = None, design: str | None = None) -> pd.DataFrame:
    """Table 8: methods x methods p-values of ``metric`` paired on (seed, fold), via
    :func:`stats.pvalue_matrix` (``test="ttest"`` reproduces the paper's assumption; with
    ``adjust="holm"`` the family of its 10 comparisons is accounted for). ``test="corrected"``
    needs ``design="resamples"``: the cells of ``configs/main.yaml`` share one test set."""
    d = one_setting(df, dataset=dataset, task=task, split=split, who=who, protocol=protocol, model=model)
    tidy = d[["method", "seed", "fold", metric]].assign(method=d["method"].astype(str))
    n_train, n_test = eval_sizes(d, split)
    return stats.pvalue_matrix(tidy, "method", metric, ("seed", "fold"), test=test, adjust=adjust,
                               n_train=n_train, n_test=n_test, design=design)


def lambda_table(df: pd.DataFrame, method: str = "smooth_distill", who: str = "student",
                 values=("accuracy", "macro_f1")) -> pd.DataFrame:
    """The lambda sweep (Fig. 4): rows (dataset, lambda), columns (task, split, metric, stat).
    lambda = 0 trains without distillation; its *teacher* (``who="teacher"``) is "EMA weights only"."""
    d = rows_where(df, method=method, who=who)
    d = d[d["train_ratio"].isna()]
    return summarize(d, _keys(d, ["dataset", "lam"]), ["task", "split"], values)


def ratio_table(df: pd.DataFrame, split: str = "test", who: str = "student",
                values=("accuracy", "macro_f1")) -> pd.DataFrame:
    """The training-ratio ablation (Figs. 5-7): rows (dataset, model, train_ratio), columns
    (task, metric, stat) on ``split``."""
    d = rows_where(df, split=split, who=who)
    d = d[d["train_ratio"].notna()]
    if d.empty:
        raise ValueError("no training-ratio runs in these records")
    return summarize(d, _keys(d, ["dataset", "model", "train_ratio"]), ["task"], values)


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



def eval_sizes(d: pd.DataFrame, split: str) -> tuple[int | None, int | None]:
    """(n_train, n_test) behind the results of ``split``, for the corrected test (the cells of one split
    hold equal sizes up to rounding)."""
    n_eval = d["n_test" if split == "test" else "n_val"]
    n_train = int(d["n_fit"].mean()) if d["n_fit"].notna().any() else None
    return n_train, (int(n_eval.mean()) if n_eval.notna().any() else None)



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
    return f.to_markdown(index=False, disable_numparse=True)  # keep format_table's strings


#: the wrapper of every table the book shows. Tables are made to fit the content column (number
#: formats below, book/_css/book.css, checked by tools/check_html.py); the scroll bar is only a last
#: resort for a table the check would fail anyway
TABLE_STYLE = "overflow-x:auto;max-width:100%;font-size:0.85em"
#: at most this many significant digits before the decimals run out: 1,000 (not 1,000.000), 33.33, 0.756
SIGNIFICANT = 4
NBSP, WBR = "\u00a0", "\u200b"  # WBR: a placeholder, written as <wbr> into the HTML
# a cell that is one number or a number with its interval / spread: "93.1 ± 0.4", "0.67 (0.09–0.99)"
_NUMERIC_TEXT = re.compile(r"^[\s\d.,±%()+\-−–×e]*\d[\s\d.,±%()+\-−–×e]*$")
# a token this long (URL, path, long snake_case name) gets break hints (21: longer than any method name)
_LONG_TOKEN = re.compile(r"\S{21,}")
#: a row label (an index value) this short stays on one line
SHORT_LABEL = 16


def display_frame(t: pd.DataFrame) -> pd.DataFrame:
    """``t`` as strings for display, the book's one table format.

    Index levels become ordinary columns (no extra index-name header row; a plain 0..n-1 index
    is dropped); "mean/sd/n" tables go through :func:`format_table`; in other numeric columns
    integers (also integer floats such as ``305.0``) show as integers with thousands separators,
    other floats with the decimals the column was rounded to, at most 4 significant digits'
    worth (:data:`SIGNIFICANT`: ``1,000`` and ``33``, not ``1,000.000`` and ``33.333``) and
    separators; columns with the same name under different groups (a quantity shown twice, e.g.
    p-values without and with a correction) share one format, so ``1`` never stands next to
    ``1.000``; missing values show as ``–``. Strings are never cut.
    """
    if isinstance(t.columns, pd.MultiIndex) and t.columns.names[-1] == "stat":
        t = format_table(t)
    out = t.copy()
    if isinstance(out.index, pd.RangeIndex) and out.index.name is None:
        out = out.reset_index(drop=True)
    else:
        names = [n if n is not None else "" for n in out.index.names]
        out.index = out.index.set_names(names)
        if isinstance(out.columns, pd.MultiIndex):
            out = out.reset_index(col_level=0)
        else:
            out = out.reset_index()
    if not isinstance(out.columns, pd.MultiIndex):
        out.columns.name = None  # a named column index would make a header cell of its own
    if isinstance(out.columns, pd.MultiIndex):  # level names would make a header column of their own
        names = list(out.columns.names)
        out.columns = pd.MultiIndex.from_tuples(
            [tuple(f"task {x}" if n == "task" and isinstance(x, int | np.integer) else x for n, x in zip(names, c, strict=True))
             for c in out.columns])
    numeric = [c for c in out.columns
               if pd.api.types.is_numeric_dtype(out[c]) and not pd.api.types.is_bool_dtype(out[c])]
    decimals = {c: _column_decimals(out[c]) for c in numeric}
    # a column's quantity is its last non-empty level: ("n", "", "") is "n", not "" (which every
    # index column of a MultiIndex table also ends in)
    leaf = {c: next((x for x in reversed(c) if x != ""), "") if isinstance(c, tuple) else c for c in numeric}
    for c in numeric:  # one format per quantity: the same leaf name under several groups
        same = [d for d in numeric if leaf[d] == leaf[c]]
        if len(same) > 1 and not all(pd.api.types.is_integer_dtype(out[d]) for d in same):
            decimals[c] = max(decimals[d] for d in same)
    for c in out.columns:
        col = out[c]
        if pd.api.types.is_bool_dtype(col):
            out[c] = col.map({True: "yes", False: "no"}).astype(object)
        elif c in decimals:
            out[c] = _column_strings(col, decimals[c])
        else:
            out[c] = col.map(lambda v: "–" if v is None or (isinstance(v, float) and math.isnan(v)) else v)
    return out


def _column_decimals(col: pd.Series) -> int:
    """Decimals of one numeric column: what its values need (at most 4), and no more than
    :data:`SIGNIFICANT` digits for its largest value allow."""
    vals = pd.to_numeric(col, errors="coerce").astype(float)
    finite = vals[np.isfinite(vals) & ((vals == 0) | (vals.abs() >= 1e-3))]  # tiny values: 2 significant digits
    if finite.empty:
        return 0
    need = max(_decimals(v) for v in finite)
    digits = len(str(int(finite.abs().max())))  # before the decimal point
    return min(need, max(0, SIGNIFICANT - digits))


def _column_strings(col: pd.Series, decimals: int | None = None) -> pd.Series:
    vals = pd.to_numeric(col, errors="coerce").astype(float)
    if decimals is None:
        decimals = _column_decimals(col)

    def fmt(v: float) -> str:
        if not np.isfinite(v):
            return "–" if math.isnan(v) else ("∞" if v > 0 else "−∞")
        if v != 0 and abs(v) < 1e-3:  # tiny values (p-values, kWh) keep 2 significant digits
            return f"{v:.2g}"
        return f"{v:,.{decimals}f}"

    return pd.Series([fmt(v) for v in vals], index=col.index, dtype=object)


def _decimals(v: float, most: int = 4) -> int:
    """Decimals needed to show ``v`` as rounded to at most ``most`` decimals (``305.0`` -> 0)."""
    for d in range(most + 1):
        if abs(round(v, d) - v) < 1e-9 * max(1.0, abs(v)):
            return d
    return most


def _fit_text(v, label: bool = False):
    """A cell's text laid out for a narrow column: numbers (and number-with-interval texts such as
    ``93.1 ± 0.4``) and, with ``label``, short labels never break (no-break spaces); a long token
    (a URL, a path, a long snake_case name) may break after ``_ / + . & = ?`` (``<wbr>``, written
    into the HTML by :func:`to_html`). Shorter names stay whole: ``smooth_distill`` is one word."""
    if not isinstance(v, str):
        return v
    if _NUMERIC_TEXT.match(v) or (label and len(v) <= SHORT_LABEL):
        v = v.replace(" ", NBSP)
    return _LONG_TOKEN.sub(lambda m: re.sub(r"(?<=[_/+.&=?])(?=\w)", WBR, m.group(0)), v)


def _fit_header(v):
    """A header's text: as :func:`_fit_text`, and every name may also break after ``_ / +``
    (``up_<wbr>right``). The book's CSS breaks headers only there and between words (never inside a
    word: "epoch", not "epoc|h"), so a header column is as narrow as its longest piece."""
    v = _fit_text(v)
    return re.sub(r"(?<=[_/+])(?=\w)", WBR, v) if isinstance(v, str) else v


def to_html(t: pd.DataFrame) -> str:
    """HTML of :func:`display_frame` ``(t)`` inside a wrapper (:data:`TABLE_STYLE`), laid out to fit
    the book's content column: see :func:`_fit_text` (the width is checked on the built pages by
    ``tools/check_html.py``; the CSS is ``book/_css/book.css``).

    ``nb.setup`` makes this the HTML form of every DataFrame a chapter displays.
    """
    f = display_frame(t)
    labels = [c for c in f.columns[: max(1, t.index.nlevels)]
              if not (isinstance(t.index, pd.RangeIndex) and t.index.name is None)]
    for c in f.columns:
        f[c] = f[c].map(lambda v, lab=c in labels: _fit_text(v, label=lab))
    # headers wrap between words and at the break hints (book.css), never with no-break spaces
    if isinstance(f.columns, pd.MultiIndex):
        f.columns = pd.MultiIndex.from_tuples([tuple(_fit_header(x) for x in c) for c in f.columns])
    else:
        f.columns = [_fit_header(c) for c in f.columns]
    with pd.option_context("display.max_colwidth", None):
        body = f.to_html(index=False, na_rep="–", border=0, classes="dataframe sd-table", escape=True)
    return f'<div style="{TABLE_STYLE}">{body.replace(WBR, "<wbr>")}</div>'


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
