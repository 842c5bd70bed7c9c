"""Download, verification, safe and atomic extraction (damaged, truncated and incomplete archives),
stale ``.part`` files; with file:// URLs and a patched urlopen: never the network."""

from __future__ import annotations

import hashlib
import os
import time
import urllib.error
import zipfile

import pandas as pd
import pytest

from smoothdistill_lib import download as dl
from tests.rawfixtures import make_wisdm_zip, write_mhealth_tree, write_wisdm_file, write_wisdm_tree


def _offline(*args, **kwargs):
    raise urllib.error.URLError("network is unreachable (test)")


def test_fetch_downloads_atomically_and_only_once(tmp_path, monkeypatch):
    src = tmp_path / "src.bin"
    src.write_bytes(b"payload" * 1000)
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    dest = tmp_path / "out" / "file.bin"
    assert dl.fetch(src.as_uri(), dest, sha256=sha) == dest
    assert dest.read_bytes() == src.read_bytes()
    assert [p.name for p in dest.parent.iterdir()] == ["file.bin"]  # no temporary left behind
    monkeypatch.setattr(dl.urllib.request, "urlopen", _offline)
    assert dl.fetch(src.as_uri(), dest, sha256=sha.upper()) == dest  # valid: not downloaded again
    assert dl.fetch(src.as_uri(), dest) == dest


def test_fetch_checksum_mismatch_names_file_and_both_sums(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"abc")
    dest = tmp_path / "out" / "file.bin"
    wrong = "0" * 64
    with pytest.raises(ValueError) as e:
        dl.fetch(src.as_uri(), dest, sha256=wrong)
    msg = str(e.value)
    assert str(dest) in msg and wrong in msg and hashlib.sha256(b"abc").hexdigest() in msg
    assert list(dest.parent.iterdir()) == []  # the bad download is deleted


def test_fetch_replaces_a_damaged_existing_file(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"good")
    dest = tmp_path / "file.bin"
    dest.write_bytes(b"bad")
    dl.fetch(src.as_uri(), dest, sha256=hashlib.sha256(b"good").hexdigest())
    assert dest.read_bytes() == b"good"


def test_offline_gives_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(dl.urllib.request, "urlopen", _offline)
    dest = tmp_path / "wisdm.zip"
    with pytest.raises(dl.DownloadError) as e:
        dl.fetch(dl.WISDM_URL, dest)
    assert dl.WISDM_URL in str(e.value) and str(dest) in str(e.value) and "by hand" in str(e.value)
    assert isinstance(e.value, FileNotFoundError) and not dest.exists()
    with pytest.raises(dl.DownloadError) as e:
        dl.prepare_wisdm(tmp_path / "data")
    assert dl.WISDM_URL in str(e.value)
    with pytest.raises(dl.DownloadError, match="wisdm-dataset"):
        dl.prepare_wisdm(tmp_path / "data", download=False)
    with pytest.raises(dl.DownloadError, match="MHEALTHDATASET"):
        dl.prepare_mhealth(tmp_path / "data", download=False)


def test_a_download_says_whether_the_network_or_the_server_failed(tmp_path, monkeypatch):
    def silent(*args, **kwargs):
        raise dl.urllib.error.URLError(TimeoutError("timed out"))

    monkeypatch.setattr(dl.urllib.request, "urlopen", silent)
    with pytest.raises(dl.DownloadError, match=r"could not download .* \(server did not answer: timed out\)"):
        dl.fetch(dl.WISDM_URL, tmp_path / "w.zip")
    monkeypatch.setattr(dl.urllib.request, "urlopen", _offline)
    with pytest.raises(dl.DownloadError, match=r"could not download .* \(no network: "):
        dl.fetch(dl.WISDM_URL, tmp_path / "w.zip")


@pytest.mark.parametrize("member", ["/etc/evil.txt", "../evil.txt", "a/../../evil.txt", "C:/evil.txt", "..\\evil.txt"])
def test_safe_extract_rejects_unsafe_members(tmp_path, member):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("ok.txt", "fine")
        z.writestr(member, "evil")
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="unsafe member"):
        dl.safe_extract(archive, out)
    assert not out.exists() and not (tmp_path / "evil.txt").exists()


def test_safe_extract_selects_members(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("d/keep.log", "1")
        z.writestr("d/skip.txt", "2")
    written = dl.safe_extract(archive, tmp_path / "out", members=lambda n: n.endswith(".log"))
    assert written == [tmp_path / "out" / "d" / "keep.log"] and not (tmp_path / "out" / "d" / "skip.txt").exists()


def test_shipped_reference_lists():
    ref = dl.wisdm_reference()
    assert len(ref) == 102 and ref.relpath.str.contains("/accel/").all()
    assert ref.sha256.str.fullmatch(r"[0-9a-f]{64}").all() and (ref["size"] > 0).all()
    assert len(dl.wisdm_reference(accel_only=False)) == 204


def _reference_of(root) -> pd.DataFrame:
    """A reference list made from fixture files (the shipped one describes the real archive)."""
    files = sorted((root / "wisdm-dataset").rglob("data_*.txt"))
    return pd.DataFrame({
        "relpath": [p.relative_to(root / "wisdm-dataset").as_posix() for p in files],
        "size": [p.stat().st_size for p in files],
        "sha256": [dl.sha256_file(p) for p in files],
    })


def test_prepare_wisdm_downloads_extracts_verifies_and_cleans_up(tmp_path, monkeypatch):
    src = tmp_path / "src"
    write_wisdm_tree(src)
    monkeypatch.setattr(dl, "wisdm_reference", lambda: _reference_of(src))
    archive = make_wisdm_zip(tmp_path / "uci.zip", src)
    data = tmp_path / "data"
    assert dl.prepare_wisdm(data, url=archive.as_uri()) == data
    for p in _reference_of(src).relpath:
        assert (data / "wisdm-dataset" / p).read_bytes() == (src / "wisdm-dataset" / p).read_bytes()
    assert (data / "wisdm-dataset" / "activity_key.txt").exists()
    assert not (data / "downloads").exists()
    monkeypatch.setattr(dl.urllib.request, "urlopen", _offline)  # present now: used as is
    assert dl.prepare_wisdm(data, verify=True) == data


def test_prepare_wisdm_deletes_a_file_whose_checksum_differs(tmp_path, monkeypatch):
    src = tmp_path / "src"
    write_wisdm_tree(src, {1700: ("phone",)})
    ref = _reference_of(src)
    good_sha = ref.sha256[0]
    ref.loc[0, "sha256"] = "f" * 64
    monkeypatch.setattr(dl, "wisdm_reference", lambda: ref)
    data = tmp_path / "data"
    with pytest.raises(ValueError) as e:
        dl.prepare_wisdm(data, url=make_wisdm_zip(tmp_path / "uci.zip", src).as_uri())
    msg = str(e.value)
    assert "data_1700_accel_phone.txt" in msg and good_sha in msg and "f" * 64 in msg and "deleted" in msg
    assert not (data / "wisdm-dataset" / "raw" / "phone" / "accel" / "data_1700_accel_phone.txt").exists()


def test_prepare_wisdm_refuses_a_malicious_inner_archive(tmp_path, monkeypatch):
    src = tmp_path / "src"
    write_wisdm_tree(src, {1700: ("phone",)})
    archive = make_wisdm_zip(tmp_path / "uci.zip", src, extra_members={"../../evil.txt": b"x"})
    with pytest.raises(ValueError, match="unsafe member"):
        dl.prepare_wisdm(tmp_path / "data", url=archive.as_uri())
    assert not (tmp_path / "evil.txt").exists()


def test_prepare_wisdm_reports_a_bad_zip_and_missing_files(tmp_path, monkeypatch):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(dl.DownloadError, match="not a valid zip"):
        dl.prepare_wisdm(tmp_path / "data", url=bad.as_uri())
    assert not (tmp_path / "data" / "downloads" / "wisdm.zip").exists()
    src = tmp_path / "src"
    write_wisdm_tree(src, {1700: ("phone",)})
    ref = pd.concat([_reference_of(src), pd.DataFrame({"relpath": ["raw/watch/accel/data_1700_accel_watch.txt"],
                                                         "size": [1], "sha256": ["0" * 64]})])
    monkeypatch.setattr(dl, "wisdm_reference", lambda: ref)
    with pytest.raises(FileNotFoundError, match="data_1700_accel_watch.txt"):
        dl.prepare_wisdm(tmp_path / "data2", url=make_wisdm_zip(tmp_path / "uci.zip", src).as_uri())


def test_verify_wisdm_checks_sizes_always_and_sha256_on_demand(tmp_path):
    # named like a real archive file, so the shipped lists apply
    path, _ = write_wisdm_file(tmp_path, 1600, "phone")
    with pytest.raises(ValueError) as e:
        dl.verify_wisdm(tmp_path)
    assert str(path) in str(e.value) and "size" in str(e.value) and "3451789" in str(e.value)
    assert path.exists()  # a user's own copy is not deleted unless asked
    with pytest.raises(ValueError):
        dl.verify_wisdm(tmp_path, delete_bad=True)
    assert not path.exists()


def test_verify_wisdm_sha256_mismatch_with_the_right_size(tmp_path):
    ref = dl.wisdm_reference().set_index("relpath")
    rel = "raw/watch/accel/data_1600_accel_watch.txt"
    path = tmp_path / "wisdm-dataset" / rel
    path.parent.mkdir(parents=True)
    path.write_bytes(b"0" * int(ref.loc[rel, "size"]))
    checked = dl.verify_wisdm(tmp_path)  # size matches: passes the lazy check
    assert checked.present.sum() == 1
    with pytest.raises(ValueError) as e:
        dl.verify_wisdm(tmp_path, full=True)
    assert ref.loc[rel, "sha256"] in str(e.value) and dl.sha256_file(path) in str(e.value)


def _mhealth_zip(tmp_path, subjects=range(1, 11), *, name="mhealth.zip", compression=zipfile.ZIP_STORED):
    """The UCI zip's shape: ``MHEALTHDATASET/mHealth_subject<k>.log`` (160 rows each) and a README."""
    src = tmp_path / "src"
    written = write_mhealth_tree(src, subjects=tuple(subjects))
    archive = tmp_path / name
    with zipfile.ZipFile(archive, "w", compression=compression) as z:
        for s in written:
            z.write(src / "MHEALTHDATASET" / f"mHealth_subject{s}.log", f"MHEALTHDATASET/mHealth_subject{s}.log")
        z.writestr("MHEALTHDATASET/README.txt", "readme")
    return archive, written


def _leftovers(root):
    """Temporary files or folders the preparation could have left in ``root``."""
    return sorted(p.name for p in root.glob(".*")) if root.exists() else []


def test_prepare_mhealth_from_the_uci_zip(tmp_path, monkeypatch):
    archive, written = _mhealth_zip(tmp_path)
    data = tmp_path / "data"
    assert dl.prepare_mhealth(data, url=archive.as_uri(), expected_rows=1600) == data
    assert sorted(p.name for p in (data / "MHEALTHDATASET").iterdir()) == sorted(
        f"mHealth_subject{s}.log" for s in range(1, 11))
    assert (data / "MHEALTHDATASET" / "mHealth_subject3.log").read_bytes() == (
        tmp_path / "src" / "MHEALTHDATASET" / "mHealth_subject3.log").read_bytes()
    assert not (data / "downloads").exists() and _leftovers(data) == []
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as z:
        z.writestr("README.txt", "nothing")
    with pytest.raises(dl.DownloadError, match="expected the 10 logs .* found 0"):
        dl.prepare_mhealth(tmp_path / "data2", url=empty.as_uri())
    monkeypatch.setattr(dl.urllib.request, "urlopen", _offline)
    assert dl.prepare_mhealth(data) == data  # present now: used as is


def _refused_and_nothing_installed(data, archive_name="mhealth.zip"):
    assert not (data / "MHEALTHDATASET").exists() and not (data / "downloads" / archive_name).exists()
    assert _leftovers(data) == []


def test_prepare_mhealth_refuses_a_zip_with_a_corrupt_member(tmp_path, monkeypatch):
    archive, _ = _mhealth_zip(tmp_path, compression=zipfile.ZIP_DEFLATED)
    raw = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as z:
        info = z.getinfo("MHEALTHDATASET/mHealth_subject5.log")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)  # the member's deflate data
    raw[start + 10: start + 60] = bytes(50)  # damage the middle of the compressed stream
    archive.write_bytes(bytes(raw))
    data = tmp_path / "data"
    with pytest.raises(dl.DownloadError) as e:
        dl.prepare_mhealth(data, url=archive.as_uri(), expected_rows=1600)
    msg = str(e.value)
    # zlib's error for a broken deflate stream, or zipfile's CRC check when it decompresses to other bytes
    assert "damaged or not a valid zip (zlib.error" in msg or "Bad CRC-32" in msg
    assert "deleted" in msg and "nothing was installed" in msg and "\n" not in msg
    _refused_and_nothing_installed(data)
    # the next run does not trust anything half-unpacked: it downloads again (here: offline, so it says so)
    monkeypatch.setattr(dl.urllib.request, "urlopen", _offline)
    with pytest.raises(dl.DownloadError, match="could not download"):
        dl.prepare_mhealth(data, expected_rows=1600)


def test_prepare_mhealth_refuses_a_truncated_zip(tmp_path):
    archive, _ = _mhealth_zip(tmp_path)
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    data = tmp_path / "data"
    with pytest.raises(dl.DownloadError, match="not a valid zip"):
        dl.prepare_mhealth(data, url=archive.as_uri(), expected_rows=1600)
    _refused_and_nothing_installed(data)


def test_prepare_mhealth_checks_the_logs_and_their_documented_rows(tmp_path):
    archive, _ = _mhealth_zip(tmp_path, subjects=range(1, 5))  # 4 of 10 logs
    data = tmp_path / "data"
    with pytest.raises(dl.DownloadError, match=r"found 4 \(missing: mHealth_subject5.log, .*mHealth_subject10.log\)"):
        dl.prepare_mhealth(data, url=archive.as_uri(), expected_rows=640)
    _refused_and_nothing_installed(data)
    archive, _ = _mhealth_zip(tmp_path, name="full.zip")
    with pytest.raises(dl.DownloadError, match="hold 1,600 rows, the dataset documents 1,215,745"):
        dl.prepare_mhealth(data, url=archive.as_uri())  # default: the documented total
    _refused_and_nothing_installed(data)


def test_prepare_mhealth_names_a_damaged_log_member(tmp_path):
    archive, _ = _mhealth_zip(tmp_path)
    with zipfile.ZipFile(archive, "a") as z:  # replace subject 7's log by one with a short line 3
        z.writestr("extra/mHealth_subject7.log", "1 2 3\n")
    data = tmp_path / "data"
    with pytest.raises(dl.DownloadError, match="found 11"):  # a duplicate name is refused as well
        dl.prepare_mhealth(data, url=archive.as_uri(), expected_rows=1600)
    archive, written = _mhealth_zip(tmp_path, name="bad.zip")
    log = tmp_path / "src" / "MHEALTHDATASET" / "mHealth_subject7.log"
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:2] + ["1 2 3\n"] + lines[3:]))
    with zipfile.ZipFile(archive, "w") as z:
        for s in written:
            z.write(tmp_path / "src" / "MHEALTHDATASET" / f"mHealth_subject{s}.log", f"MHEALTHDATASET/mHealth_subject{s}.log")
    with pytest.raises(dl.DownloadError) as e:
        dl.prepare_mhealth(data, url=archive.as_uri(), expected_rows=1600)
    assert "member mHealth_subject7.log is damaged: mHealth_subject7.log, line 3: expected 24" in str(e.value)
    _refused_and_nothing_installed(data)


def test_prepare_mhealth_accepts_a_user_supplied_checksum(tmp_path, monkeypatch):
    archive, _ = _mhealth_zip(tmp_path)
    good = dl.sha256_file(archive)
    monkeypatch.setenv(dl.MHEALTH_SHA256_ENV, "0" * 64)
    data = tmp_path / "data"
    with pytest.raises(ValueError, match=f"expected {'0' * 64}, got {good}"):
        dl.prepare_mhealth(data, url=archive.as_uri(), expected_rows=1600)
    _refused_and_nothing_installed(data)
    monkeypatch.setenv(dl.MHEALTH_SHA256_ENV, good.upper())
    assert dl.prepare_mhealth(data, url=archive.as_uri(), expected_rows=1600) == data
    assert len(list((data / "MHEALTHDATASET").iterdir())) == 10


def test_prepare_wisdm_refuses_an_incomplete_archive_every_time(tmp_path, monkeypatch):
    src = tmp_path / "src"
    write_wisdm_tree(src, {1700: ("phone", "watch")})
    ref = _reference_of(src)
    (src / "wisdm-dataset" / ref.relpath[1]).unlink()  # the archive lacks one listed file
    monkeypatch.setattr(dl, "wisdm_reference", lambda: ref)
    archive = make_wisdm_zip(tmp_path / "uci.zip", src)
    data = tmp_path / "data"
    for _ in range(2):  # the second run must not accept what the first one unpacked
        with pytest.raises(dl.DownloadError) as e:
            dl.prepare_wisdm(data, url=archive.as_uri())
        msg = str(e.value)
        assert "damaged or incomplete" in msg and ref.relpath[1] in msg and "nothing was installed" in msg
        assert str(data / "downloads") in msg and ".unpacking" not in msg
        assert not (data / "wisdm-dataset").exists() and _leftovers(data) == []


def test_prepare_wisdm_refuses_a_corrupt_inner_member(tmp_path, monkeypatch):
    src = tmp_path / "src"
    write_wisdm_tree(src, {1700: ("phone",)})
    monkeypatch.setattr(dl, "wisdm_reference", lambda: _reference_of(src))
    archive = make_wisdm_zip(tmp_path / "uci.zip", src)
    raw = archive.read_bytes()
    i = raw.index(b"1700,A,")  # stored members: the file's text is in the archive verbatim
    archive.write_bytes(raw[:i] + b"1701" + raw[i + 4:])  # same size, wrong CRC
    data = tmp_path / "data"
    with pytest.raises(dl.DownloadError, match="damaged or not a valid zip .*CRC"):
        dl.prepare_wisdm(data, url=archive.as_uri())
    assert not (data / "wisdm-dataset").exists() and not (data / "downloads" / "wisdm.zip").exists()
    assert _leftovers(data) == []


def test_prepare_never_installs_over_a_users_folder(tmp_path, monkeypatch):
    src = tmp_path / "src"
    write_wisdm_tree(src, {1700: ("phone",)})
    monkeypatch.setattr(dl, "wisdm_reference", lambda: _reference_of(src))
    data = tmp_path / "data"
    (data / "wisdm-dataset").mkdir(parents=True)
    (data / "wisdm-dataset" / "notes.txt").write_text("mine")
    with pytest.raises(dl.DownloadError, match="already exists but does not hold the dataset"):
        dl.prepare_wisdm(data, url=make_wisdm_zip(tmp_path / "uci.zip", src).as_uri())
    assert [p.name for p in (data / "wisdm-dataset").iterdir()] == ["notes.txt"] and _leftovers(data) == []


def test_stale_part_files_and_unpacking_folders_are_cleaned(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"payload")
    dest = tmp_path / "dl" / "file.bin"
    dest.parent.mkdir()
    old, young = dest.parent / ".file.bin.old1.part", dest.parent / ".file.bin.new2.part"
    other = dest.parent / ".other.bin.x.part"
    for p in (old, young, other):
        p.write_bytes(b"half")
    day_ago = time.time() - dl.STALE_SECONDS - 60
    os.utime(old, (day_ago, day_ago))
    os.utime(other, (day_ago, day_ago))
    assert dl.clean_stale_parts(dest) == [old]  # a young one may be a download running elsewhere
    assert young.exists() and other.exists()
    dl.fetch(src.as_uri(), dest)  # finished: every .part of this download is dead
    assert not young.exists() and other.exists() and dest.read_bytes() == b"payload"
    young.write_bytes(b"half")
    dl.fetch(src.as_uri(), dest)  # already there: cleaned as well
    assert not young.exists()
    # an unpacking folder of a killed process, older than a day, goes at the next preparation
    data = tmp_path / "data"
    stale = data / ".MHEALTHDATASET.abc.unpacking"
    (stale / "zip").mkdir(parents=True)
    os.utime(stale, (day_ago, day_ago))
    archive, _ = _mhealth_zip(tmp_path)
    dl.prepare_mhealth(data, url=archive.as_uri(), expected_rows=1600)
    assert _leftovers(data) == []


@pytest.mark.realdata
def test_real_files_match_the_shipped_checksums(real_data_dir):
    ref = dl.wisdm_reference().set_index("relpath")
    for rel in ("raw/phone/accel/data_1600_accel_phone.txt", "raw/watch/accel/data_1650_accel_watch.txt"):
        assert dl.sha256_file(real_data_dir / "wisdm-dataset" / rel) == ref.loc[rel, "sha256"]
    checked = dl.verify_wisdm(real_data_dir)  # sizes of every present file
    assert checked.present.sum() >= 62  # the shared subset: 19 phone + 43 watch files
