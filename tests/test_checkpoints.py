"""Checkpoints: weights_only round trip, atomic files, hash check, train-or-load."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from smoothdistill_lib import checkpoints
from smoothdistill_lib.engine import TrainConfig, fit


class TinyNet(nn.Module):
    def __init__(self, n_classes=(4, 3), length: int = 12):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(3 * length, 8), nn.BatchNorm1d(8), nn.ReLU())
        self.heads = nn.ModuleList(nn.Linear(8, c) for c in n_classes)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        f = self.features(x)
        return tuple(h(f) for h in self.heads)


def test_round_trip_with_weights_only(tmp_path, monkeypatch):
    torch.manual_seed(0)
    sds = {"student": TinyNet().state_dict(), "teacher": TinyNet().state_dict()}
    meta = {"config": TrainConfig(method="smooth_distill", epochs=2), "best_epoch": np.int64(2),
            "metrics": {"val_acc_task1": 91.5, "undefined": float("nan")}}  # fmt: skip
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
    net = TinyNet()
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


def test_train_or_load_trains_once_per_config(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 1, 3, 12)).astype(np.float32)
    y1, y2 = rng.integers(0, 4, 80), rng.integers(0, 3, 80)
    calls = []

    def train(cfg):
        def run():
            calls.append(cfg)
            return fit((X, y1, y2), np.arange(60), np.arange(60, 70), np.arange(70, 80), cfg, progress=False,
                       build=TinyNet, n_classes=(4, 3))  # fmt: skip

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
