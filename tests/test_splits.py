"""Protocols, folds, ratios, caps, normalisation and the leakage meter (synthetic windows)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.model_selection import KFold, train_test_split

from smoothdistill_lib.recordings import Recording, make_frame, sessions_from_runs
from smoothdistill_lib.splits import (
    Split,
    Standardizer,
    contiguous_cap,
    leakage,
    paper_split,
    stratified_cap,
    subject_split,
    subsample_ratio,
)
from smoothdistill_lib.windows import make_windows, to_layout


def stacked_recording(n_subjects=4, n_placements=3, acts=(0, 1, 0, 2), run_lens=(250, 330, 180, 410), seed=0):
    """MHEALTH-like: every subject's label sequence repeated at each placement, placements stacked
    (all subjects at placement 0, then at placement 1, ...); random signal."""
    labels = np.repeat(acts, run_lens)
    subj, act, pl = [], [], []
    for p in range(n_placements):
        for s in range(1, n_subjects + 1):
            subj.append(np.full(len(labels), s))
            act.append(labels)
            pl.append(np.full(len(labels), p))
    subj, act, pl = (np.concatenate(a) for a in (subj, act, pl))
    xyz = np.random.default_rng(seed).normal(size=(len(subj), 3)) * [1.0, 2.0, 0.5] + [0.3, -1.0, 9.8]
    frame = make_frame(x=xyz[:, 0], y=xyz[:, 1], z=xyz[:, 2], subject=subj, activity=act, placement=pl,
                       session=sessions_from_runs(subj, pl, act))
    return Recording("stacked", frame, [f"a{i}" for i in range(max(acts) + 1)],
                     [f"p{i}" for i in range(n_placements)], 50.0)


def assert_folds_partition(split: Split):
    train = set(split.train.tolist())
    vals = []
    for fit, val in split.folds:
        assert set(fit.tolist()).isdisjoint(val.tolist())
        assert set(fit.tolist()) | set(val.tolist()) == train
        vals.extend(val.tolist())
    assert sorted(vals) == sorted(train)  # validation parts partition train


# ---------------------------------------------------------------- paper protocol

@pytest.mark.parametrize("n", [10, 101, 1_000, 143_023])
def test_paper_split_sizes_test_is_ceil_of_20_percent(n):
    split = paper_split(n)
    assert len(split.test) == math.ceil(0.2 * n)
    assert len(split.train) == n - math.ceil(0.2 * n)
    assert set(split.train.tolist()).isdisjoint(split.test.tolist())
    assert len(np.union1d(split.train, split.test)) == n
    if n == 143_023:  # the paper's Table 4 totals
        assert (len(split.train), len(split.test)) == (114_418, 28_605)


def test_paper_split_is_the_authors_split_and_folds():
    n = 503
    X = np.random.default_rng(0).normal(size=(n, 4))
    y = np.arange(n)  # labels = window index: the authors' arrays tell us which window went where
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.2, random_state=42)
    split = paper_split(n, seed=42)
    assert np.array_equal(split.train, y_tr) and np.array_equal(split.test, y_te)
    authors = list(KFold(n_splits=5, shuffle=True, random_state=42).split(X_tr))
    assert split.n_folds == 5
    for (fit, val), (a_fit, a_val) in zip(split.folds, authors):
        assert np.array_equal(fit, y_tr[a_fit]) and np.array_equal(val, y_tr[a_val])
    assert_folds_partition(split)
    assert split.protocol == "paper" and split.notes == []


def test_paper_split_seed_changes_the_split_and_tiny_data_is_handled():
    assert not np.array_equal(paper_split(200, seed=1).test, paper_split(200, seed=2).test)
    small = paper_split(4)  # 3 training windows: 3 folds, said in notes
    assert small.n_folds == 3 and "3 folds instead of 5" in small.notes[0]
    assert_folds_partition(small)
    with pytest.raises(ValueError, match="at least 3 windows"):
        paper_split(2)


# ---------------------------------------------------------------- subject protocol

def test_subject_split_holds_out_whole_subjects():
    w = make_windows(stacked_recording(n_subjects=10), stream="session")
    split = subject_split(w, seed=42)
    train_s, test_s = set(w.subject[split.train]), set(w.subject[split.test])
    assert train_s.isdisjoint(test_s)
    assert len(test_s) == math.ceil(0.2 * 10) and len(train_s) == 8
    # all placements of a test subject are in test
    for s in test_s:
        assert set(np.flatnonzero(w.subject == s)) <= set(split.test.tolist())
        assert set(w.placement[w.subject == s]) == {0, 1, 2}
    assert split.n_folds == 5
    assert_folds_partition(split)
    for fit, val in split.folds:  # validation folds grouped by subject
        assert set(w.subject[fit]).isdisjoint(w.subject[val])
    again = subject_split(w, seed=42)
    assert np.array_equal(again.test, split.test)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(again.folds, split.folds))
    tests = {tuple(sorted(set(w.subject[subject_split(w, seed=s).test]))) for s in range(6)}
    assert len(tests) > 1  # the seed picks the test subjects


def test_subject_split_with_few_subjects_uses_fewer_folds_and_says_so():
    w3 = make_windows(stacked_recording(n_subjects=3), stream="session")
    s3 = subject_split(w3, seed=0, n_folds=5)
    assert len(set(w3.subject[s3.test])) == 1 and s3.n_folds == 2
    assert any("2 subject-grouped folds instead of 5" in note for note in s3.notes)
    assert_folds_partition(s3)
    w2 = make_windows(stacked_recording(n_subjects=2), stream="session")
    s2 = subject_split(w2, seed=0)
    assert set(w2.subject[s2.train]).isdisjoint(w2.subject[s2.test])
    assert s2.n_folds == 5 and any("window-wise" in note for note in s2.notes)
    assert_folds_partition(s2)
    w1 = make_windows(stacked_recording(n_subjects=1), stream="session")
    with pytest.raises(ValueError, match="at least 2"):
        subject_split(w1)


# ---------------------------------------------------------------- ratios and caps

@pytest.mark.parametrize("ratio", [0.1, 0.3, 0.5, 0.9, 1.0])
def test_subsample_ratio_by_window(ratio):
    w = make_windows(stacked_recording())
    split = paper_split(w, seed=0)
    fit = split.folds[0][0]
    kept = subsample_ratio(fit, w, ratio, seed=3)
    assert len(kept) == round(ratio * len(fit))
    assert set(kept.tolist()) <= set(fit.tolist())
    pos = {v: i for i, v in enumerate(fit.tolist())}
    assert all(pos[a] < pos[b] for a, b in zip(kept[:-1].tolist(), kept[1:].tolist()))  # order kept
    assert np.array_equal(kept, subsample_ratio(fit, w, ratio, seed=3))
    if ratio < 1:
        assert not np.array_equal(kept, subsample_ratio(fit, w, ratio, seed=4))


def test_subsample_ratio_by_subject_keeps_whole_subjects():
    w = make_windows(stacked_recording(n_subjects=10), stream="session")
    split = subject_split(w, seed=0)
    n_train_subjects = len(set(w.subject[split.train]))
    kept = subsample_ratio(split.train, w, 0.5, seed=1, by="subject")
    chosen = set(w.subject[kept])
    assert len(chosen) == round(0.5 * n_train_subjects)
    expected = split.train[np.isin(w.subject[split.train], list(chosen))]
    assert np.array_equal(kept, expected)  # every window of a kept subject, none of the others
    assert len(set(w.subject[subsample_ratio(split.train, w, 0.01, seed=1, by="subject")])) == 1


def test_subsample_ratio_on_a_split_keeps_test_and_partitions():
    w = make_windows(stacked_recording())
    split = paper_split(w, seed=0)
    small = subsample_ratio(split, w, 0.4, seed=0)
    assert isinstance(small, Split) and np.array_equal(small.test, split.test)
    assert len(small.train) == round(0.4 * len(split.train))
    assert_folds_partition(small)
    assert "training ratio 0.4" in small.notes[-1]
    with pytest.raises(ValueError, match="ratio"):
        subsample_ratio(split, w, 0.0)
    with pytest.raises(ValueError, match="by="):
        subsample_ratio(split, w, 0.5, by="session")


def test_stratified_cap_keeps_class_shares():
    w = make_windows(stacked_recording(n_subjects=6))
    cap = 200
    idx = stratified_cap(w, cap, seed=0)
    assert len(idx) == cap and np.all(np.diff(idx) > 0)
    full = np.bincount(w.y1, minlength=3) / len(w)
    got = np.bincount(w.y1[idx], minlength=3)
    assert np.all(np.abs(got - full * cap) <= 1)
    assert np.array_equal(stratified_cap(w, len(w) + 5, seed=0), np.arange(len(w)))
    assert not np.array_equal(idx, stratified_cap(w, cap, seed=1))


def test_stratified_cap_within_subjects():
    w = make_windows(stacked_recording(n_subjects=6), stream="session")
    cap = 150
    idx = stratified_cap(w, cap, seed=0, by_subject=True)
    assert len(idx) == cap
    share = np.bincount(w.subject, minlength=7)[1:] / len(w)
    got = np.bincount(w.subject[idx], minlength=7)[1:]
    assert np.all(np.abs(got - share * cap) <= 3)  # each subject keeps its share (3 labels per subject)


def test_stratified_cap_survives_a_singleton_class():
    w = make_windows(stacked_recording())
    w.y1[:] = np.where(np.arange(len(w)) == 7, 3, np.minimum(w.y1, 1))  # class 3 has one window
    idx = stratified_cap(w, 40, seed=0)
    assert len(idx) == 40 and len(np.unique(idx)) == 40


# ---------------------------------------------------------------- normalisation

def test_standardizer_fits_on_training_rows_only():
    w = make_windows(stacked_recording())
    split = paper_split(w, seed=0)
    st = Standardizer.fit(w.X, split.train)
    ref = w.X[split.train][:, 0].astype(np.float64)
    assert np.allclose(st.mean, ref.mean(axis=(0, 2))) and np.allclose(st.std, ref.std(axis=(0, 2)))
    poisoned = w.X.copy()
    poisoned[split.test] = 1e6  # test rows are never read
    again = Standardizer.fit(poisoned, split.train)
    assert np.array_equal(again.mean, st.mean) and np.array_equal(again.std, st.std)
    assert st.transform(w.X).dtype == np.float32
    z = st.transform(w.X)[split.train][:, 0].astype(np.float64)
    assert np.allclose(z.mean(axis=(0, 2)), 0, atol=1e-4)
    assert np.allclose(z.std(axis=(0, 2)), 1, atol=1e-4)


def test_standardizer_is_layout_aware():
    w = make_windows(stacked_recording())
    train = np.arange(0, len(w), 2)
    ax = Standardizer.fit(w.X, train, layout="axes")
    Xf = to_layout(w.X, "axes", "faithful")
    fa = Standardizer.fit(Xf, train, layout="faithful")
    assert np.allclose(ax.mean, fa.mean) and np.allclose(ax.std, fa.std)
    assert np.allclose(to_layout(fa.transform(Xf), "faithful", "axes"), ax.transform(w.X), atol=1e-5)
    assert np.array_equal(Standardizer.identity().transform(w.X), w.X)
    const = np.ones((4, 1, 3, 10), dtype=np.float32)
    assert np.array_equal(Standardizer.fit(const).std, np.ones(3))  # constant axis: scale left alone
    json.dumps(ax.to_dict())


# ---------------------------------------------------------------- leakage meter

def one_stream_windows(n=3000, step=60):
    t = np.arange(n)
    frame = make_frame(x=t, y=t, z=t, subject=np.ones(n), activity=np.zeros(n), placement=np.zeros(n),
                       session=np.zeros(n))
    return make_windows(Recording("one", frame, ["a"], ["p"], 50.0), step=step)


def test_leakage_interleaved_split_shares_every_test_window():
    w = one_stream_windows(step=60)
    idx = np.arange(len(w))
    split = Split(idx[0::2], idx[1::2], [], "paper", 0)
    m = leakage(w, split)
    assert m["shared_samples_fraction"] == 1.0 and m["shared_samples_count"] == len(idx[1::2])
    assert m["subject_in_train_fraction"] == 1.0
    assert m["same_moment_other_placement_count"] == 0  # one placement only
    w100 = one_stream_windows(step=100)  # no overlap between windows
    idx = np.arange(len(w100))
    m100 = leakage(w100, Split(idx[0::2], idx[1::2], [], "paper", 0))
    assert m100["shared_samples_count"] == 0 and m100["n_test"] == len(idx[1::2])


def test_leakage_contiguous_test_block_leaks_only_at_its_edges():
    w = one_stream_windows(step=60)
    idx = np.arange(len(w))
    test = idx[10:21]
    m = leakage(w, Split(np.setdiff1d(idx, test), test, [], "paper", 0))
    assert m["shared_samples_count"] == 2  # windows 10 and 20 overlap windows 9 and 21
    assert m["shared_samples_fraction"] == pytest.approx(2 / 11)


def test_leakage_subject_split_has_no_subject_overlap_and_paper_split_does():
    w = make_windows(stacked_recording(n_subjects=5), stream="session")
    m = leakage(w, subject_split(w, seed=0))
    assert m["subject_in_train_count"] == 0 and m["same_moment_other_placement_count"] == 0
    assert m["shared_samples_count"] == 0
    mp = leakage(w, paper_split(w, seed=0))
    assert mp["subject_in_train_fraction"] == 1.0 and mp["same_moment_other_placement_fraction"] > 0.9


def test_leakage_same_moment_other_placement():
    w = make_windows(stacked_recording(n_subjects=2, n_placements=2), stream="session")
    s1p1 = np.flatnonzero((w.subject == 1) & (w.placement == 1))
    s1p0 = np.flatnonzero((w.subject == 1) & (w.placement == 0))
    s2p0 = np.flatnonzero((w.subject == 2) & (w.placement == 0))
    full = leakage(w, Split(s1p0, s1p1, [], "subject", 0))
    assert full["same_moment_other_placement_fraction"] == 1.0  # simultaneous rows
    assert full["shared_samples_count"] == 0  # different stream rows
    other = leakage(w, Split(s2p0, s1p1, [], "subject", 0))
    assert other["same_moment_other_placement_count"] == 0 and other["subject_in_train_count"] == 0
    # training on the first window of each run at placement 0 covers exactly the test windows at
    # placement 1 that overlap it in time: the first two of each run (starts 0 and 60 < 100)
    first = s1p0[np.r_[True, np.diff(w.start[s1p0]) != 60]]
    part = leakage(w, Split(first, s1p1, [], "subject", 0))
    n_runs = len(first)
    assert part["same_moment_other_placement_count"] == 2 * n_runs


def brute_force(w, train, test):
    """O(N^2) reference of the meter's three definitions."""
    runs = w.sessions
    rs = runs["start"].to_numpy()

    def moment(i):
        r = np.searchsorted(rs, w.start[i] + w.length - 1, side="right") - 1
        n = runs["n_samples"].iloc[r]
        key = (runs["subject"].iloc[r], runs["activity"].iloc[r], runs["occurrence"].iloc[r])
        return key, runs["placement"].iloc[r], (w.start[i] - rs[r]) / n, (w.start[i] + w.length - rs[r]) / n

    tm = [moment(j) for j in train]
    shared = subject = same = 0
    for i in test:
        shared += any(abs(int(w.start[i]) - int(w.start[j])) < w.length for j in train)
        subject += w.subject[i] in set(w.subject[train])
        k, p, a, b = moment(i)
        same += any(k2 == k and p2 != p and a2 < b and b2 > a for k2, p2, a2, b2 in tm)
    return shared, subject, same


@pytest.mark.parametrize("stream", ["paper", "session"])
def test_leakage_matches_a_brute_force_reference(stream):
    rng = np.random.default_rng(5)
    rec = stacked_recording(n_subjects=3, n_placements=3, acts=(0, 1, 0, 2, 1),
                            run_lens=(130, 260, 175, 90, 310), seed=1)
    w = make_windows(rec, stream=stream, step=85)
    perm = rng.permutation(len(w))
    test, train = perm[: len(w) // 2], perm[len(w) // 2 :]
    # subject 2 only in test; subject 3 has no training windows at placement 2
    train = train[(w.subject[train] != 2) & ~((w.subject[train] == 3) & (w.placement[train] == 2))]
    m = leakage(w, Split(train, test, [], "paper", 0))
    shared, subject, same = brute_force(w, train, test)
    assert (m["shared_samples_count"], m["subject_in_train_count"], m["same_moment_other_placement_count"]) \
        == (shared, subject, same)
    assert all(0 < c < len(test) for c in (shared, subject, same))


def test_leakage_of_a_random_paper_split_is_about_96_percent_shared():
    # a test window escapes only if both neighbours are in test too: about 1 - 0.2**2
    w = one_stream_windows(n=300_000)
    m = leakage(w, paper_split(w, seed=0))
    assert 0.94 < m["shared_samples_fraction"] < 0.98
    assert set(m) >= {"n_train", "n_test", "any_count", "any_fraction"}
    assert m["any_count"] == m["n_test"]
    json.dumps(m)


def test_contiguous_cap_keeps_session_shares_and_neighbours():
    w = make_windows(stacked_recording(n_subjects=6))
    cap = 200
    idx = contiguous_cap(w, cap, seed=0)
    assert len(idx) == cap and np.all(np.diff(idx) > 0)
    sess, counts = np.unique(w.session, return_counts=True)
    kept = np.array([np.sum(w.session[idx] == s) for s in sess])
    assert np.all(np.abs(kept - counts * cap / len(w)) < 1 + 1e-9)  # every session keeps its share
    for s in sess:  # ... as one contiguous run of consecutive windows
        members = np.flatnonzero(w.session == s)
        pos = np.searchsorted(members, idx[w.session[idx] == s])
        assert len(pos) == 0 or np.all(np.diff(pos) == 1)
    assert np.array_equal(contiguous_cap(w, len(w), seed=0), np.arange(len(w)))
    assert not np.array_equal(idx, contiguous_cap(w, cap, seed=1))


def test_contiguous_cap_keeps_overlap_leakage_that_random_capping_hides():
    w = make_windows(stacked_recording(n_subjects=3, run_lens=(3000, 3000, 3000, 3000)))
    cap = len(w) // 4
    shared = {}
    for name, idx in {"contiguous": contiguous_cap(w, cap, 0), "random": stratified_cap(w, cap, 0)}.items():
        sub = w.subset(idx)
        shared[name] = leakage(sub, paper_split(sub, seed=0))["shared_samples_fraction"]
    assert shared["contiguous"] > 0.5 and shared["contiguous"] > 1.5 * shared["random"]


def test_subject_test_folds_partition_the_subjects():
    """test_fold k of K: subject-wise K-fold cross-validation (every subject held out exactly once)."""
    w = make_windows(stacked_recording(n_subjects=7), length=100, step=60, stream="session", label_rule="majority")
    held = []
    for k in range(3):
        split = subject_split(w, seed=5, test_fold=k, n_test_folds=3)
        test_subjects = set(np.unique(w.subject[split.test]).tolist())
        assert test_subjects.isdisjoint(np.unique(w.subject[split.train]).tolist())
        assert f"subject group {k} of 3 held out" in " ".join(split.notes)
        assert_folds_partition(split)
        held.append(test_subjects)
    assert sorted(s for h in held for s in h) == list(range(1, 8))
    # the same seed gives the same groups: the folds of one grid partition one set of subjects
    again = subject_split(w, seed=5, test_fold=1, n_test_folds=3)
    assert set(np.unique(w.subject[again.test]).tolist()) == held[1]


@pytest.mark.parametrize("kw, message", [
    ({"test_fold": 3, "n_test_folds": 3}, "test_fold=3 must be an integer from 0 to 2"),
    ({"test_fold": 0, "n_test_folds": 9}, "n_test_folds=9 must be an integer from 2 to the 7 subjects"),
    ({"test_fold": 0, "test_subjects": [1]}, "test_subjects or test_fold, not both"),
])
def test_bad_subject_test_fold_is_one_clear_line(kw, message):
    w = make_windows(stacked_recording(n_subjects=7), length=100, step=60, stream="session", label_rule="majority")
    with pytest.raises(ValueError, match=message):
        subject_split(w, **kw)
