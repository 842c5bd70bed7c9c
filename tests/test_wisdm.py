"""WISDM loader: fixtures in the exact raw format, every error path, the cache (outside the data
folder), the incomplete-folder warning, a read-only data folder, and the real subset."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from smoothdistill_lib import wisdm
from smoothdistill_lib.errors import IncompleteDataWarning
from tests.rawfixtures import expected_wisdm_stream, write_wisdm_file, write_wisdm_tree


@pytest.fixture
def tree(tmp_path):
    written = write_wisdm_tree(tmp_path)
    return tmp_path, written


def test_load_matches_written_rows_in_stream_order(tree):
    root, written = tree
    rec = wisdm.load(root, cache=False)
    exp = expected_wisdm_stream(written)
    f = rec.frame
    assert len(rec) == len(exp) == 5 * 90
    np.testing.assert_array_equal(f.x.to_numpy(), exp.x.to_numpy(np.float32))
    np.testing.assert_array_equal(f.z.to_numpy(), exp.z.to_numpy(np.float32))
    np.testing.assert_array_equal(f.subject.to_numpy(), exp.subject.to_numpy())
    np.testing.assert_array_equal(f.activity.to_numpy(), [wisdm.ACTIVITY_CODES.index(c) for c in exp.activity])
    assert f.placement.tolist() == [wisdm.PLACEMENT_NAMES.index(p) for p in exp.placement]
    # phone 1700, phone 1701, then watch 1700, 1701, 1702
    blocks = f.groupby("session", sort=False)[["subject", "placement"]].first()
    assert blocks.drop_duplicates().values.tolist() == [[1700, 0], [1701, 0], [1700, 1], [1701, 1], [1702, 1]]
    assert rec.activity_names[:3] == ["walking", "jogging", "stairs"] and len(rec.activity_names) == 18
    assert rec.placement_names == ["phone", "watch"]
    assert rec.frame.dtypes.astype(str).tolist() == ["float32"] * 3 + ["int32", "int16", "int8", "int32"]


def test_sessions_change_at_every_file_and_activity(tree):
    root, _ = tree
    rec = wisdm.load(root, cache=False)
    s = rec.frame.session.to_numpy()
    assert s[0] == 0 and np.all(np.diff(s) >= 0) and s[-1] == 14  # 5 files x 3 activities
    table = rec.info["sessions"]
    assert table.n_samples.tolist() == [30] * 15
    assert table.activity.tolist()[:3] == ["walking", "jogging", "stairs"]
    assert table.file.iloc[0] == "data_1700_accel_phone.txt" and table.file.iloc[-1] == "data_1702_accel_watch.txt"
    np.testing.assert_allclose(table.rate_hz, 20.0, atol=0.01)


def test_order_is_sorted_names_not_creation_order(tmp_path):
    for s in (1703, 1700, 1702):  # created out of order
        write_wisdm_file(tmp_path, s, "watch")
    write_wisdm_file(tmp_path, 1701, "phone")
    rec = wisdm.load(tmp_path, cache=False)
    order = rec.info["sessions"].drop_duplicates("file").file.tolist()
    assert order == ["data_1701_accel_phone.txt", "data_1700_accel_watch.txt", "data_1702_accel_watch.txt",
                     "data_1703_accel_watch.txt"]


def test_session_rates_are_measured_and_not_resampled_by_default(tmp_path):
    blocks = [("A", 40, 20.0), ("B", 50, 25.0), ("C", 100, 50.0), ("D", 200, 100.0)]
    write_wisdm_file(tmp_path, 1700, "phone", blocks)
    rec = wisdm.load(tmp_path, cache=False)
    t = rec.info["sessions"]
    assert len(rec) == 390 and rec.sampling_rate_hz == 20.0
    np.testing.assert_allclose(t.rate_hz, [20, 25, 50, 100], rtol=1e-3)
    assert t.nominal_hz.tolist() == [20.0, 25.0, 50.0, 100.0]
    np.testing.assert_allclose(t.duration_s, 2.0)


def test_resample_brings_every_session_to_one_rate(tmp_path):
    blocks = [("A", 40, 20.0), ("B", 50, 25.0), ("C", 100, 50.0), ("D", 200, 100.0)]
    write_wisdm_file(tmp_path, 1700, "phone", blocks)
    rec = wisdm.load(tmp_path, cache=False, resample_hz=20)
    assert rec.sampling_rate_hz == 20.0
    assert rec.info["sessions"].n_samples.tolist() == [40, 40, 40, 40]
    assert rec.frame.groupby("session").activity.first().tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="resample_hz"):
        wisdm.load(tmp_path, cache=False, resample_hz=0)


def test_files_lacking_activities_and_unterminated_last_line(tmp_path):
    path, rows = write_wisdm_file(tmp_path, 1700, "phone", [("S", 5, 20.0), ("A", 5, 20.0)])
    path.write_text(path.read_text().rstrip("\n"))  # no final newline
    rec = wisdm.load(tmp_path, cache=False)
    assert rec.frame.activity.tolist() == [17] * 5 + [0] * 5
    np.testing.assert_array_equal(rec.frame.y.to_numpy(), rows.y.to_numpy(np.float32))


def test_select_subjects_and_placements(tree):
    root, _ = tree
    rec = wisdm.load(root, subjects=[1701], cache=False)
    assert set(rec.frame.subject) == {1701} and set(rec.frame.placement) == {0, 1}
    rec = wisdm.load(root, subjects=[1702], placements=["watch"], cache=False)
    assert set(rec.frame.placement) == {1} and rec.placement_names == ["phone", "watch"]


def test_missing_subject_lists_the_missing_files(tree):
    root, _ = tree
    with pytest.raises(FileNotFoundError) as e:
        wisdm.load(root, subjects=[1702, 1999], cache=False)
    msg = str(e.value)
    assert "data_1702_accel_phone.txt" in msg and "data_1999_accel_phone.txt" in msg
    assert "data_1999_accel_watch.txt" in msg and "data_1702_accel_watch.txt" not in msg


def test_no_files_at_all(tmp_path):
    with pytest.raises(FileNotFoundError, match="no raw accel files"):
        wisdm.load(tmp_path, cache=False)
    with pytest.raises(ValueError, match="unknown WISDM placement"):
        wisdm.load(tmp_path, placements=["wrist"], cache=False)


GOOD = "1700,A,1000,1.0,2.0,3.0;\n"


@pytest.mark.parametrize(
    "bad, what",
    [
        ("1700,A,1000,1.0,2.0;\n", "expected 6 fields"),
        ("1700,A,1000,1.0,2.0,3.0,4.0;\n", "expected 6 fields"),
        ("1700,A,1000,1.0,,3.0;\n", "does not parse"),
        ("1700,A,1000,1.0,abc,3.0;\n", "does not parse"),
        ("1700,A,1000,1.0;2.0,3.0;\n", "expected 6 fields"),
        ("1700,A,10.5,1.0,2.0,3.0;\n", "does not parse"),
        ("1700,A,1000,1.0,2.0,nan;\n", "non-finite"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, bad, what):
    path, _ = write_wisdm_file(tmp_path, 1700, "phone", text=GOOD * 4 + bad + GOOD)
    with pytest.raises(ValueError) as e:
        wisdm.load(tmp_path, cache=False)
    assert str(path) in str(e.value) and "line 5" in str(e.value) and what in str(e.value)


def test_unknown_activity_code_is_named(tmp_path):
    path, _ = write_wisdm_file(tmp_path, 1700, "watch", text=GOOD * 2 + GOOD.replace(",A,", ",N,"))
    with pytest.raises(ValueError) as e:
        wisdm.load(tmp_path, cache=False)
    assert "'N'" in str(e.value) and "line 3" in str(e.value) and path.name in str(e.value)


def test_subject_differing_from_file_name(tmp_path):
    write_wisdm_file(tmp_path, 1700, "phone", text=GOOD + GOOD.replace("1700", "1701"))
    with pytest.raises(ValueError, match="line 2: subject 1701 differs"):
        wisdm.load(tmp_path, cache=False)


def test_empty_file(tmp_path):
    write_wisdm_file(tmp_path, 1700, "phone", text="")
    with pytest.raises(ValueError, match="empty file"):
        wisdm.load(tmp_path, cache=False)


def test_pandas_fallback_without_pyarrow(tree, monkeypatch):
    root, written = tree
    fast = wisdm.load(root, cache=False).frame
    monkeypatch.setattr(wisdm, "_pyarrow_csv", lambda: None)  # as if pyarrow were not installed
    slow = wisdm.load(root, cache=False).frame
    assert fast.equals(slow)
    write_wisdm_file(root, 1700, "phone", text=GOOD + "1700,A,1000,1.0,2.0;\n")
    with pytest.raises(ValueError, match="line 2"):
        wisdm.load(root, cache=False)


# ----------------------------------------------------------------------------------------------
# cache


def test_cache_is_used_then_rebuilt_when_a_source_changes(tree, monkeypatch):
    root, _ = tree
    first = wisdm.load(root)
    cdir = wisdm.cache_dir()
    assert cdir == Path(os.environ["SMOOTHDISTILL_CACHE"]) / "wisdm"  # the cache folder, not the data's
    cached = sorted(cdir.rglob("*.npz"))
    assert len(cached) == 5
    real_read = wisdm.read_file

    def must_not_parse(path):
        raise AssertionError(f"parsed {path} although cached")

    monkeypatch.setattr(wisdm, "read_file", must_not_parse)
    assert wisdm.load(root).frame.equals(first.frame)
    # change one source: its cache entry is rebuilt (and the stale one removed), the others reused
    parsed = []
    monkeypatch.setattr(wisdm, "read_file", lambda p: parsed.append(p.name) or real_read(p))
    path, rows = write_wisdm_file(root, 1701, "phone", [("B", 7, 20.0)], seed=5)
    os.utime(path, ns=(1, 1))  # a different mtime even on coarse-clock filesystems
    rec = wisdm.load(root)
    assert parsed == ["data_1701_accel_phone.txt"]
    assert len(sorted(cdir.rglob("*.npz"))) == 5
    np.testing.assert_array_equal(rec.frame[rec.frame.subject.eq(1701) & rec.frame.placement.eq(0)].x,
                                  rows.x.to_numpy(np.float32))


def test_a_file_edited_with_its_size_and_mtime_restored_is_parsed_again(tree):
    """The parse cache is keyed by one stat, not by content (a full hash costs three times the cached
    read: benchmarks/bench_cache_key.py). Size and mtime alone served a raw file edited to hold 1e39,
    with both put back, from the stale cache; the ctime in the key (set by the kernel on every write,
    and by the very utime that restores the mtime) makes the load parse it again and refuse the value."""
    import time

    root, _ = tree
    wisdm.load(root)
    path = root / "wisdm-dataset" / "raw" / "phone" / "accel" / "data_1700_accel_phone.txt"
    before = path.stat()
    lines = path.read_text().splitlines(keepends=True)
    fields = lines[1].split(",")
    x = fields[3]
    assert len(x) >= 7
    fields[3] = f"{1e39:.{len(x) - 6}e}"  # same length: 1e39 is finite in float64, inf in float32
    lines[1] = ",".join(fields)
    time.sleep(0.05)  # past a coarse filesystem clock's tick since the file was written
    path.write_text("".join(lines))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert after.st_ctime_ns != before.st_ctime_ns
    with pytest.raises(ValueError) as e:
        wisdm.load(root)
    assert str(path) in str(e.value) and "line 2" in str(e.value) and "float32" in str(e.value)


def test_cache_keeps_two_copies_of_a_file_apart_and_clears_per_root(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_wisdm_tree(a, {1700: ("phone",)}, seed=1)
    write_wisdm_tree(b, {1700: ("phone",)}, seed=2)  # same name and size class, other values
    ra, rb = wisdm.load(a), wisdm.load(b)
    assert not np.array_equal(ra.frame.x, rb.frame.x)
    assert wisdm.load(a).frame.equals(ra.frame) and wisdm.load(b).frame.equals(rb.frame)
    assert len(list(wisdm.cache_dir().rglob("*.npz"))) == 2
    wisdm.clear_cache(a)
    assert len(list(wisdm.cache_dir().rglob("*.npz"))) == 1
    wisdm.clear_cache()
    assert not wisdm.cache_dir().exists()


def test_damaged_cache_file_is_rebuilt(tree):
    root, _ = tree
    first = wisdm.load(root)
    for p in wisdm.cache_dir().rglob("*.npz"):
        p.write_bytes(b"garbage")
    assert wisdm.load(root).frame.equals(first.frame)


def test_no_cache_writes_nothing(tree):
    root, _ = tree
    wisdm.load(root, cache=False)
    assert not wisdm.cache_dir().exists()


def test_unwritable_cache_folder_warns_and_still_loads(tree, tmp_path, monkeypatch):
    root, written = tree
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("x")
    monkeypatch.setenv("SMOOTHDISTILL_CACHE", str(blocker / "cache"))  # cannot be created, even by root
    with pytest.warns(UserWarning, match="could not write WISDM cache file"):
        rec = wisdm.load(root)
    assert len(rec) == len(expected_wisdm_stream(written))


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``folder`` with its size and mtime: what "nothing was written" is checked by
    (tests run as root, for whom a read-only mode does not stop writes)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


def test_loaders_only_read_a_read_only_data_folder(tmp_path):
    from smoothdistill_lib import download as dl
    from smoothdistill_lib import mhealth, sleep
    from tests.rawfixtures import write_mhealth_tree, write_sleep_tree

    data = tmp_path / "data"
    written = write_wisdm_tree(data)
    write_mhealth_tree(data, subjects=(1, 2))
    write_sleep_tree(data / "sleep", subjects=(1,), n=3)
    os.system(f"chmod -R a-w {data}")
    before = _snapshot(data)
    try:
        rec = wisdm.load(data)  # parses and writes the cache
        assert wisdm.load(data).frame.equals(rec.frame)  # reads the cache
        assert len(rec) == len(expected_wisdm_stream(written))
        assert len(list(wisdm.cache_dir().rglob("*.npz"))) == 5
        assert len(mhealth.load(data)) == 3 * 2 * 160
        assert len(sleep.load(data)) == 36 * 3
        assert dl.prepare_wisdm(data, download=False, verify=True) == data  # present: checked, only read
        assert dl.prepare_mhealth(data, download=False) == data
        assert _snapshot(data) == before  # no file created, removed or modified
    finally:
        os.system(f"chmod -R u+w {data}")


def test_value_that_overflows_float32_names_file_and_line(tmp_path):
    # 1.00e+39 is a finite float64 but inf in float32, the dtype the model trains in
    path, _ = write_wisdm_file(tmp_path, 1700, "phone", text=GOOD * 4 + "1700,A,1000,1.0,1.00e+39,3.0;\n" + GOOD)
    with pytest.raises(ValueError) as e:
        wisdm.load(tmp_path, cache=False)
    msg = str(e.value)
    assert str(path) in msg and "line 5" in msg and "float32" in msg and "inf" in msg
    # the largest float32 itself is fine
    write_wisdm_file(tmp_path, 1700, "phone", text=GOOD + "1700,A,1001,3.4028235e38,-3.4028235e38,0;\n")
    rec = wisdm.load(tmp_path, cache=False)
    assert rec.frame.x.iloc[1] == np.finfo(np.float32).max and rec.frame.y.iloc[1] == -np.finfo(np.float32).max


# ----------------------------------------------------------------------------------------------
# incomplete folders


def test_incomplete_folder_warns_once_in_one_line_naming_counts_and_files(tmp_path, monkeypatch):
    monkeypatch.delenv("SMOOTHDISTILL_ALLOW_SUBSET", raising=False)
    for s in (1600, 1601):  # archive names: watch only (a demo-mode folder without phone files)
        write_wisdm_file(tmp_path, s, "watch", text=f"{s},A,1000,1.0,2.0,3.0;\n")
    with pytest.warns(IncompleteDataWarning) as w:
        wisdm.load(tmp_path, cache=False)
    assert len(w) == 1
    msg = str(w[0].message)
    assert "\n" not in msg and str(tmp_path) not in msg and msg.startswith("WISDM is incomplete here")  # no path
    assert "0 of 51 phone, 2 of 51 watch accel files (100 missing" in msg
    assert "data_1600_accel_phone.txt" in msg and "SMOOTHDISTILL_ALLOW_SUBSET=1" in msg
    assert wisdm.missing_files(tmp_path)["watch"][:2] == ["data_1602_accel_watch.txt", "data_1603_accel_watch.txt"]
    # only the placements asked for count
    with pytest.warns(IncompleteDataWarning, match="2 of 51 watch accel files \\(49 missing"):
        wisdm.load(tmp_path, placements=["watch"], cache=False)


def test_subset_opt_in_silences_the_warning(tmp_path, monkeypatch):
    monkeypatch.delenv("SMOOTHDISTILL_ALLOW_SUBSET", raising=False)
    write_wisdm_file(tmp_path, 1600, "watch", text="1600,A,1000,1.0,2.0,3.0;\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        wisdm.load(tmp_path, cache=False, subset_ok=True)
        wisdm.load(tmp_path, subjects=[1600], placements=["watch"], cache=False)  # chosen explicitly
        monkeypatch.setenv("SMOOTHDISTILL_ALLOW_SUBSET", "1")
        wisdm.load(tmp_path, cache=False)
    monkeypatch.setenv("SMOOTHDISTILL_ALLOW_SUBSET", "0")
    with pytest.warns(IncompleteDataWarning):
        wisdm.load(tmp_path, cache=False)
    # a category users can filter
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", IncompleteDataWarning)
        wisdm.load(tmp_path, cache=False)


# ----------------------------------------------------------------------------------------------
# real data (skipped when the shared subset is absent): fast, 1-2 files each


@pytest.mark.realdata
def test_real_subject_and_placement_counts(real_data_dir):
    by = wisdm.subjects_by_placement(real_data_dir)
    assert len(by["phone"]) == 19 and len(by["watch"]) == 43
    assert sorted(set(by["phone"]) & set(by["watch"])) == [
        1600, 1604, 1606, 1607, 1609, 1611, 1612, 1615, 1617, 1618, 1622, 1624, 1626, 1630, 1631]


@pytest.mark.realdata
def test_real_rows_equal_line_counts_and_activities_come_in_blocks(real_data_dir):
    rec = wisdm.load(real_data_dir, subjects=[1600], cache=False)
    for path in rec.info["files"]:
        n_lines = path.read_bytes().count(b"\n")
        placement = wisdm.PLACEMENT_NAMES.index(path.name.split("_")[-1][:-4])
        assert (rec.frame.placement == placement).sum() == n_lines
    t = rec.info["sessions"]
    # each activity forms one contiguous block per file, of about 3 minutes
    assert not t.duplicated(["file", "activity"]).any()
    assert t.groupby("file").size().tolist() == [18, 18]
    assert 170 <= t.duration_s.median() <= 190
    assert set(t.nominal_hz) <= set(wisdm.NOMINAL_RATES_HZ)


@pytest.mark.realdata
def test_real_file_with_high_rate_sessions(real_data_dir):
    # data_1608_accel_watch.txt: one session (pasta) recorded at ~100 Hz, the others at 20 Hz
    rec = wisdm.load(real_data_dir, subjects=[1608], placements=["watch"], cache=False)
    t = rec.info["sessions"].set_index("activity")
    assert t.loc["pasta", "nominal_hz"] == 100.0 and (t.drop("pasta").nominal_hz == 20.0).all()
