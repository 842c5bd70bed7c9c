"""Provenance: keys, JSON, UTC time, git commit inside and outside a checkout, no host name."""

from __future__ import annotations

import json
import re
import socket
import subprocess
from datetime import datetime, timezone

import pytest
import torch

import smoothdistill_lib
from smoothdistill_lib import provenance as prov
from smoothdistill_lib.config import get_mode


def test_provenance_keys_and_values(monkeypatch):
    monkeypatch.setenv("SMOOTHDISTILL_MODE", "quick")
    p = prov.provenance(data={"dataset": "sleepsim", "windows": 120})
    assert {"commit", "dirty", "library", "python", "torch", "numpy", "device", "cpu_count", "threads", "timestamp",
            "mode", "data"} <= set(p)
    assert p["mode"] == "quick" and p["data"] == {"dataset": "sleepsim", "windows": 120}
    assert p["threads"] == torch.get_num_threads() >= 1
    assert p["library"] == smoothdistill_lib.__version__
    assert p["device"].startswith("cpu: ") or "cuda" not in p["device"].lower()
    t = datetime.fromisoformat(p["timestamp"])
    assert t.utcoffset().total_seconds() == 0
    assert abs((datetime.now(timezone.utc) - t).total_seconds()) < 60
    assert p["commit"] == "unknown" or re.fullmatch(r"[0-9a-f]{4,40}", p["commit"])
    json.dumps(p)
    assert prov.provenance(mode=get_mode("full"))["mode"] == "full"
    with pytest.raises(ValueError, match="unknown run mode"):
        prov.provenance(mode="huge")


def test_no_host_name(monkeypatch):
    fake = "host-name-that-must-not-leak"
    monkeypatch.setattr(socket, "gethostname", lambda: fake)
    monkeypatch.setattr(prov.platform, "node", lambda: fake)
    assert fake not in json.dumps(prov.provenance())


def test_git_commit_outside_a_checkout_is_unknown(tmp_path):
    assert prov.git_commit(tmp_path) == ("unknown", None)


def test_git_commit_in_this_checkout():
    commit, dirty = prov.git_commit()
    if commit == "unknown":
        pytest.skip("the library does not run from a git checkout here")
    assert re.fullmatch(r"[0-9a-f]{4,40}", commit) and dirty in (True, False)


def test_git_commit_of_a_scratch_repository(tmp_path):
    # a throwaway repository in tmp_path (never the project's): commit hash and dirty flag
    def git(*args):
        return subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t",
                               *args], capture_output=True, text=True, check=True).stdout.strip()

    try:
        git("init", "-q")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("git not available")
    (tmp_path / "a.txt").write_text("1")
    git("add", "a.txt")
    git("commit", "-q", "-m", "x")
    head = git("rev-parse", "HEAD")
    commit, dirty = prov.git_commit(tmp_path)
    assert head.startswith(commit) and dirty is False
    (tmp_path / "new.txt").write_text("untracked files do not make it dirty")
    assert prov.git_commit(tmp_path)[1] is False
    (tmp_path / "a.txt").write_text("2")
    assert prov.git_commit(tmp_path) == (commit, True)
    (tmp_path / "sub").mkdir()
    assert prov.git_commit(tmp_path / "sub") == ("unknown", None)  # inside, but not the root


def test_git_missing_is_unknown(monkeypatch):
    def no_git(*_a, **_k):
        raise FileNotFoundError("git")

    monkeypatch.setattr(prov.subprocess, "run", no_git)
    assert prov.git_commit() == ("unknown", None)
    assert prov.provenance(mode="quick")["commit"] == "unknown"


def test_cpu_name_and_device_description():
    assert prov.cpu_name()
    assert prov.device_description("cpu").startswith("cpu: ")
