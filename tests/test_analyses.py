"""The long-mode grid read as roles (multitask = lambda-0 student, EMA weights = its teacher), its
ranking and progress, on hand-made records (the paired effects: tests/test_verdicts.py)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from smoothdistill_lib import analyses
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


def _grid(mode, decay, n_fit, epochs, accs, ratio=np.nan, run="r"):
    return pd.DataFrame({"run_id": [f"{run}{k}" for k in range(len(accs))], "mode": mode, "ema_decay": decay,
                         "epochs": epochs, "n_fit": n_fit, "batch_size": 64, "lam": 0.5, "train_ratio": ratio,
                         "task": 1, "accuracy": accs})


def test_at_scales_labels_each_grid_with_its_decay_and_steps():
    demo = _grid("demo", 0.97, [640, 1280], 8, [80.0, 82.0], run="d")  # 10 x 8 and 20 x 8 steps
    long = _grid("long", 0.999, 6400, [100, 120], [90.0, 91.0], run="l")  # 100 x 100 and 100 x 120
    both = analyses.at_scales({"demo": demo, "long": long, "none yet": None})
    assert both["scale"].tolist() == ["demo: a = 0.97, 80-160 steps"] * 2 + ["long: a = 0.999, 10,000-12,000 steps"] * 2
    assert both["accuracy"].tolist() == [80.0, 82.0, 90.0, 91.0]
    one = analyses.at_scales({"long": long.iloc[:1]})
    assert one["scale"].iloc[0] == "long: a = 0.999, 10,000 steps"
    with pytest.raises(ValueError, match="'mixed' mix run modes"):
        analyses.at_scales({"mixed": pd.concat([demo, long])})
    with pytest.raises(ValueError, match="every frame is empty"):
        analyses.at_scales({"demo": demo.iloc[:0]})


def test_cost_per_model_uses_the_median_epoch_and_the_registry_order():
    def run(rid, model, epoch_seconds, n_fit=6400):
        return {"run_id": rid, "dataset": "wisdm", "protocol": "paper", "method": "smooth_distill", "model": model,
                "epochs": len(epoch_seconds), "n_fit": n_fit, "batch_size": 64,
                "history": [{"epoch": k + 1, "stage": 1, "epoch_seconds": s} for k, s in enumerate(epoch_seconds)]}
    # MTL-net: epochs of 30 s, one slowed to 300 s by a neighbour (the median ignores it); GRU: 75 s
    df = pd.DataFrame([run("a", "gru", [75.0] * 4), run("b", "mtlnet", [30.0, 300.0, 30.0, 30.0]),
                       run("c", "mtlnet", [30.0] * 4), run("c", "mtlnet", [30.0] * 4)])  # one run, two rows
    c = analyses.cost_per_model(df)
    assert list(c.index) == ["mtlnet", "gru"]  # the registry's order
    assert c["runs"].tolist() == [2, 1] and c["steps per run"].tolist() == [400.0, 400.0]  # 4 epochs x 100 batches
    assert c["minutes per run"].tolist() == pytest.approx([4 * 30 / 60, 4 * 75 / 60])
    assert c["ms per step"].tolist() == pytest.approx([1000 * 120 / 400, 1000 * 300 / 400])
    assert c["x mtlnet"].tolist() == pytest.approx([1.0, 2.5])
    assert analyses.cost_per_model(df[df["model"] == "gru"])["x mtlnet"].isna().all()
    with pytest.raises(ValueError, match="mix methods \\['born_again', 'smooth_distill'\\]"):
        analyses.cost_per_model(pd.concat([df, df.iloc[:1].assign(run_id="d", method="born_again")]))


def test_programme_estimate_counts_steps_from_records_else_the_floor():
    from smoothdistill_lib.compute import GPU_STEP_SECONDS_ASSUMED

    def spec(ds, model, method, ratio=None):
        return SimpleNamespace(dataset=ds, model=model, method=method, train_ratio=ratio)
    plans = {"seen": [spec("wisdm", "mtlnet", "smooth_distill"), spec("wisdm", "mtlnet", "born_again")],
             "new": [spec("wisdm", "gru", "smooth_distill"), spec("wisdm", "mtlnet", "smooth_distill", 0.1),
                     spec("wisdm", "mtlnet", "smooth_distill", 0.5)]}
    df = pd.DataFrame({"run_id": ["a", "b", "b", "c"], "dataset": "wisdm", "model": "mtlnet",
                       "epochs": [100, 110, 110, 520], "n_fit": [6400, 6400, 6400, 1280], "batch_size": 64,
                       "train_ratio": [np.nan, np.nan, np.nan, 0.5]})  # full data: 10,000 and 11,000 steps
    e = analyses.programme_estimate(plans, {"long": df, "none": None}, min_steps=10_000)
    assert e.loc["seen", "optimizer steps"] == 10_500 * 3  # Born-Again's two stages
    # GRU and ratio 0.1 have no record (the floor); ratio 0.5 has its own (520 epochs x 20 batches)
    assert e.loc["new", "optimizer steps"] == 2 * 10_000 + 10_400
    assert e.loc["new", "steps from"] == "records + floor"
    assert e.loc["seen", "steps from"] == "records"
    assert e.loc["total", "runs"] == 5 and e.loc["total", "optimizer steps"] == 61_900
    low, high = GPU_STEP_SECONDS_ASSUMED
    assert e.loc["total", "GPU-hours low (est.)"] == pytest.approx(61_900 * low / 3600)
    assert e.loc["total", "GPU-hours high (est.)"] == pytest.approx(61_900 * high / 3600)


def test_lambda_sweep_takes_the_base_grids_runs_at_the_sweeps_seeds():
    from pathlib import Path

    from smoothdistill_lib import records

    def part(name, rows):
        df = pd.DataFrame([dict(zip(("run_id", "dataset", "protocol", "method", "lam", "seed"), r)) for r in rows])
        return records.Records(df, pd.DataFrame(index=pd.Index(df["run_id"].unique(), name="run_id")),
                               {rid: {"run_id": rid} for rid in df["run_id"]}, Path(name))
    base = part("long", [(f"b{lam}{s}", "wisdm", "paper", "smooth_distill", lam, s) for lam in (0.0, 0.5) for s in range(3)]
                + [("o", "sleepsim", "paper", "smooth_distill", 0.5, 0), ("ba", "wisdm", "paper", "born_again", 0.5, 0),
                   ("sub", "wisdm", "subject", "smooth_distill", 0.5, 0)])
    sweep = part("long_lambda", [(f"s{lam}{s}", "wisdm", "paper", "smooth_distill", lam, s) for lam in (0.1, 1.0) for s in range(2)])
    both = analyses.lambda_sweep(base, sweep)
    assert sorted(both.df["run_id"]) == sorted(["b0.00", "b0.01", "b0.50", "b0.51", "s0.10", "s0.11", "s1.00", "s1.01"])
    assert both.parts == (base, sweep) and not both.has_predictions("b0.00")
