"""Data on first use: a chapter asks for a public dataset and gets it, or one line saying how.

    from smoothdistill_lib.firstuse import ensure_data
    WISDM_ROOT = ensure_data("wisdm")   # a folder, or None (the chapter carries on without it)

- present (``$SMOOTHDISTILL_DATA``, ``~/.cache/smoothdistill`` or the team's shared copy): its
  folder is returned; nothing touches the network;
- absent, network there: the size is announced in one line, the UCI archive is downloaded with a
  progress bar into ``config.data_dir()``, unpacked and every file checked against the sha256 sums
  shipped with the library (:func:`datasets.make_available`), once;
- absent, no network (or ``SMOOTHDISTILL_DOWNLOAD=0``), a server that does not answer, or the
  download failed: ONE line says where to put the data and which of these it was ("no network",
  "server did not answer", "download failed"), and None is returned.
"""

from __future__ import annotations

import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path

from smoothdistill_lib import config, datasets, download

#: where the download goes, relative to ``config.data_dir()`` (datasets.make_available reuses it)
ARCHIVES = {"wisdm": ("downloads/wisdm.zip", download.WISDM_URL),
            "mhealth": ("downloads/mhealth.zip", download.MHEALTH_URL)}


def remote_size(url: str, timeout: float = 10.0) -> int | None:
    """Bytes of ``url`` from a HEAD request (None when the server does not say).

    Raises ``urllib.error.URLError`` / ``OSError`` when the host cannot be reached, and those or
    ``http.client.HTTPException`` when it does not answer (``download.why_unreachable`` tells which).
    """
    with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout) as resp:
        n = resp.headers.get("Content-Length")
    return int(n) if n and n.isdigit() else None


def downloads_allowed() -> bool:
    """False when ``$SMOOTHDISTILL_DOWNLOAD`` is ``0``/``no``/``false`` (e.g. offline CI)."""
    return os.environ.get("SMOOTHDISTILL_DOWNLOAD", "1").strip().lower() not in ("0", "no", "false", "off")


def _where_to_put(name: str) -> str:
    info = datasets.DATASETS[name]
    return (f"{name} data not found and not downloaded: get {info.source} and unpack it so that "
            f"{info.layout} lies in {config.data_dir()} (or set SMOOTHDISTILL_DATA); "
            "this chapter carries on without it")


def ensure_data(name: str, *, allow_download: bool | None = None) -> Path | None:
    """The folder that holds dataset ``name`` after downloading it if needed; None if it is not there.

    ``allow_download``: default :func:`downloads_allowed`. ``sleepsim`` (generated) returns None at
    once; the private ``sleep`` data are never downloaded (one line says so when absent).
    """
    info = datasets.DATASETS.get(name)
    if info is None:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(datasets.DATASETS)}")
    if name == "sleepsim":
        return None
    found = datasets.locate(name)
    if found is not None:
        return found
    allow = downloads_allowed() if allow_download is None else allow_download
    if not info.downloadable or not allow:
        print(_where_to_put(name))
        return None
    rel, url = ARCHIVES[name]
    try:
        size = remote_size(url)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        kind, detail = download.why_unreachable(e)  # "no network" or "server did not answer"
        print(f"{_where_to_put(name)} ({kind}: {detail})")
        return None
    mb = f"{size / 1e6:,.0f} MB" if size else "size unknown"
    print(f"{name}: downloading {mb} from {url} into {config.data_dir()} (once; files checked by sha256)")
    try:
        download.fetch(url, config.data_dir() / rel, progress=True)
        return datasets.make_available(name, download=True, verify=False)
    except (download.DownloadError, ValueError, OSError) as e:
        print(f"{_where_to_put(name)} (download failed: {str(e).splitlines()[0][:200]})")
        return None
