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


# ----------------------------------------------------------------------------- a .pt and .json that disagree
def _recording(subjects=(1, 2, 3, 4), seed: int = 0):
    """Two activities x two placements per subject, 3 channels at 25 Hz, each class its own mean."""
    from smoothdistill_lib.recordings import Recording, make_frame, sessions_from_runs

    n = 200
    cols = {k: [] for k in ("x", "y", "z", "subject", "activity", "placement")}
    for s in subjects:
        rng = np.random.default_rng([seed, s])  # a subject is the same whichever others are asked for
        for p in (0, 1):
            for a in (0, 1):
                sig = np.array([a, -a, 1 - 2 * p]) * 1.5 + rng.normal(0.0, 0.3, (n, 3))
                for k, c in enumerate("xyz"):
                    cols[c].append(sig[:, k])
                cols["subject"].append(np.full(n, s))
                cols["activity"].append(np.full(n, a))
                cols["placement"].append(np.full(n, p))
    arr = {k: np.concatenate(v) for k, v in cols.items()}
    arr["session"] = sessions_from_runs(arr["subject"], arr["placement"], arr["activity"])
    return Recording("toy", make_frame(**arr), ["rest", "walk"], ["wrist", "hip"], 25.0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One smooth_distill checkpoint (student + EMA teacher) of fit_or_load on prepared windows."""
    from smoothdistill_lib.pipeline import prepare

    prep = prepare(_recording(), protocol="subject", mode="quick", length=50, step=40, test_subjects=[4])
    fit_idx, val_idx = prep.split.folds[0]
    cfg = TrainConfig(method="smooth_distill", model="mtlnet_corrected", epochs=1, batch_size=16)
    ck = checkpoints.fit_or_load(tmp_path_factory.mktemp("ck"), prep, fit_idx, val_idx, prep.split.test, cfg,
                                 progress=False)
    return ck, prep


def _copy(ck, folder):
    """A copy of the checkpoint pair in ``folder``: (base, its metadata, its state dicts)."""
    import shutil

    for suffix in (".pt", ".json"):
        shutil.copy(ck.path.with_name(ck.path.name + suffix), folder / f"c{suffix}")
    base = folder / "c"
    return base, json.loads((folder / "c.json").read_text()), torch.load(folder / "c.pt", weights_only=True)


def _write(base, meta=None, sds=None, resha: bool = True):
    """Write back a damaged pair; ``resha``: recompute the .pt's sha256 in the .json, as someone
    who copied weights over would."""
    if sds is not None:
        torch.save(sds, base.with_name("c.pt"))
    meta = meta if meta is not None else json.loads(base.with_name("c.json").read_text())
    if resha:
        from smoothdistill_lib.fileio import sha256_file

        meta["weights_sha256"] = sha256_file(base.with_name("c.pt"))
    base.with_name("c.json").write_text(json.dumps(meta))


def _damage(kind, base, meta, sds):
    if kind == "json_window_length":  # the .json describes windows of another length: other FC shapes
        meta["inputs"]["length"] = 60
        _write(base, meta)
    elif kind == "pt_shapes":  # a tensor of another shape in the .pt
        sds["student"]["heads.0.bias"] = torch.zeros(5)
        _write(base, sds=sds)
    elif kind == "fewer_class_names":
        meta["inputs"]["activity_names"] = ["rest"]
        _write(base, meta)
    elif kind == "fewer_class_names_no_count":  # ... and the recorded output count removed too
        meta["inputs"]["activity_names"] = ["rest"]
        del meta["n_classes"]
        _write(base, meta)
    elif kind == "tensor_names":
        sds["student"]["renamed.weight"] = sds["student"].pop("heads.1.weight")
        _write(base, sds=sds)
    elif kind == "tensor_names_json_too":  # the .json's layout rewritten to match: the model still refuses
        sds["student"]["renamed.weight"] = sds["student"].pop("heads.1.weight")
        torch.save(sds, base.with_name("c.pt"))
        meta["state"]["student"]["shapes"]["renamed.weight"] = meta["state"]["student"]["shapes"].pop("heads.1.weight")
        meta["state"]["student"]["sha256"] = checkpoints.state_hash(sds["student"])
        _write(base, meta)
    elif kind == "missing_config":
        del meta["config"]
        _write(base, meta)
    elif kind == "null_standardizer":
        meta["inputs"]["standardizer"] = None
        _write(base, meta)
    elif kind == "incomplete_standardizer":
        meta["inputs"]["standardizer"] = {"mean": meta["inputs"]["standardizer"]["mean"][:2], "layout": "axes",
                                          "std": meta["inputs"]["standardizer"]["std"][:2]}
        _write(base, meta)
    elif kind == "standardizer_without_std":
        del meta["inputs"]["standardizer"]["std"]
        _write(base, meta)
    elif kind == "another_runs_weights":  # same architecture, another seed; the sha256 recomputed
        other = {k: {n: t + 0.01 for n, t in sd.items()} for k, sd in sds.items()}
        _write(base, sds=other)
    elif kind == "sha256":  # the .pt replaced, the .json's sha256 left as it was
        _write(base, sds={k: {n: t * 2 for n, t in sd.items()} for k, sd in sds.items()}, resha=False)
    else:
        raise AssertionError(kind)


DAMAGE = {  # kind -> what the one-line message must name
    "json_window_length": "'fc", "pt_shapes": "heads.0.bias", "fewer_class_names": "activity_names",
    "fewer_class_names_no_count": "activity_names", "tensor_names": "renamed.weight",
    "tensor_names_json_too": "renamed.weight", "missing_config": "config", "null_standardizer": "standardiser",
    "incomplete_standardizer": "standardiser", "standardizer_without_std": "standardiser",
    "another_runs_weights": "not the ones", "sha256": "sha256",
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_a_pt_and_json_that_disagree_are_one_line_never_a_silent_score(kind, trained, tmp_path, capsys):
    from smoothdistill_lib import errors
    from smoothdistill_lib.cli import main as cli_main

    ck, prep = trained
    base, meta, sds = _copy(ck, tmp_path)
    assert checkpoints.load_predictor(base).score(prep.windows.subset(prep.split.test)) is not None  # intact
    _damage(kind, base, meta, sds)
    with pytest.raises(errors.CheckpointError) as e:
        checkpoints.load_predictor(base)
    msg = str(e.value)
    assert "\n" not in msg and str(base) in msg and DAMAGE[kind] in msg, msg
    # the command line: one line, exit 2, nothing scored
    from smoothdistill_lib import datasets

    datasets.register_dataset("toy", lambda subjects=None, mode=None: _recording(subjects or (1, 2, 3, 4)),
                              ["rest", "walk"], ["wrist", "hip"], replace=True)
    try:
        assert cli_main(["score", str(base), "--dataset", "toy", "--subjects", "5"]) == 2
    finally:
        datasets.unregister_dataset("toy")
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: ") and err.count("\n") == 1 and DAMAGE[kind] in err


def test_the_teacher_of_a_checkpoint_is_scored_with_network_teacher(trained, tmp_path):
    from smoothdistill_lib import engine, errors
    from smoothdistill_lib.models import build_model

    ck, prep = trained
    test = prep.windows.subset(prep.split.test)
    student, teacher = checkpoints.load_predictor(ck.path), checkpoints.load_predictor(ck.path, network="teacher")
    assert (student.network, teacher.network) == ("student", "teacher")
    net = build_model("mtlnet_corrected", (2, 2), window_length=50)
    net.load_state_dict(ck.state_dicts["teacher"])
    z1, z2 = engine.predict(net, test.X)  # prep's windows are standardised already, the predictor's input is not
    raw = teacher.windows(_recording((4,)))
    y1, y2 = teacher.predict(raw)
    assert np.array_equal(y1, z1.argmax(1)) and np.array_equal(y2, z2.argmax(1))
    assert checkpoints.state_hash(ck.state_dicts["teacher"]) != checkpoints.state_hash(ck.state_dicts["student"])
    with pytest.raises(errors.UserError, match="network='pupil'"):
        checkpoints.load_predictor(ck.path, network="pupil")
    # a checkpoint without a teacher says so
    base = checkpoints.save(tmp_path / "mt", {"student": ck.state_dicts["student"]}, ck.metadata)
    with pytest.raises(errors.CheckpointError, match="holds no teacher"):
        checkpoints.load_predictor(base, network="teacher")


def test_a_checkpoint_saved_before_the_format_still_loads(trained, tmp_path):
    """Checkpoints written before the .json described the .pt (no format, no state) load as before:
    a null standardiser still means windows used as given."""
    ck, prep = trained
    base, meta, sds = _copy(ck, tmp_path)
    for key in ("format", "state"):
        meta.pop(key)
    meta["inputs"]["standardizer"] = None
    _write(base, meta)
    pred = checkpoints.load_predictor(base)
    w = prep.windows.subset(prep.split.test)  # already standardised: the same numbers as scaling raw ones
    net = checkpoints.load_predictor(ck.path)
    assert np.array_equal(pred.predict(w)[0], net.predict(net.windows(_recording((4,))))[0])


def test_windows_used_as_given_record_the_identity_standardiser():
    from smoothdistill_lib.windows import make_windows

    w = make_windows(_recording(), length=50, step=40)
    spec = checkpoints.input_spec(w)
    assert spec["standardizer"] == {"mean": [0.0] * 3, "std": [1.0] * 3, "layout": "axes"}
