"""Grid shards (--shard K/N), the runner's stacked path, and the grid time estimate."""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from collections import Counter

import numpy as np
import pytest
from test_runner import fake_run, record_files, small

from smoothdistill_lib import errors, experiment, records, runner, shards, stack
from smoothdistill_lib.cli import main as cli_main
from smoothdistill_lib.methods import METHODS


def _records(folder) -> dict[str, dict]:
    """run_id -> record, without what says when and how the invocation ran (provenance["grid"])."""
    out = {}
    for path in record_files(folder):
        rec = json.loads(path.read_text())
        rec["provenance"].pop("grid")
        out[rec["run_id"]] = rec
    return out


def test_three_shards_make_exactly_the_records_of_one_run(tmp_path):
    exp = small(methods=list(METHODS), seeds=[0, 1, 2], folds=[0])  # 5 x 3 = 15 runs
    whole = runner.run_experiment(exp, results_root=tmp_path / "whole", run_fn=fake_run, progress=False)
    assert len(whole.ran) == 15
    ran = []
    for k in (1, 2, 3):  # one results folder, three machines one after the other
        s = runner.run_experiment(exp, results_root=tmp_path / "sharded", run_fn=fake_run, progress=False,
                                  shard=f"{k}/3")  # fmt: skip
        assert not s.stale and s.done_before == 0  # other shards' records are neither stale nor ours
        ran.append(set(s.ran))
    assert not (ran[0] & ran[1] or ran[0] & ran[2] or ran[1] & ran[2])
    assert _records(tmp_path / "whole" / "t") == _records(tmp_path / "sharded" / "t")
    again = runner.run_experiment(exp, results_root=tmp_path / "sharded", run_fn=fake_run, progress=False)
    assert again.ran == [] and again.done_before == 15


def test_shards_are_balanced_by_cost_and_deterministic():
    specs = experiment.expand(small(methods=list(METHODS), seeds=[0, 1, 2, 3, 4], folds=[0, 1, 2, 3, 4]),
                          "quick")  # fmt: skip
    assert len(specs) == 125
    a = shards.assign(specs, 4)
    assert a == shards.assign(specs, 4)  # every machine computes the same split
    load = [sum(shards.run_cost(s) for s, k in zip(specs, a) if k == j) for j in range(4)]
    assert max(load) - min(load) <= max(shards.METHOD_COST.values())  # LPT: within one run's cost
    total = sum(shards.run_cost(s) for s in specs)
    assert math.isclose(sum(load), total) and total == pytest.approx(25 * (2 + 1 + 2 + 2 + 1.35))
    picked = [shards.select(specs, f"{k}/4") for k in range(1, 5)]
    assert sorted(s.run_id for p in picked for s in p) == sorted(s.run_id for s in specs)
    assert shards.select(specs, None) == specs and shards.select(specs, "1/1") == specs
    assert shards.lock_name("2/4") == ".lock-shard-2-of-4" and shards.lock_name(None) == ".lock"


def test_shards_weigh_each_architecture_by_its_cost():
    from smoothdistill_lib.models import MODELS

    specs = experiment.expand(small(models=["mtlnet", "anponet", "lstm", "gru", "bilstm"], methods=["smooth_distill"],
                                    lams=[0.5, 0.0], seeds=[0]), "quick")
    by_model = {s.model: shards.run_cost(s) for s in specs}
    assert by_model["bilstm"] == pytest.approx(METHODS["smooth_distill"].run_cost * MODELS["bilstm"].run_cost)
    assert by_model["anponet"] < by_model["mtlnet"] == by_model["lstm"] < by_model["gru"] < by_model["bilstm"]
    a = shards.assign(specs, 2)
    load = [sum(shards.run_cost(s) for s, k in zip(specs, a) if k == j) for j in range(2)]
    assert max(load) - min(load) <= max(by_model.values())  # LPT: within one run's cost
    # the two BiLSTM runs, the dearest, go to different shards
    assert {k for s, k in zip(specs, a) if s.model == "bilstm"} == {0, 1}


@pytest.mark.parametrize("bad", ["0/3", "4/3", "a/b", "3", "1/0", "-1/2", "1/2/3"])
def test_bad_shard_is_one_clear_line(tmp_path, capsys, bad):
    cfg = tmp_path / "t.yaml"
    experiment.write_config(small(), cfg)
    assert cli_main(["run", str(cfg), f"--shard={bad}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --shard") and "K/N" in err or "1..N" in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_runner_stacked_records_equal_one_at_a_time(tmp_path, monkeypatch):
    """The real path on CPU: two seeds of quick sleepsim runs, stacked vs not, give the same records."""
    import torch

    torch.set_num_threads(1)
    exp = small(methods=["smooth_distill"], seeds=[0, 1], folds=[0], epochs=1)
    one = runner.run_experiment(exp, results_root=tmp_path / "one", progress=False, mode="quick", stack=False)
    two = runner.run_experiment(exp, results_root=tmp_path / "two", progress=False, mode="quick", stack=True)
    assert sorted(one.ran) == sorted(two.ran) and len(one.ran) == 2
    a, b = _records(tmp_path / "one" / "t"), _records(tmp_path / "two" / "t")
    for run_id in a:
        ra, rb = a[run_id], b[run_id]
        assert rb["provenance"]["stack"]["replicas"] == 2 and "stack" not in ra["provenance"]
        assert sorted(ra) == sorted(rb) and sorted(ra["compute"]) == sorted(rb["compute"])
        assert ra["best_epoch"] == rb["best_epoch"] and ra["config"] == rb["config"]
        for ea, eb in zip(ra["evaluation"], rb["evaluation"]):
            assert (ea["split"], ea["who"], ea["task"]) == (eb["split"], eb["who"], eb["task"])
            assert ea["confusion"] == eb["confusion"]
        for ha, hb in zip(ra["history"], rb["history"]):
            assert ha["train_loss"] == pytest.approx(hb["train_loss"], abs=1e-5)
            assert ha["val_acc_mean"] == pytest.approx(hb["val_acc_mean"], abs=1e-9)


def test_stacking_is_on_for_cuda_only_by_default():
    assert stack.enabled(None, "cpu") is False
    assert stack.enabled(True, "cpu") is True and stack.enabled(False, None) is False
    specs = experiment.expand(small(methods=["multitask", "smooth_distill"], seeds=[0, 1, 2], folds=[0, 1]), "quick")
    groups = stack.group_specs(specs, max_replicas=4)
    assert [len(g) for g in groups] == [4, 2, 4, 2]
    assert all(len({s.method for s in g}) == 1 for g in groups)


def test_grid_time_estimate_from_step_times():
    steps = {"multitask": 0.004, "smooth_distill": 0.005, "born_again": 0.0045}
    t = stack.grid_time_estimate(steps, {"wisdm": 6400}, epochs=300, runs_per_cell=25)
    per_epoch = 6400 // 64
    assert t.loc[("wisdm", "multitask"), "steps per run"] == per_epoch * 300
    assert t.loc[("wisdm", "smooth_distill"), "hours per run"] == pytest.approx(100 * 300 * 0.005 / 3600)
    # born_again: stage 1 (multitask) + stage 2
    assert t.loc[("wisdm", "born_again"), "hours"] == pytest.approx(25 * 100 * 300 * 0.0085 / 3600)
    assert t.loc[("total", ""), "hours"] == pytest.approx(25 * 100 * 300 * (0.004 + 0.005 + 0.0085) / 3600)
    faster = stack.grid_time_estimate(steps, {"wisdm": 6400}, stack_speedup=10.0)
    assert faster.loc[("total", ""), "hours"] == pytest.approx(t.loc[("total", ""), "hours"] / 10)
    with pytest.raises(ValueError, match="born_again's stage 1"):
        stack.grid_time_estimate({"born_again": 1.0}, {"wisdm": 10})
    assert np.isnan(t.loc[("total", ""), "hours per run"])


def test_unstackable_groups_run_every_spec_one_at_a_time(capsys):
    specs = experiment.expand(small(methods=["sd_dropout"], seeds=[0, 1, 2]), "quick")
    out = list(stack.run_specs(specs, "cpu", progress=False, run_alone=fake_run))
    assert [s.run_id for s, _ in out] == [s.run_id for s in specs]
    assert "sd_dropout/mtlnet runs one at a time" in capsys.readouterr().err


def test_a_shard_without_runs_says_so(tmp_path, monkeypatch, capsys):
    """--shard 5/5 of a 4-run grid said "0 runs in the grid"; it is refused naming the shard and the grid."""
    cfg = experiment.write_config(small(), tmp_path / "t.yaml")  # 4 runs
    monkeypatch.setenv("SMOOTHDISTILL_RESULTS", str(tmp_path / "res"))
    assert cli_main(["run", str(cfg), "--shard", "5/5"]) == 2
    out, err = capsys.readouterr()
    assert err == "error: --shard 5/5: shard 5 of 5 has no runs (the grid has 4); split it into at most 4 shards\n"
    assert out == "" and not (tmp_path / "res").exists()
    with pytest.raises(errors.UserError, match="shard 5 of 5 has no runs"):
        runner.run_experiment(small(), results_root=tmp_path, run_fn=fake_run, progress=False, shard=(5, 5))
    s = runner.run_experiment(small(), results_root=tmp_path, run_fn=fake_run, progress=False, shard="1/2")
    assert s.lines()[0].startswith("experiment t [quick]: 2 runs in shard 1 of 2 (the grid has 4), 0 done before")


@pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")
def test_a_whole_grid_and_a_shard_of_it_at_once_train_each_run_once(tmp_path):
    """A full `run` and a `run --shard 1/2` take different experiment locks; each run's own lock
    keeps them from training the shard's runs twice (they used to)."""
    exp = small(methods=list(METHODS), seeds=[0, 1], folds=[0])  # 10 runs
    calls, guard = Counter(), threading.Lock()

    def slow(spec, device=None):
        with guard:
            calls[spec.run_id] += 1
        time.sleep(0.05)  # long enough for the two to meet
        return fake_run(spec, device)

    out, failed = {}, []

    def go(name, shard):
        try:
            out[name] = runner.run_experiment(exp, results_root=tmp_path, run_fn=slow, progress=False, shard=shard)
        except BaseException as e:  # noqa: BLE001 - reported below, from the main thread
            failed.append(e)

    threads = [threading.Thread(target=go, args=("whole", None)), threading.Thread(target=go, args=("shard", "1/2"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not failed, failed
    grid = {s.run_id for s in experiment.expand(exp)}
    assert set(calls) == grid and max(calls.values()) == 1  # every run trained, none twice
    assert sorted(out["whole"].ran + out["shard"].ran) == sorted(grid)
    assert {p.stem for p in record_files(tmp_path / "t")} == grid
    for p in record_files(tmp_path / "t"):
        records.read_record(p)
