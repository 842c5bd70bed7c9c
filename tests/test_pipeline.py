"""``pipeline.prepare`` presets, caps and overrides, and the CLI ``windows`` (synthetic recordings;
``sleepsim`` through the registry once it exists)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from smoothdistill_lib import cli, pipeline
from smoothdistill_lib.errors import UserError
from smoothdistill_lib.recordings import Recording, make_frame, sessions_from_runs
from smoothdistill_lib.splits import Standardizer, leakage
from smoothdistill_lib.windows import make_windows, to_layout


def recording(n_subjects=4, n_placements=3, run_lens=(250, 330, 180, 410), seed=0) -> Recording:
    """MHEALTH-like stacked placements, activities 0, 1, 0, 2 per subject, random signal."""
    labels = np.repeat([0, 1, 0, 2], run_lens)
    grid = [(p, s) for p in range(n_placements) for s in range(1, n_subjects + 1)]
    subj = np.concatenate([np.full(len(labels), s) for _, s in grid])
    pl = np.concatenate([np.full(len(labels), p) for p, _ in grid])
    act = np.tile(labels, len(grid))
    xyz = np.random.default_rng(seed).normal(size=(len(subj), 3)) * [1.0, 2.0, 0.5] + [0.3, -1.0, 9.8]
    frame = make_frame(x=xyz[:, 0], y=xyz[:, 1], z=xyz[:, 2], subject=subj, activity=act, placement=pl,
                       session=sessions_from_runs(subj, pl, act))
    return Recording("synthetic", frame, ["a0", "a1", "a2"], [f"p{i}" for i in range(n_placements)], 50.0)


def test_prepare_paper_preset_is_the_authors_path():
    rec = recording()
    prep = pipeline.prepare(rec, protocol="paper", mode="full", seed=42)
    raw = make_windows(rec, stream="paper", label_rule="last", layout="axes")
    w = prep.windows
    assert len(w) == (len(rec) - 100) // 60 + 1
    assert np.array_equal(w.X, raw.X) and np.array_equal(w.y1, raw.y1)  # raw units, no normalisation
    assert (w.stream, w.label_rule, w.layout) == ("paper", "last", "axes")
    assert len(prep.split.test) == math.ceil(0.2 * len(w)) and prep.split.n_folds == 5
    assert prep.leakage == leakage(w, prep.split)
    assert prep.leakage["shared_samples_fraction"] > 0.8
    assert np.array_equal(prep.standardizer.mean, np.zeros(3))
    o = prep.options
    assert (o["protocol"], o["mode"], o["seed"], o["normalise"], o["max_windows"]) == ("paper", "full", 42, "none", None)
    assert prep.recording["subjects"] == [1, 2, 3, 4] and prep.recording["n_samples"] == len(rec)
    json.dumps(prep.summary())


def test_prepare_subject_preset_standardizes_on_train_only():
    rec = recording(n_subjects=6)
    prep = pipeline.prepare(rec, protocol="subject", mode="full", seed=1)
    w, split = prep.windows, prep.split
    assert (w.stream, w.label_rule, prep.options["normalise"]) == ("session", "majority", "standardize")
    assert set(w.subject[split.train]).isdisjoint(w.subject[split.test])
    assert prep.leakage["subject_in_train_count"] == 0
    raw = make_windows(rec, stream="session", label_rule="majority")
    expected = Standardizer.fit(raw.X, split.train)
    assert np.allclose(prep.standardizer.mean, expected.mean) and np.allclose(prep.standardizer.std, expected.std)
    assert np.allclose(w.X, expected.transform(raw.X))
    z = w.X[split.train][:, 0].astype(np.float64)
    assert np.allclose(z.mean(axis=(0, 2)), 0, atol=1e-4) and np.allclose(z.std(axis=(0, 2)), 1, atol=1e-4)
    assert not np.allclose(w.X[split.test][:, 0].mean(axis=(0, 2)), 0, atol=1e-6)  # test not refitted


def test_prepare_caps_to_the_mode_and_to_max_windows():
    rec = recording(run_lens=(2500, 3300, 1800, 4100))
    n_all = (len(rec) - 100) // 60 + 1
    assert n_all > 1200
    quick = pipeline.prepare(rec, protocol="paper", mode="quick")
    assert len(quick.windows) == 1200 and quick.options["n_windows_uncapped"] == n_all
    assert any("capped to 1200" in note for note in quick.split.notes)
    assert len(quick.split.test) == math.ceil(0.2 * 1200)
    small = pipeline.prepare(rec, protocol="subject", mode="quick", max_windows=300)
    assert len(small.windows) == 300 and len(np.unique(small.windows.subject)) == 4


def test_prepare_overrides_and_bad_arguments():
    rec = recording()
    prep = pipeline.prepare(rec, protocol="paper", mode="full", layout="faithful", label_rule="majority",
                            normalise="standardize", stream="session")
    w = prep.windows
    assert (w.layout, w.label_rule, w.stream) == ("faithful", "majority", "session")
    axes = pipeline.prepare(rec, protocol="paper", mode="full", label_rule="majority", normalise="standardize",
                            stream="session")
    assert np.allclose(to_layout(w.X, "faithful", "axes"), axes.windows.X, atol=1e-5)
    with pytest.raises(ValueError, match="protocol="):
        pipeline.prepare(rec, protocol="random")
    with pytest.raises(ValueError, match="normalise="):
        pipeline.prepare(rec, normalise="minmax")


def test_cli_windows_prints_one_json_object(monkeypatch, capsys):
    calls = []

    def fake_load(name, mode, **options):
        calls.append((name, mode, options))
        return recording(n_subjects=5)

    monkeypatch.setattr(pipeline.datasets, "load_recording", fake_load)
    rc = cli.main(["windows", "--dataset", "fake", "--protocol", "subject", "--seed", "3", "--mode", "quick"])
    assert rc == 0 and calls == [("fake", "quick", {})]
    out = json.loads(capsys.readouterr().out)
    for key in ("n_windows", "n_train", "n_test", "n_classes_task1", "n_classes_task2", "class_counts_task1",
                "leakage", "dataset", "protocol", "seed", "mode"):
        assert key in out, key
    assert (out["dataset"], out["protocol"], out["seed"], out["mode"]) == ("fake", "subject", 3, "quick")
    assert out["n_train"] + out["n_test"] == out["n_windows"]
    assert sum(out["class_counts_task1"].values()) == out["n_windows"]
    assert list(out["class_counts_task1"]) == ["a0", "a1", "a2"] and out["n_classes_task2"] == 3
    assert out["leakage"]["subject_in_train_count"] == 0


def test_cli_windows_bad_dataset_is_one_clear_error(monkeypatch, capsys):
    def missing(name, mode, **options):
        raise FileNotFoundError(f"dataset {name!r} not found under /nowhere")

    monkeypatch.setattr(pipeline.datasets, "load_recording", missing)
    assert cli.main(["windows", "--dataset", "nosuch"]) == 2
    assert "error: dataset 'nosuch' not found" in capsys.readouterr().err


@pytest.mark.parametrize("protocol", ["paper", "subject"])
def test_prepare_sleepsim_quick(protocol):
    datasets = pytest.importorskip("smoothdistill_lib.datasets", reason="datasets registry not written yet")
    prep = pipeline.prepare("sleepsim", protocol=protocol, mode="quick", seed=0)
    w = prep.windows
    assert 0 < len(w) <= 1200 and w.n_classes == (12, 3)
    assert w.X.shape[1:] == (1, 3, 100) and np.isfinite(w.X).all()
    assert prep.options["mode"] == "quick" and prep.recording["name"] == "sleepsim"
    assert len(prep.split.train) + len(prep.split.test) == len(w)
    if protocol == "subject":
        assert prep.leakage["subject_in_train_count"] == 0
    else:
        assert prep.leakage["subject_in_train_fraction"] == 1.0
    assert datasets.load_recording  # the registry the pipeline calls


# ----------------------------------------------------------------------------- bad input where it enters
@pytest.mark.parametrize("kwargs, name", [({"length": 2.5}, "length=2.5 is not a whole number"),
                                          ({"step": 10**12}, "step=1000000000000 is not a whole number from 1 to"),
                                          ({"step": 0}, "step=0 is not a whole number from 1 to"),
                                          ({"n_folds": 1}, "n_folds=1"), ({"max_windows": 0}, "max_windows=0"),
                                          ({"seed": -5}, "seed=-5 is not a whole number from 0 to 4294967295"),
                                          ({"seed": 2**32}, "seed=4294967296")])
def test_prepare_refuses_bad_whole_numbers_naming_the_argument(kwargs, name):
    """A float length was a numpy casting traceback, a huge step an overflow, a negative seed
    scikit-learn's "expected non-negative integer": one line naming the argument instead."""
    with pytest.raises(UserError) as e:
        pipeline.prepare(recording(), protocol="paper", mode="full", **kwargs)
    assert str(e.value).startswith(f"prepare: {name}") and "\n" not in str(e.value)


@pytest.mark.parametrize("column, value, what", [("y", np.nan, "is nan"), ("z", -np.inf, "is -inf"),
                                                 ("activity", 7, "holds label 7, but the dataset has 3 activity_names"),
                                                 ("placement", -1, "holds label -1, but the dataset has 3 placement_names")])
@pytest.mark.parametrize("protocol", ["paper", "subject"])
def test_prepare_refuses_non_finite_samples_and_unknown_labels_naming_row_and_column(column, value, what, protocol):
    rec = recording()
    rec.frame.loc[123, column] = value
    with pytest.raises(UserError) as e:
        pipeline.prepare(rec, protocol=protocol, mode="full")
    msg = str(e.value)
    assert msg.startswith(f"dataset 'synthetic': column {column!r}, row 123") and what in msg and "\n" not in msg


def test_a_registered_loader_returning_nan_is_refused_and_never_spreads(monkeypatch):
    """Under the subject protocol one NaN sample made the standardiser's mean NaN, and so every
    standardised value of its channel: refused where the data enter, and by the standardiser too."""
    from smoothdistill_lib import datasets

    def leaky(subjects=None, mode=None):
        rec = recording(n_subjects=6)
        rec.frame.loc[4000, "x"] = np.nan
        return rec

    datasets.register_dataset("leaky", leaky, ["a0", "a1", "a2"], ["p0", "p1", "p2"])
    try:
        with pytest.raises(UserError, match=r"dataset 'leaky': column 'x', row 4000 \(subject \d\) is nan; 1 of"):
            pipeline.prepare("leaky", protocol="subject", mode="full")
    finally:
        datasets.unregister_dataset("leaky")
    X = make_windows(recording(n_subjects=6), stream="session", label_rule="majority").X.copy()
    X[5, 0, 1, 7] = np.nan
    with pytest.raises(ValueError, match="non-finite values in channel 1"):
        Standardizer.fit(X)


def test_cli_windows_bad_seed_names_the_option(capsys):
    assert cli.main(["windows", "--dataset", "sleepsim", "--seed", "-5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: argument --seed: -5 is not a whole number from 0 to 4294967295") and err.count("\n") == 1
