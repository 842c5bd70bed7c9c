"""Fetch, verify and unpack the public datasets, safely and only once.

* :func:`fetch` downloads to a temporary file beside the target and renames it into place
  (``os.replace``), so an interrupted download never leaves a file that looks complete; an
  existing valid file is never downloaded again.
* :func:`safe_extract` refuses archive members with absolute paths or ``..``.
* :func:`verify_wisdm` checks the raw WISDM accel files against the lists shipped with the library
  (``resources/wisdm_SIZES.all-raw`` always, ``resources/wisdm_SHA256SUMS.all-raw`` on demand).
* :func:`prepare_wisdm` / :func:`prepare_mhealth` put a dataset under a folder: used as is when
  already there, else downloaded, unpacked and verified.

Failures raise :class:`DownloadError` (a FileNotFoundError: the data is not there) with one message
saying what to download and where to put it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from importlib import resources
from pathlib import Path, PurePosixPath

import pandas as pd

WISDM_URL = (
    "https://archive.ics.uci.edu/static/public/507/"
    "wisdm+smartphone+and+smartwatch+activity+and+biometrics+dataset.zip"
)
MHEALTH_URL = "https://archive.ics.uci.edu/static/public/319/mhealth+dataset.zip"
_CHUNK = 1 << 20


class DownloadError(FileNotFoundError):
    """A dataset could not be fetched; the message says what to download and where to put it."""


def sha256_file(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def fetch(url: str, dest: Path | str, sha256: str | None = None, *, timeout: float = 60.0,
          progress: bool = False) -> Path:
    """Download ``url`` to ``dest`` unless ``dest`` already exists (and matches ``sha256`` if given).

    Atomic: written to a temporary file in ``dest``'s folder, checked, then renamed. A checksum
    mismatch deletes the download and raises ValueError naming the file and both sums.
    ``progress``: show a tqdm progress bar (bytes, out of the server's Content-Length).
    """
    dest = Path(dest)
    if dest.exists():
        if sha256 is None or sha256_file(dest) == sha256.lower():
            return dest
        dest.unlink()  # a stale or damaged copy: fetch again
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                from tqdm.auto import tqdm

                total = int(resp.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar:
                    while chunk := resp.read(_CHUNK):
                        out.write(chunk)
                        h.update(chunk)
                        bar.update(len(chunk))
        if sha256 is not None and h.hexdigest() != sha256.lower():
            raise ValueError(
                f"{dest}: sha256 mismatch for the download from {url}: expected {sha256.lower()}, "
                f"got {h.hexdigest()} (the file was deleted; try again)"
            )
        os.replace(tmp, dest)
    except (urllib.error.URLError, OSError) as e:
        raise DownloadError(
            f"could not download {url} ({e}). Download it by hand and save it as {dest}, then run again."
        ) from e
    finally:
        Path(tmp).unlink(missing_ok=True)
    return dest


def _check_member(name: str, archive: Path) -> PurePosixPath:
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or (p.parts and ":" in p.parts[0]):
        raise ValueError(f"{archive}: unsafe member path {name!r} (absolute or containing '..'); not extracted")
    return p


def safe_extract(archive: Path | str, dest: Path | str, members=None) -> list[Path]:
    """Extract a zip into ``dest`` after checking every member path; return the files written.

    ``members``: optional predicate on the member name (``str -> bool``) selecting what to extract.
    Every member is checked, selected or not, so a malicious archive is refused as a whole.
    """
    archive, dest = Path(archive), Path(dest)
    written = []
    with zipfile.ZipFile(archive) as z:
        infos = z.infolist()
        for info in infos:
            _check_member(info.filename, archive)
        for info in infos:
            if info.is_dir() or (members is not None and not members(info.filename)):
                continue
            written.append(Path(z.extract(info, dest)))
    return written


# ----------------------------------------------------------------------------------------------
# WISDM


def _resource_lines(name: str) -> list[list[str]]:
    text = resources.files("smoothdistill_lib").joinpath("resources", name).read_text()
    return [ln.split() for ln in text.splitlines() if ln.strip()]


def wisdm_reference(accel_only: bool = True) -> pd.DataFrame:
    """The shipped size and sha256 of each raw WISDM file: columns ``relpath, size, sha256``
    (``relpath`` like ``raw/phone/accel/data_1600_accel_phone.txt``)."""
    sums = {p: s for s, p in _resource_lines("wisdm_SHA256SUMS.all-raw")}
    sizes = {p: int(n) for p, n in _resource_lines("wisdm_SIZES.all-raw")}
    rows = [(p, sizes.get(p), sums.get(p)) for p in sorted(sizes)]
    df = pd.DataFrame(rows, columns=["relpath", "size", "sha256"])
    return df[df.relpath.str.contains("/accel/")].reset_index(drop=True) if accel_only else df


def verify_wisdm(root: Path | str, *, full: bool = False, require_all: bool = False,
                 delete_bad: bool = False) -> pd.DataFrame:
    """Check the raw accel files under ``root/wisdm-dataset``: sizes always, sha256 when ``full``.

    Returns the files checked (``relpath, size, sha256, present``). Raises ValueError naming the
    first bad file and both values (deleting it when ``delete_bad``), or FileNotFoundError listing
    missing files when ``require_all`` (a complete download must hold every listed accel file).
    """
    base = Path(root) / "wisdm-dataset"
    ref = wisdm_reference()
    ref["present"] = [(base / p).is_file() for p in ref.relpath]
    if require_all and not ref.present.all():
        missing = ref.relpath[~ref.present].tolist()
        raise FileNotFoundError(f"WISDM: {len(missing)} raw accel file(s) missing under {base}: {', '.join(missing[:10])}"
                                + (" ..." if len(missing) > 10 else ""))
    for row in ref[ref.present].itertuples():
        path = base / row.relpath
        size = path.stat().st_size
        problem = None
        if size != row.size:
            problem = f"size {size} bytes, expected {row.size}"
        elif full:
            got = sha256_file(path)
            if got != row.sha256:
                problem = f"sha256 {got}, expected {row.sha256}"
        if problem:
            if delete_bad:
                path.unlink()
            raise ValueError(
                f"WISDM file {path} is damaged: {problem}"
                + (" (deleted; run again to re-download)" if delete_bad else
                   f" (replace it from {WISDM_URL})")
            )
    return ref


def _wisdm_member(name: str) -> bool:
    p = PurePosixPath(name)
    return (len(p.parts) >= 2 and p.parts[0] == "wisdm-dataset" and "__MACOSX" not in p.parts
            and ((len(p.parts) == 5 and p.parts[1] == "raw" and p.parts[3] == "accel") or len(p.parts) == 2))


def prepare_wisdm(root: Path | str, *, download: bool = True, verify: bool = False, url: str = WISDM_URL) -> Path:
    """Make sure ``root/wisdm-dataset/raw/{phone,watch}/accel`` holds the raw accel files.

    Present already (e.g. a shared copy): used as is, sizes checked (sha256 too when ``verify``).
    Absent: the UCI zip (which contains ``wisdm-dataset.zip``) is downloaded to ``root/downloads``,
    the accel files and top-level notes are extracted, every file is checked by sha256 (a bad one is
    deleted), and the archives are removed. Returns ``root``.
    """
    root = Path(root)
    base = root / "wisdm-dataset" / "raw"
    if any((base / p / "accel").is_dir() for p in ("phone", "watch")):
        verify_wisdm(root, full=verify)
        return root
    if not download:
        raise DownloadError(_wisdm_hint(root, url))
    downloads = root / "downloads"
    outer = fetch(url, downloads / "wisdm.zip")
    try:
        inner_files = safe_extract(outer, downloads, members=lambda n: PurePosixPath(n).name == "wisdm-dataset.zip")
        if not inner_files:
            raise DownloadError(f"{outer} does not contain wisdm-dataset.zip; {_wisdm_hint(root, url)}")
        safe_extract(inner_files[0], root, members=_wisdm_member)
    except zipfile.BadZipFile as e:
        outer.unlink(missing_ok=True)
        raise DownloadError(f"{outer} is not a valid zip ({e}; deleted). {_wisdm_hint(root, url)}") from e
    verify_wisdm(root, full=True, require_all=True, delete_bad=True)
    shutil.rmtree(downloads, ignore_errors=True)
    return root


def _wisdm_hint(root: Path, url: str) -> str:
    return (f"WISDM raw data not found under {root / 'wisdm-dataset'}. Download {url} , unzip it, unzip the "
            f"wisdm-dataset.zip inside, and put the resulting wisdm-dataset/ folder in {root} "
            "(or set SMOOTHDISTILL_DATA to the folder that holds it).")


# ----------------------------------------------------------------------------------------------
# MHEALTH


def prepare_mhealth(root: Path | str, *, download: bool = True, url: str = MHEALTH_URL) -> Path:
    """Make sure ``root/MHEALTHDATASET`` (or ``root/mhealth``) holds the 10 logs; returns ``root``."""
    from smoothdistill_lib.mhealth import find_dir

    root = Path(root)
    if find_dir(root) is not None:
        return root
    hint = (f"MHEALTH logs (mHealth_subject1..10.log) not found under {root}. Download {url} , unzip it "
            f"and put the MHEALTHDATASET/ folder in {root} (or set SMOOTHDISTILL_DATA to its parent).")
    if not download:
        raise DownloadError(hint)
    archive = fetch(url, root / "downloads" / "mhealth.zip")
    try:
        safe_extract(archive, root, members=lambda n: n.endswith(".log") and "__MACOSX" not in n)
    except zipfile.BadZipFile as e:
        archive.unlink(missing_ok=True)
        raise DownloadError(f"{archive} is not a valid zip ({e}; deleted). {hint}") from e
    if find_dir(root) is None:
        raise DownloadError(f"{archive} held no mHealth_subject*.log files. {hint}")
    shutil.rmtree(root / "downloads", ignore_errors=True)
    return root
