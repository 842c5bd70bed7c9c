"""Sliding windows: counts, boundaries, label rules, layouts (synthetic Recordings; one real-data test)."""

from __future__ import annotations

import numpy as np
import pytest

from smoothdistill_lib import mhealth, wisdm
from smoothdistill_lib.recordings import Recording, make_frame, sessions_from_runs
from smoothdistill_lib.windows import Windows, make_windows, to_layout, window_starts

# documented row totals of the full archives (data README), as the library records them
WISDM_ROWS = sum(wisdm.DOCUMENTED_ROWS.values())
MHEALTH_ROWS = 3 * mhealth.DOCUMENTED_ROWS


def recording(subject, activity, placement, xyz=None, name="synthetic") -> Recording:
    """A Recording from per-sample label arrays; x = stream index, y = x + 0.25, z = x + 0.5 unless given."""
    subject, activity, placement = (np.asarray(a) for a in (subject, activity, placement))
    n = len(subject)
    if xyz is None:
        t = np.arange(n, dtype=np.float64)
        xyz = np.stack([t, t + 0.25, t + 0.5], axis=1)
    frame = make_frame(x=xyz[:, 0], y=xyz[:, 1], z=xyz[:, 2], subject=subject, activity=activity,
                       placement=placement, session=sessions_from_runs(subject, placement, activity))
    n_act = int(activity.max()) + 1
    n_pl = int(placement.max()) + 1
    return Recording(name, frame, [f"act{i}" for i in range(n_act)], [f"pl{i}" for i in range(n_pl)], 50.0)


def test_window_starts_reproduce_the_papers_totals():
    # the paper's WISDM and MHEALTH totals from the documented row counts of one concatenated stream
    assert len(window_starts(WISDM_ROWS, 100, 60)) == 143_023
    assert len(window_starts(MHEALTH_ROWS, 100, 60)) == 60_786
    # the library's one home for that count (verdicts, exercises, chapter 8) is the same number
    assert len(window_starts(sum(wisdm.DOCUMENTED_ROWS.values()), 100, 60)) == wisdm.PAPER_WINDOWS
    s = window_starts(WISDM_ROWS, 100, 60)
    assert s[0] == 0 and np.all(np.diff(s) == 60)
    assert s[-1] + 100 <= WISDM_ROWS < s[-1] + 60 + 100  # the last window is the last that fits


@pytest.mark.parametrize("n", [99, 100, 159, 160, 161, 1000, 12_345])
def test_window_starts_count_formula(n):
    expected = (n - 100) // 60 + 1 if n >= 100 else 0
    s = window_starts(n, 100, 60)
    assert len(s) == expected
    assert np.array_equal(s, np.arange(0, n - 100 + 1, 60))


def test_window_starts_restart_per_segment_and_never_cross():
    seg = np.array([0, 250, 330, 600])  # lengths 250, 80 (too short), 270, 150 (n = 750)
    s = window_starts(750, 100, 60, seg)
    assert s.tolist() == [0, 60, 120, 330, 390, 450, 600]
    bounds = np.append(seg, 750)
    k = np.searchsorted(bounds, s, side="right") - 1
    assert np.all(s + 100 <= bounds[k + 1])  # every window ends inside its own segment


def test_window_starts_rejects_bad_arguments():
    with pytest.raises(ValueError, match="length and step"):
        window_starts(1000, 100, 0)
    with pytest.raises(ValueError, match="segment_starts"):
        window_starts(1000, 100, 60, [10, 20])


def test_make_windows_paper_stream_on_real_arrays():
    n = 1000
    rec = recording(np.repeat([1, 2], 500), np.repeat([0, 1, 2, 3], 250), np.zeros(n))
    w = make_windows(rec)
    assert isinstance(w, Windows)
    assert len(w) == (n - 100) // 60 + 1 == 16
    assert np.array_equal(w.start, window_starts(n, 100, 60))
    assert w.X.shape == (16, 1, 3, 100) and w.X.dtype == np.float32
    assert w.y1.dtype == np.int64 and w.y2.dtype == np.int64
    for k in (0, 7, 15):
        s = w.start[k]
        assert np.array_equal(w.X[k, 0, 0], np.arange(s, s + 100, dtype=np.float32))  # row 0 = x axis
        assert np.array_equal(w.X[k, 0, 2], np.arange(s, s + 100, dtype=np.float32) + 0.5)  # row 2 = z
    # window 8 (samples 480..579) straddles subjects 1|2 and activities 1|2: it takes its last sample's
    assert w.start[8] == 480 and w.subject[8] == 2 and w.y1[8] == 2
    assert w.session[8] == rec.frame["session"].iloc[579]
    assert (w.length, w.step, w.stream, w.label_rule, w.layout) == (100, 60, "paper", "last", "axes")
    assert w.dataset == "synthetic" and w.n_classes == (4, 1)


def test_make_windows_full_mhealth_sized_stream():
    # a real (zero-signal) stream of the full MHEALTH row total gives the paper's 60,786 windows
    n = MHEALTH_ROWS
    placement = np.repeat(np.arange(3), n // 3)
    rec = recording(np.ones(n), np.zeros(n), placement, xyz=np.zeros((n, 3), dtype=np.float32))
    w = make_windows(rec)
    assert len(w) == 60_786 and w.X.shape == (60_786, 1, 3, 100)
    assert w.start[-1] == 60 * (60_786 - 1)


def test_session_stream_never_crosses_a_boundary():
    rng = np.random.default_rng(0)
    # runs of random lengths (some shorter than a window), subjects and placements change between runs
    lens = rng.integers(30, 400, size=40)
    subj = np.repeat(rng.integers(1, 5, size=40), lens)
    act = np.repeat(rng.integers(0, 6, size=40), lens)
    pl = np.repeat(rng.integers(0, 3, size=40), lens)
    rec = recording(subj, act, pl)
    w = make_windows(rec, stream="session")
    f = rec.frame
    for col, arr in (("subject", subj), ("placement", pl), ("session", f["session"].to_numpy())):
        span = np.stack([arr[s : s + 100] for s in w.start])
        assert np.all(span == span[:, -1:]), col  # every sample of each window in one run
    run_ids = sessions_from_runs(subj, pl, f["session"].to_numpy())
    run_len = np.bincount(run_ids)
    assert len(w) == int(np.sum(np.where(run_len >= 100, (run_len - 100) // 60 + 1, 0)))
    # windows restart at every run start
    run_start = np.flatnonzero(np.r_[True, run_ids[1:] != run_ids[:-1]])
    long_runs = run_start[run_len >= 100]
    assert np.all(np.isin(long_runs, w.start))
    # the paper stream of the same recording has more windows (it crosses boundaries)
    assert len(make_windows(rec, stream="paper")) == (len(subj) - 100) // 60 + 1 > len(w)


def test_label_rules_last_versus_majority():
    # window 0 = samples 0..99: 70 of activity 1, then 30 of activity 0 -> last 0, majority 1
    act = np.r_[np.ones(70), np.zeros(130)].astype(int)
    pl = np.r_[np.zeros(60), np.ones(140)].astype(int)  # 60 of placement 0, then 40 of 1: last 1, majority 0
    rec = recording(np.ones(200), act, pl)
    last = make_windows(rec, label_rule="last")
    major = make_windows(rec, label_rule="majority")
    assert last.y1[0] == 0 and major.y1[0] == 1
    assert last.y2[0] == 1 and major.y2[0] == 0
    # window 1 = samples 60..159: 10 of activity 1 then 90 of 0 -> both rules say 0
    assert last.y1[1] == 0 and major.y1[1] == 0


def test_majority_ties_prefer_the_last_sample_then_the_smallest_id():
    # (a) 50/50: the last sample's label wins; (b) 40/40 tie, last sample (20 of label 2) not tied: smallest id
    act_a = np.r_[np.full(50, 2), np.full(50, 1)]  # tie 2 vs 1, last = 1 -> 1
    act_b = np.r_[np.full(40, 3), np.full(40, 1), np.full(20, 2)]  # tie 3 vs 1, last = 2 -> smallest, 1
    for act, expected in ((act_a, 1), (act_b, 1)):
        w = make_windows(recording(np.ones(100), act, np.zeros(100)), label_rule="majority")
        assert len(w) == 1 and w.y1[0] == expected


def test_majority_matches_a_per_window_reference():
    rng = np.random.default_rng(1)
    act = np.repeat(rng.integers(0, 5, size=300), rng.integers(5, 60, size=300))
    w = make_windows(recording(np.ones(len(act)), act, np.zeros(len(act))), label_rule="majority")
    for k in range(0, len(w), 7):
        seg = act[w.start[k] : w.start[k] + 100]
        counts = np.bincount(seg, minlength=5)
        winners = np.flatnonzero(counts == counts.max())
        expected = seg[-1] if seg[-1] in winners else winners[0]
        assert w.y1[k] == expected


def test_faithful_layout_is_the_authors_reshape():
    n = 400
    rec = recording(np.ones(n), np.zeros(n), np.zeros(n))
    fa = make_windows(rec, layout="faithful")
    ax = make_windows(rec, layout="axes")
    xyz = rec.signal
    # row 0 = x0, y0, z0, x1, ... : the first 100 interleaved values (reference notes §1.2)
    assert np.array_equal(fa.X[0, 0, 0], xyz[:100].reshape(-1)[:100])
    assert fa.X[0, 0, 0, :4].tolist() == [0.0, 0.25, 0.5, 1.0]
    # the authors' code: windows (N, L, 3) reshaped without transpose
    authors = np.stack([xyz[s : s + 100] for s in ax.start]).reshape(-1, 1, 3, 100)
    assert np.array_equal(fa.X, authors)
    assert np.array_equal(ax.X, np.stack([xyz[s : s + 100].T for s in ax.start])[:, None])
    assert np.array_equal(to_layout(ax.X, "axes", "faithful"), fa.X)
    assert np.array_equal(to_layout(fa.X, "faithful", "axes"), ax.X)
    assert to_layout(ax.X, "axes", "axes") is ax.X


def test_to_layout_on_torch_tensors_matches_numpy():
    torch = pytest.importorskip("torch")
    X = np.random.default_rng(2).normal(size=(5, 1, 3, 20)).astype(np.float32)
    for src, dst in (("axes", "faithful"), ("faithful", "axes")):
        out = to_layout(torch.from_numpy(X), src, dst)
        assert isinstance(out, torch.Tensor) and out.is_contiguous()
        assert np.array_equal(out.numpy(), to_layout(X, src, dst))


def test_bad_arguments_raise_clear_errors():
    rec = recording(np.ones(300), np.zeros(300), np.zeros(300))
    with pytest.raises(ValueError, match="stream="):
        make_windows(rec, stream="files")
    with pytest.raises(ValueError, match="label_rule="):
        make_windows(rec, label_rule="first")
    with pytest.raises(ValueError, match="layout="):
        make_windows(rec, layout="transposed")
    with pytest.raises(ValueError, match="no window of length 500"):
        make_windows(rec, length=500)
    with pytest.raises(ValueError, match=r"\(N, 1, C, L\)"):
        to_layout(np.zeros((2, 3, 100)), "axes", "faithful")


def test_subset_and_class_counts():
    n = 1000
    rec = recording(np.repeat([1, 2], 500), np.repeat([0, 1, 2, 3], 250), np.zeros(n))
    w = make_windows(rec)
    counts = w.class_counts(1)
    assert list(counts) == ["act0", "act1", "act2", "act3"] and sum(counts.values()) == len(w)
    assert counts == {f"act{i}": int(np.sum(w.y1 == i)) for i in range(4)}
    sub = w.subset([3, 1])
    assert len(sub) == 2 and sub.start.tolist() == [180, 60] and np.array_equal(sub.X[0], w.X[3])
    assert sub.activity_names == w.activity_names and sub.sessions is w.sessions


def test_sessions_table_pairs_runs_across_placements():
    # MHEALTH-like: placement 0 rows then placement 1 rows with the same label sequence
    act = np.r_[np.zeros(200), np.ones(300), np.zeros(200)].astype(int)
    rec = recording(np.ones(1400), np.r_[act, act], np.repeat([0, 1], 700))
    runs = make_windows(rec).sessions
    assert runs["start"].tolist() == [0, 200, 500, 700, 900, 1200]
    assert runs["n_samples"].tolist() == [200, 300, 200] * 2
    assert runs["occurrence"].tolist() == [0, 0, 1, 0, 0, 1]  # 2nd run of activity 0 -> occurrence 1


@pytest.mark.realdata
def test_real_wisdm_window_count_from_line_counts(real_data_dir):
    wisdm = pytest.importorskip("smoothdistill_lib.wisdm")
    raw = real_data_dir / "wisdm-dataset" / "raw"
    files = [raw / "phone" / "accel" / "data_1600_accel_phone.txt",
             raw / "watch" / "accel" / "data_1600_accel_watch.txt"]
    rows = sum(sum(1 for line in p.open() if line.strip()) for p in files)  # wc -l (no blank lines)
    rec = wisdm.load(real_data_dir, subjects=[1600])
    assert len(rec) == rows
    w = make_windows(rec)
    assert len(w) == (rows - 100) // 60 + 1
    # the phone file comes first in the stream, then the watch file
    assert w.placement[0] == rec.placement_names.index("phone")
    assert w.placement[-1] == rec.placement_names.index("watch")
