"""Replica-stacked training: R stacked runs give what R separate engine.fit runs give (float tolerance)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from smoothdistill_lib import stack
from smoothdistill_lib.engine import TrainConfig, fit
from smoothdistill_lib.methods import get_method
from smoothdistill_lib.models import build_model

N_CLASSES = (4, 3)


def _synthetic(n: int = 300, length: int = 12, seed: int = 0):
    """Separable toy windows (N, 1, 3, length): task 1 shifts row 0, task 2 row 1."""
    rng = np.random.default_rng(seed)
    y1, y2 = rng.integers(0, 4, n), rng.integers(0, 3, n)
    X = rng.normal(size=(n, 1, 3, length)).astype(np.float32)
    X[:, 0, 0, :] += y1[:, None]
    X[:, 0, 1, :] += 1.5 * y2[:, None]
    return X, y1, y2


# two folds of the first 250 windows (200 fit / 50 val each), one test set
TEST = np.arange(250, 300)
FOLD_A = (np.arange(50, 250), np.arange(0, 50))
FOLD_B = (np.r_[np.arange(0, 50), np.arange(100, 250)], np.arange(50, 100))


def _runs(method: str, **cfg):
    """Seeds 0 and 1 on fold A, seed 2 on fold B: one stack of three replicas."""
    kw = {"method": method, "epochs": 3, "batch_size": 32, **cfg}
    return [(*FOLD_A, TEST, TrainConfig(seed=0, **kw)), (*FOLD_A, TEST, TrainConfig(seed=1, **kw)),
            (*FOLD_B, TEST, TrainConfig(seed=2, **kw))]  # fmt: skip


def _both(data, runs, build, **kw):
    stacked = stack.fit_stacked(data, runs, progress=False, build=build, n_classes=N_CLASSES, **kw)
    alone = [fit(data, *r, progress=False, build=build, n_classes=N_CLASSES) for r in runs]
    return stacked, alone


def max_differences(a, b, skip_keys=()) -> dict:
    """Largest absolute differences between two FitResults: history, probabilities, weights."""
    ha, hb = (r.history.drop(columns="epoch_seconds").to_numpy(float) for r in (a, b))
    probs = max(np.abs(a.predictions[k][f"y{t}_prob"] - b.predictions[k][f"y{t}_prob"]).max()
                for k in b.predictions for t in (1, 2))  # fmt: skip
    weights = max((a.state_dicts[w][k].float() - b.state_dicts[w][k].float()).abs().max().item()
                  for w in b.state_dicts for k in b.state_dicts[w] if k not in skip_keys)  # fmt: skip
    return {"history": float(np.nanmax(np.abs(ha - hb))), "probs": float(probs), "weights": weights}


def assert_same(a, b, tol=1e-5, weights_tol=1e-5, skip_keys=()):
    assert a.best_epoch == b.best_epoch and a.best_epochs == b.best_epochs
    assert sorted(a.predictions) == sorted(b.predictions)
    pd.testing.assert_index_equal(a.history.columns, b.history.columns)
    for k in b.predictions:
        for key in ("y1_pred", "y2_pred", "y1_true", "y2_true", "index"):
            np.testing.assert_array_equal(a.predictions[k][key], b.predictions[k][key])
    d = max_differences(a, b, skip_keys)
    assert d["history"] < tol and d["probs"] < tol and d["weights"] < weights_tol, d
    assert a.config == b.config and a.n_params == b.n_params
    assert a.stack_info["replicas"] == 3


@pytest.mark.parametrize("method", ["multitask", "smooth_distill", "born_again", "singletask"])
def test_stacked_runs_equal_separate_runs(tiny_net, method):
    torch.set_num_threads(1)
    stacked, alone = _both(_synthetic(), _runs(method), tiny_net)
    for a, b in zip(stacked, alone):
        assert_same(a, b)
    # the replicas really differ from each other (own seed, own fold)
    assert max_differences(stacked[0], stacked[1])["weights"] > 1e-2


def test_stacked_mtlnet_smooth_distill_equals_separate_runs():
    """The conv net of the paper (window length 28: the shortest it takes), teacher and student."""
    torch.set_num_threads(1)
    X, y1, y2 = _synthetic(length=28)

    def build(nc):
        return build_model("mtlnet", nc, window_length=28)

    stacked, alone = _both((X, y1, y2), _runs("smooth_distill", epochs=2), build)
    for a, b in zip(stacked, alone):
        # weights: Adam divides each gradient by its own running scale, so the grouped convolution's
        # rounding (~1e-7 relative) in near-zero gradients reaches ~1e-5 in a few conv weights
        assert_same(a, b, tol=2e-5, weights_tol=1e-4)


def test_fused_teacher_forward_gives_the_same_runs(tiny_net):
    torch.set_num_threads(1)
    data, runs = _synthetic(), _runs("smooth_distill")
    fused = stack.fit_stacked(data, runs, progress=False, build=tiny_net, n_classes=N_CLASSES, fuse_teacher=True)
    alone = [fit(data, *r, progress=False, build=tiny_net, n_classes=N_CLASSES) for r in runs]
    for a, b in zip(fused, alone):
        assert_same(a, b)


def test_batchnorm_stacks_its_running_statistics(tiny_net):
    """Everything matches except the bias right before BatchNorm: BN cancels it, so its exact
    gradient is 0 and Adam normalises float-rounding noise into lr-sized steps (as between 1 and 2
    CPU threads); the running mean follows that bias. Training losses and the other weights agree."""
    torch.set_num_threads(1)

    def build(nc):
        return tiny_net(nc, batchnorm=True)

    stacked, alone = _both(_synthetic(), _runs("multitask"), build)
    for a, b in zip(stacked, alone):
        cols = ["train_loss", "train_loss_task1", "train_loss_task2", "train_acc_task1", "train_acc_task2"]
        np.testing.assert_allclose(a.history[cols], b.history[cols], atol=1e-5)
        d = max_differences(a, b, skip_keys=("body.1.bias", "body.2.running_mean"))
        assert d["weights"] < 1e-5, d
        assert a.state_dicts["student"]["body.2.num_batches_tracked"] == b.state_dicts["student"][
            "body.2.num_batches_tracked"]


def test_sd_dropout_and_recurrent_nets_fall_back_to_separate_runs(tiny_net, capsys):
    data = _synthetic()
    runs = _runs("sd_dropout", epochs=1)
    stacked, alone = _both(data, runs, tiny_net)
    for a, b in zip(stacked, alone):  # the fallback IS engine.fit: identical numbers
        pd.testing.assert_frame_equal(a.history.drop(columns="epoch_seconds"), b.history.drop(columns="epoch_seconds"))
    assert "trained one at a time: sd_dropout" in capsys.readouterr().err
    assert "recurrent" in stack.why_not_stackable(get_method("multitask"), build_model("gru", (4, 3)))
    assert stack.why_not_stackable(get_method("multitask"), build_model("mtlnet", (4, 3))) is None
    assert "dropout" in stack.why_not_stackable(get_method("multitask"), torch.nn.Sequential(torch.nn.Dropout(0.1)))


def test_runs_of_different_sizes_go_to_separate_stacks(tiny_net):
    torch.set_num_threads(1)
    data = _synthetic()
    small_fit = FOLD_A[0][:150]  # 150 fit windows: a stack of its own (alone: engine.fit)
    cfg = {"method": "multitask", "epochs": 2, "batch_size": 32}
    runs = [(*FOLD_A, TEST, TrainConfig(seed=0, **cfg)), (small_fit, FOLD_A[1], TEST, TrainConfig(seed=1, **cfg)),
            (*FOLD_B, TEST, TrainConfig(seed=2, **cfg))]  # fmt: skip
    stacked, alone = _both(data, runs, tiny_net)
    assert [getattr(r, "stack_info", {}).get("replicas") for r in stacked] == [2, None, 2]
    for a, b in zip(stacked, alone):
        assert max(max_differences(a, b).values()) < 1e-5


def test_bad_stacks_fail_clearly(tiny_net):
    data = _synthetic()
    runs = [(*FOLD_A, TEST, TrainConfig(method="multitask", epochs=1, seed=0)),
            (*FOLD_A, TEST, TrainConfig(method="multitask", epochs=2, seed=1))]  # fmt: skip
    with pytest.raises(ValueError, match=r"differ in \['epochs'\]"):
        stack.fit_stacked(data, runs, progress=False, build=tiny_net, n_classes=N_CLASSES)
    with pytest.raises(ValueError, match="needs a CUDA device"):
        stack.fit_stacked(data, runs[:1], progress=False, build=tiny_net, n_classes=N_CLASSES, compile=True)
    overlap = [(FOLD_A[0], FOLD_A[0][:10], TEST, runs[0][3]), runs[0]]
    with pytest.raises(ValueError, match="fit_idx and val_idx overlap"):
        stack.fit_stacked(data, overlap, progress=False, build=tiny_net, n_classes=N_CLASSES)


def test_stacked_net_is_r_nets(tiny_net):
    torch.manual_seed(0)
    nets = [tiny_net() for _ in range(3)]
    s = stack.StackedNet(nets)
    x = torch.randn(3, 5, 1, 3, 12)
    z = s(x)
    assert [t.shape for t in z] == [torch.Size([3, 5, 4]), torch.Size([3, 5, 3])]
    for r, net in enumerate(nets):
        torch.testing.assert_close(z[0][r], net(x[r])[0])
        assert list(s.replica_state(r)) == list(net.state_dict())
    s.load_replica_state(1, nets[0].state_dict())
    torch.testing.assert_close(s(x)[0][1], nets[0](x[1])[0])
