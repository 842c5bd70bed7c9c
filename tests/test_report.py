"""Report tables from run records: shapes and numbers on synthetic records with known values."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st
from test_runner import NAMES, N, fake_predictions, fake_run, task1_accuracy

from smoothdistill_lib import analyses, experiment, metrics, records, report, runner, verdicts
from smoothdistill_lib.cli import main as cli_main
from smoothdistill_lib.ema import run_scale
from smoothdistill_lib.methods import METHODS

SEEDS = [0, 1, 2]


def _run(root, mode="quick", **kw):
    d = {"name": "main", "datasets": ["sleepsim", "wisdm"], "methods": list(METHODS), "seeds": SEEDS,
         "folds": [0], "epochs": 1}
    d.update(kw)
    exp = experiment.Experiment.from_dict(d)
    runner.run_experiment(exp, results_root=root, run_fn=fake_run, progress=False, mode=mode)
    return exp


@pytest.fixture(scope="module")
def main_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("res")
    _run(root)
    return root


@pytest.fixture(scope="module")
def main_df(main_root):
    return records.load_records("main", results_root=main_root)


def test_load_records_is_tidy(main_df):
    df = main_df
    n_runs = 2 * 5 * len(SEEDS)
    assert df["run_id"].nunique() == n_runs
    # rows per run: 2 splits x 2 tasks x (2 whos for smooth_distill, else 1)
    assert len(df) == n_runs * 4 + 2 * len(SEEDS) * 4
    assert not df.duplicated(["run_id", "split", "who", "task"]).any()
    assert list(df["method"].cat.categories) == list(METHODS)  # the paper's order
    row = df[(df.method == "sd_dropout") & (df.seed == 2) & (df.split == "test") & (df.who == "student")
             & (df.task == 1) & (df.dataset == "wisdm")].iloc[0]
    assert row["accuracy"] == pytest.approx(task1_accuracy("sd_dropout", 2))
    assert row["params"] == 3000 and row["train_seconds_how"] == "fake" and row["n_test"] == N
    assert row["class_names"] == NAMES[0] and len(row["per_class"]) == 3


def test_table5_numbers_and_shape(main_df):
    t = report.table5(main_df)
    assert t.shape == (2 * 5, 2 * 2 * 2 * 3)  # (dataset, method) x (task, split, metric, stat)
    assert t.index.names == ["dataset", "method"] and t.columns.names == ["task", "split", "metric", "stat"]
    assert list(t.columns.get_level_values("split")[:6]) == ["val"] * 6  # val before test, as the paper
    for m in METHODS:
        accs = [task1_accuracy(m, s) for s in SEEDS]
        cell = t.loc[("wisdm", m), (1, "test")]
        assert cell[("accuracy", "mean")] == pytest.approx(np.mean(accs))
        assert cell[("accuracy", "sd")] == pytest.approx(np.std(accs, ddof=1))
        assert cell[("accuracy", "n")] == len(SEEDS)
    assert t.loc[("sleepsim", "multitask"), (2, "val", "accuracy", "mean")] == pytest.approx(81.0)
    teacher = report.table5(main_df, who="teacher")
    assert list(teacher.index) == [("sleepsim", "smooth_distill"), ("wisdm", "smooth_distill")]


def test_table6_per_class(main_df):
    t = report.table6(main_df, "wisdm")
    assert list(t.index) == NAMES[0]
    assert t.columns.names == ["method", "metric"]
    assert list(t.columns) == [(m, k) for m in METHODS for k in report.PER_CLASS]
    # the mean over seeds of the per-class table computed straight from the predictions
    direct = [metrics.per_class_table(*fake_predictions(task1_accuracy("born_again", s), 3), NAMES[0])
              for s in SEEDS]
    expected = pd.concat(direct).groupby(level=0)[list(report.PER_CLASS)].mean().loc[NAMES[0]]
    np.testing.assert_allclose(t["born_again"].to_numpy(dtype=float), expected.to_numpy(), equal_nan=True)


def test_table7_compute_and_time_ratio(main_df):
    t = report.table7(main_df)
    assert len(t) == 10 and {"params", "train_seconds", "time_ratio", "energy", "energy_how"} <= set(t.columns)
    for mi, m in enumerate(METHODS):
        secs = np.mean([10.0 * (mi + 1) + s for s in SEEDS])
        assert t.loc[("wisdm", m), "train_seconds"] == pytest.approx(secs)
        # a multiple of ONE single-task network: the single-task run trains two
        assert t.loc[("wisdm", m), "time_ratio"] == pytest.approx(secs / (np.mean([10.0 + s for s in SEEDS]) / 2))
        assert t.loc[("wisdm", m), "params"] == 1000 * (mi + 1)
    assert (t["n"] == len(SEEDS)).all() and (t["energy_how"] == "fake").all()


def test_table8_pvalues_match_a_paired_t_test(main_df):
    t = report.table8(main_df, "wisdm", task=1)
    assert list(t.index) == list(METHODS) == list(t.columns)
    np.testing.assert_allclose(np.diag(t), 1.0)
    np.testing.assert_allclose(t.to_numpy(), t.to_numpy().T)
    a = [task1_accuracy("multitask", s) for s in SEEDS]
    b = [task1_accuracy("sd_dropout", s) for s in SEEDS]
    assert t.loc["multitask", "sd_dropout"] == pytest.approx(st.ttest_rel(a, b).pvalue)
    holm = report.table8(main_df, "wisdm", task=1, adjust="holm")
    assert holm.loc["multitask", "sd_dropout"] >= t.loc["multitask", "sd_dropout"]
    with pytest.raises(ValueError, match="not seeds on one fixed split"):  # one test set: no NB correction
        report.table8(main_df, "wisdm", task=1, test="corrected")


def test_lambda_and_ratio_tables(tmp_path):
    _run(tmp_path, name="lambda", datasets=["sleepsim"], methods=["smooth_distill"], lams=[0.0, 0.5, 1.0])
    df = records.load_records("lambda", results_root=tmp_path)
    t = report.lambda_table(df)
    assert list(t.index) == [("sleepsim", 0.0), ("sleepsim", 0.5), ("sleepsim", 1.0)]
    assert t.shape[1] == 2 * 2 * 2 * 3
    assert report.lambda_table(df, who="teacher").loc[("sleepsim", 0.0), (1, "test", "accuracy", "mean")] \
        == pytest.approx(np.mean([task1_accuracy("smooth_distill", s, "teacher") for s in SEEDS]))

    _run(tmp_path, name="ratio", datasets=["sleepsim"], methods=["smooth_distill"], models=["mtlnet", "gru"],
         train_ratios=[0.1, 0.5, 0.9])
    r = report.ratio_table(records.load_records("ratio", results_root=tmp_path))
    assert r.index.names == ["dataset", "model", "train_ratio"] and len(r) == 2 * 3
    assert r.shape[1] == 2 * 2 * 3  # (task, metric, stat), test split only
    assert (r.xs("n", axis=1, level="stat") == len(SEEDS)).all().all()


def test_mode_selection_and_mixed_settings(tmp_path):
    _run(tmp_path, datasets=["sleepsim"], methods=["multitask"])
    _run(tmp_path, mode="demo", datasets=["sleepsim"], methods=["multitask"], seeds=[0])
    with pytest.warns(UserWarning, match="modes"):
        df = records.load_records("main", results_root=tmp_path)
    assert set(df["mode"]) == {"demo"} and df["run_id"].nunique() == 1
    assert records.load_records("main", mode="quick", results_root=tmp_path)["run_id"].nunique() == len(SEEDS)
    with pytest.raises(ValueError, match="full"):
        records.load_records("main", mode="full", results_root=tmp_path)
    # records of other settings in the same cells (copied in by hand: the runner would move them)
    other = tmp_path / "other"
    _run(other, datasets=["sleepsim"], methods=["multitask"], epochs=2)
    for p in (other / "main" / "runs").glob("*.json"):
        p.rename(tmp_path / "main" / "runs" / p.name)
    with pytest.raises(ValueError, match="hold records with different settings"):
        records.load_records("main", mode="quick", results_root=tmp_path)
    with pytest.raises(FileNotFoundError, match="nothing"):
        records.load_records("nothing", results_root=tmp_path)


def test_format_and_markdown(main_df):
    t = report.table5(main_df)
    f = report.format_table(t)
    acc = [task1_accuracy("multitask", s) for s in SEEDS]
    assert f.loc[("wisdm", "multitask"), (1, "test", "accuracy")] == \
        f"{np.mean(acc):.2f} ± {np.std(acc, ddof=1):.2f}"
    assert (f[("n", "", "")] == len(SEEDS)).all()
    md = report.to_markdown(t).splitlines()
    assert md[0].startswith("|") and "task1 test accuracy" in md[0] and len(md) == 2 + len(t)


def test_cli_report_prints_tables_and_writes_csvs(tmp_path, capsys, main_root):
    out = tmp_path / "tables"
    assert cli_main(["report", str(main_root / "main"), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    for name in ("table5", "table6_wisdm", "table7", "table8_wisdm_task1", "table8_sleepsim_task2"):
        assert f"## {name}" in text
        assert (out / f"{name}.csv").is_file()
    back = pd.read_csv(out / "table5.csv", index_col=[0, 1])
    assert back.loc[("wisdm", "multitask"), "task1_test_accuracy_mean"] == pytest.approx(
        np.mean([task1_accuracy("multitask", s) for s in SEEDS]))
    assert cli_main(["report", "no_such_experiment"]) == 2


def test_two_protocols_give_one_table6_and_table8_each(tmp_path, capsys):
    _run(tmp_path, datasets=["sleepsim"], methods=["multitask", "smooth_distill"], protocols=["paper", "subject"])
    df = records.load_records("main", results_root=tmp_path)
    assert report.table5(df).index.names == ["dataset", "protocol", "method"]
    with pytest.raises(ValueError, match="protocol"):
        report.table6(df, "sleepsim")
    assert report.table8(df, "sleepsim", protocol="subject").shape == (2, 2)
    names = set(report.all_tables(df))
    assert {"table6_sleepsim_paper", "table6_sleepsim_subject", "table8_sleepsim_subject_task2"} <= names


# ----------------------------------------------------------------------------- the chapters' analyses
# Records with what the chapters read beyond fake_run's: per-epoch histories (teacher columns, epoch
# times with one slow epoch, Born-Again's two stages), the leakage meter, pipeline options and provenance.
EPOCHS = 3


def epoch_seconds(method: str, seed: int, stage: int, epoch: int) -> float:
    # the third epoch of every run is slowed by "other work": the median must ignore it
    return float(list(METHODS).index(method) + 1 + stage) + 0.1 * seed + 10.0 * (epoch == EPOCHS)


def rich_run(spec, device=None) -> dict:
    body = fake_run(spec, device)
    stages = (1, 2) if spec.method == "born_again" else (1,)
    body["history"] = [{"epoch": e, "stage": st, "val_acc_task1": 50.0 + e + spec.seed, "val_loss_task1": 1.0 / e,
                        "teacher_val_acc_task1": 40.0 + 2 * e, "teacher_val_loss_task1": 2.0 / e,
                        "epoch_seconds": epoch_seconds(spec.method, spec.seed, st, e)}
                       for st in stages for e in range(1, EPOCHS + 1)]
    paper = spec.protocol == "paper"
    body["data"].update(options={"stream": "paper" if paper else "session", "label_rule": "last" if paper else "majority",
                                 "normalise": "none"},
                        leakage={"any_fraction": 0.5 if paper else 0.0, "shared_samples_fraction": 0.25 if paper else 0.0,
                                 "subject_in_train_fraction": 1.0 if paper else 0.0})
    body["provenance"] = {"commit": f"run{spec.seed}", "dirty": False, "device": "cpu: test", "torch": "2.0",
                          "finished": f"2026-01-0{spec.seed + 1}T10:00:00+00:00"}
    return body


def _rich(root, run_fn=rich_run, **kw):
    d = {"name": "rich", "datasets": ["sleepsim"], "methods": list(METHODS), "seeds": SEEDS, "folds": [0],
         "epochs": EPOCHS, "protocols": ["paper", "subject"]}
    d.update(kw)
    runner.run_experiment(experiment.Experiment.from_dict(d), results_root=root, run_fn=run_fn, progress=False, mode="quick")
    return records.load_experiment(d["name"], results_root=root)


@pytest.fixture(scope="module")
def rich(tmp_path_factory):
    return _rich(tmp_path_factory.mktemp("rich"))


def test_load_experiment_bundles_frame_provenance_and_records(rich, tmp_path):
    assert isinstance(rich, records.Records) and rich.name == "rich" and rich.mode == "quick"
    pd.testing.assert_frame_equal(rich.df, records.load_records(rich.folder))
    assert set(rich.records) == set(rich.df["run_id"]) == set(rich.provenance.index)
    rid = rich.df["run_id"].iloc[0]
    assert rich.provenance.loc[rid, "commit"] == rich.records[rid]["provenance"]["commit"]
    assert records.load_experiment("nothing", results_root=tmp_path) is None
    # records of two modes: the largest is used, without the warning load_records gives
    _run(tmp_path, datasets=["sleepsim"], methods=["multitask"])
    _run(tmp_path, mode="demo", datasets=["sleepsim"], methods=["multitask"], seeds=[0])
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        both = records.load_experiment("main", results_root=tmp_path)
    assert both.mode == "demo" and len(both.records) == 1
    assert len(records.load_experiment("main", results_root=tmp_path, mode="quick").records) == len(SEEDS)
    assert records.experiments(tmp_path).to_dict() == {"main": len(SEEDS) + 1}


def _with_grid(recs: records.Records, grid: dict | None) -> records.Records:
    """The same records with ``provenance["grid"]`` set (or removed: records older than the grid provenance)."""
    for path in (recs.folder / "runs").glob("*.json"):
        rec = json.loads(path.read_text())
        rec["provenance"].pop("grid", None)
        if grid is not None:
            rec["provenance"]["grid"] = grid
        path.write_text(json.dumps(rec))
    return records.load_experiment(recs.folder)


def test_records_summary_old_and_grid_provenance(tmp_path):
    r = _rich(tmp_path)
    old = _with_grid(r, None)
    s = records.records_summary(old)
    assert s["runs"] == 5 * 2 * len(SEEDS) and s["mode"] == "quick" and s["protocols"] == "paper, subject"
    assert s["methods"] == ", ".join(METHODS) and s["seeds"] == "0, 1, 2"
    # old records (no "grid"): each record's own commit
    assert s["library commit"] == "run0, run1, run2" and "grid started (UTC)" not in s
    assert s["finished (UTC)"] == "2026-01-01T10:00 .. 2026-01-03T10:00"
    assert s["device"] == "cpu: test" and s["torch"] == "2.0"
    assert s["EMA decay"] == str(old.df["ema_decay"].iloc[0])
    # new records: the commit captured once when the grid started, dirty flagged
    grid = {"commit": "abc1234", "dirty": True, "started": "2026-02-03T04:05:06+00:00", "experiment": "rich",
            "runs_in_grid": 30}
    s = records.records_summary(_with_grid(r, grid))
    assert s["library commit"] == "abc1234 + local changes" and s["grid started (UTC)"] == "2026-02-03T04:05"
    assert records.records_summary(_with_grid(r, grid | {"dirty": False}))["library commit"] == "abc1234"
    # a frame without provenance: no device/commit rows
    assert "library commit" not in records.records_summary(old.df) and records.records_summary(old.df)["runs"] == 30


def test_gains_are_paired_means_with_scipy_pvalues(rich):
    g = analyses.gains(rich.df, "paper", task=1)
    assert list(g.columns) == analyses.GAIN_COLUMNS and g.index.names == ["dataset", "method"]
    assert [m for _, m in g.index] == [m for m in METHODS if m != "multitask"]
    for m in ("singletask", "smooth_distill"):
        a = np.array([task1_accuracy(m, s) for s in SEEDS], float)
        b = np.array([task1_accuracy("multitask", s) for s in SEEDS], float)
        row = g.loc[("sleepsim", m)]
        assert row["n"] == len(SEEDS) and row["gain"] == pytest.approx((a - b).mean())
        assert row["p (paired t-test)"] == pytest.approx(st.ttest_rel(a, b).pvalue)
    # another baseline and metric; a baseline that is absent leaves an empty table
    g2 = analyses.gains(rich.df, "subject", task=2, baseline="singletask", metric="macro_f1")
    assert "singletask" not in set(g2.index.get_level_values("method")) and len(g2) == 4
    assert analyses.gains(rich.df[rich.df["method"] != "multitask"], "paper", 1).empty
    assert analyses.gains(rich.df, "paper", 1, min_runs=len(SEEDS) + 1).empty


def test_confusion_sums_and_teacher_vs_student(rich):
    sums = analyses.confusion_sums(rich.df, "sleepsim", "paper")
    assert list(sums) == list(METHODS)
    expected = np.sum([metrics.classification_metrics(*fake_predictions(task1_accuracy("born_again", s), 3),
                                                      n_classes=3)["confusion"] for s in SEEDS], axis=0)
    np.testing.assert_array_equal(sums["born_again"], expected)
    assert sums["born_again"].sum() == len(SEEDS) * N
    with pytest.raises(ValueError, match="protocol"):  # two protocols: pick one
        analyses.confusion_sums(rich.df, "sleepsim")
    t = analyses.teacher_vs_student(rich.df)
    assert t.index.names == ["dataset", "protocol", "task"] and len(t) == 2 * 2
    student = np.mean([task1_accuracy("smooth_distill", s) for s in SEEDS])
    assert t.loc[("sleepsim", "paper", 1), "student"] == pytest.approx(student)
    assert t.loc[("sleepsim", "paper", 1), "student - teacher"] == pytest.approx(-1.0)  # fake teacher: +1
    assert (t["runs"] == len(SEEDS)).all()
    assert analyses.teacher_vs_student(rich.df, method="multitask") is None


def test_leakage_ema_scale_and_teacher_lag(rich):
    leak = analyses.leakage_table(rich)
    assert list(leak.index) == [("sleepsim", "paper"), ("sleepsim", "subject")]
    assert leak.loc[("sleepsim", "paper"), "test windows with any leak (%)"] == pytest.approx(50.0)
    assert leak.loc[("sleepsim", "paper"), "sharing samples (%)"] == pytest.approx(25.0)
    assert leak.loc[("sleepsim", "subject"), "windows cut from"] == "each recording"
    assert leak.loc[("sleepsim", "paper"), "label rule"] == "last"

    row = run_scale(n_fit=1000, batch_size=64, epochs=3, decay=0.99)
    assert row["steps/epoch"] == 16 and row["steps in the run"] == 48
    assert row["horizon (steps)"] == pytest.approx(100) and row["horizon (epochs)"] == pytest.approx(100 / 16)
    assert row["weight of the initial net in the final teacher"] == pytest.approx(0.99 ** 48)
    with pytest.raises(ValueError, match="decay"):
        run_scale(10, 2, 1, 1.0)
    scale = analyses.ema_scale_table(rich)
    assert list(scale.index) == [("sleepsim", "paper"), ("sleepsim", "subject")]
    rec = next(iter(rich.records.values()))
    bs, decay = rec["spec"]["train"]["batch_size"], rec["spec"]["train"]["ema_decay"]
    steps = math.ceil(4 * N / bs)
    assert scale["steps in the run"].tolist() == [steps * EPOCHS] * 2 and (scale["epochs"] == EPOCHS).all()
    assert scale["EMA decay"].iloc[0] == decay

    lag = analyses.teacher_lag(rich)
    assert lag.index.names == ["dataset", "epoch"] and list(lag.index.unique("epoch")) == [1, 2, 3]
    last = lag.loc[("sleepsim", EPOCHS)]
    assert last["runs"] == len(SEEDS) and last["steps"] == EPOCHS * steps
    assert last["initial net's weight in the teacher"] == pytest.approx(decay ** (EPOCHS * steps))
    assert last["student val acc"] == pytest.approx(50 + EPOCHS + np.mean(SEEDS))
    assert last["teacher val acc"] == pytest.approx(40 + 2 * EPOCHS)
    assert last["teacher val loss"] == pytest.approx(2 / EPOCHS)
    h = analyses.histories(rich)
    assert list(h) == ["sleepsim"] and len(h["sleepsim"]) == len(SEEDS) and len(h["sleepsim"][0]) == EPOCHS
    with pytest.raises(ValueError, match="no multitask"):
        analyses.teacher_lag(rich, method="multitask", protocol="nope")


def test_table7_median_epoch_time(rich):
    df = rich.df[rich.df["protocol"] == "paper"]
    t = report.table7(df, time="median_epoch")
    for m in METHODS:
        stages = (1, 2) if m == "born_again" else (1,)
        expected = sum(np.median([epoch_seconds(m, s, st, e) for s in SEEDS for e in range(1, EPOCHS + 1)]) * EPOCHS
                       for st in stages)
        assert t.loc[("sleepsim", m), "train_seconds_median_epoch"] == pytest.approx(expected)
    base = t.loc[("sleepsim", "singletask"), "train_seconds_median_epoch"]
    assert t.loc[("sleepsim", "born_again"), "time_ratio"] == pytest.approx(
        t.loc[("sleepsim", "born_again"), "train_seconds_median_epoch"] / (base / 2))
    assert t.loc[("sleepsim", "singletask"), "time_ratio"] == pytest.approx(2.0)  # its two networks
    assert "median epoch" in t["train_seconds_median_epoch_how"].iloc[0]
    assert t["time_ratio_how"].iloc[0].startswith("train_seconds_median_epoch / one singletask network's")
    # the default keeps the mean of the runs' total times behind the ratio
    total = report.table7(df)
    assert "train_seconds_median_epoch" not in total and total["time_ratio_how"].iloc[0].startswith("train_seconds /")
    with pytest.raises(ValueError, match="time"):
        report.table7(df, time="fastest")


def test_table7_median_epoch_falls_back_to_stage_seconds(tmp_path):
    def no_epoch_times(spec, device=None):
        body = rich_run(spec, device)
        for h in body["history"]:
            del h["epoch_seconds"]
        body["compute"]["stage_seconds"] = {"stage1": 6.0 + spec.seed, "stage2": 9.0}
        return body

    r = _rich(tmp_path, run_fn=no_epoch_times, methods=["singletask", "born_again"], protocols=["paper"])
    t = report.table7(r.df, time="median_epoch")
    # singletask: one stage of 6 + seed seconds over 3 epochs, median over seeds = 7; born_again adds 9
    assert t.loc[("sleepsim", "singletask"), "train_seconds_median_epoch"] == pytest.approx(7.0)
    assert t.loc[("sleepsim", "born_again"), "train_seconds_median_epoch"] == pytest.approx(16.0)
    assert "stage_seconds" in t["train_seconds_median_epoch_how"].iloc[0]


def test_pick_selects_summary_columns(main_df):
    t = report.table5(main_df)
    s = report.pick(t, task=1, split="test", metric="accuracy")
    assert s.loc[("wisdm", "multitask")] == pytest.approx(np.mean([task1_accuracy("multitask", x) for x in SEEDS]))
    assert report.pick(t, stat="n", task=2, split="val").shape == (len(t), 2)  # accuracy and macro_f1
    with pytest.raises(ValueError, match="level"):
        report.pick(t, fold=0)


def test_a_record_without_metrics_is_skipped_with_its_reason(main_root, tmp_path):
    """Valid JSON that lacks what the tables read is refused by validation, not a KeyError inside them."""
    import shutil

    folder = shutil.copytree(main_root / "main", tmp_path / "main")
    victim = sorted((folder / "runs").glob("*.json"))[0]
    rec = json.loads(victim.read_text())
    del rec["evaluation"][1]["metrics"]
    victim.write_text(json.dumps(rec))
    with pytest.warns(UserWarning, match=rf"{victim.name}: evaluation\[1\] lacks one of the keys"):
        df = records.load_records(folder)
    assert df["run_id"].nunique() == 2 * 5 * len(SEEDS) - 1 and victim.stem not in set(df["run_id"])
    assert victim.exists()  # reading never moves a file: only `run` moves records aside


# ---- the book's one table format ----------------------------------------------------------------

def test_display_frame_integers_separators_no_truncation_no_index_row():
    long_text = "two independent single-head nets, plain CE each, one per task " * 2
    t = pd.DataFrame({"windows": [305.0, 3587343.0], "ratio": [1.2345678, np.nan], "note": [long_text, "x"],
                      "ok": [True, False]},
                     index=pd.Index(["singletask", "multitask"], name="method"))
    f = report.display_frame(t)
    assert list(f.columns) == ["method", "windows", "ratio", "note", "ok"]  # the index is a column
    assert list(f["windows"]) == ["305", "3,587,343"]
    assert list(f["ratio"]) == ["1.235", "–"] and list(f["ok"]) == ["yes", "no"]  # 4 significant digits
    html = report.to_html(t)
    assert long_text.strip() in html and "..." not in html
    assert html.count("<tr") == 3 and "<th>method</th>" in html  # one header row, no index-name row
    assert "305.0" not in html and "nan" not in html.lower()
    rounded = report.display_frame(pd.DataFrame({"acc": [61.25, 60.5]}).round(1))
    assert list(rounded["acc"]) == ["61.2", "60.5"]  # the decimals the column was rounded to
    tiny = report.display_frame(pd.DataFrame({"p": [0.249, 0.00012]}))
    assert list(tiny["p"]) == ["0.249", "0.00012"]  # a tiny value does not add decimals to the others
    named_columns = pd.DataFrame([[98.5, 98.1]], index=pd.Index(["accuracy"], name="metric"),
                                 columns=pd.Index(["up", "up_right"], name="class"))
    html_named = report.to_html(named_columns)
    assert "<th>class</th>" not in html_named and html_named.count("<th>") == 3  # metric, up, up_right


def test_one_number_format_per_quantity():
    # no "1,000.000": the largest value's digits leave no room for decimals
    h = pd.DataFrame({"horizon (steps)": [1000.0, 33.333], "horizon (epochs)": [25.0, 0.8333]})
    f = report.display_frame(h)
    assert list(f["horizon (steps)"]) == ["1,000", "33"] and list(f["horizon (epochs)"]) == ["25.00", "0.83"]
    # no "1" next to "1.000": a quantity shown under two groups (p-values, then Holm-adjusted) has one format
    cols = pd.MultiIndex.from_tuples([(g, m) for g in ("paired t-test", "+ Holm") for m in ("multitask", "smooth_distill")])
    p = pd.DataFrame([[1.0, 0.7559, 1.0, 1.0], [0.7559, 1.0, 1.0, 1.0]], columns=cols,
                     index=pd.Index(["multitask", "smooth_distill"], name="method"))
    f = report.display_frame(p)
    assert f.iloc[0].tolist() == ["multitask", "1.000", "0.756", "1.000", "1.000"]
    # counts stay integers even beside floats of the same name
    n = pd.DataFrame({("a", "n"): [3, 4], ("b", "n"): [5, 6], ("a", "x"): [0.5, 1.0]})
    assert report.display_frame(n)[("a", "n")].tolist() == ["3", "4"]
    # a float index level (lambda) and the count column both end in "" under a MultiIndex: still two quantities
    cols = pd.MultiIndex.from_tuples([(1, "test", "accuracy", s) for s in ("mean", "sd", "n")],
                                     names=["task", "split", "metric", "stat"])
    lam = pd.DataFrame([[68.26, 0.15, 3], [67.03, 0.62, 3]], columns=cols,
                       index=pd.MultiIndex.from_tuples([("wisdm", 0.5), ("wisdm", 0.001)], names=["dataset", "lam"]))
    f = report.display_frame(lam)
    assert f.iloc[:, 1].tolist() == ["0.500", "0.001"] and f.iloc[:, -1].tolist() == ["3", "3"]


def test_to_html_keeps_numbers_and_short_labels_whole_and_lets_names_break():
    t = pd.DataFrame({"test accuracy": ["86.67 ± 2.12", "0.67 (0.09–0.99)"],
                      "source": ["https://archive.ics.uci.edu/static/public/507/wisdm+smartphone.zip", "x"],
                      "same_moment_other_placement": ["1.0%", "2.0%"]},
                     index=pd.Index(["smooth_distill", "a = 0.97 (demo)"], name="method"))
    html = report.to_html(t)
    assert "86.67\u00a0±\u00a02.12" in html and "0.67\u00a0(0.09–0.99)" in html  # numbers never break
    assert "<td>a\u00a0=\u00a00.97\u00a0(demo)</td>" in html  # a short row label stays on one line
    assert "<td>smooth_distill</td>" in html  # a name as short as a method's stays one word
    assert "<th>same_<wbr>moment_<wbr>other_<wbr>placement</th>" in html  # a long one breaks after "_"
    assert "https://<wbr>archive.<wbr>ics." in html and "wisdm+<wbr>smartphone." in html
    assert "<th>test accuracy</th>" in html  # headers wrap between words
    short = report.to_html(pd.DataFrame({"up_right": [1.0], "steps/epoch": [2.0], "epoch": [3]}))
    assert "<th>up_<wbr>right</th>" in short and "<th>steps/<wbr>epoch</th>" in short and "<th>epoch</th>" in short


def test_to_html_multiindex_columns_have_no_level_name_column():
    cols = pd.MultiIndex.from_tuples([(1, "accuracy"), (2, "accuracy")], names=["task", "metric"])
    idx = pd.MultiIndex.from_tuples([("wisdm", "multitask"), ("wisdm", "smooth_distill")], names=["dataset", "method"])
    t = pd.DataFrame([[60.0, 90.5], [61.5, 91.0]], index=idx, columns=cols)
    html = report.to_html(t)
    assert "<th>task 1</th>" in html and "metric" not in html and "<th></th>\n      <td>" not in html
    assert html.count("<tr") == 4  # two header rows (task, metric), two body rows


def test_weight_averaging_and_distillation_are_separated_with_the_seed_t_on_one_split():
    rows = []
    for seed, (plain, ema, kd) in enumerate([(60, 63, 63.5), (61, 62, 62.0), (59, 63, 62.5)]):
        for who, lam, acc in (("student", 0.0, plain), ("teacher", 0.0, ema), ("student", 0.5, kd),
                              ("teacher", 0.5, 99.0)):
            rows.append({"dataset": "wisdm", "protocol": "paper", "method": "smooth_distill", "task": 1,
                         "split": "test", "who": who, "lam": lam, "seed": seed, "fold": 0, "accuracy": acc,
                         "n_fit": 800, "n_test": 200, "run_id": f"{lam}-{seed}"})
    t = verdicts.compare(pd.DataFrame(rows)).set_index("question")
    avg, kd = t.loc["Does weight averaging alone beat multitask?"], t.loc["Does distillation add to weight averaging?"]
    assert avg["n"] == 3 and avg["effect"] == pytest.approx(8 / 3) and kd["effect"] == pytest.approx(0.0)
    diffs = [3, 1, 4]
    half = st.t.ppf(0.975, 2) * np.std(diffs, ddof=1) / math.sqrt(3)
    assert (avg["ci_low"], avg["ci_high"]) == pytest.approx((8 / 3 - half, 8 / 3 + half))
    assert avg["pvalue"] == pytest.approx(st.ttest_rel([63, 62, 63], [60, 61, 59]).pvalue)
    assert avg["design"] == "seeds" and not avg["test_sampling"]  # no predictions: the seed t, marked
