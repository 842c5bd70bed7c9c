"""Comparing methods over paired seed x fold results (paper Table 8), with scipy.stats.

Each method is run on the same (seed, fold) cells, so results are **paired**: tests act on the
per-cell differences. Three tests are offered:

- ``"ttest"``: paired t-test (``scipy.stats.ttest_rel``).
- ``"wilcoxon"``: Wilcoxon signed-rank (``scipy.stats.wilcoxon``, exact for small n).
- ``"corrected"``: the Nadeau-Bengio corrected resampled t-test (Nadeau & Bengio 2003; Bouckaert &
  Frank 2004). The cells share most of their training data, so their differences are positively
  correlated and the naive t-test's variance ``s^2 / J`` is too small; the corrected test uses
  ``(1/J + n_test/n_train) * s^2``, with J the number of pairs.

**Which test reproduces the paper's Table 8?** The paper does not name it.
An exact Wilcoxon test on 5 pairs cannot give p below 0.0625, yet the table shows p = 0.0001; so it
was a t-type test or used n >= ~15 pairs. Our documented assumption: a paired t-test over the 25
(seed, fold) test accuracies, no multiplicity correction -- ``pvalue_matrix(df, test="ttest")``.

**Which test does the book recommend?** The one that fits the design (section "Intervals that match
the design" below). The corrected test accounts for the overlap of the training sets of resamples
whose *test sets differ*; the paper's cells (seeds x validation folds) share one test set, so it
does not fit them and ``paired_test`` refuses it there. On one test set: the paired t over the cells
with Holm's adjustment over the comparisons asked, and a paired bootstrap over test windows
(:func:`paired_bootstrap`) for the test-sampling error the cells cannot show.

>>> holm([0.01, 0.04, 0.03, 0.005]).round(4).tolist()
[0.03, 0.06, 0.06, 0.02]
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as st

from smoothdistill_lib.methods import paper_order

TESTS = ("ttest", "wilcoxon", "corrected")


def _values(values, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr


def summary(values, confidence: float = 0.95) -> dict:
    """Mean, sd (ddof=1), standard error and a t-based ``confidence`` interval of ``values`` (1-D).

    NaNs are dropped (e.g. a PPV undefined in one run); ``n`` counts the values used. With n = 1
    the sd and the interval are NaN.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    v = _values(values, "values")
    v = v[~np.isnan(v)]
    if v.size == 0:
        raise ValueError("summary of no values (empty or all NaN)")
    n, mean = int(v.size), float(v.mean())
    sd = float(v.std(ddof=1)) if n > 1 else float("nan")
    sem = sd / np.sqrt(n)
    if n > 1 and sem > 0:
        lo, hi = st.t.interval(confidence, n - 1, loc=mean, scale=sem)
    else:  # one value: no interval; identical values: a zero-width one
        lo = hi = mean if n > 1 else float("nan")
    return {"n": n, "mean": mean, "sd": sd, "sem": float(sem), "ci_low": float(lo), "ci_high": float(hi),
            "confidence": confidence}


def paired_test(a, b, test: str = "ttest", *, n_train: int | None = None, n_test: int | None = None,
                design: str | None = None) -> dict:
    """Two-sided paired test of ``a`` vs ``b`` ((J,) results of two methods on the same cells).

    ``test``: ``"ttest"`` | ``"wilcoxon"`` | ``"corrected"``. The last is the corrected resampled t
    (Nadeau-Bengio): it needs ``n_train`` and ``n_test`` (the training and test windows behind each
    result) and ``design="resamples"`` (:data:`DESIGNS`): on seeds or folds that share one test set
    it does not fit and is refused (:class:`DesignError`). Identical inputs give p = 1.

    Returns ``{"test", "n", "mean_diff" (a - b), "statistic", "pvalue"}``.
    """
    if test not in TESTS:
        raise ValueError(f"unknown test {test!r}; choose one of {', '.join(TESTS)}")
    if test == "corrected":
        _check_design(design or "seeds", "resamples", "the corrected resampled t (Nadeau-Bengio)",
                      "test='ttest' (and a paired bootstrap over test windows, stats.paired_bootstrap); pass "
                      "design='resamples' only when each pair was tested on its own split")
    x, y = _values(a, "a"), _values(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"a and b must be paired (same length), got {x.size} and {y.size}")
    if np.isnan(x).any() or np.isnan(y).any():
        raise ValueError("a or b holds NaN: drop unpaired cells first")
    d = x - y
    n = int(d.size)
    if n < 2:
        raise ValueError(f"a paired test needs at least 2 pairs, got {n}")
    out = {"test": test, "n": n, "mean_diff": float(d.mean())}
    if np.all(d == 0):  # scipy gives NaN (t) or warns (Wilcoxon); no difference at all means p = 1
        return out | {"statistic": 0.0, "pvalue": 1.0}
    if test == "ttest":
        r = st.ttest_rel(x, y)
        stat, p = r.statistic, r.pvalue
    elif test == "wilcoxon":
        r = st.wilcoxon(x, y)
        stat, p = r.statistic, r.pvalue
    else:
        if n_train is None or n_test is None or n_train <= 0 or n_test <= 0:
            raise ValueError("test='corrected' needs n_train and n_test (> 0): the training and test "
                             "set sizes behind each paired result")
        # Nadeau-Bengio: inflate the variance of the mean difference by n_test/n_train (scipy has no
        # such test; the statistic is a t with J - 1 degrees of freedom).
        var = d.var(ddof=1) * (1.0 / n + n_test / n_train)
        stat = d.mean() / np.sqrt(var) if var > 0 else np.sign(d.mean()) * np.inf
        p = 2.0 * st.t.sf(abs(stat), df=n - 1)
    return out | {"statistic": float(stat), "pvalue": float(p)}


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm step-down adjusted p-values (same order as given; NaNs stay NaN and are not counted).

    Sorted ascending, ``p_(i)`` becomes ``max_{j<=i} min(1, (m - j + 1) p_(j))``.
    Written by hand because scipy only ships Benjamini-Hochberg (``false_discovery_control``) and
    statsmodels, which has Holm, is not a dependency for six lines.
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    scaled = (m - np.arange(m)) * p[order]
    out[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return out


def _ordered_methods(present, methods: Sequence[str] | None) -> list[str]:
    present = list(dict.fromkeys(present))
    if methods is not None:
        missing = [m for m in methods if m not in present]
        if missing:
            raise ValueError(f"methods {missing} have no results; present: {present}")
        return list(methods)
    return paper_order(present)


def _wide(df: pd.DataFrame, method_col: str, value_col: str, pair_cols: Sequence[str]) -> pd.DataFrame:
    missing = [c for c in (method_col, value_col, *pair_cols) if c not in df.columns]
    if missing:
        raise ValueError(f"results DataFrame lacks columns {missing}; it has {list(df.columns)}")
    keys = [*pair_cols, method_col]
    dup = df.duplicated(keys, keep=False)
    if dup.any():
        first = df.loc[dup, keys].iloc[0].to_dict()
        raise ValueError(f"several results for the same cell {first}: filter the table to one "
                         f"dataset/task/split/metric first (pairing columns: {list(pair_cols)})")
    return df.pivot(index=list(pair_cols), columns=method_col, values=value_col)


def pairwise_tests(
    df: pd.DataFrame,
    method_col: str = "method",
    value_col: str = "value",
    pair_cols: Sequence[str] = ("seed", "fold"),
    test: str = "ttest",
    methods: Sequence[str] | None = None,
    n_train: int | None = None,
    n_test: int | None = None,
    design: str | None = None,
) -> pd.DataFrame:
    """Every pair of methods in a tidy table (one row per method x cell), paired on ``pair_cols``.

    Cells missing for either method of a pair are left out of that pair (``n`` says how many
    remain). Methods come in Table 8 order unless ``methods`` is given.

    Returns one row per pair: ``method_a, method_b, n, mean_a, mean_b, mean_diff, statistic,
    pvalue, pvalue_holm`` (Holm over all the pairs in the table).
    """
    wide = _wide(df, method_col, value_col, pair_cols)
    order = _ordered_methods(wide.columns, methods)
    rows = []
    for a, b in itertools.combinations(order, 2):
        both = wide[[a, b]].dropna()
        r = paired_test(both[a].to_numpy(), both[b].to_numpy(), test, n_train=n_train, n_test=n_test,
                        design=design)
        rows.append({"method_a": a, "method_b": b, "n": r["n"], "mean_a": float(both[a].mean()),
                     "mean_b": float(both[b].mean()), "mean_diff": r["mean_diff"],
                     "statistic": r["statistic"], "pvalue": r["pvalue"]})
    out = pd.DataFrame(rows, columns=["method_a", "method_b", "n", "mean_a", "mean_b", "mean_diff",
                                      "statistic", "pvalue"])
    out["pvalue_holm"] = holm(out["pvalue"].to_numpy())
    out.attrs["test"] = test
    return out


def pvalue_matrix(
    df: pd.DataFrame,
    method_col: str = "method",
    value_col: str = "value",
    pair_cols: Sequence[str] = ("seed", "fold"),
    test: str = "ttest",
    adjust: str | None = None,
    methods: Sequence[str] | None = None,
    n_train: int | None = None,
    n_test: int | None = None,
    design: str | None = None,
) -> pd.DataFrame:
    """Table 8: symmetric methods x methods matrix of two-sided p-values, diagonal 1.

    ``df`` is tidy: one row per method x (seed, fold) cell for ONE dataset/task/split/metric.
    ``adjust=None`` gives raw p-values (the paper's table); ``adjust="holm"`` Holm-adjusted ones.
    ``test="corrected"`` needs ``design="resamples"`` (module docstring).
    """
    if adjust not in (None, "holm"):
        raise ValueError(f"adjust must be None or 'holm', got {adjust!r}")
    pairs = pairwise_tests(df, method_col, value_col, pair_cols, test, methods, n_train, n_test, design)
    order = _ordered_methods(df[method_col], methods)
    col = "pvalue" if adjust is None else "pvalue_holm"
    mat = pd.DataFrame(np.eye(len(order)), index=pd.Index(order, name=method_col),
                       columns=pd.Index(order, name=method_col))
    for r in pairs.itertuples(index=False):
        p = getattr(r, col)
        mat.loc[r.method_a, r.method_b] = mat.loc[r.method_b, r.method_a] = p
    mat.attrs.update(test=test, adjust=adjust)
    return mat


# --------------------------------------------------------------------------------------------
# Intervals that match the design (chapter 8, "Designs and their intervals")
#
# What varies between the paired results decides which interval covers what:
#
# - ``"seeds"``: one fixed train/test split, only the seed (initialisation, data order) varies. The
#   paired t over seeds covers seed-to-seed variation only; the test windows are a sample too, so
#   :func:`paired_bootstrap` resamples windows and seeds together (it needs per-window predictions).
#   The Nadeau-Bengio correction does NOT fit: its n_test/n_train term models the overlap of
#   training sets across resplits, which one split does not have; it would only widen the seed
#   interval by a constant.
# - ``"resamples"``: the test split changes with the seed (subject-group folds, or repeated random
#   test splits). The spread of the differences now includes split-to-split and test-sampling
#   variation, but the training sets overlap, so the plain t is too narrow: the corrected resampled
#   t (Nadeau & Bengio 2003; Bouckaert & Frank 2004) is the interval to quote.

DESIGNS = {
    "seeds": "seeds on one fixed split",
    "resamples": "test split and seed varied together",
}


class DesignError(ValueError):
    """A statistic was asked for a design it does not fit (the message says which one does)."""


def _check_design(design: str, allowed: str, what: str, instead: str) -> None:
    if design not in DESIGNS:
        raise DesignError(f"design={design!r}; choose one of {', '.join(DESIGNS)}")
    if design != allowed:
        raise DesignError(f"{what} fits {DESIGNS[allowed]}, not {DESIGNS[design]}: use {instead}")


def _t_interval(d: np.ndarray, var_of_mean: float, confidence: float) -> tuple[float, float, float]:
    n, m = d.size, float(d.mean())
    if var_of_mean == 0:
        return m, m, (1.0 if m == 0 else 0.0)
    se = np.sqrt(var_of_mean)
    q = st.t.ppf(0.5 + confidence / 2, n - 1)
    p = 2.0 * st.t.sf(abs(m / se), df=n - 1)
    return float(m - q * se), float(m + q * se), float(p)


def _diffs(a, b) -> np.ndarray:
    x, y = _values(a, "a"), _values(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"a and b must be paired (same length), got {x.size} and {y.size}")
    if np.isnan(x).any() or np.isnan(y).any():
        raise ValueError("a or b holds NaN: drop unpaired cells first")
    if x.size < 2:
        raise ValueError(f"an interval needs at least 2 pairs, got {x.size}")
    return x - y


def seed_interval(a, b, *, design: str = "seeds", confidence: float = 0.95) -> dict:
    """Paired t interval of ``a - b`` over seeds on ONE split (``design="seeds"`` only).

    Returns ``{"design", "interval", "n", "mean_diff", "ci_low", "ci_high", "pvalue"}``. It covers
    seed-to-seed variation, not test-sampling error: pair it with :func:`paired_bootstrap`. On a
    resampled design the plain t is too narrow (overlapping training sets): refused."""
    _check_design(design, "seeds", "the paired t over seeds", "resampled_interval (corrected resampled t)")
    d = _diffs(a, b)
    lo, hi, p = _t_interval(d, d.var(ddof=1) / d.size, confidence)
    return {"design": design, "interval": f"paired t over {d.size} seeds", "n": int(d.size),
            "mean_diff": float(d.mean()), "ci_low": lo, "ci_high": hi, "pvalue": p}


def resampled_interval(a, b, *, n_train, n_test, design: str = "resamples", confidence: float = 0.95) -> dict:
    """Corrected resampled t interval (Nadeau-Bengio) of ``a - b`` over J resamples whose test
    splits differ (``design="resamples"`` only): variance ``(1/J + mean(n_test/n_train)) s^2``,
    J - 1 degrees of freedom. ``n_train`` and ``n_test``: each resample's training and test sizes
    (arrays of length J, or one number each).

    Returns ``{"design", "interval", "n", "mean_diff", "ci_low", "ci_high", "pvalue", "ratio"}``."""
    _check_design(design, "resamples", "the corrected resampled t (Nadeau-Bengio)",
                  "seed_interval with paired_bootstrap over test windows")
    d = _diffs(a, b)
    n_train = np.broadcast_to(np.asarray(n_train, dtype=float), d.shape)
    n_test = np.broadcast_to(np.asarray(n_test, dtype=float), d.shape)
    if (n_train <= 0).any() or (n_test <= 0).any():
        raise ValueError("n_train and n_test must be > 0 (the sizes behind each resample)")
    ratio = float(np.mean(n_test / n_train))
    lo, hi, p = _t_interval(d, d.var(ddof=1) * (1.0 / d.size + ratio), confidence)
    return {"design": design, "interval": f"corrected resampled t over {d.size} resamples", "n": int(d.size),
            "mean_diff": float(d.mean()), "ci_low": lo, "ci_high": hi, "pvalue": p, "ratio": ratio}


def paired_bootstrap(correct_a, correct_b, *, n_boot: int = 2000, seed: int = 0, confidence: float = 0.95,
                     chunk: int = 250) -> dict:
    """Percentile bootstrap of the accuracy difference ``a - b`` (points) over test windows AND
    seeds, for ONE fixed split.

    ``correct_a``, ``correct_b``: (S, N) booleans, whether each of S seeds got each of the SAME N
    test windows right (a (N,) array is one seed). Each replicate draws S seeds and N windows with
    replacement and averages the per-window differences over them, so both the seed-to-seed and
    the test-sampling variation are in the interval.

    Hand-written (scipy.stats.bootstrap resamples one axis of paired samples; this resamples two
    nested axes): replicates are drawn in chunks as multinomial window counts, so memory stays
    ``chunk x N``. Returns ``{"interval", "n_seeds", "n_windows", "mean_diff", "ci_low",
    "ci_high", "pvalue" (two-sided, from the replicates' sign), "n_boot", "seed"}``.
    """
    a, b = np.atleast_2d(np.asarray(correct_a, dtype=bool)), np.atleast_2d(np.asarray(correct_b, dtype=bool))
    if a.shape != b.shape or a.ndim != 2 or a.size == 0:
        raise ValueError(f"correct_a and correct_b must be (seeds, windows) of one shape, got {a.shape} and {b.shape}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_boot < 100:
        raise ValueError(f"n_boot={n_boot}: use at least 100 replicates")
    s, n = a.shape
    d = 100.0 * (a.astype(np.float64) - b.astype(np.float64))  # (S, N) points
    rng = np.random.default_rng(seed)
    reps = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        k = min(chunk, n_boot - start)
        seeds = rng.integers(0, s, size=(k, s))
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=k)  # (k, N) window draws
        per_window = d[seeds].mean(axis=1)  # (k, N): each replicate's seed draw
        reps[start:start + k] = (counts * per_window).sum(axis=1) / n
    lo, hi = np.quantile(reps, [0.5 - confidence / 2, 0.5 + confidence / 2])
    p = min(1.0, 2.0 * min(np.mean(reps <= 0), np.mean(reps >= 0)))
    return {"interval": f"paired bootstrap over {n:,} test windows and {s} seeds ({n_boot} replicates)",
            "n_seeds": int(s), "n_windows": int(n), "mean_diff": float(d.mean()), "ci_low": float(lo),
            "ci_high": float(hi), "pvalue": float(p), "n_boot": int(n_boot), "seed": int(seed)}


def prob_a_beats_b(a, b, confidence: float = 0.95) -> dict:
    """P(A beats B): the share of paired results where ``a > b`` (ties count one half), with an
    exact (Clopper-Pearson, ``scipy.stats.binomtest``) interval: the lower bound counts ties as
    losses, the upper as wins. Bouthillier et al. (2021) recommend reporting it beside the mean
    difference: it says how often, not by how much."""
    x, y = _values(a, "a"), _values(b, "b")
    if x.shape != y.shape or x.size == 0:
        raise ValueError(f"a and b must be paired and non-empty, got {x.size} and {y.size}")
    n = int(x.size)
    wins, ties = int(np.sum(x > y)), int(np.sum(x == y))
    lo = st.binomtest(wins, n).proportion_ci(confidence, method="exact").low
    hi = st.binomtest(wins + ties, n).proportion_ci(confidence, method="exact").high
    return {"n": n, "wins": wins, "ties": ties, "p_win": (wins + ties / 2) / n, "ci_low": float(lo),
            "ci_high": float(hi)}


def pairs_needed(mean_diff: float, sd: float, *, ratio: float = 0.0, confidence: float = 0.95,
                 at_most: int = 1000) -> int | None:
    """The fewest pairs J whose interval would exclude zero if the mean difference and the sd of
    the differences stayed as observed: the smallest J with
    ``t_{J-1} * sd * sqrt(1/J + ratio) < |mean_diff|`` (``ratio`` = n_test/n_train for the
    corrected resampled t, 0 for seeds). None when no J up to ``at_most`` does: with the
    correction the interval never shrinks below ``t * sd * sqrt(ratio)``, so a difference smaller
    than that cannot be resolved by more resamples of the same size."""
    m = abs(float(mean_diff))
    if m == 0 or not np.isfinite(sd):
        return None
    if sd == 0:
        return 2
    for j in range(2, at_most + 1):
        if st.t.ppf(0.5 + confidence / 2, j - 1) * sd * np.sqrt(1.0 / j + ratio) < m:
            return j
    return None


def paired_proportion_change(only_a: int, only_b: int, n: int, confidence: float = 0.95) -> dict:
    """The change in accuracy from A to B on the SAME ``n`` windows (points), from the discordant
    pairs: ``only_a`` windows only A gets right, ``only_b`` only B. Change = 100 (only_b - only_a) / n,
    its Wald interval for paired proportions (variance ``(b + c - (c - b)^2 / n) / n^2``) and McNemar's
    exact two-sided p (``scipy.stats.binomtest(only_b, only_a + only_b)``; 1 when none differ).
    Windows both get right or both get wrong carry no information about the change."""
    b, c = int(only_a), int(only_b)
    if n <= 0 or b < 0 or c < 0 or b + c > n:
        raise ValueError(f"paired_proportion_change: need 0 <= only_a + only_b <= n, got {b} + {c} of {n}")
    diff = (c - b) / n
    se = np.sqrt(max(b + c - (c - b) ** 2 / n, 0.0)) / n
    q = st.norm.ppf(0.5 + confidence / 2)
    p = 1.0 if b + c == 0 else float(st.binomtest(c, b + c, 0.5).pvalue)
    return {"n": int(n), "only_a": b, "only_b": c, "change": float(100 * diff),
            "ci_low": float(100 * (diff - q * se)), "ci_high": float(100 * (diff + q * se)), "p_mcnemar": p}
