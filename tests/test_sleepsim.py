"""The sleep-posture simulator: determinism, sizes, physics, and how hard its tasks are."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.signal import welch

from smoothdistill_lib import config, sleep, sleepsim
from smoothdistill_lib.sleep import POSTURE_ANGLES_DEG, POSTURE_NAMES
from smoothdistill_lib.sleepsim import SleepSimParams, gravity_vector, simulate, up_vector


def test_deterministic_by_seed_and_subject_independent_of_count():
    a = simulate(2, 2.0, seed=3)
    b = simulate(2, 2.0, seed=3)
    assert a.frame.equals(b.frame)
    assert not np.array_equal(a.signal, simulate(2, 2.0, seed=4).signal)
    only2 = simulate(seconds=2.0, seed=3, subjects=[2])
    np.testing.assert_array_equal(only2.signal, a.signal[a.frame.subject.to_numpy() == 2])


def test_sizes_stream_order_and_labels():
    rec = simulate(2, 1.0)
    n = 50
    assert len(rec) == 2 * 3 * 12 * n
    f = rec.frame
    assert f.subject.tolist() == [1] * 36 * n + [2] * 36 * n
    assert f.placement.iloc[: 36 * n].tolist() == [0] * 12 * n + [1] * 12 * n + [2] * 12 * n
    assert f.activity.iloc[: 12 * n].tolist() == np.repeat(np.arange(12), n).tolist()
    assert f.session.nunique() == 72 and np.all(np.diff(f.session.to_numpy()) >= 0)
    assert rec.activity_names == POSTURE_NAMES and rec.placement_names == ["neck", "chest", "abdomen"]
    r = rec.info["recordings"]
    assert len(r) == 72 and r.placement.tolist()[:13] == ["neck"] * 12 + ["chest"]
    # the three sensors of one subject and posture are simultaneous: same breathing and heart rate
    assert r.groupby(["subject", "posture"]).breathing_hz.nunique().eq(1).all()
    with pytest.raises(ValueError, match="subjects"):
        simulate(subjects=[0])
    with pytest.raises(ValueError, match="no samples"):
        simulate(1, 0.001)


def test_mode_sizes_and_paper_window_count():
    quick = config.get_mode("quick")
    rec = sleepsim.load(mode="quick")
    assert rec.subjects().tolist() == list(range(1, quick.sleepsim_subjects + 1))
    assert len(rec) == quick.sleepsim_subjects * 36 * round(quick.sleepsim_seconds * 50)
    assert len(sleepsim.load(mode="quick", n_subjects=1, seconds=1.0)) == 36 * 50
    # full size: the paper-protocol window count over one stream is within 0.1 % of Sleep's 53,546
    full = config.get_mode("full")
    rows = full.sleepsim_subjects * 36 * round(full.sleepsim_seconds * SleepSimParams().sampling_rate_hz)
    paper_total = sum(sleep.PAPER_WINDOWS.values())
    assert paper_total == 53_546
    assert abs((rows - 100) // 60 + 1 - paper_total) / paper_total < 1e-3


def test_adxl345_quantisation_and_range():
    rec = simulate(1, 2.0)
    lsb = 4.0 / 1024
    codes = rec.signal / lsb
    np.testing.assert_allclose(codes, np.round(codes), atol=1e-4)
    assert rec.signal.min() >= -2.0 and rec.signal.max() <= 2.0 - lsb
    np.testing.assert_allclose(np.linalg.norm(rec.signal, axis=1).mean(), 1.0, atol=0.02)
    assert sleepsim.quantise(np.array([5.0, -5.0, 0.001]), SleepSimParams()).tolist() == [2 - lsb, -2.0, 0.0]


def test_gravity_geometry_of_the_table2_angles():
    # body frame: x head, y body's left, z anterior; up seen from the body
    np.testing.assert_allclose(up_vector([90, 0, 270, 180], 0.0),
                               [[0, 0, 1], [0, 1, 0], [0, 0, -1], [0, -1, 0]], atol=1e-12)
    for placement in ("neck", "chest", "abdomen"):
        g = gravity_vector(POSTURE_ANGLES_DEG, placement)
        np.testing.assert_allclose(np.linalg.norm(g, axis=1), 1.0)
        # adjacent postures (30 degrees apart) are nearer than any others
        d = np.linalg.norm(g[:, None] - g[None], axis=2)
        for k in range(12):
            order = np.argsort(d[k])
            assert set(order[1:3]) == {(k - 1) % 12, (k + 1) % 12}
    # supine abdomen reads +z, prone -z, lateral right +y
    np.testing.assert_allclose(gravity_vector(90, "abdomen")[2], 1.0, atol=0.01)
    np.testing.assert_allclose(gravity_vector(270, "abdomen")[2], -1.0, atol=0.01)
    np.testing.assert_allclose(gravity_vector(0, "chest")[1], 1.0, atol=0.01)
    # the neck, flexed on the pillow, differs most from the trunk sensors
    assert np.linalg.norm(gravity_vector(270, "neck") - gravity_vector(270, "chest")) > 0.3


def test_mean_readings_follow_the_gravity_model():
    rec = simulate(3, 4.0)
    means = rec.frame.groupby(["placement", "activity"])[["x", "y", "z"]].mean().to_numpy().reshape(3, 12, 3)
    for p, name in enumerate(("neck", "chest", "abdomen")):
        err = np.linalg.norm(means[p] - gravity_vector(POSTURE_ANGLES_DEG, name), axis=1)
        assert err.max() < 0.35  # only the random mounting and posture offsets move it


def _band_power(x, lo, hi, fs=50.0):
    f, p = welch(x - x.mean(), fs=fs, nperseg=min(len(x), 1024))
    return p[(f >= lo) & (f <= hi)].sum()


def test_physiology_depends_on_the_placement():
    params = dataclasses.replace(SleepSimParams(), movement_rate_per_min=0.0, noise_sd_g=(0.0, 0.0, 0.0),
                                 mount_jitter_sd_deg=0.0, resolution_bits=16)
    rec = simulate(2, 40.0, params=params)
    f = rec.frame
    supine = f[f.activity == POSTURE_NAMES.index("up")]
    breathing = [np.mean([_band_power(g.x.to_numpy(), 0.15, 0.4) for _, g in supine[supine.placement == p]
                          .groupby("subject")]) for p in range(3)]
    heart = [np.mean([_band_power(g.z.to_numpy(), 5, 15) for _, g in supine[supine.placement == p]
                      .groupby("subject")]) for p in range(3)]
    assert breathing[2] > breathing[1] > breathing[0]  # abdomen > chest > neck
    assert heart[1] > heart[2] and heart[1] > heart[0]  # chest largest


def test_postures_separable_but_adjacent_ones_confused():
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    rec = simulate(10, 4.0, seed=1)
    f = rec.frame.assign(block=np.arange(len(rec)) // 50)  # 1-s windows, within one session
    w = f.groupby("block").agg(x=("x", "mean"), y=("y", "mean"), z=("z", "mean"), subject=("subject", "first"),
                               posture=("activity", "first"), placement=("placement", "first"))
    train, test = w[w.subject <= 7], w[w.subject > 7]  # subject-wise: unseen people
    clf = LinearDiscriminantAnalysis().fit(train[["x", "y", "z", "placement"]], train.posture)
    pred = clf.predict(test[["x", "y", "z", "placement"]])
    acc = (pred == test.posture).mean()
    assert 0.5 < acc < 0.99  # separable, not trivially
    wrong = pred != test.posture
    dist = np.abs(pred[wrong] - test.posture[wrong]) % 12
    assert np.mean((dist == 1) | (dist == 11)) > 0.8  # errors are mostly the adjacent posture


def test_params_are_one_frozen_documented_dataclass():
    p = SleepSimParams()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.range_g = 4.0
    table = p.table()
    assert len(table) == len(dataclasses.fields(p)) and "breathing_tilt_deg" in set(table.parameter)
    assert simulate(1, 1.0, params=p).info["params"] is p
