"""The engine: every method trains, runs are reproducible, the tested weights are the best epoch's,
batching covers every window once, bad input fails clearly, and the ``train`` CLI prints its JSON."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import binomtest

from smoothdistill_lib import engine
from smoothdistill_lib.engine import TrainConfig, fit, predict
from smoothdistill_lib.methods import METHODS


def _synthetic(n: int = 300, seed: int = 0):
    """Separable toy windows (N, 1, 3, 12): task 1 (4 classes) shifts row 0, task 2 (3) row 1."""
    rng = np.random.default_rng(seed)
    y1, y2 = rng.integers(0, 4, n), rng.integers(0, 3, n)
    X = rng.normal(size=(n, 1, 3, 12)).astype(np.float32)
    X[:, 0, 0, :] += y1[:, None]
    X[:, 0, 1, :] += 1.5 * y2[:, None]
    return X, y1, y2


@pytest.fixture
def tiny_fit(tiny_net):
    """``engine.fit`` of the tiny net: ``tiny_fit(data, fit_idx, val_idx, test_idx, **config)``."""

    def run(data, fit_idx, val_idx, test_idx, **cfg):
        kw = {"method": "multitask", "epochs": 3, "seed": 0, "batch_size": 32, **cfg}
        return fit(data, fit_idx, val_idx, test_idx, TrainConfig(**kw), progress=False, build=tiny_net,
                   n_classes=(4, 3))

    return run


# ------------------------------------------------------------------ every method on sleepsim quick


@pytest.fixture(scope="module")
def sleepsim_quick():
    """The simulator's quick-mode windows in the faithful layout (what ``mtlnet`` is fed)."""
    from smoothdistill_lib import sleepsim
    from smoothdistill_lib.pipeline import prepare

    return prepare(sleepsim.load(mode="quick"), mode="quick", layout="faithful")


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_lowers_the_loss_and_beats_chance(sleepsim_quick, method):
    torch.set_num_threads(1)
    w, split = sleepsim_quick.windows, sleepsim_quick.split
    fit_idx, val_idx = split.folds[0]
    res = fit(w, fit_idx, val_idx, split.test, TrainConfig(method=method, model="mtlnet", epochs=2, seed=0),
              progress=False)
    h = res.history
    stages = 2 if method == "born_again" else 1
    assert len(h) == 2 * stages and list(h["stage"]) == [s for s in range(1, stages + 1) for _ in range(2)]
    last = h[h["stage"] == stages]
    ce = last["train_loss_task1"] + last["train_loss_task2"]
    assert ce.iloc[-1] < ce.iloc[0]  # training lowers the loss
    c1, c2 = w.n_classes
    p = res.predictions[("test", "student")]
    for task, c in ((1, c1), (2, c2)):
        hits = int((p[f"y{task}_pred"] == p[f"y{task}_true"]).sum())
        assert binomtest(hits, len(split.test), 1 / c, alternative="greater").pvalue < 1e-3, (method, task)
    # contract: selection, weights, predictions, cost
    assert 1 <= res.best_epoch <= 2
    nets = {"task1", "task2"} if method == "singletask" else {"student"}
    has_teacher = method in ("born_again", "smooth_distill")
    assert set(res.state_dicts) == nets | ({"teacher"} if has_teacher else set())
    whos = ["student", "teacher"] if has_teacher else ["student"]
    assert set(res.predictions) == {(s, who) for s in ("val", "test") for who in whos}
    from smoothdistill_lib.models import build_model

    one = sum(t.numel() for t in build_model("mtlnet", (c1, c2)).parameters())
    two = sum(t.numel() for c in (c1, c2) for t in build_model("mtlnet", (c,)).parameters())
    assert res.n_params == (two if method == "singletask" else one)
    assert res.train_seconds == pytest.approx(sum(res.stage_seconds.values())) and res.train_seconds > 0
    assert list(res.stage_seconds) == (["stage1", "stage2"] if method == "born_again" else ["stage1"])
    teacher_cols = h[[c for c in h.columns if c.startswith("teacher_")]]
    assert teacher_cols.notna().all().all() if method == "smooth_distill" else teacher_cols.isna().all().all()


# ------------------------------------------------------------------ reproducibility


def test_same_seed_gives_identical_numbers_and_another_seed_does_not(tiny_fit):
    data = _synthetic()
    idx = np.arange(300)
    runs = [
        tiny_fit(data, idx[:200], idx[200:250], idx[250:], method="smooth_distill", seed=s)
        for s in (7, 7, 8)
    ]
    drop = ["epoch_seconds"]
    pd.testing.assert_frame_equal(runs[0].history.drop(columns=drop), runs[1].history.drop(columns=drop))
    for key, p in runs[0].predictions.items():
        for k, v in p.items():
            np.testing.assert_array_equal(v, runs[1].predictions[key][k])
    for name, sd in runs[0].state_dicts.items():
        for k, v in sd.items():
            assert torch.equal(v, runs[1].state_dicts[name][k])
    assert not runs[0].history.drop(columns=drop).equals(runs[2].history.drop(columns=drop))


# ------------------------------------------------------------------ selection on validation


def _sabotage_last_epoch(monkeypatch, method: str, epochs: int = 4, n_fit: int = 200, batch: int = 32):
    """Wrap ``method``'s step so that every step of the LAST epoch ends by zeroing the heads and
    biasing them to class 0: the last epoch is then guaranteed to validate worst."""
    real = METHODS[method]
    steps_per_epoch = -(-n_fit // batch)
    count = {"steps": 0}

    def step(models, optimizer, teacher, b, cfg):
        out = real.step(models, optimizer, teacher, b, cfg)
        count["steps"] += 1
        if count["steps"] > (epochs - 1) * steps_per_epoch:
            with torch.no_grad():
                for net in models.values():
                    for h in net.heads:
                        h.weight.zero_()
                        h.bias.zero_()
                        h.bias[0] = 1.0
        return out

    monkeypatch.setitem(METHODS, method, dataclasses.replace(real, step=step))


@pytest.fixture
def sabotaged(monkeypatch, tiny_fit):
    def run(method="multitask", **cfg):
        _sabotage_last_epoch(monkeypatch, method)
        data = _synthetic(300, seed=1)
        idx = np.arange(300)
        return data, idx[200:250], idx[250:], tiny_fit(data, idx[:200], idx[200:250], idx[250:], method=method,
                                                        epochs=4, lr=1e-2, **cfg)

    return run


def test_tested_weights_are_the_best_epochs_not_the_last(sabotaged, tiny_net):
    data, val_idx, test_idx, res = sabotaged()
    h = res.history
    best = int(h["val_acc_mean"].to_numpy().argmax()) + 1  # first maximum (strict >)
    assert res.best_epoch == best < 4
    assert h["val_acc_mean"].iloc[-1] < h["val_acc_mean"].max() - 20
    # the validation predictions reproduce the best epoch's row, not the last one
    assert res.accuracy("val") == pytest.approx(tuple(h.loc[best - 1, ["val_acc_task1", "val_acc_task2"]]))
    # the returned weights ARE those predictions; the last epoch's weights (what the authors'
    # aliased state_dict would have tested, reference notes §5.2a) give the last row instead
    net = tiny_net()
    net.load_state_dict(res.state_dicts["student"])
    z1, _ = predict(net, data[0][test_idx])
    np.testing.assert_array_equal(z1.argmax(1), res.predictions[("test", "student")]["y1_pred"])
    net.load_state_dict(res.last_state_dicts["student"])
    z1, _ = predict(net, data[0][val_idx])
    assert 100 * np.mean(z1.argmax(1) == data[1][val_idx]) == pytest.approx(h["val_acc_task1"].iloc[-1])
    assert res.accuracy("test")[0] > 100 * np.mean(z1.argmax(1) == data[1][val_idx]) + 20


def test_selection_task1_uses_task1_validation_accuracy_only(sabotaged):
    _, _, _, res = sabotaged(selection="task1")
    acc1 = res.history["val_acc_task1"].to_numpy()
    assert res.best_epoch == int(acc1.argmax()) + 1 < 4


def test_singletask_selects_each_net_on_its_own_task(sabotaged):
    _, _, _, res = sabotaged("singletask")
    h = res.history
    assert res.best_epochs == {"task1": int(h["val_acc_task1"].argmax()) + 1,
                               "task2": int(h["val_acc_task2"].argmax()) + 1}
    assert max(res.best_epochs.values()) < 4 and res.best_epoch == res.best_epochs["task1"]


# ------------------------------------------------------------------ batching


def test_batches_cover_every_fit_window_once_with_a_last_partial_batch(monkeypatch, tiny_fit):
    n = 130
    X = np.zeros((n, 1, 3, 12), dtype=np.float32)
    X[:, 0, 0, 0] = np.arange(n)  # each window carries its own index
    y1, y2 = np.arange(n) % 4, np.arange(n) % 3
    seen: list[list[int]] = []
    real = METHODS["multitask"]

    def spy(models, optimizer, teacher, batch, cfg):
        seen.append(batch[0][:, 0, 0, 0].long().tolist())
        return real.step(models, optimizer, teacher, batch, cfg)

    monkeypatch.setitem(METHODS, "multitask", dataclasses.replace(real, step=spy))
    fit_idx = np.setdiff1d(np.arange(n), np.arange(100, 110))  # 120 windows
    tiny_fit((X, y1, y2), fit_idx, np.arange(100, 110), None, epochs=2, batch_size=50)
    assert [len(b) for b in seen] == [50, 50, 20, 50, 50, 20]
    epoch1, epoch2 = sum(seen[:3], []), sum(seen[3:], [])
    assert sorted(epoch1) == sorted(epoch2) == sorted(fit_idx.tolist())
    assert epoch1 != epoch2  # reshuffled every epoch


# ------------------------------------------------------------------ inputs and outputs


def test_bad_inputs_raise_clear_errors(tiny_fit, tiny_net):
    data = _synthetic(60)
    idx = np.arange(60)
    with pytest.raises(ValueError, match="fit_idx and val_idx overlap"):
        tiny_fit(data, idx[:40], idx[30:50], None)
    with pytest.raises(ValueError, match="val_idx and test_idx overlap"):
        tiny_fit(data, idx[:40], idx[40:50], idx[45:])
    with pytest.raises(ValueError, match="outside"):
        tiny_fit(data, idx[:40], np.array([59, 60]), None)
    with pytest.raises(ValueError, match=r"X must be \(N, 1, C, L\)"):
        tiny_fit((data[0][:, 0], data[1], data[2]), idx[:40], idx[40:50], None)
    with pytest.raises(ValueError, match="TrainConfig.alpha"):
        TrainConfig(alpha=1.5)
    with pytest.raises(ValueError, match="unknown method"):
        TrainConfig(method="self_distill")
    with pytest.raises(ValueError, match="y1 labels"):
        fit(data, idx[:40], idx[40:50], None, TrainConfig(method="multitask", epochs=1), progress=False,
            build=tiny_net, n_classes=(2, 3))


def test_config_round_trips_through_json_and_predict_returns_numpy_logits(tiny_net):
    cfg = TrainConfig(method="sd_dropout", epochs=3, model_options={"batchnorm": True})
    assert TrainConfig(**json.loads(json.dumps(dataclasses.asdict(cfg)))) == cfg
    net = tiny_net()
    out = predict(net, np.zeros((5, 1, 3, 12), dtype=np.float32), batch_size=2)
    assert [o.shape for o in out] == [(5, 4), (5, 3)] and all(isinstance(o, np.ndarray) for o in out)
    assert net.training  # mode restored
    assert engine.resolve_device("cpu").type == "cpu"


@pytest.mark.parametrize("mode", ["quick", "demo", "full"])
def test_config_takes_epochs_and_ema_decay_from_the_mode(monkeypatch, mode):
    from smoothdistill_lib.config import get_mode

    monkeypatch.setenv("SMOOTHDISTILL_MODE", mode)
    cfg = TrainConfig()
    assert (cfg.epochs, cfg.ema_decay) == (get_mode(mode).epochs, get_mode(mode).ema_decay)
    assert TrainConfig(ema_decay=0.5).ema_decay == 0.5


# ------------------------------------------------------------------ CLI


def test_cli_train_prints_one_json_object(capsys, monkeypatch):
    from smoothdistill_lib.cli import main

    monkeypatch.setenv("SMOOTHDISTILL_MODE", "quick")
    rc = main(["train", "--dataset", "sleepsim", "--method", "smooth_distill", "--mode", "quick",
               "--epochs", "1", "--device", "cpu"])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0 and len(out) == 1
    rec = json.loads(out[0])
    for key in (
        "test_acc_task1",
        "test_acc_task2",
        "test_f1_task1",
        "test_f1_task2",
        "best_epoch",
        "train_seconds",
        "params",
        "dataset",
        "method",
        "model",
        "mode",
        "seed",
        "device",
    ):
        assert key in rec, key
    assert rec["best_epoch"] == 1 and rec["method"] == "smooth_distill" and rec["mode"] == "quick"
    assert 0 <= rec["test_f1_task1"] <= 100 and rec["params"] > 1_000_000


def test_lone_last_window_is_merged_only_for_batchnorm_nets(tiny_net):
    assert engine._batch_bounds(129, 64, batchnorm=False) == [(0, 64), (64, 128), (128, 129)]
    assert engine._batch_bounds(129, 64, batchnorm=True) == [(0, 64), (64, 129)]
    assert engine._batch_bounds(130, 64, batchnorm=True) == [(0, 64), (64, 128), (128, 130)]
    assert engine._batch_bounds(1, 64, batchnorm=True) == [(0, 1)]

    def BNNet(n_classes=(4, 3)):  # noqa: N802 - stands for a class
        return tiny_net(n_classes, batchnorm=True)

    data = _synthetic(60)
    res = fit(data, np.arange(33), np.arange(33, 45), None, TrainConfig(method="smooth_distill", epochs=1,
              batch_size=16), progress=False, build=BNNet)
    assert len(res.history) == 1 and ("test", "student") not in res.predictions


# ------------------------------------------------------------------ long runs, lambda 0, non-finite


def test_lambda0_student_is_multitask(sleepsim_quick):
    """Smooth-Distill with lambda = 0 trains its student with the multitask loss and the same random
    stream: the two students are bit-identical, so a lambda-0 record serves as the multitask run
    (configs/long.yaml relies on this)."""
    torch.set_num_threads(1)
    w, split = sleepsim_quick.windows, sleepsim_quick.split
    fit_idx, val_idx = split.folds[0]
    res = {m: fit(w, fit_idx, val_idx, split.test,
                  TrainConfig(method=m, lam=0.0, epochs=2, seed=3, ema_decay=0.9), progress=False)
           for m in ("multitask", "smooth_distill")}
    a, b = res["multitask"].state_dicts["student"], res["smooth_distill"].state_dicts["student"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    pa, pb = res["multitask"].predictions[("test", "student")], res["smooth_distill"].predictions[("test", "student")]
    assert np.array_equal(pa["y1_prob"], pb["y1_prob"])
    # ... while lambda > 0 changes the student
    c = fit(w, fit_idx, val_idx, split.test, TrainConfig(method="smooth_distill", lam=0.5, epochs=2, seed=3,
                                                          ema_decay=0.9), progress=False).state_dicts["student"]
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_min_steps_raises_the_epochs_to_reach_that_many_steps(tiny_fit):
    data = _synthetic(300)
    idx = np.arange(300)
    # 200 fit windows at batch 32 = 7 steps per epoch: 50 steps need ceil(50 / 7) = 8 epochs
    res = tiny_fit(data, idx[:200], idx[200:250], idx[250:], epochs=2, min_steps=50)
    assert res.config.epochs == 8 and len(res.history) == 8 and res.config.min_steps == 50
    assert tiny_fit(data, idx[:200], idx[200:250], None, epochs=3, min_steps=5).config.epochs == 3
    assert engine.with_min_steps(TrainConfig(epochs=1, min_steps=None), 10).epochs == 1
    with pytest.raises(ValueError, match="min_steps"):
        TrainConfig(min_steps=0)


@pytest.mark.parametrize("name", ["lr", "lam", "temperature", "ba_lam", "alpha"])
@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_non_finite_options_are_refused_by_name(name, value):
    with pytest.raises(ValueError, match=f"TrainConfig.{name} must be a finite number"):
        TrainConfig(**{name: value})


def test_non_finite_inputs_and_losses_stop_the_run_with_a_reason(tiny_fit):
    data = _synthetic(120)
    idx = np.arange(120)
    X = data[0].astype(np.float64)
    X[7, 0, 1, 3] = 1e39  # finite in float64, inf once cast to float32
    with pytest.raises(ValueError, match="1 window.*non-finite.*float32"):
        tiny_fit((X, data[1], data[2]), idx[:80], idx[80:100], idx[100:])
    # a learning rate that blows the weights up: the loss becomes non-finite and the run stops
    with pytest.raises(FloatingPointError, match="multitask.*epoch \\d+.*non-finite.*lr=1e\\+30"):
        tiny_fit(data, idx[:80], idx[80:100], idx[100:], lr=1e30, epochs=5)


# ------------------------------------------------------------------ layout and mode where data meet the model


@pytest.fixture(scope="module")
def sleepsim_quick_axes():
    """Quick-mode sleepsim windows as prepare() makes them by default: the axes layout."""
    from smoothdistill_lib import sleepsim
    from smoothdistill_lib.pipeline import prepare

    return prepare(sleepsim.load(mode="quick"), mode="quick")


def test_windows_in_another_layout_than_the_models_are_refused_in_one_line(sleepsim_quick_axes, tmp_path):
    """prepare() defaults to the axes layout, the default model (mtlnet) is fed the faithful one: fit
    trained on the mismatch without a word. Now every entry where data meet a registry model refuses
    it, naming both layouts and both fixes; a fit_or_load checkpoint is neither trained nor loaded."""
    from smoothdistill_lib import checkpoints, stack
    from smoothdistill_lib.errors import UserError
    from smoothdistill_lib.models import MODELS
    from smoothdistill_lib.windows import to_layout

    prep = sleepsim_quick_axes
    fit_idx, val_idx = prep.split.folds[0]
    cfg = TrainConfig(epochs=1)
    assert (prep.layout, cfg.model, MODELS[cfg.model].layout) == ("axes", "mtlnet", "faithful")
    line = ("fit: the windows are in the 'axes' layout but model 'mtlnet' is fed the 'faithful' layout; prepare "
            "them with prepare(..., layout=MODELS['mtlnet'].layout) or convert X with "
            "windows.to_layout(X, 'axes', 'faithful')")
    for data in (prep, prep.windows):
        with pytest.raises(UserError) as e:
            fit(data, fit_idx, val_idx, prep.split.test, cfg, progress=False)
        assert str(e.value) == line and "\n" not in str(e.value)
    with pytest.raises(UserError, match="^fit_or_load: the windows are in the 'axes' layout"):
        checkpoints.fit_or_load(tmp_path, prep, fit_idx, val_idx, prep.split.test, cfg, progress=False)
    assert list(tmp_path.iterdir()) == []
    runs = [(fit_idx, val_idx, None, dataclasses.replace(cfg, seed=s)) for s in (0, 1)]
    with pytest.raises(UserError, match="^fit_stacked: the windows are in the 'axes' layout"):
        stack.fit_stacked(prep.windows, runs, progress=False)
    # the same windows in the model's layout, another model of the axes layout, arrays (no layout to
    # read) and unregistered models pass the check
    engine.check_layout(dataclasses.replace(prep.windows, X=to_layout(prep.windows.X, "axes", "faithful"),
                                            layout="faithful"), "mtlnet")
    engine.check_layout(prep, "mtlnet_corrected")
    engine.check_layout((prep.windows.X, prep.windows.y1, prep.windows.y2), "mtlnet")
    engine.check_layout(prep, "not_registered")
    assert engine.data_layout({"X": 0, "layout": "faithful"}) == "faithful"
    assert engine.data_layout({"X": 0}) is None


def test_a_config_takes_its_sizes_from_the_mode_the_data_were_prepared_in(sleepsim_quick_axes, monkeypatch):
    """TrainConfig() takes epochs and EMA decay from $SMOOTHDISTILL_MODE; TrainConfig.for_mode(prepared)
    from the mode prepare() was called with. The values are plain fields (equal configs, equal dicts),
    and fit warns once when a Prepared of one mode meets a config sized by the environment's other mode."""
    import warnings

    from smoothdistill_lib.config import get_mode

    monkeypatch.setenv("SMOOTHDISTILL_MODE", "demo")
    prep = sleepsim_quick_axes
    assert prep.settings == get_mode("quick") and engine.mode_settings(prep) == get_mode("quick")
    plain, sized = TrainConfig(), TrainConfig.for_mode(prep, method="multitask")
    assert (plain.epochs, plain.ema_decay) == (8, 0.97)  # demo, from the environment
    assert (sized.epochs, sized.ema_decay, sized.batch_size, sized.min_steps) == (2, 0.9, 64, None)
    assert sized.to_dict() == TrainConfig(method="multitask", epochs=2, ema_decay=0.9).to_dict()
    long = TrainConfig.for_mode("long")
    assert (long.epochs, long.ema_decay, long.min_steps) == (15, 0.999, 10_000)
    assert TrainConfig.for_mode(get_mode("long")) == long
    # explicit epochs mean exactly those epochs (as `train --epochs`), unless min_steps is given too
    assert TrainConfig.for_mode("long", epochs=3).min_steps is None
    assert TrainConfig.for_mode("long", epochs=3, min_steps=50).min_steps == 50
    assert TrainConfig.for_mode(None) == plain  # None: the environment's mode, as TrainConfig()

    fit_idx, val_idx = prep.split.folds[0]
    # the warning comes before training: a missing index set stops the run right after it
    with pytest.warns(UserWarning, match="^fit: the data were prepared in mode 'quick' but the config has the "
                                         "epochs \\(8\\) and EMA decay \\(0.97\\) of mode 'demo'.*for_mode"):
        with pytest.raises(ValueError, match="fit_idx is required"):
            fit(prep, None, val_idx, None, TrainConfig(model="mtlnet_corrected"), progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="fit_idx is required"):
            fit(prep, None, val_idx, None, TrainConfig.for_mode(prep, model="mtlnet_corrected"), progress=False)
