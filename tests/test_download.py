"""Download, verification and safe extraction, with file:// URLs and a patched urlopen: never the network."""

from __future__ import annotations

import hashlib
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


def test_prepare_mhealth_from_the_uci_zip(tmp_path, monkeypatch):
    src = tmp_path / "src"
    written = write_mhealth_tree(src, subjects=(1, 2))
    archive = tmp_path / "mhealth.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for s in written:
            z.write(src / "MHEALTHDATASET" / f"mHealth_subject{s}.log", f"MHEALTHDATASET/mHealth_subject{s}.log")
        z.writestr("MHEALTHDATASET/README.txt", "readme")
    data = tmp_path / "data"
    assert dl.prepare_mhealth(data, url=archive.as_uri()) == data
    assert sorted(p.name for p in (data / "MHEALTHDATASET").iterdir()) == ["mHealth_subject1.log", "mHealth_subject2.log"]
    assert not (data / "downloads").exists()
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as z:
        z.writestr("README.txt", "nothing")
    with pytest.raises(dl.DownloadError, match="no mHealth_subject"):
        dl.prepare_mhealth(tmp_path / "data2", url=empty.as_uri())


@pytest.mark.realdata
def test_real_files_match_the_shipped_checksums(real_data_dir):
    ref = dl.wisdm_reference().set_index("relpath")
    for rel in ("raw/phone/accel/data_1600_accel_phone.txt", "raw/watch/accel/data_1650_accel_watch.txt"):
        assert dl.sha256_file(real_data_dir / "wisdm-dataset" / rel) == ref.loc[rel, "sha256"]
    checked = dl.verify_wisdm(real_data_dir)  # sizes of every present file
    assert checked.present.sum() >= 62  # the shared subset: 19 phone + 43 watch files
