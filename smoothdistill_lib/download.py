"""Fetch, verify and unpack the public datasets, safely and only once.

* :func:`fetch` downloads to a temporary ``.part`` file beside the target and renames it into place
  (``os.replace``), so an interrupted download never leaves a file that looks complete; an
  existing valid file is never downloaded again. ``.part`` files left by a killed download are
  removed once they are a day old or once the download they belong to has finished.
* :func:`safe_extract` refuses archive members with absolute paths or ``..``.
* :func:`verify_wisdm` checks the raw WISDM accel files against the lists shipped with the library
  (``resources/wisdm_SIZES.all-raw`` always, ``resources/wisdm_SHA256SUMS.all-raw`` on demand).
* :func:`prepare_wisdm` / :func:`prepare_mhealth` put a dataset under a folder: used as is when
  already there, else downloaded, unpacked into a temporary folder beside the target, every
  expected file verified, and only then moved into place in one ``os.replace`` of the folder. A
  damaged or incomplete archive is deleted and nothing is installed, so a partial folder is never
  left behind to be trusted by the next run.

Failures raise :class:`DownloadError` (a FileNotFoundError: the data is not there, and a
:class:`~smoothdistill_lib.errors.UserError`) with one message saying what went wrong, what to
download and where to put it.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath

import pandas as pd

from smoothdistill_lib import mhealth
from smoothdistill_lib.config import show_progress
from smoothdistill_lib.errors import UserError
from smoothdistill_lib.wisdm import wisdm_reference

WISDM_URL = (
    "https://archive.ics.uci.edu/static/public/507/"
    "wisdm+smartphone+and+smartwatch+activity+and+biometrics+dataset.zip"
)
MHEALTH_URL = "https://archive.ics.uci.edu/static/public/319/mhealth+dataset.zip"
_CHUNK = 1 << 20
#: a ``.part`` download or an unpacking folder older than this is a leftover of a killed process
STALE_SECONDS = 24 * 3600
#: what a damaged zip raises while being read: a bad CRC or header (BadZipFile), a corrupt deflate
#: stream (zlib.error), a truncated member (EOFError), an unknown compression (NotImplementedError)
ARCHIVE_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError)
#: MHEALTH's UCI zip has no published checksum, and it is not known offline here: a user who has one
#: sets it here (or passes ``sha256=``) and the download is checked against it. Without one, the
#: unpacked logs are checked by their documented shape instead (10 logs, 1,215,745 rows, 24 columns).
MHEALTH_SHA256_ENV = "SMOOTHDISTILL_MHEALTH_SHA256"


class DownloadError(UserError, FileNotFoundError):
    """A dataset could not be fetched or unpacked; the message says what to download and where to put it."""


#: what a request raises when the server was reached but gave no usable answer: a timeout, a closed,
#: reset or refused connection, a malformed reply (http.client) or an HTTP error status
_NO_ANSWER = (TimeoutError, ConnectionResetError, ConnectionRefusedError, ConnectionAbortedError,
              http.client.HTTPException, urllib.error.HTTPError)


def why_unreachable(e: BaseException) -> tuple[str, str]:
    """``(kind, detail)`` of a failed request, for a one-line message: kind ``"server did not
    answer"`` when the host was reached but did not answer (:data:`_NO_ANSWER`, also when urllib
    wraps one in a ``URLError``), else ``"no network"`` (no route, a name that does not resolve, no
    interface): the user's remedy differs (try later or use a mirror, vs. get online)."""
    if isinstance(e, urllib.error.HTTPError):
        return "server did not answer", f"HTTP {e.code} {e.reason}"
    reason = getattr(e, "reason", None) if isinstance(e, urllib.error.URLError) else e
    if isinstance(reason, _NO_ANSWER):
        detail = str(reason) or type(reason).__name__
        return "server did not answer", "timed out" if isinstance(reason, TimeoutError) and not str(reason) else detail
    return "no network", str(reason if reason is not None else e) or type(e).__name__


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
    ``progress``: show a tqdm progress bar (bytes, out of the server's Content-Length), unless
    ``SMOOTHDISTILL_PROGRESS=0`` (:func:`config.show_progress`).
    """
    dest = Path(dest)
    if dest.exists():
        if sha256 is None or sha256_file(dest) == sha256.lower():
            clean_stale_parts(dest)
            return dest
        dest.unlink()  # a stale or damaged copy: fetch again
    dest.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_parts(dest)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                from tqdm.auto import tqdm

                total = int(resp.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name,
                          disable=not show_progress(progress)) as bar:
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
        clean_stale_parts(dest)  # finished: other .part files of this download are dead
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        kind, detail = why_unreachable(e)
        raise DownloadError(
            f"could not download {url} ({kind}: {detail}). Download it by hand and save it as {dest}, then run again."
        ) from e
    finally:
        Path(tmp).unlink(missing_ok=True)
    return dest


def clean_stale_parts(dest: Path | str, *, max_age_s: float = STALE_SECONDS) -> list[Path]:
    """Delete the ``.part`` files of downloads to ``dest`` left by killed processes: all of them when
    ``dest`` exists (that download finished), else those older than ``max_age_s`` (a younger one may
    belong to a download still running in another process). Returns the files deleted."""
    dest = Path(dest)
    if not dest.parent.is_dir():
        return []
    done = dest.exists()
    removed = []
    for part in dest.parent.glob(f".{dest.name}.*.part"):
        try:
            if done or time.time() - part.stat().st_mtime > max_age_s:
                part.unlink()
                removed.append(part)
        except OSError:  # vanished meanwhile, or not ours to delete: not worth failing a download for
            pass
    return removed


@contextlib.contextmanager
def _staging(root: Path, name: str):
    """A fresh temporary folder inside ``root`` (the same filesystem, so that ``os.replace`` of a
    folder from it into ``root`` is atomic), deleted on exit whatever happens. Unpacking folders of
    killed processes (older than a day) are deleted first."""
    root.mkdir(parents=True, exist_ok=True)
    for old in root.glob(f".{name}.*.unpacking"):
        with contextlib.suppress(OSError):
            if time.time() - old.stat().st_mtime > STALE_SECONDS:
                shutil.rmtree(old, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}.", suffix=".unpacking"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _kind(e: BaseException) -> str:
    """``zlib.error`` rather than the bare ``error`` (builtins keep their plain names)."""
    mod = type(e).__module__
    return type(e).__name__ if mod == "builtins" else f"{mod}.{type(e).__name__}"


def _move_into_place(src: Path, dest: Path) -> None:
    """``os.replace`` the verified folder ``src`` to ``dest``; an empty ``dest`` is replaced, anything
    else there is the user's and is never overwritten."""
    if dest.exists() and not (dest.is_dir() and not any(dest.iterdir())):
        raise DownloadError(f"{dest} already exists but does not hold the dataset; move it away and run again "
                            f"(the verified download is not installed over it)")
    os.replace(src, dest)


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

    Present already (e.g. a shared copy): used as is (only read), sizes checked (sha256 too when
    ``verify``); a subset is the loaders' business (they warn). Absent: the UCI zip (which contains
    ``wisdm-dataset.zip``) is downloaded to ``root/downloads``, the accel files and top-level notes
    are unpacked into a temporary folder in ``root``, every one of the 102 accel files is checked by
    size and sha256 against the shipped list, and only then is ``wisdm-dataset/`` moved into place
    (one ``os.replace``). A damaged or incomplete archive raises :class:`DownloadError` (ValueError
    for a checksum mismatch) naming the member, is deleted, and nothing is installed. Returns ``root``.
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
    with _staging(root, "wisdm-dataset") as tmp:
        try:
            inner_files = safe_extract(outer, tmp / "outer",
                                       members=lambda n: PurePosixPath(n).name == "wisdm-dataset.zip")
            if not inner_files:
                outer.unlink(missing_ok=True)
                raise DownloadError(f"{outer} does not contain wisdm-dataset.zip (deleted); {_wisdm_hint(root, url)}")
            safe_extract(inner_files[0], tmp, members=_wisdm_member)
        except ARCHIVE_ERRORS as e:
            outer.unlink(missing_ok=True)
            raise DownloadError(f"{outer} is damaged or not a valid zip ({_kind(e)}: {e}); it was deleted "
                                f"and nothing was installed. {_wisdm_hint(root, url)}") from e
        try:
            verify_wisdm(tmp, full=True, require_all=True)
        except (ValueError, FileNotFoundError) as e:
            outer.unlink(missing_ok=True)
            # name the member, not the temporary folder (gone once this returns)
            what = str(e).replace(f"{tmp}{os.sep}", "")
            err = ValueError if isinstance(e, ValueError) else DownloadError
            raise err(f"{outer}: the archive is damaged or incomplete: {what}. The archive was deleted and "
                      "nothing was installed; run again to download it anew") from e
        _move_into_place(tmp / "wisdm-dataset", root / "wisdm-dataset")
    shutil.rmtree(downloads, ignore_errors=True)
    return root


def _wisdm_hint(root: Path, url: str) -> str:
    return (f"WISDM raw data not found under {root / 'wisdm-dataset'}. Download {url} , unzip it, unzip the "
            f"wisdm-dataset.zip inside, and put the resulting wisdm-dataset/ folder in {root} "
            "(or set SMOOTHDISTILL_DATA to the folder that holds it).")


# ----------------------------------------------------------------------------------------------
# MHEALTH


def prepare_mhealth(root: Path | str, *, download: bool = True, url: str = MHEALTH_URL,
                    sha256: str | None = None, expected_rows: int | None = None) -> Path:
    """Make sure ``root/MHEALTHDATASET`` (or ``root/mhealth``) holds the logs; returns ``root``.

    Present already: used as is (only read; a subset is the loader's business: it warns). Absent: the
    UCI zip is downloaded (checked against ``sha256`` or ``$SMOOTHDISTILL_MHEALTH_SHA256`` when one is
    given: none is published), its logs are unpacked into a temporary folder, and verified: the 10
    names ``mHealth_subject1..10.log``, every line 24 numeric columns with a valid label, and
    ``expected_rows`` rows in all (default: the documented 1,215,745). Only then is
    ``MHEALTHDATASET/`` moved into place (one ``os.replace``). A damaged or incomplete archive raises
    :class:`DownloadError` naming the problem, is deleted, and nothing is installed.
    """
    root = Path(root)
    if mhealth.find_dir(root) is not None:
        return root
    hint = (f"MHEALTH logs (mHealth_subject1..10.log) not found under {root}. Download {url} , unzip it "
            f"and put the MHEALTHDATASET/ folder in {root} (or set SMOOTHDISTILL_DATA to its parent).")
    if not download:
        raise DownloadError(hint)
    sha256 = sha256 or os.environ.get(MHEALTH_SHA256_ENV) or None
    expected_rows = mhealth.DOCUMENTED_ROWS if expected_rows is None else expected_rows
    archive = fetch(url, root / "downloads" / "mhealth.zip", sha256=sha256)

    def refuse(problem: str, cause: BaseException | None = None):
        archive.unlink(missing_ok=True)
        raise DownloadError(f"{archive}: {problem}; the archive was deleted and nothing was installed. {hint}") from cause

    with _staging(root, "MHEALTHDATASET") as tmp:
        try:
            written = safe_extract(archive, tmp / "zip", members=lambda n: "__MACOSX" not in n
                                   and mhealth._FILE_RE.match(PurePosixPath(n).name) is not None)
        except ARCHIVE_ERRORS as e:
            refuse(f"damaged or not a valid zip ({_kind(e)}: {e})", e)
        names = sorted(p.name for p in written)
        wanted = [f"mHealth_subject{s}.log" for s in mhealth.SUBJECTS]
        if sorted(set(names)) != sorted(wanted) or len(names) != len(wanted):
            missing = [n for n in wanted if n not in names]
            refuse(f"expected the 10 logs {wanted[0]}..{wanted[-1]} once each, found {len(names)} "
                   + (f"(missing: {', '.join(missing)})" if missing else f"({', '.join(names)})"))
        # Checked in full, once, at download time: the zip's own CRCs only prove the members are what
        # was packed, and no checksum is known for the archive (see MHEALTH_SHA256_ENV)
        final = tmp / "MHEALTHDATASET"
        final.mkdir()
        rows = 0
        for p in written:
            try:
                rows += len(mhealth.read_log(p)[1])
            except ValueError as e:
                refuse(f"member {p.name} is damaged: {str(e).replace(f'{p.parent}{os.sep}', '')}", e)
            os.replace(p, final / p.name)
        if rows != expected_rows:
            refuse(f"the 10 logs hold {rows:,} rows, the dataset documents {expected_rows:,}")
        _move_into_place(final, root / "MHEALTHDATASET")
    shutil.rmtree(root / "downloads", ignore_errors=True)
    return root
