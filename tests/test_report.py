"""Report tables from run records: shapes and numbers on synthetic records with known values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st
from test_runner import NAMES, N, fake_predictions, fake_run, task1_accuracy

from smoothdistill_lib import metrics, report, runner
from smoothdistill_lib.cli import main as cli_main

SEEDS = [0, 1, 2]


def _run(root, mode="quick", **kw):
    d = {"name": "main", "datasets": ["sleepsim", "wisdm"], "methods": list(runner.METHODS), "seeds": SEEDS,
         "folds": [0], "epochs": 1}
    d.update(kw)
    exp = runner.Experiment.from_dict(d)
    runner.run_experiment(exp, results_root=root, run_fn=fake_run, progress=False, mode=mode)
    return exp


@pytest.fixture(scope="module")
def main_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("res")
    _run(root)
    return root


@pytest.fixture(scope="module")
def main_df(main_root):
    return report.load_records("main", results_root=main_root)


def test_load_records_is_tidy(main_df):
    df = main_df
    n_runs = 2 * 5 * len(SEEDS)
    assert df["run_id"].nunique() == n_runs
    # rows per run: 2 splits x 2 tasks x (2 whos for smooth_distill, else 1)
    assert len(df) == n_runs * 4 + 2 * len(SEEDS) * 4
    assert not df.duplicated(["run_id", "split", "who", "task"]).any()
    assert list(df["method"].cat.categories) == list(runner.METHODS)  # the paper's order
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
    for m in runner.METHODS:
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
    assert list(t.columns) == [(m, k) for m in runner.METHODS for k in report.PER_CLASS]
    # the mean over seeds of the per-class table computed straight from the predictions
    direct = [metrics.per_class_table(*fake_predictions(task1_accuracy("born_again", s), 3), NAMES[0])
              for s in SEEDS]
    expected = pd.concat(direct).groupby(level=0)[list(report.PER_CLASS)].mean().loc[NAMES[0]]
    np.testing.assert_allclose(t["born_again"].to_numpy(dtype=float), expected.to_numpy(), equal_nan=True)


def test_table7_compute_and_time_ratio(main_df):
    t = report.table7(main_df)
    assert len(t) == 10 and {"params", "train_seconds", "time_ratio", "energy", "energy_how"} <= set(t.columns)
    for mi, m in enumerate(runner.METHODS):
        secs = np.mean([10.0 * (mi + 1) + s for s in SEEDS])
        assert t.loc[("wisdm", m), "train_seconds"] == pytest.approx(secs)
        assert t.loc[("wisdm", m), "time_ratio"] == pytest.approx(secs / np.mean([10.0 + s for s in SEEDS]))
        assert t.loc[("wisdm", m), "params"] == 1000 * (mi + 1)
    assert (t["n"] == len(SEEDS)).all() and (t["energy_how"] == "fake").all()


def test_table8_pvalues_match_a_paired_t_test(main_df):
    t = report.table8(main_df, "wisdm", task=1)
    assert list(t.index) == list(runner.METHODS) == list(t.columns)
    np.testing.assert_allclose(np.diag(t), 1.0)
    np.testing.assert_allclose(t.to_numpy(), t.to_numpy().T)
    a = [task1_accuracy("multitask", s) for s in SEEDS]
    b = [task1_accuracy("sd_dropout", s) for s in SEEDS]
    assert t.loc["multitask", "sd_dropout"] == pytest.approx(st.ttest_rel(a, b).pvalue)
    corrected = report.table8(main_df, "wisdm", task=1, test="corrected", adjust="holm")
    assert corrected.loc["multitask", "sd_dropout"] > t.loc["multitask", "sd_dropout"]


def test_lambda_and_ratio_tables(tmp_path):
    _run(tmp_path, name="lambda", datasets=["sleepsim"], methods=["smooth_distill"], lams=[0.0, 0.5, 1.0])
    df = report.load_records("lambda", results_root=tmp_path)
    t = report.lambda_table(df)
    assert list(t.index) == [("sleepsim", 0.0), ("sleepsim", 0.5), ("sleepsim", 1.0)]
    assert t.shape[1] == 2 * 2 * 2 * 3
    assert report.lambda_table(df, who="teacher").loc[("sleepsim", 0.0), (1, "test", "accuracy", "mean")] \
        == pytest.approx(np.mean([task1_accuracy("smooth_distill", s, "teacher") for s in SEEDS]))

    _run(tmp_path, name="ratio", datasets=["sleepsim"], methods=["smooth_distill"], models=["mtlnet", "gru"],
         train_ratios=[0.1, 0.5, 0.9])
    r = report.ratio_table(report.load_records("ratio", results_root=tmp_path))
    assert r.index.names == ["dataset", "model", "train_ratio"] and len(r) == 2 * 3
    assert r.shape[1] == 2 * 2 * 3  # (task, metric, stat), test split only
    assert (r.xs("n", axis=1, level="stat") == len(SEEDS)).all().all()


def test_mode_selection_and_mixed_settings(tmp_path):
    _run(tmp_path, datasets=["sleepsim"], methods=["multitask"])
    _run(tmp_path, mode="demo", datasets=["sleepsim"], methods=["multitask"], seeds=[0])
    with pytest.warns(UserWarning, match="modes"):
        df = report.load_records("main", results_root=tmp_path)
    assert set(df["mode"]) == {"demo"} and df["run_id"].nunique() == 1
    assert report.load_records("main", mode="quick", results_root=tmp_path)["run_id"].nunique() == len(SEEDS)
    with pytest.raises(ValueError, match="full"):
        report.load_records("main", mode="full", results_root=tmp_path)
    # records of other settings in the same cells (copied in by hand: the runner would move them)
    other = tmp_path / "other"
    _run(other, datasets=["sleepsim"], methods=["multitask"], epochs=2)
    for p in (other / "main" / "runs").glob("*.json"):
        p.rename(tmp_path / "main" / "runs" / p.name)
    with pytest.raises(ValueError, match="hold records with different settings"):
        report.load_records("main", mode="quick", results_root=tmp_path)
    with pytest.raises(FileNotFoundError, match="nothing"):
        report.load_records("nothing", results_root=tmp_path)


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
    df = report.load_records("main", results_root=tmp_path)
    assert report.table5(df).index.names == ["dataset", "protocol", "method"]
    with pytest.raises(ValueError, match="protocol"):
        report.table6(df, "sleepsim")
    assert report.table8(df, "sleepsim", protocol="subject").shape == (2, 2)
    names = set(report.all_tables(df))
    assert {"table6_sleepsim_paper", "table6_sleepsim_subject", "table8_sleepsim_subject_task2"} <= names


def test_markdown_without_tabulate(main_df, monkeypatch):
    def missing(*a, **k):
        raise ImportError("Missing optional dependency 'tabulate'")

    monkeypatch.setattr(pd.DataFrame, "to_markdown", missing)
    t = report.table5(main_df)
    md = report.to_markdown(t).splitlines()
    assert len(md) == 2 + len(t) and md[1].startswith("|---")
    assert md[2].split(" | ")[:2] == ["| sleepsim", "singletask"]
