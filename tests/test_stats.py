"""Statistics: hand-computed summaries, the three paired tests, Holm, and the Table 8 matrix."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from smoothdistill_lib.methods import METHODS
from smoothdistill_lib.stats import DesignError, holm, paired_test, pairwise_tests, pvalue_matrix, summary


def test_summary_by_hand():
    s = summary([1, 2, 3, 4, 5])
    assert s["n"] == 5 and s["mean"] == 3.0
    assert s["sd"] == pytest.approx(np.sqrt(2.5))
    half = 2.776 * np.sqrt(2.5) / np.sqrt(5)  # t(0.975, df=4) = 2.776 from a printed t table
    assert s["ci_low"] == pytest.approx(3 - half, abs=1e-3)
    assert s["ci_high"] == pytest.approx(3 + half, abs=1e-3)


def test_summary_nan_single_and_errors():
    s = summary([2.0, np.nan, 4.0])
    assert s["n"] == 2 and s["mean"] == 3.0
    one = summary([7.0])
    assert one["n"] == 1 and np.isnan(one["sd"]) and np.isnan(one["ci_low"])
    same = summary([5.0, 5.0, 5.0])
    assert same["sd"] == 0 and same["ci_low"] == same["ci_high"] == 5.0
    with pytest.raises(ValueError, match="no values"):
        summary([np.nan])
    with pytest.raises(ValueError, match="confidence"):
        summary([1, 2], confidence=95)


A = np.array([70.1, 68.3, 69.9, 71.2, 70.4, 69.0, 68.8])
B = np.array([68.0, 67.9, 68.1, 69.5, 69.9, 67.2, 68.9])


def test_paired_ttest_matches_hand_formula():
    d = A - B
    t = d.mean() / (d.std(ddof=1) / np.sqrt(d.size))
    r = paired_test(A, B, "ttest")
    assert r["n"] == 7 and r["mean_diff"] == pytest.approx(d.mean())
    assert r["statistic"] == pytest.approx(t)
    assert r["pvalue"] == pytest.approx(2 * st.t.sf(abs(t), d.size - 1))


def test_corrected_test_inflates_variance():
    n_train, n_test = 640, 200
    d = A - B
    j = d.size
    t_corr = d.mean() / np.sqrt((1 / j + n_test / n_train) * d.var(ddof=1))
    r = paired_test(A, B, "corrected", n_train=n_train, n_test=n_test, design="resamples")
    assert r["statistic"] == pytest.approx(t_corr)
    naive = paired_test(A, B, "ttest")
    # same statistic scaled by sqrt((1/J) / (1/J + n_test/n_train)), so a larger p-value
    assert r["statistic"] == pytest.approx(naive["statistic"] * np.sqrt((1 / j) / (1 / j + n_test / n_train)))
    assert r["pvalue"] > naive["pvalue"]
    with pytest.raises(ValueError, match="n_train and n_test"):
        paired_test(A, B, "corrected", design="resamples")
    # on seeds or folds that share one test set the correction does not fit: refused, saying what does
    with pytest.raises(DesignError, match="fits test split and seed varied together, not seeds on one fixed split"):
        paired_test(A, B, "corrected", n_train=n_train, n_test=n_test)


def test_exact_wilcoxon_on_five_pairs_cannot_go_below_0_0625():
    # the argument of reference notes §7.2: the paper's p = 0.0001 cannot come from this test on 5 pairs
    a = np.array([5.0, 6.0, 7.0, 8.0, 9.0])
    assert paired_test(a, a - [0.1, 0.2, 0.3, 0.4, 0.5], "wilcoxon")["pvalue"] == pytest.approx(0.0625)
    rng = np.random.default_rng(1)
    ps = [paired_test(rng.normal(size=5), rng.normal(size=5), "wilcoxon")["pvalue"] for _ in range(50)]
    assert min(ps) >= 0.0625


def test_identical_inputs_and_errors():
    for test in ("ttest", "wilcoxon", "corrected"):
        r = paired_test(A, A, test, n_train=10, n_test=2, design="resamples")
        assert r["pvalue"] == 1.0 and r["statistic"] == 0.0
    with pytest.raises(ValueError, match="unknown test"):
        paired_test(A, B, "anova")
    with pytest.raises(ValueError, match="same length"):
        paired_test(A, B[:3])
    with pytest.raises(ValueError, match="at least 2"):
        paired_test([1.0], [2.0])
    with pytest.raises(ValueError, match="NaN"):
        paired_test([1.0, np.nan], [2.0, 3.0])


def test_holm_against_hand_computation():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> raised to 0.06 (monotone)
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm([0.5, 0.3]), [0.6, 0.6])
    np.testing.assert_allclose(holm([0.9, 0.8]), [1.0, 1.0])  # capped at 1
    out = holm([0.02, np.nan, 0.01])  # NaN kept, m = 2
    np.testing.assert_allclose(out[[0, 2]], [0.02, 0.02])
    assert np.isnan(out[1])
    assert holm([]).size == 0


def _results(seed: int = 0) -> pd.DataFrame:
    """Tidy results of the five methods on 5 seeds x 5 folds; effects grow along the registry order."""
    rng = np.random.default_rng(seed)
    cell = rng.normal(0, 1.0, size=(5, 5))  # shared per-cell difficulty makes the pairing matter
    rows = []
    for k, method in enumerate(reversed(tuple(METHODS))):  # input order differs from Table 8's
        effect = {"smooth_distill": 4.0, "born_again": 3.9, "sd_dropout": 0.5, "multitask": 1.0}.get(method, 0)
        for s, f in itertools.product(range(5), range(5)):
            rows.append({"method": method, "seed": s, "fold": f, "acc": 60 + effect + cell[s, f]
                         + rng.normal(0, 0.5), "k": k})
    return pd.DataFrame(rows)


def test_pvalue_matrix_layout_and_values():
    df = _results()
    mat = pvalue_matrix(df, value_col="acc")
    assert list(mat.index) == list(tuple(METHODS)) and list(mat.columns) == list(tuple(METHODS))
    np.testing.assert_allclose(np.diag(mat), 1.0)
    np.testing.assert_allclose(mat.to_numpy(), mat.to_numpy().T)
    a = df[df.method == "singletask"].sort_values(["seed", "fold"])["acc"].to_numpy()
    b = df[df.method == "smooth_distill"].sort_values(["seed", "fold"])["acc"].to_numpy()
    assert mat.loc["singletask", "smooth_distill"] == pytest.approx(paired_test(a, b)["pvalue"])
    assert mat.loc["born_again", "smooth_distill"] > 0.05 > mat.loc["singletask", "smooth_distill"]
    holm_mat = pvalue_matrix(df, value_col="acc", test="corrected", adjust="holm", n_train=64, n_test=20,
                             design="resamples")
    raw = pvalue_matrix(df, value_col="acc", test="corrected", n_train=64, n_test=20, design="resamples")
    assert (holm_mat.to_numpy() >= raw.to_numpy() - 1e-15).all()
    assert (raw.to_numpy() >= mat.to_numpy() - 1e-15).all()  # corrected is more conservative


def test_pairwise_tests_pairs_cells_and_reports_n():
    df = _results()
    df = df[~((df.method == "multitask") & (df.seed == 0))]  # 5 cells missing for one method
    pt = pairwise_tests(df, value_col="acc", test="wilcoxon")
    assert len(pt) == 10
    row = pt[(pt.method_a == "singletask") & (pt.method_b == "multitask")].iloc[0]
    assert row["n"] == 20
    assert pt[(pt.method_a == "singletask") & (pt.method_b == "sd_dropout")].iloc[0]["n"] == 25
    np.testing.assert_allclose(pt["pvalue_holm"], holm(pt["pvalue"]))
    sub = pairwise_tests(df, value_col="acc", methods=["smooth_distill", "singletask"])
    assert sub[["method_a", "method_b"]].values.tolist() == [["smooth_distill", "singletask"]]


def test_table_errors_name_the_problem():
    df = _results()
    with pytest.raises(ValueError, match="lacks columns"):
        pvalue_matrix(df, value_col="accuracy")
    with pytest.raises(ValueError, match="several results for the same cell"):
        pvalue_matrix(pd.concat([df, df]), value_col="acc")
    with pytest.raises(ValueError, match="adjust"):
        pvalue_matrix(df, value_col="acc", adjust="bonferroni")
    with pytest.raises(ValueError, match="no results"):
        pvalue_matrix(df, value_col="acc", methods=["singletask", "ensemble"])
