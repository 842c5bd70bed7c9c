"""WISDM (UCI 507) raw accelerometer loader: phone and watch streams as one :class:`Recording`.

Layout read (the unpacked UCI archive)::

    <root>/wisdm-dataset/raw/phone/accel/data_<subject>_accel_phone.txt
    <root>/wisdm-dataset/raw/watch/accel/data_<subject>_accel_watch.txt

Every line is ``subject,activity,timestamp,x,y,z;`` (trailing ``;``). Stream order (the authors'
concatenation, which the paper's 143,023 windows require): every phone file sorted by name, then every
watch file sorted by name; rows in file order. Activities are the 18 letters A..S without N, ids 0..17
in letter order; placements ``["phone", "watch"]`` (ids 0, 1).

Timestamps are device-clock nanoseconds. Most sessions run at 20 Hz but some at 25, 50 or 100 Hz;
each session's rate is estimated (median timestamp step) and reported in ``info["sessions"]``. By
default the rows are kept as recorded, exactly as the paper does (no resampling); ``resample_hz=20``
brings every session to one rate (polyphase filter, ``scipy.signal.resample_poly``).

Parsing uses pyarrow's CSV reader on the whole file when it is installed (pandas' C parser
otherwise), and a compact ``.npz`` copy of each parsed file is cached under the user's cache folder
(``config.cache_dir()/wisdm``, ``$SMOOTHDISTILL_CACHE``), never next to the data: data folders are only
read. A cache entry is keyed by the source file's resolved path, size, mtime and ctime (one
``stat``; see :func:`_cache_path`), so a second load reads binary arrays only. Not by content: a full
hash costs three times the cached read (``benchmarks/bench_cache_key.py``); the ctime, which POSIX
kernels set on every write and no user call restores, catches a file edited with its size and
mtime put back. Where ctime is the creation time (Windows) such an edit is not seen: ``clear_cache()``.

Values are checked after the cast to float32, the dtype the model trains in: a value such as
``1e39`` parses as a finite float64 but is ``inf`` in float32, and is reported with its file and line.

A folder that lacks some of the archive's documented accel files (the list ships with the library:
``resources/wisdm_SIZES.all-raw``) is a subset; loading all of it warns once
(:class:`~smoothdistill_lib.errors.IncompleteDataWarning`) unless ``subset_ok=True`` or
``SMOOTHDISTILL_ALLOW_SUBSET=1``.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
import shutil
import tempfile
import warnings
from fractions import Fraction
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from smoothdistill_lib import config
from smoothdistill_lib.errors import warn_incomplete
from smoothdistill_lib.recordings import (
    FLOAT32_OVERFLOW,
    Recording,
    as_float32,
    make_frame,
    sessions_from_runs,
)

ACTIVITY_CODES = "ABCDEFGHIJKLMOPQRS"  # A..S without N, as in activity_key.txt
ACTIVITY_NAMES = [
    "walking", "jogging", "stairs", "sitting", "standing", "typing", "teeth", "soup", "chips",
    "pasta", "drinking", "sandwich", "kicking", "catch", "dribbling", "writing", "clapping", "folding",
]
PLACEMENT_NAMES = ["phone", "watch"]
NOMINAL_RATES_HZ = (20.0, 25.0, 50.0, 100.0)  # rates seen in the archive; measured rates snap to these
SAMPLING_RATE_HZ = 20.0  # the rate the dataset documents
#: Raw accelerometer rows of the FULL archive, as its readme documents them. The paper's 143,023
#: windows follow from phone rows then watch rows in one stream (book/12_authors_code.ipynb).
DOCUMENTED_ROWS = {"phone": 4_804_403, "watch": 3_777_046}
#: WISDM's window count in the paper (its Table 4 total). It follows from DOCUMENTED_ROWS in one stream
#: cut with the paper's windowing (100 samples, step 60): tests/test_windows.py checks that it does.
PAPER_WINDOWS = 143_023

_CACHE_VERSION = 2  # bump when the cached arrays change meaning (2: validated after the float32 cast)
_FILE_RE = re.compile(r"^data_(\d+)_accel_(phone|watch)\.txt$")
_COLUMNS = ["subject", "activity", "timestamp", "x", "y", "z"]
_CODE_TO_ID = {c: i for i, c in enumerate(ACTIVITY_CODES)}


def dataset_dir(root: Path | str) -> Path:
    """The ``wisdm-dataset`` folder: ``root/wisdm-dataset`` or ``root`` itself if it holds ``raw/``."""
    root = Path(root)
    if (root / "wisdm-dataset").is_dir() or not (root / "raw").is_dir():
        return root / "wisdm-dataset"
    return root


def raw_files(root: Path | str, placements=PLACEMENT_NAMES) -> pd.DataFrame:
    """The raw accel files under ``root`` in stream order: columns ``path, subject, placement``.

    Unrelated files in the folders are ignored; a missing folder gives an empty listing for it.
    """
    base = dataset_dir(root)
    rows = []
    for placement in placements:
        if placement not in PLACEMENT_NAMES:
            raise ValueError(f"unknown WISDM placement {placement!r}; choose from {PLACEMENT_NAMES}")
        folder = base / "raw" / placement / "accel"
        names = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        for name in names:
            m = _FILE_RE.match(name)
            if m and m.group(2) == placement:
                rows.append((folder / name, int(m.group(1)), placement))
    return pd.DataFrame(rows, columns=["path", "subject", "placement"])


def subjects_by_placement(root: Path | str) -> dict[str, list[int]]:
    """Sorted subject ids that have a raw accel file, per placement."""
    files = raw_files(root)
    return {p: sorted(files.loc[files.placement == p, "subject"].tolist()) for p in PLACEMENT_NAMES}


# ----------------------------------------------------------------------------------------------
# parsing one file


def _scan_for_error(path: Path, text: str, subject: int) -> ValueError:
    """Slow exact check, run only after the fast parser failed: the first bad line, with its number.

    Hand-written because neither pyarrow nor pandas reports line numbers for every kind of defect
    (wrong field count, empty field, unknown code, wrong subject).
    """
    for lineno, line in enumerate(text.splitlines(), start=1):
        s = line.strip()
        if not s:
            continue
        fields = s[:-1].split(",") if s.endswith(";") else s.split(",")
        where = f"{path}, line {lineno}"
        if len(fields) != 6:
            return ValueError(
                f"{where}: malformed WISDM line {line!r}: expected 6 fields "
                f"'subject,activity,timestamp,x,y,z;', found {len(fields)}"
            )
        try:
            subj, ts = int(fields[0]), int(fields[2])
            xyz = [float(v) for v in fields[3:]]
        except ValueError:
            return ValueError(f"{where}: malformed WISDM line {line!r}: a number does not parse")
        code = fields[1].strip()
        if code not in _CODE_TO_ID:
            return ValueError(
                f"{where}: unknown WISDM activity code {code!r} (known codes: {ACTIVITY_CODES}, "
                "i.e. A..S without N)"
            )
        if subj != subject:
            return ValueError(f"{where}: subject {subj} differs from the file name's subject {subject}")
        if ts < 0 or not all(math.isfinite(v) for v in xyz):
            return ValueError(f"{where}: malformed WISDM line {line!r}: negative timestamp or non-finite value")
        if not np.isfinite(as_float32(xyz)).all():
            return ValueError(
                f"{where}: value out of range in {line!r}: {FLOAT32_OVERFLOW}"
            )
    return ValueError(f"{path}: could not be parsed as WISDM raw data (no single bad line found)")


def _pyarrow_csv():
    """``(pyarrow, pyarrow.csv)``, or None when pyarrow (the optional "fast" extra) is missing."""
    try:
        import pyarrow as pa
        import pyarrow.csv as pacsv
    except ImportError:
        return None
    return pa, pacsv


def _fast_parse(data: bytes) -> pd.DataFrame:
    """Parse ``subject,activity,timestamp,x,y,z`` lines (``;`` already stripped) into a DataFrame."""
    arrow = _pyarrow_csv()
    if arrow is None:  # pandas' C parser: same result, about 2x slower
        return pd.read_csv(
            io.BytesIO(data), header=None, names=_COLUMNS, engine="c",
            dtype={"subject": "int64", "activity": "str", "timestamp": "int64",
                   "x": "float64", "y": "float64", "z": "float64"},
        )
    pa, pacsv = arrow
    table = pacsv.read_csv(
        pa.py_buffer(data),
        read_options=pacsv.ReadOptions(column_names=_COLUMNS),
        convert_options=pacsv.ConvertOptions(
            column_types={"subject": pa.int64(), "activity": pa.string(), "timestamp": pa.int64(),
                          "x": pa.float64(), "y": pa.float64(), "z": pa.float64()}
        ),
    )
    return table.to_pandas()


def read_file(path: Path | str) -> dict[str, np.ndarray]:
    """Parse one raw accel file: ``activity`` (n,) int16 ids, ``timestamp`` (n,) int64 ns,
    ``x``/``y``/``z`` (n,) float32 (parsed as float64 and then cast, like the authors' pandas code).

    Raises ValueError naming the file and line for a malformed line, an unknown activity code, a
    subject that differs from the file name's, or a value that is not finite in float32.
    """
    path = Path(path)
    m = _FILE_RE.match(path.name)
    if not m:
        raise ValueError(f"{path}: not a WISDM raw accel file name (data_<subject>_accel_<phone|watch>.txt)")
    subject = int(m.group(1))
    raw = path.read_bytes()
    # the trailing ';' would make z a string column; dropping it before a line end keeps any
    # other stray ';' in place so that the line still fails to parse (and is reported)
    data = raw.replace(b";\r\n", b"\n").replace(b";\n", b"\n")
    if data.endswith(b";"):
        data = data[:-1]
    if not data.strip():
        raise ValueError(f"{path}: empty file (no WISDM lines); re-download or remove it")
    try:
        df = _fast_parse(data)
    except Exception as e:  # any parser error (pyarrow or pandas) is re-reported with its line number
        text = raw.decode("utf-8", errors="replace")
        raise _scan_for_error(path, text, subject) from e
    codes = df["activity"].astype("string").str.strip()
    activity = codes.map(_CODE_TO_ID)
    bad = (
        df[["subject", "timestamp", "x", "y", "z"]].isna().any(axis=1).to_numpy()
        | activity.isna().to_numpy()
        | (df["subject"].to_numpy() != subject)
    )
    # checked AFTER the cast to float32: a finite float64 such as 1e39 becomes inf there
    xyz = as_float32(df[["x", "y", "z"]].to_numpy(dtype=np.float64))
    bad |= ~np.isfinite(xyz).all(axis=1) | (df["timestamp"].fillna(0).to_numpy() < 0)
    if bad.any():
        raise _scan_for_error(path, raw.decode("utf-8", errors="replace"), subject)
    return {
        "activity": activity.to_numpy(dtype=np.int16),
        "timestamp": df["timestamp"].to_numpy(dtype=np.int64),
        "x": np.ascontiguousarray(xyz[:, 0]),
        "y": np.ascontiguousarray(xyz[:, 1]),
        "z": np.ascontiguousarray(xyz[:, 2]),
    }


# ----------------------------------------------------------------------------------------------
# the documented file list (shipped with the library: sizes and sha256 of all 204 raw files)


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


# ----------------------------------------------------------------------------------------------
# cache


def cache_dir(root: Path | str | None = None) -> Path:
    """Where parsed copies of WISDM files are cached: ``config.cache_dir()/wisdm`` (``root`` is
    accepted for compatibility and ignored: entries are keyed by each source file's path)."""
    return config.cache_dir() / "wisdm"


def _cache_path(cdir: Path, src: Path, placement: str) -> Path:
    """``<cdir>/<placement>/<name>.<hash of resolved path>.<size>-<mtime_ns>-<ctime_ns>.v<N>.npz``.

    Keyed by one ``stat`` (path, size, mtime and ctime) rather than by content: a full hash of the
    sources on every load costs three times the cached read itself (``benchmarks/bench_cache_key.py``
    on the shared subset, 62 files, 222 MB, warm page cache, 2 loaded cores: sha256 0.20 s, blake2b
    0.28 s, cached read 0.064 s, whole warm ``load`` 0.34 s; the stat 0.1 ms). The ctime is what
    makes a stat key hold: on POSIX the kernel sets it on every write and every metadata change, and
    no user call sets it back, so a file edited in place with its size and mtime restored (``os.utime``,
    ``touch -d``, ``cp -p``) still gets a new key and is parsed again. The limit: where ctime is not a
    change time (Windows reports the creation time) such an edit is served from the stale cache;
    ``clear_cache()`` then. The path hash keeps two copies of a file apart.
    """
    st = src.stat()
    key = f"{st.st_size}-{st.st_mtime_ns}-{st.st_ctime_ns}"
    return cdir / placement / f"{src.name}.{_path_tag(src)}.{key}.v{_CACHE_VERSION}.npz"


def _path_tag(src: Path) -> str:
    """Short hash of a source file's resolved path (part of its cache entries' names)."""
    return hashlib.sha1(str(Path(src).resolve()).encode()).hexdigest()[:12]


def _read_cached(src: Path, placement: str, cdir: Path | None) -> dict[str, np.ndarray]:
    if cdir is None:
        return read_file(src)
    target = _cache_path(cdir, src, placement)
    if target.is_file():
        try:
            with np.load(target) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError):  # a damaged cache file is rebuilt, never trusted
            pass
    arrays = read_file(src)
    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        for old in target.parent.glob(f"{src.name}.{_path_tag(src)}.*.npz"):  # older versions of this source
            if old != target:
                old.unlink(missing_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp.npz")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, target)  # atomic: a crash never leaves a half-written cache file behind
    except OSError as e:  # a cache that cannot be written only costs time: say so, keep going
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        warnings.warn(f"could not write WISDM cache file {target} ({e}); set SMOOTHDISTILL_CACHE to a "
                      "writable folder", stacklevel=3)
    return arrays


def clear_cache(root: Path | str | None = None) -> None:
    """Delete the cached parsed copies of ``root``'s files (every WISDM cache entry when ``root`` is None)."""
    d = cache_dir()
    if not d.exists():
        return
    if root is None:
        shutil.rmtree(d)
        return
    files = raw_files(root)
    for src, placement in zip(files.path, files.placement):
        for entry in (d / placement).glob(f"{src.name}.{_path_tag(src)}.*.npz"):
            entry.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------
# completeness against the archive's documented file list


def missing_files(root: Path | str, placements=PLACEMENT_NAMES) -> dict[str, list[str]]:
    """Per placement, the documented raw accel file names (of the full archive) absent under ``root``."""
    ref = wisdm_reference(accel_only=True)
    have = set(raw_files(root, placements).path.map(lambda p: p.name))
    out = {}
    for placement in placements:
        names = [r.rsplit("/", 1)[-1] for r in ref.relpath if r.startswith(f"raw/{placement}/accel/")]
        out[placement] = [n for n in names if n not in have]
    return out


def file_counts(root: Path | str, placements=PLACEMENT_NAMES) -> dict[str, tuple[int, int]]:
    """Per placement, (documented accel files present under ``root``, documented accel files)."""
    ref = wisdm_reference(accel_only=True)
    missing = missing_files(root, placements)
    total = {p: int(ref.relpath.str.startswith(f"raw/{p}/accel/").sum()) for p in placements}
    return {p: (total[p] - len(missing[p]), total[p]) for p in placements}


def check_complete(root: Path | str, placements=PLACEMENT_NAMES, *, subset_ok: bool | None = None,
                   stacklevel: int = 3) -> dict[str, list[str]]:
    """Warn (one line, ``IncompleteDataWarning``) when ``root`` lacks documented accel files for
    ``placements``, naming counts and a few files; silent when ``subset_ok`` or
    ``$SMOOTHDISTILL_ALLOW_SUBSET`` opts in. Returns :func:`missing_files`."""
    missing = missing_files(root, placements)
    if any(missing.values()):
        counts = ", ".join(f"{have} of {total} {p}" for p, (have, total) in file_counts(root, placements).items())
        names = [n for p in placements for n in missing[p]]
        # no folder path: the message is printed into chapters, and a machine's path means nothing
        # to a reader (`datasets` names the folder)
        warn_incomplete(
            f"WISDM is incomplete here: its folder holds {counts} accel files "
            f"({len(names)} missing, e.g. {', '.join(names[:3])}; `python -m smoothdistill_lib datasets` "
            "shows the folder)",
            subset_ok, stacklevel=stacklevel + 1,
        )
    return missing


# ----------------------------------------------------------------------------------------------
# sessions and rates


def _snap_rate(rate: np.ndarray) -> np.ndarray:
    nominal = np.asarray(NOMINAL_RATES_HZ)
    return nominal[np.abs(np.log(rate[:, None] / nominal[None, :])).argmin(axis=1)]


def _session_table(session, subject, placement, activity, file_idx, timestamp, files) -> pd.DataFrame:
    starts = np.flatnonzero(np.r_[True, session[1:] != session[:-1]]) if len(session) else np.array([], int)
    counts = np.diff(np.r_[starts, len(session)])
    dt = np.diff(timestamp).astype(np.float64)
    dt = np.r_[dt, np.nan]
    dt[np.r_[starts[1:] - 1, len(session) - 1] if len(session) else []] = np.nan  # no cross-session steps
    med = pd.Series(dt).groupby(session).median().to_numpy() if len(session) else np.array([])
    rate = np.where(med > 0, 1e9 / np.where(med > 0, med, 1), np.nan)
    table = pd.DataFrame({
        "session": session[starts],
        "subject": subject[starts],
        "placement": [PLACEMENT_NAMES[i] for i in placement[starts]],
        "activity": [ACTIVITY_NAMES[i] for i in activity[starts]],
        "file": [files[i].name for i in file_idx[starts]],
        "start": starts,
        "n_samples": counts,
        "rate_hz": rate.round(2),
    })
    table["nominal_hz"] = _snap_rate(np.nan_to_num(rate, nan=SAMPLING_RATE_HZ)) if len(table) else []
    table["duration_s"] = (table["n_samples"] / table["nominal_hz"]).round(1)
    return table


def _resample(cols: dict[str, np.ndarray], sessions: pd.DataFrame, target_hz: float) -> dict[str, np.ndarray]:
    from scipy.signal import resample_poly

    xyz = np.stack([cols["x"], cols["y"], cols["z"]], axis=1).astype(np.float64)
    out = {k: [] for k in ("x", "y", "z", "subject", "activity", "placement", "file")}
    for row in sessions.itertuples():
        sl = slice(row.start, row.start + row.n_samples)
        ratio = Fraction(target_hz / row.nominal_hz).limit_denominator(1000)
        seg = xyz[sl] if ratio == 1 else resample_poly(xyz[sl], ratio.numerator, ratio.denominator, axis=0)
        for k, v in zip("xyz", seg.T):
            out[k].append(v.astype(np.float32))
        for k in ("subject", "activity", "placement", "file"):
            out[k].append(np.full(len(seg), cols[k][row.start], dtype=cols[k].dtype))
    return {k: np.concatenate(v) if v else np.array([], dtype=cols[k].dtype) for k, v in out.items()}


# ----------------------------------------------------------------------------------------------
# load


def load(
    root: Path | str,
    subjects=None,
    *,
    placements=PLACEMENT_NAMES,
    cache: bool = True,
    resample_hz: float | None = None,
    subset_ok: bool | None = None,
) -> Recording:
    """Load the WISDM raw accelerometer files under ``root`` as one :class:`Recording`.

    ``root`` holds ``wisdm-dataset/`` (or is that folder). ``subjects``: ids to keep (default: every
    file found); each asked subject must have a file for every placement in ``placements``, else
    FileNotFoundError lists the missing files. Rows are phone files (sorted), then watch files
    (sorted); ``placement_names`` is always ``["phone", "watch"]`` so ids do not depend on the
    selection. ``resample_hz=None`` keeps every session at its recorded rate (the paper's
    behaviour); a number resamples each session from its nominal rate. Loading every file found
    (``subjects=None``) from a folder that lacks some of the archive's files warns
    (``IncompleteDataWarning``) unless ``subset_ok=True`` or ``$SMOOTHDISTILL_ALLOW_SUBSET`` is set;
    asking for ``subjects`` explicitly is a chosen subset and never warns. ``cache=True`` keeps parsed
    copies under ``config.cache_dir()``; ``root`` is only read.

    ``info``: ``sessions`` (DataFrame: session, subject, placement, activity, file, start,
    n_samples, rate_hz measured, nominal_hz, duration_s), ``files`` (paths read), ``root``,
    ``resampled_to``. Frame shape: (n_samples, 7).
    """
    files = raw_files(root, placements)
    if subjects is not None:
        wanted = sorted({int(s) for s in subjects})
        have = set(zip(files.subject, files.placement))
        base = dataset_dir(root)
        missing = [str(base / "raw" / p / "accel" / f"data_{s}_accel_{p}.txt")
                   for p in placements for s in wanted if (s, p) not in have]
        if missing:
            raise FileNotFoundError(f"WISDM: {len(missing)} requested file(s) not found: {', '.join(missing)}")
        files = files[files.subject.isin(wanted)].reset_index(drop=True)
    if files.empty:
        raise FileNotFoundError(
            f"WISDM: no raw accel files (data_<subject>_accel_<phone|watch>.txt) under "
            f"{dataset_dir(root) / 'raw'}/{{phone,watch}}/accel"
        )
    if subjects is None:
        check_complete(root, placements, subset_ok=subset_ok)
    cdir = cache_dir() if cache else None
    parts = [_read_cached(p, pl, cdir) for p, pl in zip(files.path, files.placement)]
    n = np.array([len(a["activity"]) for a in parts])
    cols = {
        k: np.concatenate([a[k] for a in parts]) for k in ("x", "y", "z", "activity", "timestamp")
    }
    cols["file"] = np.repeat(np.arange(len(files), dtype=np.int32), n)
    cols["subject"] = np.repeat(files.subject.to_numpy(np.int32), n)
    cols["placement"] = np.repeat(
        np.array([PLACEMENT_NAMES.index(p) for p in files.placement], dtype=np.int8), n
    )
    session = sessions_from_runs(cols["file"], cols["activity"])
    table = _session_table(session, cols["subject"], cols["placement"], cols["activity"], cols["file"],
                           cols["timestamp"], list(files.path))
    rate = SAMPLING_RATE_HZ
    if resample_hz is not None:
        if not resample_hz > 0:
            raise ValueError(f"resample_hz must be a positive rate in Hz, got {resample_hz!r}")
        cols = _resample(cols, table, float(resample_hz))
        session = sessions_from_runs(cols["file"], cols["activity"])
        counts = np.bincount(session, minlength=len(table))
        table = table.assign(start=np.r_[0, np.cumsum(counts)[:-1]], n_samples=counts)
        rate = float(resample_hz)
    frame = make_frame(x=cols["x"], y=cols["y"], z=cols["z"], subject=cols["subject"],
                       activity=cols["activity"], placement=cols["placement"], session=session)
    return Recording(
        name="wisdm",
        frame=frame,
        activity_names=list(ACTIVITY_NAMES),
        placement_names=list(PLACEMENT_NAMES),
        sampling_rate_hz=rate,
        info={"sessions": table, "files": list(files.path), "root": Path(root), "resampled_to": resample_hz},
    )
