"""Checkpoints: weights_only round trip, atomic files, hash check, train-or-load."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from smoothdistill_lib import checkpoints
from smoothdistill_lib.engine import TrainConfig, fit


def test_round_trip_with_weights_only(tmp_path, monkeypatch, tiny_net):
    torch.manual_seed(0)
    sds = {"student": tiny_net(batchnorm=True).state_dict(), "teacher": tiny_net(batchnorm=True).state_dict()}
    meta = {"config": TrainConfig(method="smooth_distill", epochs=2), "best_epoch": np.int64(2),
            "metrics": {"val_acc_task1": 91.5, "undefined": float("nan")}}
    calls = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(k) or real_load(*a, **k))
    base = checkpoints.save(tmp_path / "run1", sds, meta)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run1.json", "run1.pt"]  # no temp files left
    loaded, m = checkpoints.load(base.with_suffix(".pt"))  # .pt / .json / bare base all work
    assert calls and all(k.get("weights_only") is True for k in calls)
    assert set(loaded) == {"student", "teacher"}
    for name in sds:
        for k, v in sds[name].items():
            assert torch.equal(loaded[name][k], v), (name, k)
    assert m["best_epoch"] == 2 and m["config"]["method"] == "smooth_distill"
    assert m["metrics"]["undefined"] is None  # strict JSON: NaN -> null
    assert m["versions"]["torch"] == torch.__version__
    net = tiny_net(batchnorm=True)
    net.load_state_dict(loaded["student"])  # loads into a fresh net


def test_torch_load_refuses_pickled_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("executed",))

    bad = tmp_path / "evil.pt"
    torch.save({"student": {"w": torch.zeros(1)}, "x": Evil()}, bad)
    (tmp_path / "evil.json").write_text(json.dumps({"note": "no hash"}))
    with pytest.raises(Exception, match="(?i)weights_only|unsupported|global"):
        checkpoints.load(tmp_path / "evil")


def test_mismatched_or_missing_files_give_clear_errors(tmp_path):
    sds = {"student": {"w": torch.ones(3)}}
    checkpoints.save(tmp_path / "a", sds, {})
    checkpoints.save(tmp_path / "b", {"student": {"w": torch.zeros(3)}}, {})
    (tmp_path / "b.pt").replace(tmp_path / "a.pt")  # a.json now describes other weights
    with pytest.raises(ValueError, match="sha256"):
        checkpoints.load(tmp_path / "a")
    with pytest.raises(FileNotFoundError, match="nothere.pt"):
        checkpoints.load(tmp_path / "nothere")
    with pytest.raises(ValueError, match="state_dicts"):
        checkpoints.save(tmp_path / "c", {"student": {"w": 1.0}}, {})


def test_train_or_load_trains_once_per_config(tmp_path, tiny_net):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 1, 3, 12)).astype(np.float32)
    y1, y2 = rng.integers(0, 4, 80), rng.integers(0, 3, 80)
    calls = []

    def train(cfg):
        def run():
            calls.append(cfg)
            return fit((X, y1, y2), np.arange(60), np.arange(60, 70), np.arange(70, 80), cfg, progress=False,
                       build=tiny_net, n_classes=(4, 3))

        return run

    cfg = TrainConfig(method="smooth_distill", epochs=1, batch_size=16)
    first = checkpoints.train_or_load(tmp_path / "sd", train(cfg), cfg)
    second = checkpoints.train_or_load(tmp_path / "sd", train(cfg), cfg)
    assert len(calls) == 1 and not first.loaded and second.loaded and first.result is not None
    assert second.metadata["config_hash"] == checkpoints.config_hash(cfg)
    assert second.metadata["best_epoch"] == first.result.best_epoch
    assert len(second.metadata["history"]) == 1
    for k, v in first.result.state_dicts["teacher"].items():
        assert torch.equal(second.state_dicts["teacher"][k], v)
    other = TrainConfig(method="smooth_distill", epochs=1, batch_size=16, lam=1.0)
    third = checkpoints.train_or_load(tmp_path / "sd", train(other), other)
    assert len(calls) == 2 and not third.loaded


def _toy_data(n: int = 80, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 1, 3, 12)).astype(np.float32)
    return X, rng.integers(0, 4, n), rng.integers(0, 3, n)


def test_fit_or_load_loads_an_identical_run_and_retrains_a_changed_one(tmp_path, monkeypatch, tiny_net):
    from smoothdistill_lib import engine

    calls, loads = [], []
    real_fit, real_load = engine.fit, torch.load
    monkeypatch.setattr(engine, "fit", lambda *a, **k: calls.append(a[4]) or real_fit(*a, **k))
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(k) or real_load(*a, **k))
    data = _toy_data()
    idx = (np.arange(60), np.arange(60, 70), np.arange(70, 80))
    cfg = TrainConfig(method="smooth_distill", epochs=2, batch_size=16)

    def run(config=cfg, d=data, fit_idx=idx[0], **kw):
        return checkpoints.fit_or_load(tmp_path, d, fit_idx, idx[1], idx[2], config, progress=False,
                                       build=tiny_net, n_classes=(4, 3), **kw)

    first, second = run(), run()
    assert len(calls) == 1 and not first.loaded and second.loaded  # the second call did not train
    assert loads and all(k.get("weights_only") is True for k in loads)
    for who in ("student", "teacher"):
        for k, v in first.state_dicts[who].items():
            assert torch.equal(second.state_dicts[who][k], v)
    assert checkpoints.summary(first) == {**checkpoints.summary(second), "loaded": False}
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary file

    run(TrainConfig(method="smooth_distill", epochs=2, batch_size=16, ema_decay=0.5))  # a changed config
    changed = (data[0] + 1.0, data[1], data[2])
    run(d=changed)  # the same config on other data
    run(fit_idx=idx[0][:50])  # another fold
    run(data_options={"note": "other options"})
    assert len(calls) == 5 and calls[1].ema_decay == 0.5
    assert len(list(tmp_path.glob("smooth_distill_*.pt"))) == 5


def test_summary_reads_the_measured_numbers_back(tmp_path, tiny_net):
    data = _toy_data()
    cfg = TrainConfig(method="born_again", epochs=2, batch_size=16)
    ck = checkpoints.fit_or_load(tmp_path, data, np.arange(60), np.arange(60, 70), np.arange(70, 80), cfg,
                                 progress=False, build=tiny_net, n_classes=(4, 3), name="ba")
    s = checkpoints.summary(ck)
    hist = ck.result.history
    assert ck.metadata["n_fit"] == 60 and s["epochs run"] == 4 and s["networks trained"] == 2
    assert s["train time (s)"] == pytest.approx(ck.result.train_seconds)
    stage2 = hist[hist["stage"] == 2]["epoch_seconds"].median()
    assert s["s per epoch"] == pytest.approx(stage2)
    assert s["ms per step"] == pytest.approx(1000 * stage2 / 4)  # ceil(60 / 16) = 4 steps per epoch
    assert (s["test acc task 1"], s["test acc task 2"]) == pytest.approx(ck.result.accuracy("test"))
    lines = checkpoints.describe("ba", ck).splitlines()
    assert len(lines) == 2 and lines[0].startswith("ba (trained now, on cpu): 2 network(s)")
    with pytest.raises(ValueError, match="fit_or_load"):
        checkpoints.summary(checkpoints.Checkpoint({}, {"history": []}, loaded=True))


def test_data_fingerprint_sees_values_labels_and_indices():
    X, y1, y2 = _toy_data()
    base = checkpoints.data_fingerprint((X, y1, y2), np.arange(5))
    assert base == checkpoints.data_fingerprint({"X": X.copy(), "y1": y1, "y2": y2}, np.arange(5))
    X2 = X.copy()
    X2[3, 0, 1, 4] += 1e-6
    assert checkpoints.data_fingerprint((X2, y1, y2), np.arange(5)) != base
    assert checkpoints.data_fingerprint((X, y1[::-1].copy(), y2), np.arange(5)) != base
    assert checkpoints.data_fingerprint((X, y1, y2), np.arange(6)) != base
    with pytest.raises(ValueError, match="data must be"):
        checkpoints.data_fingerprint(42)
