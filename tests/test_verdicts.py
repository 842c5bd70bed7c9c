"""Intervals that match the design, and verdicts by rule (hand-made numbers, hand-computed answers)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from smoothdistill_lib import predictions, stats, verdicts, wisdm
from smoothdistill_lib.stats import DesignError


# ----------------------------------------------------------------------------- stats
def test_seed_interval_is_the_paired_t_over_seeds():
    # d = [1, 2, 2]: mean 5/3, sd sqrt(1/3), se 1/3; t(2, 0.975) = 4.302653 -> half-width 1.434218
    r = stats.seed_interval([1, 2, 3], [0, 0, 1])
    assert r["mean_diff"] == pytest.approx(5 / 3)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((5 / 3 - 1.434218, 5 / 3 + 1.434218), abs=1e-6)
    assert r["pvalue"] == pytest.approx(0.0377496, abs=1e-6)  # t = 5 on 2 df
    assert r["design"] == "seeds" and "3 seeds" in r["interval"]


def test_resampled_interval_is_the_corrected_t_with_each_resamples_sizes():
    # d = [1, 2, 2, 2, 3]: mean 2, s^2 = 0.5; ratio 20/80 -> var (1/5 + 1/4) 0.5 = 0.225; t(4) = 2.776445
    r = stats.resampled_interval([1, 2, 3, 4, 5], [0, 0, 1, 2, 2], n_train=[80] * 5, n_test=[20] * 5)
    half = 2.776445 * np.sqrt(0.225)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((2 - half, 2 + half), abs=1e-6)
    assert r["ratio"] == 0.25
    # sizes that differ per fold: the mean of n_test / n_train
    r2 = stats.resampled_interval([1, 2, 3, 4, 5], [0, 0, 1, 2, 2], n_train=[80, 80, 80, 40, 40], n_test=20)
    assert r2["ratio"] == pytest.approx((3 * 0.25 + 2 * 0.5) / 5)


def test_a_correction_that_does_not_fit_the_design_is_refused_saying_which_does():
    with pytest.raises(DesignError, match="seeds on one fixed split.*seed_interval with paired_bootstrap"):
        stats.resampled_interval([1, 2, 3], [0, 1, 1], n_train=80, n_test=20, design="seeds")
    with pytest.raises(DesignError, match="test split and seed varied together.*resampled_interval"):
        stats.seed_interval([1, 2, 3], [0, 1, 1], design="resamples")
    with pytest.raises(DesignError, match="choose one of seeds, resamples"):
        stats.seed_interval([1, 2, 3], [0, 1, 1], design="folds")


def test_paired_bootstrap_over_windows_matches_the_normal_theory_for_one_seed():
    # one seed, 400 windows: a right and b wrong on 60, the reverse on 20 -> d = 100/-100/0 points,
    # mean 10, population variance 1900, se sqrt(1900/400) = 2.179 -> 95 % about 10 -/+ 4.27
    a = np.zeros(400, bool)
    b = np.zeros(400, bool)
    a[:60] = True
    b[60:80] = True
    r = stats.paired_bootstrap(a, b, n_boot=4000, seed=1)
    assert r["mean_diff"] == pytest.approx(10.0)
    assert r["ci_low"] == pytest.approx(10 - 4.27, abs=0.6) and r["ci_high"] == pytest.approx(10 + 4.27, abs=0.6)
    assert r["pvalue"] < 0.01
    again = stats.paired_bootstrap(a, b, n_boot=4000, seed=1)
    assert again == r  # fixed seed, same replicates


def test_paired_bootstrap_resamples_seeds_too():
    # seed 0: a beats b on every window; seed 1: identical. Window draws change nothing; the seed
    # draw {0,0}, {0,1}/{1,0}, {1,1} gives 100, 50, 0 points with probability 1/4, 1/2, 1/4.
    a = np.array([[True] * 50, [True] * 50])
    b = np.array([[False] * 50, [True] * 50])
    r = stats.paired_bootstrap(a, b, n_boot=2000, seed=0)
    assert (r["ci_low"], r["ci_high"]) == (0.0, 100.0)
    assert r["pvalue"] == pytest.approx(0.5, abs=0.06)  # 2 * P(replicate <= 0) = 2 * 1/4
    same = stats.paired_bootstrap(a, a, n_boot=200)
    assert (same["ci_low"], same["ci_high"], same["pvalue"]) == (0.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="one shape"):
        stats.paired_bootstrap(a, b[:, :10])


def test_probability_a_beats_b_with_its_exact_interval():
    r = stats.prob_a_beats_b([1, 2, 3, 4, 5], [0, 2, 1, 5, 2])  # wins 3, ties 1, losses 1
    assert (r["wins"], r["ties"], r["p_win"]) == (3, 1, 0.7)
    # Clopper-Pearson: lower bound of 3/5 and upper bound of 4/5
    assert r["ci_low"] == pytest.approx(0.146633, abs=1e-5) and r["ci_high"] == pytest.approx(0.994949, abs=1e-5)


def test_pairs_needed_at_the_observed_spread():
    # seeds: smallest J with t(J-1)/sqrt(J) < 1 is 7 (t5/sqrt6 = 1.050, t6/sqrt7 = 0.925)
    assert stats.pairs_needed(1.0, 1.0) == 7
    # corrected: the half-width never falls below t * sd * sqrt(ratio) = 1.96 * 0.5 > 0.5
    assert stats.pairs_needed(0.5, 1.0, ratio=0.25) is None
    assert stats.pairs_needed(0.0, 1.0) is None


# ----------------------------------------------------------------------------- verdicts
def row(lo, hi, design="resamples", p_holm=0.01, need=None, test_sampling=True, effect=None):
    return {"a": "smooth_distill", "b": "multitask", "dataset": "wisdm", "protocol": "subject", "task": 2,
            "design": design, "n": 5, "effect": (lo + hi) / 2 if effect is None else effect, "ci_low": lo,
            "ci_high": hi, "p_holm": p_holm, "p_win": 0.8, "pairs_needed": need, "test_sampling": test_sampling}


def test_a_direction_only_where_the_interval_excludes_zero():
    up = verdicts.sentence(row(0.5, 2.5), family=32)
    assert up.startswith("WISDM, unseen subjects, task 2: Smooth-Distill is more accurate than multitask (+1.50 points")
    assert "ahead in 80% of 5 paired runs" in up and "Holm" not in up
    down = verdicts.sentence(row(-3.0, -1.0))
    assert "is less accurate than multitask" in down
    unsure = verdicts.sentence(row(-1.0, 2.0, need=12))
    assert "the data cannot tell whether Smooth-Distill is more accurate than multitask" in unsure
    assert "about 12 resamples would be needed" in unsure and ": Smooth-Distill is more accurate" not in unsure
    assert "no number of resamples" in verdicts.sentence(row(-1.0, 2.0, need=None))
    assert "Seed interval only" in verdicts.sentence(row(-1.0, 2.0, design="seeds", test_sampling=False))
    # resolved alone, but not after Holm over the family
    holm = verdicts.sentence(row(0.1, 2.0, p_holm=0.2), family=32)
    assert "more accurate" in holm and "Not after adjusting for the 32 comparisons asked (Holm p = 0.20)" in holm
    assert [verdicts.direction(row(*c)) for c in ((0.1, 1), (-2, -0.1), (-1, 1), (0.0, 1))] == [1, -1, 0, 0]


def test_design_is_read_from_the_splits_of_a_cell():
    one = pd.DataFrame({"split_seed": [42, 42, 42], "test_fold": [np.nan] * 3})
    assert verdicts.design_of(one) == "seeds"
    assert verdicts.design_of(pd.DataFrame({"split_seed": [42, 43], "test_fold": [np.nan] * 2})) == "resamples"
    assert verdicts.design_of(pd.DataFrame({"split_seed": [42, 42], "test_fold": [0.0, 1.0]})) == "resamples"


class FakeRecords:
    """Just what verdicts.compare reads: a tidy frame, and predictions by run id."""

    def __init__(self, df, preds=None):
        self.df, self._preds = df, preds or {}

    def has_predictions(self, rid):
        return rid in self._preds

    def predictions(self, rid):
        return self._preds[rid]


def frame(design: str, acc: dict, n_test=20, n_fit=80):
    """Rows of one wisdm/paper cell: acc[(lam, who)] = per-seed task-1 test accuracies (task 2 = task 1 - 10)."""
    rows = []
    for (lam, who), values in acc.items():
        for seed, v in enumerate(values):
            for task in (1, 2):
                rows.append({"run_id": f"r{lam}-{seed}", "dataset": "wisdm", "protocol": "paper", "method": "smooth_distill",
                             "lam": lam, "who": who, "seed": seed, "fold": 0, "split": "test", "task": task,
                             "accuracy": v - 10 * (task - 1), "n_fit": n_fit, "n_test": n_test,
                             "split_seed": 42 + (seed if design == "resamples" else 0), "test_fold": np.nan})
    return pd.DataFrame(rows)


ACC = {(0.0, "student"): [60, 62, 61, 63, 64], (0.0, "teacher"): [63, 66, 64, 66, 66],
       (0.5, "student"): [62, 63, 63, 64, 66], (0.5, "teacher"): [64, 65, 65, 66, 67]}


def test_scope_counts_runs_and_resamples_and_names_the_data():
    from types import SimpleNamespace

    df = frame("resamples", ACC)
    recs = SimpleNamespace(df=df, name="long_cv",
                           records={rid: {"data": {"n_windows": 67796}} for rid in df["run_id"].unique()})
    text = verdicts.scope(recs, table=verdicts.compare(FakeRecords(df)))
    assert text.startswith("10 runs of the `long_cv` grid; 5 resamples of test split and seed per cell; ")
    share = f"{67796 / wisdm.PAPER_WINDOWS:.0%}"
    assert f"the 67,796 windows of the subjects present, {share} of the paper's" in text
    assert "simulated" not in text and text.endswith("Holm's adjustment over the 8 comparisons asked.")
    one = frame("seeds", {k: v[:1] for k, v in ACC.items()})
    recs1 = SimpleNamespace(df=one, name="long", records={rid: {"data": {"n_windows": 10}} for rid in one["run_id"]})
    assert "; 1 seed on one fixed split per cell; " in verdicts.scope(recs1)


def test_compare_uses_the_corrected_t_on_a_resampled_grid_and_holm_over_its_family():
    t = verdicts.compare(FakeRecords(frame("resamples", ACC)))
    assert len(t) == 4 * 2 and set(t["design"]) == {"resamples"} and t.attrs["family"] == 8
    r = t[(t["question"] == "Does Smooth-Distill beat multitask?") & (t["task"] == 1)].iloc[0]
    # d = [2, 1, 2, 1, 2]: mean 1.6, s^2 = 0.3, var (1/5 + 1/4) 0.3 = 0.135
    half = 2.776445 * np.sqrt(0.135)
    assert (r["effect"], r["ci_low"], r["ci_high"]) == pytest.approx((1.6, 1.6 - half, 1.6 + half), abs=1e-5)
    assert r["p_win"] == 1.0 and r["interval"] == "corrected resampled t over 5 resamples"
    np.testing.assert_allclose(t["p_holm"], stats.holm(t["pvalue"]))
    # task 2 is reported beside task 1 for every question
    assert sorted(t.groupby("question")["task"].apply(sorted).map(tuple).unique()) == [(1, 2)]


def test_compare_bootstraps_windows_on_one_split_when_predictions_are_kept():
    acc = {k: v[:3] for k, v in ACC.items()}
    df = frame("seeds", acc)
    rng = np.random.default_rng(0)
    preds = {}
    truth = rng.integers(0, 3, 20)
    for seed in range(3):
        for lam in (0.0, 0.5):
            arrays = {"test_index": np.arange(20), "test_y1_true": truth, "test_y2_true": truth}
            for who in ("student", "teacher"):
                for task in (1, 2):
                    arrays[f"test_{who}_y{task}_pred"] = np.where(rng.random(20) < 0.7, truth, (truth + 1) % 3)
            preds[f"r{lam}-{seed}"] = arrays
    t = verdicts.compare(FakeRecords(df, preds), n_boot=500)
    assert set(t["design"]) == {"seeds"} and t["test_sampling"].all()
    assert t["interval"].str.startswith("paired t over 3 seeds and paired bootstrap over 20 test windows and 3 seeds").all()
    # without predictions: the seed t, marked as leaving test-sampling error out
    t2 = verdicts.compare(FakeRecords(df))
    assert t2["interval"].str.startswith("paired t over 3 seeds").all() and not t2["test_sampling"].any()
    # with them: the hull of that t and the bootstrap, so a direction needs both to exclude zero
    r = t[(t["question"] == "Does Smooth-Distill beat multitask?") & (t["task"] == 1)].iloc[0]
    r2 = t2[(t2["question"] == r["question"]) & (t2["task"] == 1)].iloc[0]
    sd = np.stack([predictions.correct(preds[f"r0.5-{k}"], "test", "student", 1) for k in range(3)])
    mt = np.stack([predictions.correct(preds[f"r0.0-{k}"], "test", "student", 1) for k in range(3)])
    boot = stats.paired_bootstrap(sd, mt, n_boot=500, seed=0)
    assert r["ci_low"] == pytest.approx(min(r2["ci_low"], boot["ci_low"]))
    assert r["ci_high"] == pytest.approx(max(r2["ci_high"], boot["ci_high"]))
    assert r["pvalue"] == pytest.approx(max(r2["pvalue"], boot["pvalue"]))
    assert verdicts.tally(t2, "Does Smooth-Distill beat multitask?")["rows"] == 2


# ----------------------------------------------------------------------------- the long grid's shape
# (lam, who) -> task-1 test accuracy per seed on one split: the EMA weights gain 3 points on average,
# distillation adds 1.17, Smooth-Distill's teacher another 0.67; single-task is 2 points below multitask
LONG_ACC = {(0.0, "student"): [60.0, 61.0, 62.0], (0.0, "teacher"): [63.0, 64.5, 64.5],
            (0.5, "student"): [64.0, 65.0, 66.5], (0.5, "teacher"): [64.5, 65.5, 67.5]}


def long_frame(protocols=("paper",)) -> pd.DataFrame:
    rows = []
    for protocol in protocols:
        for (lam, who), accs in LONG_ACC.items():
            for seed, acc in enumerate(accs):
                rows.append({"run_id": f"{protocol}{lam}-{seed}", "dataset": "wisdm", "protocol": protocol,
                             "method": "smooth_distill", "lam": lam, "who": who, "seed": seed, "fold": 0, "task": 1,
                             "split": "test", "accuracy": acc, "n_fit": 800, "n_test": 200, "train_ratio": np.nan,
                             "split_seed": 42, "test_fold": np.nan})
        for seed, acc in enumerate([58.0, 59.0, 60.0]):
            rows.append({"run_id": f"{protocol}st-{seed}", "dataset": "wisdm", "protocol": protocol,
                         "method": "singletask", "lam": np.nan, "who": "student", "seed": seed, "fold": 0, "task": 1,
                         "split": "test", "accuracy": acc, "n_fit": 800, "n_test": 200, "train_ratio": np.nan,
                         "split_seed": 42, "test_fold": np.nan})
    return pd.DataFrame(rows)


def test_the_decomposition_adds_up_and_baselines_are_asked_where_they_ran():
    t = verdicts.compare(long_frame(("paper", "subject"))).set_index(["protocol", "question"])
    paper = t.loc["paper"]
    total = paper.loc["Does Smooth-Distill beat multitask?"]
    avg, dist = paper.loc["Does weight averaging alone beat multitask?"], paper.loc["Does distillation add to weight averaging?"]
    assert avg["effect"] == pytest.approx(3.0) and dist["effect"] == pytest.approx(np.mean([1.0, 0.5, 2.0]))
    assert avg["effect"] + dist["effect"] == pytest.approx(total["effect"])
    half = 4.302653 * 0.5 / np.sqrt(3)  # the averaging gain's diffs 3, 3.5, 2.5: sd 0.5
    assert (avg["ci_low"], avg["ci_high"]) == pytest.approx((3 - half, 3 + half), abs=1e-5)
    assert paper.loc["Does single-task training beat multitask?"]["effect"] == pytest.approx(-2.0)
    assert "Does Born-Again match Smooth-Distill?" not in paper.index  # no Born-Again runs: no row
    assert len(t) == 2 * 5  # 2 protocols x (4 questions + single-task), task 1 only in this frame
    assert verdicts.compare(long_frame().query("seed == 0")).empty  # one seed: nothing to pair


def test_answers_lead_with_a_plain_headline_and_list_only_what_resolves():
    t = verdicts.compare(long_frame(("paper", "subject")))
    a = verdicts.answers(t)
    assert list(a)[:4] == [q for _, _, _, q in verdicts.QUESTIONS]
    avg = a["Does weight averaging alone beat multitask?"]
    # both intervals exclude zero, but Holm's p over the 10 comparisons is 0.05, not below it
    assert avg.startswith("EMA weights alone are more accurate than multitask on WISDM with random windows, task 1; "
                          "WISDM with unseen subjects, task 1 (only without Holm's adjustment for the 10 comparisons "
                          "asked).")
    strong = t.copy()
    strong.loc[strong["protocol"] == "paper", "p_holm"] = 0.01
    assert verdicts.headline(strong, "Does weight averaging alone beat multitask?") == (
        "EMA weights alone are more accurate than multitask on WISDM with random windows, task 1, and, only without "
        "Holm's adjustment for the 10 comparisons asked, on WISDM with unseen subjects, task 1.")
    # the tasks of one place are listed together, the places in the table's order
    both = pd.concat([strong, strong.assign(task=2)], ignore_index=True)
    assert verdicts.headline(both, "Does weight averaging alone beat multitask?") == (
        "EMA weights alone are more accurate than multitask on WISDM with random windows, tasks 1 and 2, and, only "
        "without Holm's adjustment for the 10 comparisons asked, on WISDM with unseen subjects, tasks 1 and 2.")
    # distillation: diffs 1, 0.5, 2 -> the seed t interval crosses zero: no direction anywhere
    assert a["Does distillation add to weight averaging?"] == (
        "Smooth-Distill against EMA weights alone: the data cannot tell in any of the 2 cases (dataset, protocol, task).")
    assert verdicts.headline(t, "Does Born-Again match Smooth-Distill?") is None


def test_reading_table_and_disagreements():
    fixed = verdicts.compare(long_frame())
    r = verdicts.reading_table(fixed)
    row = r.loc[("Does weight averaging alone beat multitask", "WISDM, random windows, task 1")]
    assert row["A − B (points)"] == "+3.00" and row["verdict"] == "A better" and row["runs"] == 3
    assert row["P(A beats B)"].startswith("1.00 (0.29–1.00)")  # 3 wins of 3: Clopper-Pearson lower 0.292
    weak = verdicts.reading_table(fixed.assign(p_holm=0.2))
    assert weak.loc[("Does weight averaging alone beat multitask", "WISDM, random windows, task 1")]["verdict"] == \
        "A better, not after Holm"
    # an ablation's rows name their training ratio, in order of the ratio
    ratios = fixed[fixed["question"] == "Does weight averaging alone beat multitask?"]
    ratios = pd.concat([ratios.assign(train_ratio=0.5), ratios.assign(train_ratio=0.1)], ignore_index=True)
    assert verdicts.reading_table(ratios).index.get_level_values("case").tolist() == [
        "WISDM, random windows, 10% of the training windows, task 1", "WISDM, random windows, 50% of the training windows, task 1"]
    cv = fixed.copy()
    cv.loc[cv["question"] == "Does weight averaging alone beat multitask?", ["ci_low", "ci_high"]] = (-1.0, 4.0)
    d = verdicts.disagreements(fixed, cv)
    assert d["question"].tolist() == ["Does weight averaging alone beat multitask?"]
    assert (d["verdict (one split)"].iloc[0], d["verdict (cross-validated)"].iloc[0]) == ("+", "?")
    shown = verdicts.disagreement_table(fixed, cv)
    row = shown.loc[("Does weight averaging alone beat multitask", "WISDM, random windows, task 1")]
    assert row["cross-validated"] == "+3.00 (-1.00 to +4.00): cannot tell" and row["one split"].endswith(": A better")


def test_plot_verdict_draws_one_question_with_both_designs():
    from smoothdistill_lib import plots

    fixed = verdicts.compare(long_frame(("paper", "subject")))
    fig = plots.plot_verdict({"one split, 3 seeds": fixed, "resamples": fixed}, "Does Smooth-Distill beat multitask?")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["WISDM, random windows, task 1",
                                                            "WISDM, unseen subjects, task 1"]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["one split, 3 seeds", "resamples"]
    with pytest.raises(ValueError, match="no rows"):
        plots.plot_verdict({"x": fixed}, "Does Born-Again match Smooth-Distill?")


def test_brief_names_the_interval_and_the_verdict():
    t = verdicts.compare(long_frame())
    avg = verdicts.brief(t, "wisdm", "Does weight averaging alone beat multitask?")
    half = 4.302653 * 0.5 / np.sqrt(3)
    assert avg == f"+3.00 points (95 % seed interval {3 - half:+.1f} to {3 + half:+.1f}, 3 runs: A better)"
    assert verdicts.brief(t, "wisdm", "Does distillation add to weight averaging?").endswith("3 runs: cannot tell)")
    assert verdicts.brief(t, "sleepsim", "Does distillation add to weight averaging?") == "not in the records"
    assert verdicts.brief(None, "wisdm", "x") == "not in the records"


def test_paired_proportion_change_is_mcnemar_with_a_wald_interval():
    r = stats.paired_proportion_change(10, 4, 800)  # fp32 only right on 10 windows, int8 only on 4
    se = np.sqrt(14 - 36 / 800) / 800
    assert r["change"] == pytest.approx(-0.75)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((100 * (-0.0075 - 1.959964 * se), 100 * (-0.0075 + 1.959964 * se)))
    assert r["p_mcnemar"] == pytest.approx(2 * (1 + 14 + 91 + 364 + 1001) / 2**14)  # exact: 2 P(X <= 4 | 14, 1/2)
    assert stats.paired_proportion_change(0, 0, 100)["p_mcnemar"] == 1.0
    with pytest.raises(ValueError, match="only_a"):
        stats.paired_proportion_change(60, 50, 100)


def test_lambdas_are_compared_with_the_reference_pairwise_not_ranked():
    rows = []
    for lam, accs in ((0.5, [66.0, 67.0, 68.0]), (1.0, [66.5, 67.0, 68.5]), (0.1, [64.0, 65.0, 66.5])):
        for seed, acc in enumerate(accs):
            for task in (1, 2):
                rows.append({"run_id": f"{lam}-{seed}", "dataset": "wisdm", "protocol": "paper", "method": "smooth_distill",
                             "lam": lam, "who": "student", "seed": seed, "fold": 0, "task": task, "split": "test",
                             "accuracy": acc, "n_fit": 800, "n_test": 200, "train_ratio": np.nan, "model": "mtlnet",
                             "split_seed": 42, "test_fold": np.nan})
    t = verdicts.compare_lambdas(pd.DataFrame(rows), reference=0.5).query("task == 1").set_index("a")
    assert list(t.index) == ["lambda 0.1", "lambda 1"]
    # lambda 1 - 0.5: diffs 0.5, 0, 0.5 -> cannot tell; lambda 0.1: -2, -2, -1.5 -> worse
    assert t.loc["lambda 1", "effect"] == pytest.approx(1 / 3) and verdicts.direction(t.loc["lambda 1"]) == 0
    assert verdicts.direction(t.loc["lambda 0.1"]) == -1 and t.loc["lambda 0.1", "question"] == "lambda = 0.1 against lambda = 0.5"
    both = verdicts.compare_lambdas(pd.DataFrame(rows), reference=0.5)
    assert verdicts.lambda_directions(both, task=1) == "worse at 0.1, better at none, cannot tell at 1"
    assert verdicts.lambda_directions(both, task=2, dataset="wisdm") == "worse at 0.1, better at none, cannot tell at 1"
    with pytest.raises(ValueError, match="no rows for task 1 on sleepsim"):
        verdicts.lambda_directions(both, task=1, dataset="sleepsim")
    # a direction Holm's adjustment over the table does not keep is marked, in both summaries
    weak = both.assign(p_holm=np.where((both["a"] == "lambda 0.1") & (both["task"] == 1), 0.2, both["p_holm"]))
    assert verdicts.lambda_directions(weak, task=1) == (
        "worse at 0.1 (only without Holm's adjustment), better at none, cannot tell at 1")
    assert verdicts.brief(weak[weak["a"] == "lambda 0.1"], "wisdm", "lambda = 0.1 against lambda = 0.5").endswith(
        f"A worse, only without Holm's adjustment for the {both.attrs['family']} comparisons)")


def test_one_seed_is_a_difference_without_an_interval_and_cells_split_by_model_and_ratio():
    df = long_frame().query("seed == 0").assign(model="lstm")
    df = pd.concat([df, long_frame().query("seed == 0").assign(model="mtlnet", train_ratio=0.25)])
    assert verdicts.compare(df).empty  # one seed: nothing to pair by default
    t = verdicts.compare(df, min_pairs=1, train_ratio="any", questions=verdicts.QUESTIONS[:1])
    assert sorted(zip(t["model"], t["train_ratio"].fillna(1))) == [("lstm", 1.0), ("mtlnet", 0.25)]
    row = t[t["model"] == "lstm"].iloc[0]
    assert row["design"] == "one run" and np.isnan(row["ci_low"]) and verdicts.direction(row) == 0
    text = verdicts.sentence(row)
    assert text.startswith("WISDM, random windows, lstm, task 1: Smooth-Distill − multitask = +4.00 points in one run")
    assert verdicts.where(t[t["model"] == "mtlnet"].iloc[0]) == "WISDM, random windows, 25% of the training windows, task 1"
    assert t.attrs["family"] == 0 and t["p_holm"].isna().all()  # rows without an interval are not tested


def test_lambdas_across_two_experiments_bootstrap_windows_from_each_ones_predictions(tmp_path):
    """Chapter 9's long sweep: lambda 0.5 lives in one experiment, the other lambdas in another;
    records.combine reads each run's predictions where it is kept."""
    from pathlib import Path

    from smoothdistill_lib import records

    rng = np.random.default_rng(1)
    truth = rng.integers(0, 3, 30)
    parts = []
    for name, lam, p_right in (("long", 0.5, 0.6), ("long_lambda", 1.0, 0.9)):
        runs_dir = Path(tmp_path, name, "runs")
        runs_dir.mkdir(parents=True)
        rows, raw = [], {}
        for seed in range(3):
            rid = f"{name}-{seed}"
            arrays = {"test_index": np.arange(30), "test_y1_true": truth, "test_y2_true": truth}
            for task in (1, 2):
                arrays[f"test_student_y{task}_pred"] = np.where(rng.random(30) < p_right, truth, (truth + 1) % 3)
            raw[rid] = {"run_id": rid, "predictions": predictions.write(runs_dir, rid, arrays)}
            for task in (1, 2):
                acc = 100 * float(np.mean(arrays[f"test_student_y{task}_pred"] == truth))
                rows.append({"run_id": rid, "dataset": "wisdm", "protocol": "paper", "method": "smooth_distill",
                             "lam": lam, "who": "student", "seed": seed, "fold": 0, "task": task, "split": "test",
                             "accuracy": acc, "n_fit": 800, "n_test": 30, "train_ratio": np.nan, "model": "mtlnet",
                             "split_seed": 42, "test_fold": np.nan})
        parts.append(records.Records(pd.DataFrame(rows), pd.DataFrame(index=pd.Index(list(raw), name="run_id")),
                                     raw, Path(tmp_path, name)))
    both = records.combine(parts)
    assert both.has_predictions("long-0") and both.has_predictions("long_lambda-2") and not both.has_predictions("x")
    t = verdicts.compare_lambdas(both, reference=0.5, n_boot=300)
    assert len(t) == 2 and t["interval"].str.contains("paired bootstrap over 30 test windows and 3 seeds").all()
    # the same rows as a plain frame: no predictions, so the seed t
    assert verdicts.compare_lambdas(both.df, reference=0.5)["interval"].str.startswith("paired t over 3 seeds").all()
    with pytest.raises(KeyError, match="not among the records of long, long_lambda"):
        both.predictions("x")
    with pytest.raises(ValueError, match="in none of the experiments"):
        records.combine(parts, both.df.assign(run_id="stray"))


def test_joined_tables_are_one_holm_family():
    a = verdicts.compare(FakeRecords(frame("resamples", ACC)), questions=verdicts.QUESTIONS[:1])
    b = verdicts.compare(FakeRecords(frame("resamples", {k: [v + 1 for v in vals] for k, vals in ACC.items()})),
                         questions=verdicts.QUESTIONS[1:2])
    j = verdicts.join(a, b, None)
    assert len(j) == 4 and j.attrs["family"] == 4 and a.attrs["family"] == 2
    np.testing.assert_allclose(j["p_holm"], stats.holm(np.concatenate([a["pvalue"], b["pvalue"]])))
    assert (j["p_holm"] >= j["pvalue"]).all() and list(j.columns) == verdicts.COLUMNS
    c = verdicts.compare(FakeRecords(frame("resamples", ACC)), questions=verdicts.QUESTIONS[:1], confidence=0.9)
    with pytest.raises(ValueError, match="different confidence levels"):
        verdicts.join(a, c)


def test_ratio_gains_join_the_shares_and_all_the_data_in_one_family():
    full = frame("resamples", ACC).assign(train_ratio=np.nan)
    less = {k: [v - (1 if k[0] == 0.0 else 0) for v in vals] for k, vals in ACC.items()}  # multitask 1 point lower
    ratio = pd.concat([frame("resamples", less).assign(train_ratio=0.5, run_id=lambda d: d["run_id"] + "h"),
                       frame("resamples", ACC).assign(train_ratio=0.1, run_id=lambda d: d["run_id"] + "t")])
    t = verdicts.ratio_gains(FakeRecords(ratio), FakeRecords(full))
    assert sorted(t["train_ratio"].unique()) == [0.1, 0.5, 1.0] and t.attrs["family"] == 6  # 3 shares x 2 tasks
    assert set(t["question"]) == {verdicts.QUESTIONS[0][3]}
    np.testing.assert_allclose(t["p_holm"], stats.holm(t["pvalue"]))  # one Holm family over every share
    eff = t[t["task"] == 1].set_index("train_ratio")["effect"]
    assert eff[0.5] == pytest.approx(eff[1.0] + 1.0) and eff[0.1] == pytest.approx(eff[1.0])
    # A against B at each share, by the verdict rule, Holm marked
    strong = t.assign(p_holm=0.01)
    text = verdicts.ratio_directions(strong, task=1)
    assert text.startswith("better at ") and text.endswith("worse at none, cannot tell at none")
    assert "10%" in text and "50%" in text and "100%" in text
    weak = t.assign(p_holm=0.2, ci_low=np.where(t["train_ratio"] == 0.5, 0.5, -1.0), ci_high=1.0 + t["effect"].abs())
    assert verdicts.ratio_directions(weak, task=2) == (
        "better at 50% (only without Holm's adjustment), worse at none, cannot tell at 10%, 100%")
    assert verdicts.ratio_gains(None, None).empty
    with pytest.raises(ValueError, match="no rows for task 3"):
        verdicts.ratio_directions(t, task=3)
