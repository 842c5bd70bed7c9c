"""Experiment runner: configs, grid expansion, run_ids, atomic records, resume, corruption, kill -9."""

from __future__ import annotations

import copy
import functools
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from smoothdistill_lib import errors, experiment, fileio, records, runner
from smoothdistill_lib.cli import main as cli_main
from smoothdistill_lib.config import get_mode
from smoothdistill_lib.methods import METHODS

ROOT = Path(__file__).resolve().parent.parent

# ----------------------------------------------------------------------------- a run with known numbers
# Stand-in for runner.run_one (also used by test_report). Accuracies are exact by construction
# (100 windows per split, k of them right): task-1 accuracy = 50 + 8 * method index
# + seed * (1 + method index) (+1 for the teacher); task-2 accuracy = 80 + seed.
NAMES = (["lie", "sit", "walk"], ["phone", "watch"])
N = 100


def task1_accuracy(method: str, seed: int, who: str = "student") -> int:
    mi = list(METHODS).index(method)
    return 50 + 8 * mi + seed * (1 + mi) + (who == "teacher")


def fake_predictions(k: int, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.arange(N) % n_classes
    y_pred = y_true.copy()
    y_pred[: N - k] = (y_true[: N - k] + 1) % n_classes  # the first N - k are wrong
    return y_true, y_pred


@functools.cache  # scikit-learn metrics take ~20 ms a call: compute each case once
def fake_evaluation(method: str, seed: int) -> tuple:
    whos = ["student", "teacher"] if method == "smooth_distill" else ["student"]
    preds = {}
    for split in ("val", "test"):
        for who in whos:
            y1t, y1p = fake_predictions(task1_accuracy(method, seed, who), 3)
            y2t, y2p = fake_predictions(80 + seed, 2)
            preds[(split, who)] = {"y1_true": y1t, "y1_pred": y1p, "y2_true": y2t, "y2_pred": y2p}
    return tuple(runner.evaluate(preds, NAMES))


def fake_run(spec: experiment.RunSpec, device=None) -> dict:
    mi = list(METHODS).index(spec.method)

    def fig(v, unit):
        return {"value": v, "unit": unit, "how": "fake"}

    return {
        "config": spec.train,
        "data": {"n_windows": 6 * N, "n_fit": 4 * N, "n_val": N, "n_test": N,
                 "activity_names": NAMES[0], "placement_names": NAMES[1]},
        "best_epoch": 1,
        "evaluation": copy.deepcopy(list(fake_evaluation(spec.method, spec.seed))),
        "history": [{"epoch": 1, "train_loss": 1.0 / (1 + mi), "val_acc_task1": 50.0}],
        "compute": {"params": fig(1000 * (mi + 1), "parameters"),
                    "train_seconds": fig(10.0 * (mi + 1) + spec.seed, "s"),
                    "energy": fig(0.001 * (mi + 1), "kWh")},
        "provenance": {"fake": True},
    }


def small(**kw) -> experiment.Experiment:
    d = {"name": "t", "datasets": ["sleepsim"], "methods": ["multitask", "smooth_distill"], "seeds": [0, 1],
         "folds": [0], "epochs": 1}
    d.update(kw)
    return experiment.Experiment.from_dict(d)


def record_files(folder: Path) -> list[Path]:
    return sorted((folder / "runs").glob("*.json"))


# ----------------------------------------------------------------------------- config
@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_config_round_trip(tmp_path, suffix):
    exp = small(lams=[0.1, None], train_options={"selection": "task1"}, description="x")
    path = experiment.write_config(exp, tmp_path / f"e{suffix}")
    back = experiment.read_config(path)
    assert back == exp
    assert [s.run_id for s in experiment.expand(back)] == [s.run_id for s in experiment.expand(exp)]


@pytest.mark.parametrize("text, key", [
    ("name: t\ndatasets: [sleepsim]\nmethods: [multitask]\nmetods: [x]\n", "metods"),
    ("name: t\ndatasets: [sleepsim]\nmethods: [smooth]\n", "methods"),
    ("name: t\ndatasets: [sleepsim]\nmethods: [multitask]\ntrain_ratios: [1.5]\n", "train_ratios"),
    ("name: t\ndatasets: [sleepsim]\nmethods: [multitask]\ntrain_options: {lr0: 1}\n", "train_options"),
    ("name: t\ndatasets: [sleepsim]\nmethods: [multitask]\nprotocols: [random]\n", "protocols"),
    ("datasets: [sleepsim]\nmethods: [multitask]\n", "name"),
    ("name: t\ndatasets: [sleepsim\n", "YAML"),
    ("name: t\ndatasets: [sleepsim]\nmethods: [multitask]\nsplit_seed: -1\n", "'split_seed'"),
    ("name: t\ndatasets: [sleepsim]\nmethods: [multitask]\ntrain_options: {lr: fast}\n", "'train_options.lr'"),
    ("name: t\ndatasets: [sleepsim]\nmethods: [multitask]\ntrain_options: {batch_size: '64'}\n",
     "'train_options.batch_size'"),
    # whole numbers where they enter: a float or huge window length / step, a zero step, a seed
    # outside what scikit-learn and torch take (each failed later inside numpy, sklearn or torch)
    ("name: t\ndatasets: [sleepsim]\nmethods: [multitask]\ndata_options: {length: 2.5}\n", "'data_options.length'"),
    ("name: t\ndatasets: [sleepsim]\nmethods: [multitask]\ndata_options: {step: 1000000000000}\n",
     "'data_options.step'"),
    ("name: t\ndatasets: [sleepsim]\nmethods: [multitask]\ndata_options: {step: 0}\n", "'data_options.step'"),
    ("name: t\ndatasets: [sleepsim]\nmethods: [multitask]\ndata_options: {n_folds: 1}\n", "'data_options.n_folds'"),
    ("name: t\ndatasets: [sleepsim]\nmethods: [multitask]\nsplit_seed: 4294967296\n", "'split_seed'"),
    ("name: t\ndatasets: [sleepsim]\nmethods: [multitask]\nresamples: 3\nsplit_seed: 4294967295\n", "'split_seed'"),
    ("name: t\ndatasets: [sleepsim]\nmethods: [multitask]\nseeds: [99999999999999999999]\n", "'seeds'"),
])
def test_bad_config_names_file_and_key(tmp_path, text, key):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError) as e:
        experiment.read_config(path)
    assert str(path) in str(e.value) and key in str(e.value)


def test_refusals_are_user_errors_the_cli_prints_as_one_line(tmp_path, capsys, monkeypatch):
    """Every refusal of the runner is an errors.UserError (a ValueError): one line, exit code 2."""
    assert all(issubclass(c, errors.UserError) and issubclass(c, ValueError) for c in
               (errors.ConfigError, errors.ExperimentLocked, errors.DirtyCheckout, errors.EnvironmentMismatch,
                errors.CheckpointError))
    from smoothdistill_lib import provenance

    path = experiment.write_config(small(), tmp_path / "t.yaml")
    monkeypatch.setenv("SMOOTHDISTILL_RESULTS", str(tmp_path / "res"))
    monkeypatch.setattr(provenance, "git_commit", lambda root=None: ("abc1234", True))
    assert cli_main(["run", str(path), "--require-clean"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: experiment t: the checkout has uncommitted") and err.count("\n") == 1


def test_cli_run_bad_config_is_one_clear_line(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("name: t\ndatasets: [sleepsim]\nmethods: [multitask]\nseed: [1]\n")
    assert cli_main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "'seed'" in err and "Traceback" not in err
    assert cli_main(["run", str(tmp_path / "missing.yaml")]) == 2


@pytest.mark.parametrize("name, n", [("main", 5 * 2 * 2), ("lambda", 5 * 2), ("ratio", 9 * 5 * 2),
                                     ("mhealth", 5 * 2), ("lambda_mhealth", 5)])
def test_shipped_configs_expand(name, n):
    """The shipped configs load; in quick mode (1 seed, 1 fold) their grids have the paper's size."""
    exp = experiment.read_config(ROOT / "configs" / f"{name}.yaml")
    assert exp.mode is None  # one file for every mode: the mode comes from the CLI / environment
    specs = experiment.expand(exp, mode="quick")
    assert len(specs) == n and len({s.run_id for s in specs}) == n
    full = experiment.expand(exp, mode="full")
    per_seed_fold = 1 if name == "ratio" else 5  # the ratio ablation uses one fixed split
    assert len(full) == n * 5 * per_seed_fold
    assert {s.layout for s in specs if s.model == "mtlnet"} == {"faithful"}
    assert {s.layout for s in specs if s.model != "mtlnet"} <= {"axes"}


# ----------------------------------------------------------------------------- grid
def test_expand_grid_and_stable_run_ids():
    exp = small(methods=["singletask", "smooth_distill"], lams=[0.1, 0.5], protocols=["paper", "subject"])
    specs = experiment.expand(exp)
    # smooth_distill x 2 lambdas + singletask once (lambda does not apply), x 2 protocols x 2 seeds
    assert len(specs) == (2 + 1) * 2 * 2
    assert {s.lam for s in specs if s.method == "singletask"} == {None}
    assert sorted({s.lam for s in specs if s.method == "smooth_distill"}) == [0.1, 0.5]
    assert all(s.train["epochs"] == 1 and s.train["batch_size"] == get_mode().batch_size for s in specs)
    ids = [s.run_id for s in specs]
    assert len(set(ids)) == len(ids) and all(len(i) == 12 for i in ids)
    assert ids == [s.run_id for s in experiment.expand(exp)]  # deterministic
    # the experiment's name and the order of the lists do not change a run's identity ...
    other = small(name="renamed", methods=["smooth_distill", "singletask"], lams=[0.5, 0.1],
                  protocols=["subject", "paper"])
    assert set(ids) == {s.run_id for s in experiment.expand(other)}
    # ... but every setting does: epochs, a training option, the mode's sizes
    assert not set(ids) & {s.run_id for s in experiment.expand(small(epochs=2))}
    assert not set(ids) & {s.run_id for s in experiment.expand(small(train_options={"lr": 0.01}))}
    quick, demo = experiment.expand(small(), mode="quick"), experiment.expand(small(), mode="demo")
    assert not {s.run_id for s in quick} & {s.run_id for s in demo}


def test_expand_defaults_from_mode_and_ratio_uses_fold0():
    exp = small(seeds=None, folds=None, epochs=None, train_ratios=[None, 0.5], methods=["multitask"])
    ms = get_mode("demo")
    specs = experiment.expand(exp, mode="demo")
    cv = [s for s in specs if s.train_ratio is None]
    assert sorted({(s.seed, s.fold) for s in cv}) == [(i, j) for i in range(ms.n_seeds) for j in range(ms.n_folds)]
    ratio = [s for s in specs if s.train_ratio == 0.5]
    assert {s.fold for s in ratio} == {0} and len(ratio) == ms.n_seeds
    assert all(s.train["epochs"] == ms.epochs for s in specs)


def test_ema_decay_is_a_size_of_the_grids_mode_not_of_the_environment(monkeypatch):
    """Full mode keeps the paper's a = 0.999; shorter modes shorten the horizon, and the grid's mode
    (not $SMOOTHDISTILL_MODE) decides, so one config gives the same runs wherever it is expanded."""
    monkeypatch.setenv("SMOOTHDISTILL_MODE", "quick")
    exp = small(methods=["smooth_distill"])
    decays = {m: {s.train["ema_decay"] for s in experiment.expand(exp, mode=m)} for m in ("quick", "demo", "full")}
    assert decays == {"quick": {0.9}, "demo": {0.97}, "full": {0.999}}
    # a config may still pin it, e.g. to run the paper's decay at demo size
    pinned = experiment.expand(small(methods=["smooth_distill"], train_options={"ema_decay": 0.999}), mode="demo")
    assert {s.train["ema_decay"] for s in pinned} == {0.999}
    # the horizon 1/(1-a) stays under one demo epoch of the capped data (64 % of it fits, batch 64)
    demo = get_mode("demo")
    steps_per_epoch = 0.64 * demo.max_windows / demo.batch_size
    assert 1 / (1 - demo.ema_decay) < steps_per_epoch < 1 / (1 - get_mode("full").ema_decay)


def test_spec_identity_covers_engine_defaults():
    """The hash covers the fully resolved TrainConfig, e.g. the default lambda of smooth_distill."""
    (spec,) = [s for s in experiment.expand(small(seeds=[0])) if s.method == "smooth_distill"]
    from smoothdistill_lib.engine import TrainConfig

    assert spec.lam == TrainConfig.lam == spec.train["lam"]
    assert spec.train["temperature"] == TrainConfig.temperature and "device" not in spec.train
    assert experiment.RunSpec.from_dict(json.loads(json.dumps(spec.to_dict()))).run_id == spec.run_id


# ----------------------------------------------------------------------------- atomic write
def test_atomic_write_keeps_old_content_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    fileio.atomic_write_json(path, {"a": 1, "x": np.float32(0.5), "nan": float("nan")})
    assert json.loads(path.read_text()) == {"a": 1, "x": 0.5, "nan": None}  # strict JSON: NaN -> null

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(fileio.os, "replace", boom)
    with pytest.raises(OSError):
        fileio.atomic_write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 1, "x": 0.5, "nan": None}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temp file left behind


# ----------------------------------------------------------------------------- run, resume, corruption
def test_run_writes_valid_records_and_resumes(tmp_path):
    exp = small()
    s1 = runner.run_experiment(exp, results_root=tmp_path, run_fn=fake_run, progress=False, limit=1)
    assert len(s1.ran) == 1 and s1.pending == 3 and s1.done_before == 0
    s2 = runner.run_experiment(exp, results_root=tmp_path, run_fn=fake_run, progress=False)
    assert s2.done_before == 1 and len(s2.ran) == 3 and s2.pending == 0
    assert not set(s1.ran) & set(s2.ran)
    files = record_files(tmp_path / "t")
    assert {p.stem for p in files} == {s.run_id for s in experiment.expand(exp)}
    for p in files:
        rec = records.read_record(p)
        assert rec["spec"]["experiment"] == "t" and rec["schema"] == records.SCHEMA
        ev = {(e["split"], e["who"], e["task"]): e for e in rec["evaluation"]}
        acc = ev[("test", "student", 1)]["metrics"]["accuracy"]
        assert acc == pytest.approx(task1_accuracy(rec["spec"]["method"], rec["spec"]["seed"]))
        assert np.asarray(ev[("test", "student", 1)]["confusion"]).sum() == N
    s3 = runner.run_experiment(exp, results_root=tmp_path, run_fn=fake_run, progress=False)
    assert s3.ran == [] and s3.done_before == 4


def test_one_grid_provenance_per_invocation_read_before_the_first_run(tmp_path, monkeypatch):
    """The commit is read once, at the start: a checkout that changes mid-grid does not split the
    grid's records over several commits; a later (resumed) invocation records its own."""
    from smoothdistill_lib import provenance

    commits = iter([("aaaaaaa", False), ("bbbbbbb", True)])
    monkeypatch.setattr(provenance, "git_commit", lambda root=None: next(commits))
    runner.run_experiment(small(), results_root=tmp_path, run_fn=fake_run, progress=False, limit=3)
    runner.run_experiment(small(), results_root=tmp_path, run_fn=fake_run, progress=False)
    grids = [records.read_record(p)["provenance"]["grid"] for p in record_files(tmp_path / "t")]
    assert sorted((g["commit"], g["dirty"], g["pending_at_start"]) for g in grids) == \
        [("aaaaaaa", False, 3)] * 3 + [("bbbbbbb", True, 1)]
    assert {g["runs_in_grid"] for g in grids} == {4} and {g["experiment"] for g in grids} == {"t"}


def test_require_clean_refuses_a_dirty_checkout_before_running_anything(tmp_path, monkeypatch, capsys):
    from smoothdistill_lib import provenance

    monkeypatch.setattr(provenance, "git_commit", lambda root=None: ("abc1234", True))
    with pytest.raises(errors.DirtyCheckout, match="uncommitted changes.*abc1234"):
        runner.run_experiment(small(), results_root=tmp_path, run_fn=fake_run, progress=False, require_clean=True)
    assert record_files(tmp_path / "t") == []
    runner.run_experiment(small(), results_root=tmp_path, run_fn=fake_run, progress=False, limit=1)
    assert "warning: the checkout has uncommitted changes" in capsys.readouterr().err


def test_a_grid_whose_data_are_absent_says_so_and_runs_once_they_are_there(tmp_path, monkeypatch):
    """What chapter 8 does with MHEALTH: one line when the raw logs are absent (nothing downloaded),
    and the grid runs from the raw files once they are present."""
    from smoothdistill_lib import datasets
    from tests.rawfixtures import write_mhealth_tree

    data = tmp_path / "data"
    monkeypatch.setenv("SMOOTHDISTILL_DATA", str(data))
    monkeypatch.setattr(datasets, "search_dirs", lambda: [data])  # not ../shared/data
    config = ROOT / "configs" / "mhealth.yaml"
    missing = experiment.missing_datasets(config)
    # the line is printed in chapter 8: it names the setting, never the machine's path
    assert list(missing) == ["mhealth"] and "$SMOOTHDISTILL_DATA" in missing["mhealth"]
    assert str(data) not in missing["mhealth"]
    assert "MHEALTHDATASET/mHealth_subject<k>.log" in missing["mhealth"] and "downloads it" in missing["mhealth"]
    assert not data.exists()  # nothing was fetched
    assert experiment.missing_datasets(small()) == {}  # sleepsim is generated

    # 1-3: walking, climbing, cycling... 600 rows (12 s) each, ten subjects as in the archive
    write_mhealth_tree(data, subjects=range(1, 11), blocks=[(1, 600), (4, 600), (9, 600)])
    assert experiment.missing_datasets(config) == {}
    summary = runner.run_experiment(config, results_root=tmp_path / "results", mode="quick", limit=1,
                                    progress=False)
    (rec,) = [records.read_record(p) for p in record_files(tmp_path / "results" / "mhealth")]
    assert summary.ran == [rec["run_id"]] and rec["spec"]["dataset"] == "mhealth"
    assert rec["data"]["placement_names"] == ["chest", "left_ankle", "right_lower_arm"]
    # the paper protocol: three placements stacked into one stream of 3 x 10 x 1,800 rows, under the cap
    assert rec["data"]["n_windows"] == (3 * 10 * 1800 - 100) // 60 + 1


@pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")
def test_a_second_runner_on_the_same_experiment_is_refused_while_the_first_holds_it(tmp_path):
    import fcntl

    folder = tmp_path / "t"
    (folder / "runs").mkdir(parents=True)
    with open(folder / ".lock", "a+") as held:  # what a running `run` holds
        held.write("pid 4242\n")
        held.flush()
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(errors.ExperimentLocked, match=r"another `run` holds .*\.lock \(pid 4242\)"):
            runner.run_experiment(small(), results_root=tmp_path, run_fn=fake_run, progress=False)
        assert record_files(folder) == []
        fcntl.flock(held, fcntl.LOCK_UN)
    # released (as the kernel does when a runner dies): the next run proceeds and releases it in turn
    assert len(runner.run_experiment(small(), results_root=tmp_path, run_fn=fake_run, progress=False).ran) == 4
    assert len(runner.run_experiment(small(), results_root=tmp_path, run_fn=fake_run, progress=False).ran) == 0


@pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")
def test_each_run_takes_its_own_lock_and_skips_what_another_process_has(tmp_path):
    """A run another process holds (its runs/.<run_id>.lock) is skipped, not trained twice; one whose
    record appeared after the scan (another process finished it) is not trained again."""
    import fcntl

    exp = small()
    specs = experiment.expand(exp)
    runs = tmp_path / "t" / "runs"
    runs.mkdir(parents=True)
    calls = []

    def run(spec, device=None):
        calls.append(spec.run_id)
        if spec.run_id == specs[0].run_id:  # meanwhile another process finishes specs[1]
            other = specs[1]
            fileio.atomic_write_json(runs / f"{other.run_id}.json", {"schema": records.SCHEMA, "run_id": other.run_id,
                                                                     "spec": other.to_dict(), **fake_run(other)})
        return fake_run(spec, device)

    with open(runner.run_lock(runs, specs[3].run_id), "a+") as held:  # what the other process holds
        held.write("pid 4242\n")
        held.flush()
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        s = runner.run_experiment(exp, results_root=tmp_path, run_fn=run, progress=False)
        assert calls == s.ran == [specs[0].run_id, specs[2].run_id]
        assert s.skipped == [f"{specs[1].run_id} ({specs[1].label}): another process finished it meanwhile",
                             f"{specs[3].run_id} ({specs[3].label}): another process is running it (pid 4242)"]
        assert f"run skipped: {s.skipped[1]}" in s.lines()
        assert not (runs / f"{specs[3].run_id}.json").exists()
        fcntl.flock(held, fcntl.LOCK_UN)
    for spec in specs[:3]:  # released once their records were written
        with fileio.file_lock(runner.run_lock(runs, spec.run_id), wait=False):
            pass
    s = runner.run_experiment(exp, results_root=tmp_path, run_fn=run, progress=False)
    assert s.ran == [specs[3].run_id] and s.skipped == [] and s.done_before == 3


@pytest.mark.parametrize("damage", ["garbage", "truncated", "missing_key", "hash_mismatch", "renamed",
                                    "no_metrics", "accuracy_250", "negative_f1", "confusion_sum",
                                    "confusion_shape", "per_class_rate"])
def test_corrupt_record_is_reported_moved_and_rerun(tmp_path, damage, capsys):
    exp = small(seeds=[0])
    runner.run_experiment(exp, results_root=tmp_path, run_fn=fake_run, progress=False)
    files = record_files(tmp_path / "t")
    victim = files[0]
    text = victim.read_text()
    if damage == "garbage":
        victim.write_bytes(b"\x00\xff not json")
    elif damage == "truncated":
        victim.write_text(text[: len(text) // 2])
    elif damage == "missing_key":
        rec = json.loads(text)
        del rec["evaluation"]
        victim.write_text(json.dumps(rec))
    elif damage == "no_metrics":  # valid JSON that `report` could not read (KeyError before)
        rec = json.loads(text)
        del rec["evaluation"][0]["metrics"]
        victim.write_text(json.dumps(rec))
    elif damage in ("accuracy_250", "negative_f1", "confusion_sum", "confusion_shape", "per_class_rate"):
        # valid JSON with an impossible value: it would be averaged into the tables as if it were real
        rec = json.loads(text)
        e = rec["evaluation"][0]
        if damage == "accuracy_250":
            e["metrics"]["accuracy"] = 250.0
        elif damage == "negative_f1":
            e["metrics"]["macro_f1"] = -3.0
        elif damage == "confusion_sum":
            e["confusion"][0][0] += 1
        elif damage == "confusion_shape":
            e["confusion"] = [row[:-1] for row in e["confusion"][:-1]]
        else:
            e["per_class"][0]["ppv"] = 100.5
        victim.write_text(json.dumps(rec))
    elif damage == "hash_mismatch":  # a record edited by hand: its spec no longer hashes to its id
        rec = json.loads(text)
        rec["spec"]["train"]["epochs"] = 99
        victim.write_text(json.dumps(rec))
    else:  # a valid record under another run's name
        victim.write_text(files[1].read_text())
    summary = runner.run_experiment(exp, results_root=tmp_path, run_fn=fake_run, progress=False)
    assert summary.ran == [victim.stem]
    assert len(summary.corrupt) == 1 and victim.name in summary.corrupt[0]
    assert "corrupt" in capsys.readouterr().err
    assert (victim.parent / (victim.name + ".corrupt")).exists()
    assert (victim.parent / (victim.name + ".corrupt.why")).read_text().strip() == summary.corrupt[0].split(": ", 1)[1]
    records.read_record(victim)  # rerun: valid again


def test_a_record_with_impossible_values_is_never_reported(tmp_path):
    """An accuracy of 250 was reported (mean 163 +- 123) and counted as finished; now the record is
    refused by validate_record: `report` skips it naming the value, `run` moves it aside and reruns it."""
    exp = small(methods=["multitask"])
    runner.run_experiment(exp, results_root=tmp_path, run_fn=fake_run, progress=False)
    victim = record_files(tmp_path / "t")[0]
    rec = json.loads(victim.read_text())
    (e,) = [e for e in rec["evaluation"] if (e["split"], e["who"], e["task"]) == ("test", "student", 1)]
    e["metrics"]["accuracy"] = 250.0
    victim.write_text(json.dumps(rec))
    with pytest.raises(ValueError, match=r"evaluation\[\d\]: metric 'accuracy' is 250.0, outside \[0, 100\]"):
        records.read_record(victim)
    with pytest.warns(UserWarning, match=f"skipping invalid record {re.escape(str(victim))}.*250.0"):
        recs = records.load_experiment("t", results_root=tmp_path)
    assert victim.stem not in recs.records and len(recs.records) == 1 and recs.df["accuracy"].max() <= 100
    assert victim.exists()  # report only reads
    s = runner.run_experiment(exp, results_root=tmp_path, run_fn=fake_run, progress=False)
    assert s.ran == [victim.stem] and s.done_before == 1  # not counted as finished
    why = victim.with_name(victim.name + ".corrupt.why").read_text()
    assert "'accuracy' is 250.0" in why and records.read_record(victim)["run_id"] == victim.stem


def test_leftover_temp_file_of_a_killed_writer_is_ignored_and_removed(tmp_path):
    exp = small(seeds=[0])
    runs = tmp_path / "t" / "runs"
    runs.mkdir(parents=True)
    old, fresh = runs / ".abc.json.xyz.tmp", runs / ".def.json.uvw.tmp"  # fresh: maybe another writer's
    for p in (old, fresh):
        p.write_text('{"half": ')
    os.utime(old, (time.time() - 2 * records.STALE_TEMP_SECONDS,) * 2)
    summary = runner.run_experiment(exp, results_root=tmp_path, run_fn=fake_run, progress=False)
    assert len(summary.ran) == 2 and not old.exists() and fresh.exists()
    assert len(record_files(tmp_path / "t")) == 2


def test_changed_config_moves_stale_records_and_keeps_other_modes(tmp_path):
    runner.run_experiment(small(seeds=[0]), results_root=tmp_path, run_fn=fake_run, progress=False)
    old = {p.stem for p in record_files(tmp_path / "t")}
    runner.run_experiment(small(seeds=[0]), results_root=tmp_path, run_fn=fake_run, progress=False, mode="demo")
    s = runner.run_experiment(small(seeds=[0], epochs=2), results_root=tmp_path, run_fn=fake_run, progress=False)
    assert set(s.stale) == old and len(s.ran) == 2
    assert {p.stem for p in (tmp_path / "t" / "stale").glob("*.json")} == old
    assert s.other_modes == {"demo": 2}
    assert len(record_files(tmp_path / "t")) == 4  # 2 new quick + 2 demo


def test_run_fn_without_required_keys_fails_before_writing(tmp_path):
    def broken(spec, device=None):
        body = fake_run(spec)
        del body["history"]
        return body

    with pytest.raises(ValueError, match="history"):
        runner.run_experiment(small(seeds=[0]), results_root=tmp_path, run_fn=broken, progress=False)
    assert record_files(tmp_path / "t") == []


# ----------------------------------------------------------------------------- the real engine
E2E = {"name": "e2e", "datasets": ["sleepsim"], "methods": ["multitask", "smooth_distill", "singletask"],
       "seeds": [0], "folds": [0], "epochs": 1}


@pytest.fixture(scope="module")
def e2e_run(tmp_path_factory):
    """The E2E grid run uninterrupted, in this process, with the real pipeline and engine (quick mode)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same as the CLI subprocesses below (OMP_NUM_THREADS=1)
    root = tmp_path_factory.mktemp("e2e")
    experiment._prepare_cached.cache_clear()
    try:
        summary = runner.run_experiment(experiment.Experiment.from_dict(E2E), results_root=root, mode="quick",
                                        progress=False)
    finally:
        torch.set_num_threads(threads)
    return root, summary, experiment._prepare_cached.cache_info()


def test_end_to_end_quick_grid_on_sleepsim(e2e_run):
    root, summary, cache = e2e_run
    assert len(summary.ran) == 3 and summary.mode == "quick"
    recs = [records.read_record(p) for p in record_files(root / "e2e")]
    assert {r["spec"]["method"] for r in recs} == {"multitask", "smooth_distill", "singletask"}
    for r in recs:
        ev = {(e["split"], e["who"], e["task"]): e for e in r["evaluation"]}
        whos = {"student", "teacher"} if r["spec"]["method"] == "smooth_distill" else {"student"}
        assert set(ev) == {(s, w, t) for s in ("val", "test") for w in whos for t in (1, 2)}
        test1 = ev[("test", "student", 1)]
        assert test1["metrics"]["n"] == r["data"]["n_test"] > 0
        assert 0 <= test1["metrics"]["accuracy"] <= 100
        assert np.asarray(test1["confusion"]).shape == (12, 12)  # sleepsim: 12 postures
        assert [c["class"] for c in test1["per_class"]] == r["data"]["activity_names"]
        assert len(r["history"]) == 1 and r["best_epoch"] == 1
        assert r["spec"]["layout"] == "faithful" and r["data"]["options"]["layout"] == "faithful"
        c = r["compute"]
        assert c["params"]["value"] > 0 and c["train_seconds"]["value"] > 0 and c["flops"]["how"]
        assert r["provenance"]["mode"] == "quick" and r["provenance"]["started"] <= r["provenance"]["finished"]
    params = {r["spec"]["method"]: r["compute"]["params"]["value"] for r in recs}
    assert params["multitask"] == params["smooth_distill"] < params["singletask"]  # two nets for singletask
    assert cache.misses == 1 and cache.hits == 2  # data prepared once


def test_ratio_run_subsamples_only_the_fit_windows(e2e_run):
    root = e2e_run[0]
    (ref,) = [records.read_record(p) for p in record_files(root / "e2e")
              if records.read_record(p)["spec"]["method"] == "multitask"]
    exp = experiment.Experiment.from_dict({**E2E, "methods": ["multitask"], "train_ratios": [0.5], "folds": [3]})
    (spec,) = experiment.expand(exp, "quick")
    assert spec.fold == 0  # the ratio ablation uses one fixed split
    body = runner.run_one(spec, progress=False)
    assert body["data"]["n_fit"] == round(0.5 * ref["data"]["n_fit"])
    assert (body["data"]["n_val"], body["data"]["n_test"]) == (ref["data"]["n_val"], ref["data"]["n_test"])


def _cli(results: Path, config: Path) -> subprocess.Popen:
    env = {**os.environ, "SMOOTHDISTILL_RESULTS": str(results), "SMOOTHDISTILL_MODE": "quick",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    log = open(results / "log.txt", "ab")  # a file, not a pipe: a full pipe would block the child
    return subprocess.Popen([sys.executable, "-m", "smoothdistill_lib", "run", str(config)], cwd=ROOT,
                            env=env, stdout=log, stderr=log)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_kill_9_and_restart_gives_the_uninterrupted_records(tmp_path, e2e_run):
    """SIGKILL the CLI right after its first record appears, restart it: the final records are the
    uninterrupted run's (same run_ids, same numbers) and every one is valid."""
    ref_root = e2e_run[0]
    config = experiment.write_config(experiment.Experiment.from_dict(E2E), tmp_path / "e2e.yaml")
    runs = tmp_path / "e2e" / "runs"
    proc = _cli(tmp_path, config)
    deadline = time.monotonic() + 120
    while not list(runs.glob("*.json")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "log.txt").read_text()[-2000:]
    n_first = len(list(runs.glob("*.json")))
    assert 1 <= n_first < 3  # killed mid-grid
    for p in runs.glob("*.json"):
        records.read_record(p)  # whatever was on disk at the kill is complete

    proc = _cli(tmp_path, config)
    assert proc.wait(timeout=180) == 0, (tmp_path / "log.txt").read_text()[-2000:]
    log = (tmp_path / "log.txt").read_text()
    assert f"{n_first} done before, {3 - n_first} run now" in log
    assert not list(runs.glob("*.corrupt"))  # a temp file of the killed writer may remain: never read
    got = {p.stem: records.read_record(p) for p in record_files(tmp_path / "e2e")}
    ref = {p.stem: records.read_record(p) for p in record_files(ref_root / "e2e")}
    assert set(got) == set(ref) == {s.run_id for s in experiment.expand(experiment.Experiment.from_dict(E2E), "quick")}
    for run_id, rec in got.items():  # resuming changes no number (CPU training is deterministic)
        assert rec["evaluation"] == ref[run_id]["evaluation"], rec["spec"]["method"]


# ----------------------------------------------------------------------------- networks beside records
def test_runs_keep_their_networks_which_score_new_subjects(e2e_run, tmp_path, capsys):
    """A quick run leaves student and teacher checkpoints beside its record (git-ignored, sha256 in
    the record); load_predictor(run, network=...) and `score` score them on subjects never seen."""
    import shutil

    from smoothdistill_lib import checkpoints, datasets, predictions

    runs = tmp_path / "runs"
    shutil.copytree(e2e_run[0] / "e2e" / "runs", runs)  # a copy: the module's grid stays intact
    recs = {r["spec"]["method"]: r for r in (records.read_record(p) for p in sorted(runs.glob("*.json")))}
    assert set(recs["smooth_distill"]["networks"]) == {"student", "teacher"}
    assert set(recs["multitask"]["networks"]) == set(recs["singletask"]["networks"]) == {"student"}
    for r in recs.values():
        for who, ref in r["networks"].items():
            assert ref["file"] == f"networks/{r['run_id']}.{who}.pt"
            assert fileio.sha256_file(runs / ref["file"]) == ref["sha256"] and (runs / ref["file"]).with_suffix(".json").is_file()
    assert "results/*/runs/networks/" in (ROOT / ".gitignore").read_text().splitlines()

    # each kept network gives the run's own test predictions again
    for method in ("smooth_distill", "singletask"):
        rec = recs[method]
        arrays = predictions.read(runs, rec)
        test = experiment.prepare_for(experiment.RunSpec.from_dict(rec["spec"])).windows.subset(arrays["test_index"])
        for who in rec["networks"]:
            y1, y2 = checkpoints.load_predictor(runs / rec["run_id"], network=who).predict(test)
            assert np.array_equal(y1, arrays[f"test_{who}_y1_pred"]) and np.array_equal(y2, arrays[f"test_{who}_y2_pred"])

    # `score` on subjects 5 and 6, which the quick grid (sleepsim subjects 1-4) never saw
    rid = recs["smooth_distill"]["run_id"]
    assert cli_main(["score", str(runs / rid), "--network", "teacher", "--dataset", "sleepsim", "--subjects", "5,6"]) == 0
    out, err = capsys.readouterr()
    want = checkpoints.load_predictor(runs / rid, network="teacher").score(
        datasets.load_recording("sleepsim", mode="quick", subjects=[5, 6]))
    label = experiment.RunSpec.from_dict(recs["smooth_distill"]["spec"]).label
    assert out.startswith(f"run {rid} ({label}), teacher network, on sleepsim subjects 5, 6:")
    assert f"{want.loc['task1', 'accuracy']:.2f}" in out and f"{want.loc['task2', 'macro_f1']:.2f}" in out
    assert err == "" and want.loc["task1", "n"] > 0
    # a subject it trained on is named; a network the run does not have is one line
    assert cli_main(["score", str(runs / f"{rid}.json"), "--subjects", "3"]) == 0
    assert "warning: score: subject(s) [3] were among the student's training subjects" in capsys.readouterr().err
    assert cli_main(["score", str(runs / recs["multitask"]["run_id"]), "--network", "teacher", "--subjects", "5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no teacher network (method 'multitask' kept student)" in err

    # a network file that is not the one its record names, or is gone: one line, nothing scored
    teacher = runs / recs["smooth_distill"]["networks"]["teacher"]["file"]
    shutil.copy(runs / recs["smooth_distill"]["networks"]["student"]["file"], teacher)
    with pytest.raises(errors.CheckpointError, match=f"{re.escape(str(teacher))}: its sha256 differs from the one the record of run {rid}"):
        checkpoints.load_predictor(runs / rid, network="teacher")
    teacher.unlink()
    with pytest.raises(errors.CheckpointError, match="teacher network of run .* is missing"):
        checkpoints.load_predictor(runs / rid, network="teacher")


def test_run_no_networks_keeps_none(tmp_path, monkeypatch, capsys):
    from smoothdistill_lib import checkpoints

    cfg = experiment.write_config(experiment.Experiment.from_dict({**E2E, "methods": ["multitask"]}), tmp_path / "e.yaml")
    monkeypatch.setenv("SMOOTHDISTILL_RESULTS", str(tmp_path / "res"))
    assert cli_main(["run", str(cfg), "--mode", "quick", "--no-networks"]) == 0
    runs = tmp_path / "res" / "e2e" / "runs"
    (rec,) = [records.read_record(p) for p in runs.glob("*.json")]
    assert "networks" not in rec and not (runs / "networks").exists()
    with pytest.raises(errors.CheckpointError, match=f"run {rec['run_id']} .* kept no networks"):
        checkpoints.load_predictor(runs / rec["run_id"])


def _run_with_networks(spec, device=None):
    """fake_run, plus a network to keep (what records.record_body hands the runner)."""
    import torch

    body = fake_run(spec, device)
    body["networks"] = {"student": ({"student": {"w": torch.full((2,), float(spec.seed))}}, {"network": "student"})}
    return body


def test_networks_go_stale_with_their_records(tmp_path):
    runs = tmp_path / "t" / "runs"
    first = runner.run_experiment(small(), results_root=tmp_path, run_fn=_run_with_networks, progress=False)
    assert sorted(p.name for p in (runs / "networks").glob("*.pt")) == sorted(f"{r}.student.pt" for r in first.ran)
    for p in record_files(tmp_path / "t"):
        ref = records.read_record(p)["networks"]["student"]
        assert fileio.sha256_file(runs / ref["file"]) == ref["sha256"]
    second = runner.run_experiment(small(epochs=2), results_root=tmp_path, run_fn=_run_with_networks, progress=False)
    assert sorted(second.stale) == sorted(first.ran)
    stale = tmp_path / "t" / "stale" / "networks"
    assert sorted(p.name for p in stale.glob("*.pt")) == sorted(f"{r}.student.pt" for r in first.ran)
    assert sorted(p.name.split(".")[0] for p in (runs / "networks").glob("*.pt")) == sorted(second.ran)


# ----------------------------------------------------------------------------- run identity
#: grids whose records are still being made (issue: the ablations at the paper's decay): checked once
#: they have records, skipped with the reason until then
STARTED = ("long_ratio", "long_arch")


def _committed(name: str) -> list[dict]:
    folder = ROOT / "results" / name / "runs"
    recs = [records.read_record(p) for p in sorted(folder.glob("*.json"))]
    if not recs and name in STARTED:
        pytest.skip(f"results/{name} has no records yet (python -m smoothdistill_lib run configs/{name}.yaml)")
    assert recs, f"no records in {folder}"
    return recs


@pytest.mark.parametrize("name", ["main", "lambda", "ratio_cpu", "long", "long_lambda", "long_cv", *STARTED])
def test_recorded_grids_keep_their_run_ids(name):
    """Options added to the engine or the modes later (e.g. ``min_steps``) are left out of run ids
    while off: every committed record is still part of its config's grid, so nothing is stale."""
    recs = _committed(name)
    modes = {r["spec"]["mode"] for r in recs}
    grid = {s.run_id for m in modes for s in experiment.expand(experiment.read_config(ROOT / "configs" / f"{name}.yaml"), m)}
    assert {r["run_id"] for r in recs} <= grid


@pytest.mark.parametrize("name", ["long", "long_lambda", "long_cv", *STARTED])
def test_long_records_are_at_the_papers_decay_and_ten_thousand_steps(name):
    """What the long grid's records must be to count as evidence at convergence: long mode, the
    paper's a = 0.999, at least 10,000 optimizer steps that ran in every stage (epochs in the history
    x batches per epoch; Born-Again has two stages), fold 0, every window present (no cap), one
    numeric environment (CPU torch, one thread)."""
    recs = _committed(name)
    for r in recs:
        epochs = Counter(h.get("stage", 1) for h in r["history"])
        steps = {stage: n * math.ceil(r["data"]["n_fit"] / r["config"]["batch_size"]) for stage, n in epochs.items()}
        assert r["spec"]["mode"] == "long" and r["config"]["ema_decay"] == 0.999, r["run_id"]
        assert min(steps.values()) >= 10_000 and r["spec"]["fold"] == 0, (r["run_id"], steps)
        assert len(steps) == (2 if r["spec"]["method"] == "born_again" else 1), r["run_id"]
        assert r["data"]["options"]["max_windows"] is None and r["data"]["n_windows"] == r["data"]["options"]["n_windows_uncapped"]
        assert (r["provenance"]["threads"], r["provenance"]["cuda"]) == (1, None), r["run_id"]
    assert len({r["provenance"]["torch"] for r in recs}) == 1


def _env_run(torch_version: str, threads: int = 1):
    def run(spec, device=None):
        body = fake_run(spec, device)
        body["provenance"] = {"torch": torch_version, "device": "cpu: test", "threads": threads}
        return body

    return run


def test_a_grid_is_never_extended_in_another_numeric_environment(tmp_path, monkeypatch):
    """Records made with another torch version or thread count differ in the last digits: the runner
    refuses to add runs to such a grid (naming what differs) instead of mixing them."""
    import torch

    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    here = torch.__version__
    runner.run_experiment(small(), results_root=tmp_path, run_fn=_env_run("1.0.0"), progress=False, limit=2)
    with pytest.raises(errors.EnvironmentMismatch, match=re.escape(f"torch 1.0.0 in the records, {here} here")):
        runner.run_experiment(small(), results_root=tmp_path, run_fn=_env_run(here), progress=False)
    assert len(record_files(tmp_path / "t")) == 2
    # same torch, another thread count
    runner.run_experiment(small(), results_root=tmp_path / "b", run_fn=_env_run(here, threads=2),
                          progress=False, limit=1)
    with pytest.raises(errors.EnvironmentMismatch, match="threads 2 in the records, 1 here.*OMP_NUM_THREADS"):
        runner.run_experiment(small(), results_root=tmp_path / "b", run_fn=_env_run(here), progress=False)
    # the same environment resumes; a finished grid is never refused (nothing to add)
    runner.run_experiment(small(), results_root=tmp_path / "c", run_fn=_env_run(here), progress=False, limit=1)
    s = runner.run_experiment(small(), results_root=tmp_path / "c", run_fn=_env_run(here), progress=False)
    assert len(s.ran) == 3
    s = runner.run_experiment(small(), results_root=tmp_path, run_fn=_env_run(here), progress=False, limit=0)
    assert s.ran == [] and s.pending == 2


def test_the_environment_refusal_counts_the_runs_that_differ(tmp_path, monkeypatch):
    """Three finished runs, one of them made with another torch: the line says 1 of 3, not 3."""
    import torch

    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    here = torch.__version__
    runner.run_experiment(small(), results_root=tmp_path, run_fn=_env_run(here), progress=False, limit=3)
    victim = record_files(tmp_path / "t")[0]
    rec = json.loads(victim.read_text())
    rec["provenance"]["torch"] = "1.0.0"
    victim.write_text(json.dumps(rec))
    with pytest.raises(errors.EnvironmentMismatch) as e:
        runner.run_experiment(small(), results_root=tmp_path, run_fn=_env_run(here), progress=False)
    assert ": 1 of the 3 finished run(s) in " in str(e.value) and f"torch 1.0.0 in the records, {here} here" in str(e.value)


def test_methods_runs_a_grid_in_stages(tmp_path, capsys):
    s = runner.run_experiment(small(), results_root=tmp_path, run_fn=fake_run, progress=False,
                              methods=["smooth_distill"])
    assert len(s.ran) == 2 and s.pending == 2 and s.stale == []
    recs = [records.read_record(p) for p in record_files(tmp_path / "t")]
    assert {r["spec"]["method"] for r in recs} == {"smooth_distill"}
    s = runner.run_experiment(small(), results_root=tmp_path, run_fn=fake_run, progress=False)
    assert len(s.ran) == 2 and s.done_before == 2 and s.pending == 0
    with pytest.raises(ValueError, match="'born_again' is not a method of experiment t"):
        runner.run_experiment(small(), results_root=tmp_path, run_fn=fake_run, progress=False, methods=["born_again"])


def test_long_mode_is_the_papers_decay_with_ten_thousand_steps():
    exp = experiment.read_config(ROOT / "configs" / "long.yaml")
    specs = experiment.expand(exp)
    assert {s.mode for s in specs} == {"long"} and {s.train["ema_decay"] for s in specs} == {0.999}
    assert {s.train["min_steps"] for s in specs} == {10_000} and {s.fold for s in specs} == {0}
    assert {s.seed for s in specs} == {0, 1, 2} and get_mode("long").max_windows is None
    sd = [s for s in specs if s.method == "smooth_distill"]
    assert len(sd) == 2 * 2 * 2 * 3 and {s.lam for s in sd} == {0.5, 0.0}


def test_long_lambda_sweep_completes_the_long_grids_seeds():
    """configs/long_lambda.yaml adds the other lambdas to the long grid's seeds 0-2 (WISDM, paper
    protocol): same mode, decay, steps, split and seeds, and no lambda the long grid already holds."""
    sweep = experiment.expand(experiment.read_config(ROOT / "configs" / "long_lambda.yaml"))
    grid = [s for s in experiment.expand(experiment.read_config(ROOT / "configs" / "long.yaml"))
            if s.method == "smooth_distill" and s.dataset == "wisdm" and s.protocol == "paper"]
    assert {s.lam for s in sweep} == {0.001, 0.1, 1.0} and {s.lam for s in grid} == {0.0, 0.5}
    for key in ("mode", "seed", "fold", "split_seed", "dataset", "protocol", "model", "layout"):
        assert {getattr(s, key) for s in sweep} == {getattr(s, key) for s in grid}, key
    strip = lambda t: {k: v for k, v in t.items() if k not in ("lam", "seed")}  # noqa: E731
    assert all(strip(s.train) == strip(grid[0].train) for s in sweep)


@pytest.mark.parametrize("name, n", [("long_ratio", 18), ("long_arch", 8)])
def test_the_long_ablation_grids(name, n):
    """The ablations at the paper's decay: long mode, WISDM paper protocol, lambda 0.5 and 0 in every cell
    (so each cell pairs Smooth-Distill with multitask), the ratios cross-validated, the architectures
    on the long grid's fixed split."""
    specs = experiment.expand(experiment.read_config(ROOT / "configs" / f"{name}.yaml"))
    assert len(specs) == n and {s.mode for s in specs} == {"long"} and {s.lam for s in specs} == {0.0, 0.5}
    assert {(s.dataset, s.protocol) for s in specs} == {("wisdm", "paper")}
    if name == "long_ratio":
        assert {s.train_ratio for s in specs} == {0.1, 0.25, 0.5}
        assert {(s.seed, s.split_seed) for s in specs} == {(r, 42 + r) for r in range(3)}
    else:
        assert {s.model for s in specs} == {"lstm", "bilstm", "gru", "anponet"} and {s.split_seed for s in specs} == {42}


# ----------------------------------------------------------------------------- cross-validated grids
def test_a_cross_validated_grid_varies_split_and_seed_together():
    exp = experiment.read_config(ROOT / "configs" / "long_cv.yaml")
    specs = experiment.expand(exp)
    assert len(specs) == 40 and len({s.run_id for s in specs}) == 40
    assert {s.mode for s in specs} == {"long"} and {s.fold for s in specs} == {0}
    by = {(s.dataset, s.protocol, s.lam, s.seed): s for s in specs}
    for seed in range(5):
        paper, subject = by[("wisdm", "paper", 0.5, seed)], by[("wisdm", "subject", 0.5, seed)]
        assert paper.split_seed == 42 + seed and "test_fold" not in paper.data_options  # a new random test split
        assert subject.split_seed == 42 and subject.data_options == {"test_fold": seed, "n_test_folds": 5}
        assert subject.label.endswith(f"test{seed}of5")
    # lambda 0 and 0.5 of one resample share its split: they pair
    assert by[("sleepsim", "paper", 0.0, 3)].split_seed == by[("sleepsim", "paper", 0.5, 3)].split_seed
    # resample 0 of the paper protocol IS the fixed-split grid's seed 0: same spec, same run id
    fixed = {s.run_id for s in experiment.expand(experiment.read_config(ROOT / "configs" / "long.yaml"))}
    assert {s.run_id for s in specs} & fixed == {by[(d, "paper", lam, 0)].run_id for d in ("wisdm", "sleepsim")
                                                  for lam in (0.0, 0.5)}


@pytest.mark.parametrize("extra, key", [({"resamples": 1}, "resamples"), ({"resamples": 3, "folds": [0, 1]}, "folds"),
                                        ({"resamples": 3, "seeds": [0, 1]}, "seeds"),
                                        ({"resamples": 3, "data_options": {"test_fold": 1}}, "data_options")])
def test_bad_cross_validation_keys_name_the_key(extra, key):
    with pytest.raises(errors.ConfigError, match=f"key '{key}'"):
        experiment.Experiment.from_dict({"name": "x", "datasets": ["sleepsim"], "methods": ["multitask"], **extra})


def test_a_quick_cross_validated_grid_runs_end_to_end(tmp_path):
    exp = experiment.Experiment.from_dict({"name": "cv", "datasets": ["sleepsim"], "protocols": ["subject"],
                                           "methods": ["multitask"], "resamples": 2, "epochs": 1, "mode": "quick"})
    runner.run_experiment(exp, results_root=tmp_path, progress=False)
    recs = records.load_experiment("cv", results_root=tmp_path)
    runs = recs.df.drop_duplicates("run_id").sort_values("seed")
    assert runs["test_fold"].tolist() == [0.0, 1.0] and runs["seed"].tolist() == [0, 1]
    held = [recs.records[r]["data"]["notes"][0] for r in runs["run_id"]]
    assert all(h.startswith("test subjects: [") for h in held) and held[0] != held[1]  # another group held out


def test_stacked_and_unstacked_records_never_mix_in_one_grid(tmp_path, monkeypatch):
    """`run --stack` writes records under the same run ids as unstacked runs, but its numbers differ
    (by up to 2.9 points on a CPU): every record says whether its invocation stacked, and a grid of
    one kind refuses runs of the other in one line. Records from before (no `stacked`) never conflict;
    one with provenance["stack"] counts as stacked."""
    import torch

    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    here = torch.__version__

    def fake_stacks(specs, device=None, progress=True, run_alone=None):  # stands in for stack.run_specs
        for s in specs:
            yield s, _env_run(here)(s)

    monkeypatch.setattr(runner.stacking, "run_specs", fake_stacks)
    grid = {s.run_id for s in experiment.expand(small())}

    # unstacked first, then a stacked invocation is refused (and the reverse)
    runner.run_experiment(small(), results_root=tmp_path / "a", run_fn=_env_run(here), progress=False, limit=2)
    assert [records.read_record(p)["provenance"]["stacked"] for p in record_files(tmp_path / "a" / "t")] == [False] * 2
    with pytest.raises(errors.EnvironmentMismatch) as e:
        runner.run_experiment(small(), results_root=tmp_path / "a", stack=True, progress=False)
    msg = str(e.value)
    assert "2 of the 2 finished run(s)" in msg and "stacked False in the records, True here" in msg
    assert "run with --no-stack" in msg and "\n" not in msg
    runner.run_experiment(small(), results_root=tmp_path / "b", stack=True, progress=False, limit=2)
    b = [records.read_record(p) for p in record_files(tmp_path / "b" / "t")]
    assert [r["provenance"]["stacked"] for r in b] == [True] * 2 and {r["run_id"] for r in b} <= grid
    with pytest.raises(errors.EnvironmentMismatch, match="stacked True in the records, False here.*run with --stack"):
        runner.run_experiment(small(), results_root=tmp_path / "b", run_fn=_env_run(here), progress=False)
    s = runner.run_experiment(small(), results_root=tmp_path / "b", stack=True, progress=False)  # same kind resumes
    assert len(s.ran) == 2 and {p.stem for p in record_files(tmp_path / "b" / "t")} == grid

    # records made before `stacked` was recorded (the committed ones) conflict with neither kind ...
    for p in record_files(tmp_path / "a" / "t"):
        rec = json.loads(p.read_text())
        del rec["provenance"]["stacked"]
        p.write_text(json.dumps(rec))
    assert len(runner.run_experiment(small(), results_root=tmp_path / "a", stack=True, progress=False,
                                     limit=1).ran) == 1
    # ... but one trained in a stack (provenance["stack"]) is stacked, whatever else it says
    from smoothdistill_lib import provenance

    unstacked, stacked = provenance.numeric_environment("cpu"), provenance.numeric_environment("cpu", stacked=True)
    assert (unstacked["stacked"], stacked["stacked"]) == (False, True)
    old = {"provenance": {"torch": here, "threads": 1}}
    in_a_stack = {"provenance": {"torch": here, "threads": 1, "stack": {"replicas": 2, "replica": 0, "group": []}}}
    assert provenance.environment_conflicts([old], unstacked) == provenance.environment_conflicts([old], stacked) == {}
    assert provenance.environment_conflicts([in_a_stack], unstacked) == {"stacked": {True}}
    assert provenance.environment_conflicts([in_a_stack], stacked) == {}
