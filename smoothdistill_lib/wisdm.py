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
otherwise), and a compact ``.npz`` copy of each parsed file is cached under
``<root>/.smoothdistill-cache/`` (or a user cache folder when ``root`` is read-only), keyed by the
source file's size and mtime, so a second load reads binary arrays only.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
import tempfile
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd

from smoothdistill_lib.recordings import Recording, make_frame, sessions_from_runs

ACTIVITY_CODES = "ABCDEFGHIJKLMOPQRS"  # A..S without N, as in activity_key.txt
ACTIVITY_NAMES = [
    "walking", "jogging", "stairs", "sitting", "standing", "typing", "teeth", "soup", "chips",
    "pasta", "drinking", "sandwich", "kicking", "catch", "dribbling", "writing", "clapping", "folding",
]
PLACEMENT_NAMES = ["phone", "watch"]
NOMINAL_RATES_HZ = (20.0, 25.0, 50.0, 100.0)  # rates seen in the archive; measured rates snap to these
SAMPLING_RATE_HZ = 20.0  # the rate the dataset documents
#: Raw accelerometer rows of the FULL archive, as its readme documents them. The paper's 143,023
#: windows follow from phone rows then watch rows in one stream (reference notes §5.1).
DOCUMENTED_ROWS = {"phone": 4_804_403, "watch": 3_777_046}

CACHE_DIRNAME = ".smoothdistill-cache"
_CACHE_VERSION = 1  # bump when the cached arrays change meaning
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

    Raises ValueError naming the file and line for a malformed line, an unknown activity code or a
    subject that differs from the file name's.
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
    xyz = df[["x", "y", "z"]].to_numpy(dtype=np.float64)
    bad |= ~np.isfinite(xyz).all(axis=1) | (df["timestamp"].fillna(0).to_numpy() < 0)
    if bad.any():
        raise _scan_for_error(path, raw.decode("utf-8", errors="replace"), subject)
    return {
        "activity": activity.to_numpy(dtype=np.int16),
        "timestamp": df["timestamp"].to_numpy(dtype=np.int64),
        "x": xyz[:, 0].astype(np.float32),
        "y": xyz[:, 1].astype(np.float32),
        "z": xyz[:, 2].astype(np.float32),
    }


# ----------------------------------------------------------------------------------------------
# cache


def _writable_dir(d: Path) -> bool:
    # a folder whose mode has no write bit (a shared, read-only copy) is never written to, even
    # by root, who could: the permission bits say what the owner intends
    existing = next((p for p in (d, *d.parents) if p.exists()), None)
    if existing is None or not existing.stat().st_mode & 0o222:
        return False
    try:
        d.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=d):
            pass
        return True
    except OSError:
        return False


def cache_dir(root: Path | str) -> Path | None:
    """Where parsed copies of ``root``'s files are cached: ``<root>/.smoothdistill-cache/wisdm``, or,
    when ``root`` is read-only (a shared copy), ``<data_dir>/.smoothdistill-cache/wisdm-<hash of root>``.
    ``None`` when no candidate is writable (loading then parses every time)."""
    from smoothdistill_lib.config import data_dir

    root = Path(root).resolve()
    tag = hashlib.sha1(str(root).encode()).hexdigest()[:12]
    for d in (root / CACHE_DIRNAME / "wisdm", data_dir() / CACHE_DIRNAME / f"wisdm-{tag}",
              Path.home() / ".cache" / "smoothdistill" / CACHE_DIRNAME / f"wisdm-{tag}"):
        if _writable_dir(d):
            return d
    return None


def _cache_path(cdir: Path, src: Path, placement: str) -> Path:
    st = src.stat()
    return cdir / placement / f"{src.name}.{st.st_size}-{st.st_mtime_ns}.v{_CACHE_VERSION}.npz"


def _read_cached(src: Path, placement: str, cdir: Path | None) -> dict[str, np.ndarray]:
    if cdir is None:
        return read_file(src)
    target = _cache_path(cdir, src, placement)
    if target.exists():
        try:
            with np.load(target) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError):  # a damaged cache file is rebuilt, never trusted
            pass
    arrays = read_file(src)
    target.parent.mkdir(parents=True, exist_ok=True)
    for old in target.parent.glob(f"{src.name}.*.npz"):  # stale copies of an older version of src
        if old != target:
            old.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp.npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, target)  # atomic: a crash never leaves a half-written cache file behind
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        warnings.warn(f"could not write WISDM cache file {target}: {e}", stacklevel=3)
    return arrays


def clear_cache(root: Path | str) -> None:
    """Delete the cached parsed copies of ``root``'s files."""
    import shutil

    d = cache_dir(root)
    if d is not None and d.exists():
        shutil.rmtree(d)


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
) -> Recording:
    """Load the WISDM raw accelerometer files under ``root`` as one :class:`Recording`.

    ``root`` holds ``wisdm-dataset/`` (or is that folder). ``subjects``: ids to keep (default: every
    file found); each asked subject must have a file for every placement in ``placements``, else
    FileNotFoundError lists the missing files. Rows are phone files (sorted), then watch files
    (sorted); ``placement_names`` is always ``["phone", "watch"]`` so ids do not depend on the
    selection. ``resample_hz=None`` keeps every session at its recorded rate (the paper's
    behaviour); a number resamples each session from its nominal rate.

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
    cdir = cache_dir(root) if cache else None
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
