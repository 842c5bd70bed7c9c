"""Data on first use (``smoothdistill_lib.firstuse.ensure_data``): present, downloaded, or one line."""

from __future__ import annotations

import functools
import http.client
import io
import socket
import urllib.error
import zipfile

import pytest

from smoothdistill_lib import download, firstuse, mhealth


@pytest.fixture
def empty_data(tmp_path, monkeypatch):
    """An empty data folder and no shared copy: WISDM is absent."""
    monkeypatch.setenv("SMOOTHDISTILL_DATA", str(tmp_path / "data"))
    monkeypatch.setattr("smoothdistill_lib.datasets.search_dirs", lambda: [tmp_path / "data"])
    return tmp_path / "data"


def test_present_data_is_returned_without_the_network(real_data_dir, monkeypatch):
    monkeypatch.setenv("SMOOTHDISTILL_DATA", str(real_data_dir))
    monkeypatch.setattr(firstuse, "remote_size", lambda url: pytest.fail("network touched"))
    assert firstuse.ensure_data("wisdm") is not None
    assert firstuse.ensure_data("sleepsim") is None


def test_offline_says_one_line_and_carries_on(empty_data, monkeypatch, capsys):
    def offline(url, timeout=10.0):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(firstuse, "remote_size", offline)
    assert firstuse.ensure_data("wisdm") is None
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and str(empty_data) in out and "wisdm-dataset" in out and "no network" in out


def test_downloads_can_be_switched_off(empty_data, monkeypatch, capsys):
    monkeypatch.setenv("SMOOTHDISTILL_DOWNLOAD", "0")
    monkeypatch.setattr(firstuse, "remote_size", lambda url: pytest.fail("network touched"))
    assert firstuse.ensure_data("mhealth") is None
    assert capsys.readouterr().out.count("\n") == 1
    assert firstuse.ensure_data("sleep", allow_download=True) is None  # private data: never downloaded


def test_download_announces_size_shows_progress_and_prepares(empty_data, monkeypatch, capsys):
    # MHEALTH archive built in memory; urlopen serves it, so fetch, extract and checks run for real
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for k in range(1, 11):
            z.writestr(f"MHEALTHDATASET/mHealth_subject{k}.log", "0\t" * 23 + "1\n")
    payload = buf.getvalue()

    class Response(io.BytesIO):
        headers = {"Content-Length": str(len(payload))}

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.delenv("SMOOTHDISTILL_PROGRESS", raising=False)  # the bar is what this test checks
    monkeypatch.setattr(firstuse, "remote_size", lambda url: 3_500_000)
    # the unpacked logs are checked against the documented row count: this archive holds 10 rows
    monkeypatch.setattr(mhealth, "DOCUMENTED_ROWS", 10)
    monkeypatch.setattr(download.urllib.request, "urlopen", lambda url, timeout=60: Response(payload))
    root = firstuse.ensure_data("mhealth")
    captured = capsys.readouterr()
    assert root == empty_data and (empty_data / "MHEALTHDATASET" / "mHealth_subject10.log").is_file()
    assert "downloading 4 MB" in captured.out and download.MHEALTH_URL in captured.out
    assert "mhealth.zip" in captured.err  # the tqdm progress bar
    assert not (empty_data / "downloads").exists()  # the archive is removed after unpacking


def test_a_failed_download_is_one_line(empty_data, monkeypatch, capsys):
    monkeypatch.setattr(firstuse, "remote_size", lambda url: None)

    def broken(*a, **k):
        raise download.DownloadError("could not download x\nsecond line")

    monkeypatch.setattr(download, "fetch", broken)
    assert firstuse.ensure_data("wisdm") is None
    out = capsys.readouterr().out
    assert "size unknown" in out and "download failed: could not download x)" in out and "second line" not in out


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset"):
        firstuse.ensure_data("nope")


@pytest.mark.parametrize("error", [TimeoutError("timed out"), urllib.error.URLError(TimeoutError("timed out")),
                                   http.client.RemoteDisconnected("Remote end closed connection without response"),
                                   ConnectionResetError(104, "Connection reset by peer"),
                                   urllib.error.HTTPError(download.WISDM_URL, 503, "Service Unavailable", {}, None)],
                         ids=["timeout", "wrapped_timeout", "closed", "reset", "http_503"])
def test_a_server_that_does_not_answer_is_not_reported_as_no_network(empty_data, monkeypatch, capsys, error):
    def silent(url, timeout=10.0):
        raise error

    monkeypatch.setattr(firstuse, "remote_size", silent)
    monkeypatch.setattr(download, "fetch", lambda *a, **k: pytest.fail("downloaded although the server did not answer"))
    assert firstuse.ensure_data("wisdm") is None
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "(server did not answer: " in out and "no network" not in out


def test_a_real_server_that_never_answers_head(empty_data, monkeypatch, capsys):
    """A local socket that accepts the connection and says nothing: the HEAD request times out."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        url = f"http://127.0.0.1:{server.getsockname()[1]}/wisdm.zip"
        monkeypatch.setitem(firstuse.ARCHIVES, "wisdm", ("downloads/wisdm.zip", url))
        monkeypatch.setattr(firstuse, "remote_size", functools.partial(firstuse.remote_size, timeout=0.3))
        assert firstuse.ensure_data("wisdm") is None
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "(server did not answer: timed out)" in out
