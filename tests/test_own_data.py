"""A reader's own data: a registered 6-channel, two-task dataset through windows, run and report,
and a saved checkpoint scoring subjects it never saw."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from smoothdistill_lib import checkpoints, compute, datasets, engine, records, runner
from smoothdistill_lib.cli import main as cli_main
from smoothdistill_lib.experiment import Experiment
from smoothdistill_lib.models import build_model
from smoothdistill_lib.pipeline import prepare
from smoothdistill_lib.recordings import Recording, make_frame, sessions_from_runs
from smoothdistill_lib.splits import subject_split
from smoothdistill_lib.windows import make_windows

CHANNELS = ("ax", "ay", "az", "gx", "gy", "gz")  # accelerometer + gyroscope
ACTIVITIES = ["rest", "walk"]
PLACEMENTS = ["wrist", "hip"]
SUBJECTS = (1, 2, 3, 4, 5)
SECONDS = 8  # per (subject, placement, activity), at 25 Hz: 200 samples, 4 windows of 50 every 40


def imu(subjects=None, mode=None, seed: int = 0) -> Recording:
    """Synthetic IMU recording: each (activity, placement) has its own mean per channel (walking
    adds a 2 Hz swing to the gyroscope), plus a per-subject offset and noise, so both tasks are
    learnable and a new subject is like the others."""
    rate, n = 25.0, int(SECONDS * 25)
    t = np.arange(n) / rate
    cols = {c: [] for c in (*CHANNELS, "subject", "activity", "placement")}
    for s in SUBJECTS if subjects is None else subjects:
        rng = np.random.default_rng([seed, s])
        offset = rng.normal(0.0, 0.1, len(CHANNELS))
        for p in range(len(PLACEMENTS)):
            for a in range(len(ACTIVITIES)):
                mean = np.array([a, -a, 1 - 2 * p, p, a * p, 1.0]) * 1.5
                sig = mean + offset + rng.normal(0.0, 0.3, (n, len(CHANNELS)))
                sig[:, 3:] += a * np.sin(2 * np.pi * 2.0 * t)[:, None]
                for k, c in enumerate(CHANNELS):
                    cols[c].append(sig[:, k])
                cols["subject"].append(np.full(n, s))
                cols["activity"].append(np.full(n, a))
                cols["placement"].append(np.full(n, p))
    arr = {k: np.concatenate(v) for k, v in cols.items()}
    arr["session"] = sessions_from_runs(arr["subject"], arr["placement"], arr["activity"])
    return Recording("imu", make_frame(channels=CHANNELS, **arr), ACTIVITIES, PLACEMENTS, rate, channels=CHANNELS)


@pytest.fixture
def registered():
    datasets.register_dataset("imu", imu, ACTIVITIES, PLACEMENTS, CHANNELS, "synthetic accelerometer + gyroscope")
    yield
    datasets.unregister_dataset("imu")


def test_register_dataset_checks_names_and_the_loader(registered):
    with pytest.raises(ValueError, match="already registered"):
        datasets.register_dataset("imu", imu, ACTIVITIES, PLACEMENTS, CHANNELS)
    with pytest.raises(ValueError, match="already registered"):
        datasets.register_dataset("wisdm", imu, ACTIVITIES, PLACEMENTS, CHANNELS)
    assert datasets.is_present("imu") and datasets.absence("imu") is None
    rec = datasets.load_recording("imu", mode="quick")
    assert rec.channels == CHANNELS and rec.signal.shape == (len(SUBJECTS) * 4 * SECONDS * 25, 6)
    datasets.register_dataset("imu", imu, ACTIVITIES, ["wrist", "ankle"], CHANNELS, replace=True)
    with pytest.raises(ValueError, match=r"placement_names \['wrist', 'hip'\], the registry \['wrist', 'ankle'\]"):
        datasets.load_recording("imu")
    with pytest.raises(ValueError, match="are not in channels"):
        make_frame(x=[0.0], y=[0.0], z=[0.0], w=[0.0], subject=[1], activity=[0], placement=[0], session=[0])


def test_a_registered_six_channel_dataset_runs_through_windows_run_and_report(registered, tmp_path, capsys):
    assert cli_main(["windows", "--dataset", "imu", "--protocol", "subject", "--mode", "quick"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_windows"] == len(SUBJECTS) * 4 * 2 and out["recording"]["channels"] == list(CHANNELS)
    assert len(out["standardizer"]["mean"]) == 6  # one mean per channel, fitted on training subjects

    exp = Experiment.from_dict({"name": "own", "datasets": ["imu"], "methods": ["multitask", "smooth_distill"],
                                "models": ["mtlnet", "gru"], "protocols": ["paper", "subject"],
                                "seeds": [0], "folds": [0], "epochs": 2})
    summary = runner.run_experiment(exp, results_root=tmp_path, progress=False, mode="quick")
    assert len(summary.ran) == 8
    recs = records.load_experiment("own", results_root=tmp_path)
    assert set(recs.df["dataset"]) == {"imu"} and len(recs.records) == 8
    gru = next(r for r in recs.records.values() if r["spec"]["model"] == "gru" and r["spec"]["method"] == "multitask")
    want = compute.count_flops(build_model("gru", (2, 2), n_channels=6, window_length=100), (1, 6, 100))
    assert gru["compute"]["flops"]["value"] == want["value"]  # the FLOP counter saw 6 input channels
    assert gru["data"]["placement_names"] == PLACEMENTS

    assert cli_main(["report", str(tmp_path / "own"), "--out", str(tmp_path / "csv")]) == 0
    text = capsys.readouterr().out
    assert "# own (quick mode, 8 runs)" in text and "## table5" in text and "| imu" in text
    assert (tmp_path / "csv" / "table5.csv").exists()


def test_a_saved_checkpoint_scores_subjects_it_never_saw(tmp_path):
    train_rec, new_rec = imu(SUBJECTS[:4]), imu(SUBJECTS[4:])
    prep = prepare(train_rec, protocol="subject", mode="quick", length=50, step=40, test_subjects=[4])
    assert set(prep.windows.subject[prep.split.test]) == {4}
    fit_idx, val_idx = prep.split.folds[0]
    cfg = engine.TrainConfig(method="multitask", model="mtlnet_corrected", epochs=6, batch_size=16)
    ckpt = checkpoints.fit_or_load(tmp_path, prep, fit_idx, val_idx, prep.split.test, cfg, progress=False)
    assert ckpt.path.with_suffix(".pt").name.startswith("multitask_") and ckpt.path.with_name(ckpt.path.name + ".pt").exists()

    pred = checkpoints.load_predictor(ckpt.path)
    assert pred.inputs["channels"] == list(CHANNELS) and pred.inputs["standardizer"] == prep.standardizer.to_dict()
    w = pred.windows(new_rec)
    assert set(w.subject) == {5} and w.X.shape[1:] == (1, 6, 50)
    # the same numbers as the trained network in memory on the same, identically scaled windows
    net = build_model("mtlnet_corrected", (2, 2), n_channels=6, window_length=50)
    net.load_state_dict(ckpt.state_dicts["student"])
    z1, z2 = engine.predict(net, prep.standardizer.transform(w.X))
    y1, y2 = pred.predict(new_rec)
    assert np.array_equal(y1, z1.argmax(1)) and np.array_equal(y2, z2.argmax(1))
    score = pred.score(new_rec)
    assert score.loc["task1", "n"] == len(w) == 2 * 2 * 4
    assert score.loc["task1", "accuracy"] == pytest.approx(100.0 * np.mean(y1 == w.y1))
    assert score["accuracy"].min() > 75.0  # well above chance (50 %) on a subject never seen

    with pytest.raises(ValueError, match="channels"):
        pred.windows(Recording("x", make_frame(x=[0.0] * 60, y=[0.0] * 60, z=[0.0] * 60, subject=[1] * 60,
                                               activity=[0] * 60, placement=[0] * 60, session=[0] * 60),
                               ACTIVITIES, PLACEMENTS, 25.0))


def test_subject_split_holds_out_the_subjects_asked_for():
    w = make_windows(imu(), length=50, step=40, stream="session")
    split = subject_split(w, test_subjects=[2, 5], n_folds=3)
    assert set(w.subject[split.test]) == {2, 5} and not set(w.subject[split.train]) & {2, 5}
    assert len(split.folds) == 3 and "test subjects: [2, 5]" in split.notes
    with pytest.raises(ValueError, match="unknown: \\[9\\]"):
        subject_split(w, test_subjects=[9])


def test_checkpoint_refused_by_weights_only_is_one_clear_error(tmp_path):
    base = checkpoints.save(tmp_path / "c", {"student": {"w": torch.zeros(2)}})
    torch.save({"student": {"w": torch.zeros(2)}, "extra": object()}, base.with_name("c.pt"))
    meta = json.loads(base.with_name("c.json").read_text())
    meta.pop("weights_sha256")
    base.with_name("c.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"c\.pt cannot be loaded with weights_only=True"):
        checkpoints.load(base)


def test_a_loader_that_ignores_subjects_is_refused_and_score_never_scores_training_subjects(registered, tmp_path,
                                                                                             capsys):
    """A loader that returns every subject whatever it is asked for made `score` quietly score the
    subjects the network trained on: load_recording refuses the mismatch in one line naming the dataset."""
    from smoothdistill_lib.errors import UserError

    prep = prepare(imu(SUBJECTS[:4]), protocol="subject", mode="quick", length=50, step=40, test_subjects=[4])
    fit_idx, val_idx = prep.split.folds[0]
    cfg = engine.TrainConfig(method="multitask", model="mtlnet_corrected", epochs=1, batch_size=16)
    ckpt = checkpoints.fit_or_load(tmp_path, prep, fit_idx, val_idx, prep.split.test, cfg, progress=False)
    assert ckpt.metadata["subjects_seen"] == [1, 2, 3]

    # the registered loader keeps to `subjects`: `score` scores subject 5 alone, as load_predictor does
    assert cli_main(["score", str(ckpt.path), "--dataset", "imu", "--subjects", "5"]) == 0
    out = capsys.readouterr().out
    want = checkpoints.load_predictor(ckpt.path).score(imu([5]))
    assert "on imu subjects 5:" in out and f"{want.loc['task1', 'accuracy']:.2f}" in out
    assert want.loc["task1", "n"] == 2 * 2 * 4

    datasets.register_dataset("deaf", lambda subjects=None, mode=None: imu(), ACTIVITIES, PLACEMENTS, CHANNELS)
    try:
        with pytest.raises(UserError) as e:
            datasets.load_recording("deaf", subjects=[5])
        assert str(e.value) == ("dataset 'deaf': asked for subjects [5], its loader returned 4 others ([1, 2, 3, 4]): "
                                "the loader must keep exactly the subjects it is given (its `subjects` argument)")
        assert cli_main(["score", str(ckpt.path), "--dataset", "deaf", "--subjects", "5"]) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1 and err.startswith("error: dataset 'deaf': asked for subjects [5]")
    finally:
        datasets.unregister_dataset("deaf")
    datasets.register_dataset("short", lambda subjects=None, mode=None: imu([1]), ACTIVITIES, PLACEMENTS, CHANNELS)
    try:
        with pytest.raises(UserError, match=r"asked for subjects \[1, 9\], its loader returned none of \[9\]"):
            datasets.load_recording("short", subjects=[9, 1])
    finally:
        datasets.unregister_dataset("short")
