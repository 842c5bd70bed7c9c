"""Where a result came from: library commit, versions, device, date, run mode, data.

:func:`provenance` returns a small JSON-able dict that run records and chapter banners carry. It
never includes the host name (records are shared).

>>> p = provenance(mode="quick", data="sleepsim")
>>> sorted(p)[:4]
['commit', 'cpu_count', 'cuda', 'data']
"""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

import smoothdistill_lib
from smoothdistill_lib.config import get_mode

_PACKAGE_ROOT = Path(smoothdistill_lib.__file__).resolve().parent.parent


def _git(args: list[str], root: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=5,
                             check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def git_commit(root: Path | None = None) -> tuple[str, bool | None]:
    """``(short commit, dirty)`` of the checkout the library runs from; ``("unknown", None)`` outside one.

    Dirty means tracked files differ from the commit (untracked files are ignored). Read-only git
    calls: ``--no-optional-locks`` keeps ``git status`` from rewriting the index.
    """
    root = Path(root) if root is not None else _PACKAGE_ROOT
    top = _git(["rev-parse", "--show-toplevel"], root)
    # An installed copy (site-packages inside some other repository's venv) is not a checkout of us.
    if not top or Path(top).resolve() != root.resolve():
        return "unknown", None
    commit = _git(["rev-parse", "--short", "HEAD"], root)
    if not commit:
        return "unknown", None
    status = _git(["--no-optional-locks", "status", "--porcelain", "--untracked-files=no"], root)
    return commit, (None if status is None else bool(status))


def cpu_name() -> str:
    """The processor's model name (``/proc/cpuinfo`` on Linux, where ``platform.processor()`` is often empty)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def device_description(device=None) -> str:
    """``"<GPU name>"`` for a CUDA device, ``"mps: Apple GPU"``, or ``"cpu: <processor>"``.

    ``device`` defaults to the best available (cuda, else cpu).
    """
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dev.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(dev)
    if dev.type == "mps":
        return "mps: Apple GPU"
    return f"cpu: {cpu_name()}"


def provenance(mode=None, data=None, device=None) -> dict:
    """Provenance of a result, as a JSON-able dict.

    ``mode``: a mode name or ``config.ModeSettings`` (default: the current ``SMOOTHDISTILL_MODE``);
    ``data``: any JSON-able description of the data used (passed through); ``device``: the device
    the work ran on (default: the best available). Keys: ``commit``, ``dirty``, ``library``,
    ``python``, ``torch``, ``numpy``, ``cuda``, ``device``, ``cpu_count``, ``threads`` (torch's intra-op
    threads), ``platform``,
    ``timestamp`` (UTC, ISO 8601), ``mode``, ``data``.
    """
    if mode is None or isinstance(mode, str):
        mode = get_mode(mode).name
    else:
        mode = getattr(mode, "name", str(mode))
    commit, dirty = git_commit()
    return {
        "commit": commit,
        "dirty": dirty,
        "library": smoothdistill_lib.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "cuda": torch.version.cuda,
        "device": device_description(device),
        "cpu_count": os.cpu_count(),
        # CPU results are reproducible for a seed AND a thread count: some kernels (e.g. batch norm)
        # reduce in a thread-dependent order
        "threads": torch.get_num_threads(),
        "platform": platform.platform(terse=True),  # OS and release; no host name
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "mode": mode,
        "data": data,
    }


def numeric_environment(device=None, *, stacked: bool = False) -> dict:
    """What changes a run's numbers in the last digits besides its spec: torch's version, the kind of
    device, on a CPU torch's thread count (some CPU kernels reduce in a thread-dependent order), and
    whether the runs are trained replica-stacked (``run --stack``: vmapped kernels reduce in another
    order, and on a CPU stacked records differed from unstacked ones by up to 2.9 points at the
    same run id). Run records store these in their provenance; the runner refuses to add runs to a
    grid whose records were made in a different environment (see :func:`environment_conflicts`)."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    env = {"torch": torch.__version__, "device": dev.type}
    if dev.type == "cpu":
        env["threads"] = torch.get_num_threads()
    env["stacked"] = bool(stacked)
    return env


def environment_conflicts(records, env: dict) -> dict[str, set]:
    """Which entries of ``env`` (see :func:`numeric_environment`) differ from the provenance of
    ``records``: key -> the set of values found in the records. A record without a key (older
    records have no ``threads``, and none before ``stacked`` have that) does not conflict on it; a
    record with ``provenance["stack"]`` (trained in a stack) counts as stacked whatever it says."""
    out: dict[str, set] = {}
    for rec in records:
        prov = rec.get("provenance") or {}
        found = {"torch": prov.get("torch"), "threads": prov.get("threads"),
                 "stacked": True if prov.get("stack") else prov.get("stacked"),
                 # the record's device is a description such as "cpu: AMD EPYC" or a GPU's name
                 "device": None if not prov.get("device") else
                 ("cpu" if str(prov["device"]).startswith("cpu") else "cuda" if prov.get("cuda") else None)}
        for key, want in env.items():
            got = found.get(key)
            if got is not None and got != want:
                out.setdefault(key, set()).add(got)
    return out
