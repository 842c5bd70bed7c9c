"""The long-mode grid read as roles (multitask = lambda-0 student, EMA weights = its teacher) and the
paired effects with intervals and Holm-adjusted Nadeau-Bengio p-values, on hand-made records."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from smoothdistill_lib import analyses, stats
from smoothdistill_lib.methods import METHODS

# (lam, who) -> task-1 test accuracy per seed: the EMA weights gain 3 points on average, distillation
# adds 1 more, Smooth-Distill's teacher another 0.5
ACC = {(0.0, "student"): [60.0, 61.0, 62.0], (0.0, "teacher"): [63.0, 64.5, 64.5],
       (0.5, "student"): [64.0, 65.0, 66.5], (0.5, "teacher"): [64.5, 65.5, 67.5],
       (0.1, "student"): [0.0, 0.0, 0.0]}


def _records(protocols=("paper",)) -> pd.DataFrame:
    rows = []
    for protocol in protocols:
        for (lam, who), accs in ACC.items():
            for seed, acc in enumerate(accs):
                rows.append({"dataset": "wisdm", "protocol": protocol, "method": "smooth_distill", "lam": lam,
                             "who": who, "seed": seed, "fold": 0, "task": 1, "split": "test",
                             "accuracy": acc, "n_fit": 800, "n_test": 200, "train_ratio": np.nan})
        for seed, acc in enumerate([58.0, 60.0, 59.0]):
            rows.append({"dataset": "wisdm", "protocol": protocol, "method": "singletask", "lam": np.nan,
                         "who": "student", "seed": seed, "fold": 0, "task": 1, "split": "test",
                         "accuracy": acc, "n_fit": 800, "n_test": 200, "train_ratio": np.nan})
    return pd.DataFrame(rows)


def test_roles_rename_smooth_distill_runs_by_lambda_and_who():
    r = analyses.as_roles(_records())
    assert sorted(r["method"].unique()) == ["ema_weights", "multitask", "sd_teacher", "singletask", "smooth_distill"]
    assert set(r["who"]) == {"student"}  # every role is an inference model of its own
    assert r.query("method == 'multitask'")["accuracy"].tolist() == ACC[(0.0, "student")]
    assert r.query("method == 'ema_weights'")["accuracy"].tolist() == ACC[(0.0, "teacher")]
    assert len(r) == 3 * 5  # the lambda = 0.1 run has no role and is left out


def test_effects_decompose_the_gain_with_intervals_and_holm():
    e = analyses.convergence_effects(_records(("paper", "subject")))
    paper = e.loc[("wisdm", "paper")]
    total = paper.loc["Smooth-Distill over multitask"]
    avg, dist = paper.loc["weight averaging alone"], paper.loc["distillation beyond averaging"]
    assert total["effect"] == pytest.approx(np.mean([4.0, 4.0, 4.5]))
    assert avg["effect"] == pytest.approx(np.mean([3.0, 3.5, 2.5])) and dist["effect"] == pytest.approx(np.mean([1.0, 0.5, 2.0]))
    assert avg["effect"] + dist["effect"] == pytest.approx(total["effect"])  # the decomposition adds up
    assert paper.loc["single-task over multitask"]["effect"] == pytest.approx(-2.0)
    assert "Born-Again over multitask" not in paper.index  # absent methods are skipped
    # the t interval of the averaging gain, by hand: mean 3, sd 0.5, t(0.975, 2)
    half = st.t.ppf(0.975, 2) * 0.5 / np.sqrt(3)
    assert avg["ci"] == pytest.approx((3.0 - half, 3.0 + half))
    # Nadeau-Bengio widens it by sqrt((1/3 + 200/800) / (1/3)) and its p-value is the corrected test's
    lo, hi = avg["nb_ci"]
    assert (hi - lo) / (2 * half) == pytest.approx(np.sqrt((1 / 3 + 0.25) * 3))
    p = stats.paired_test(ACC[(0.0, "teacher")], ACC[(0.0, "student")], "corrected", n_train=800, n_test=200)["pvalue"]
    assert avg["p (Nadeau-Bengio)"] == pytest.approx(p)
    # Holm over the whole table (2 protocols x 5 comparisons), never below the raw p-values
    assert len(e) == 10
    np.testing.assert_allclose(e["p (NB, Holm)"], stats.holm(e["p (Nadeau-Bengio)"]))
    assert (e["p (NB, Holm)"] >= e["p (Nadeau-Bengio)"]).all()


def test_a_single_seed_gives_no_effect_rows():
    one = _records().query("seed == 0")
    assert analyses.convergence_effects(one).empty


def test_effects_table_and_figure_show_every_row():
    from smoothdistill_lib import plots, report

    e = analyses.convergence_effects(_records(("paper", "subject")))
    t = report.effects_table(e)
    assert list(t.index) == list(e.index)
    row = t.loc[("wisdm", "paper", "weight averaging alone")]
    assert row["a - b (points)"] == "+3.00" and row["pairs"] == 3 and row["95 % CI (t)"].startswith("[+1.")
    fig = plots.plot_effects(e)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["wisdm, paper protocol", "wisdm, subject protocol"]
    assert [t.get_text() for t in visible[0].get_yticklabels()] == list(e.loc[("wisdm", "paper")].index)
    with pytest.raises(ValueError, match="no effects"):
        plots.plot_effects(e.iloc[:0])


def test_effect_phrase_reads_one_row():
    e = analyses.convergence_effects(_records())
    text = analyses.effect_phrase(e, "wisdm", "paper", "weight averaging alone")
    lo, hi = e.loc[("wisdm", "paper", "weight averaging alone")]["nb_ci"]
    assert text.startswith("+3.00 points (95 % Nadeau-Bengio interval") and f"{lo:+.2f} to {hi:+.2f}" in text
    assert text.endswith("3 seeds)")
    assert analyses.effect_phrase(e, "wisdm", "subject", "weight averaging alone") is None


def test_grid_progress_and_run_cost():
    plan = [SimpleNamespace(method=m, run_id=f"{m}{k}") for m in ("smooth_distill", "born_again") for k in range(3)]
    df = pd.DataFrame({"run_id": ["smooth_distill0", "smooth_distill0", "smooth_distill2"],
                       "dataset": "wisdm", "protocol": "paper", "method": "smooth_distill",
                       "train_seconds": [600.0, 600.0, 300.0], "epochs": [16, 16, 15], "n_fit": [640, 640, 700],
                       "batch_size": 64})
    p = analyses.grid_progress(plan, df)
    assert p[["runs", "finished"]].to_dict("index") == {"smooth_distill": {"runs": 3, "finished": 2},
                                                        "born_again": {"runs": 3, "finished": 0}}
    assert analyses.grid_progress(plan, None)["finished"].sum() == 0
    c = analyses.run_cost(df)  # one row per run: medians of (10, 5) minutes and (160, 165) steps
    assert c.loc[("wisdm", "paper"), ("minutes", "smooth_distill")] == 7.5
    assert c.loc[("wisdm", "paper"), ("steps", "smooth_distill")] == 162.5


def test_role_means_in_role_order_with_seeds():
    t = analyses.role_means(_records())
    names = list(t.index.get_level_values("method"))
    assert names == [analyses.ROLE_LABELS[k] for k in analyses.ROLE_LABELS] + [METHODS["singletask"].label]
    row = t.loc[("wisdm", "paper", analyses.ROLE_LABELS["ema_weights"])]
    assert row["task 1 accuracy (%)"] == pytest.approx(np.mean(ACC[(0.0, "teacher")]), abs=0.01) and row["seeds"] == 3


def _with_born_again(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` plus Born-Again students 1 point below Smooth-Distill's (seed by seed), per protocol."""
    sd = df.query("method == 'smooth_distill' and lam == 0.5 and who == 'student'")
    below = np.resize([1.0, 0.5, 1.5], len(sd))  # 1 point on average, seed by seed
    return pd.concat([df, sd.assign(method="born_again", lam=np.nan, accuracy=sd["accuracy"] - below)],
                     ignore_index=True)


def test_grid_progress_estimates_the_core_hours_left_from_measured_runs():
    plan = [SimpleNamespace(method=m, run_id=f"{m}{k}") for m in ("smooth_distill", "born_again") for k in range(4)]
    df = pd.DataFrame({"run_id": ["smooth_distill0", "smooth_distill1", "born_again0"],
                       "method": ["smooth_distill", "smooth_distill", "born_again"],
                       "train_seconds": [300.0, 420.0, 900.0]})
    p = analyses.grid_progress(plan, df)
    # pending x the method's own median minutes: 2 x 6 min and 3 x 15 min
    assert p.loc["smooth_distill", "core-hours left (estimate)"] == pytest.approx(round(2 * 6 / 60, 1))
    assert p.loc["born_again", "core-hours left (estimate)"] == pytest.approx(round(3 * 15 / 60, 1))
    assert p["core-hours spent"].to_dict() == {"smooth_distill": round(720 / 3600, 1), "born_again": round(900 / 3600, 1)}
    # a method with no finished run is scaled from the others by the registry's run_cost
    only_sd = analyses.grid_progress(plan, df.iloc[:2])
    per_multitask = 6.0 / METHODS["smooth_distill"].run_cost
    expected = 4 * per_multitask * METHODS["born_again"].run_cost / 60
    assert only_sd.loc["born_again", "core-hours left (estimate)"] == pytest.approx(round(expected, 1))
    assert "core-hours left (estimate)" not in analyses.grid_progress(plan, None)
    other_grid = df.assign(run_id="not in this plan")  # records of another grid measure nothing here
    assert "core-hours spent" not in analyses.grid_progress(plan, other_grid)


def test_ranking_orders_roles_best_first_with_their_seeds():
    r = analyses.ranking(_with_born_again(_records()))
    cell = r.loc[("wisdm", "paper")]
    means = {role: np.mean(ACC[k]) for role, k in (("multitask", (0.0, "student")), ("ema_weights", (0.0, "teacher")),
                                                   ("smooth_distill", (0.5, "student")), ("sd_teacher", (0.5, "teacher")))}
    means["born_again"] = means["smooth_distill"] - 1.0  # on average over the seeds
    means["singletask"] = 59.0
    assert list(cell.index) == sorted(means, key=means.get, reverse=True)
    assert cell["rank"].tolist() == list(range(1, 7)) and (cell["seeds"] == 3).all()
    np.testing.assert_allclose(cell["mean"], sorted(means.values(), reverse=True))


def test_convergence_answers_state_each_question_from_the_records():
    df = _with_born_again(_records(("paper", "subject")))
    df.loc[(df["protocol"] == "subject") & (df["method"] == "smooth_distill") & (df["lam"] == 0.0)
           & (df["who"] == "student"), "accuracy"] -= 20.0  # unseen subjects: multitask 20 points lower
    df["train_seconds"] = np.where(df["method"] == "born_again", 600.0, 300.0)
    df["run_id"] = [f"{m} {lam} {p} {seed}" for m, lam, p, seed in zip(df["method"], df["lam"], df["protocol"], df["seed"])]
    a = analyses.convergence_answers(df)
    assert list(a) == ["Does Smooth-Distill beat multitask at the paper's decay?",
                       "How much of the gain is weight averaging, how much distillation?",
                       "How much survives held-out subjects?", "How do the methods rank?",
                       "Which network would you deploy?", "Does Born-Again match Smooth-Distill, as the paper says?"]
    # Smooth-Distill's teacher is the best of both cells; the EMA weights (64.0) stay below the student (65.2)
    assert a["Which network would you deploy?"].startswith(
        "An EMA teacher: in 2 of the 2 cells the most accurate network on average is an EMA teacher")
    assert "and in 0 of 2 the EMA weights alone" in a["Which network would you deploy?"]
    e = analyses.convergence_effects(df)
    lo, hi = e.loc[("wisdm", "paper", "Smooth-Distill over multitask")]["nb_ci"]
    assert f"wisdm paper +4.17 [{lo:+.2f}, {hi:+.2f}], Holm p = " in a["Does Smooth-Distill beat multitask at the paper's decay?"]
    assert "wisdm subject +24.17" in a["Does Smooth-Distill beat multitask at the paper's decay?"]
    held_out = a["How much survives held-out subjects?"]
    assert held_out.startswith("On wisdm, multitask falls from 61.0 % (random windows) to 41.0 % (unseen subjects)")
    assert "+4.17 points with random windows and +24.17 with unseen subjects" in held_out
    assert a["How do the methods rank?"].startswith(
        "By mean task-1 test accuracy (%), best first: wisdm paper: Smooth-Distill's teacher 65.8 > Smooth-Distill 65.2 >")
    ba = a["Does Born-Again match Smooth-Distill, as the paper says?"]
    assert "wisdm paper -1.00 [" in ba and "a run took 2.0 times as long" in ba
    # differences of 1, 0.5, 1.5 points: the t interval alone (+-1.24) already crosses zero
    assert e.loc[("wisdm", "paper", "Born-Again over Smooth-Distill")]["nb_ci"][1] > 0
    assert "none of the 2 intervals excludes zero" in ba


def test_convergence_answers_say_what_is_missing():
    one_seed = _records().query("seed == 0").assign(train_seconds=300.0, run_id="r")
    a = analyses.convergence_answers(one_seed)
    assert a["Does Smooth-Distill beat multitask at the paper's decay?"].startswith("Not yet")
    assert a["Does Born-Again match Smooth-Distill, as the paper says?"].startswith("Not yet: no Born-Again records")
    assert a["How much survives held-out subjects?"].startswith("Not yet: both protocols")


def test_the_deploy_answer_follows_the_records():
    df = _records()
    best_student = (df["lam"] == 0.5) & (df["who"] == "student")
    df.loc[best_student, "accuracy"] += 10.0  # now the distilled student beats both teachers
    df = df.assign(train_seconds=300.0, run_id=[f"{lam} {seed}" for lam, seed in zip(df["lam"], df["seed"])])
    answer = analyses.convergence_answers(df)["Which network would you deploy?"]
    assert answer.startswith("Not clearly a teacher: in 0 of the 1 cells") and "and in 0 of 1 the EMA weights" in answer
