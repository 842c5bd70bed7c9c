"""Writers of small fixture files in the datasets' exact raw formats (no real data needed).

* WISDM: ``data_<subj>_accel_<phone|watch>.txt``, lines ``subject,activity,timestamp,x,y,z;``
  (:func:`write_wisdm_file`, :func:`write_wisdm_tree`, :func:`make_wisdm_zip`).
* MHEALTH: ``mHealth_subject<k>.log``, 24 tab-separated columns, label last (:func:`write_mhealth_log`,
  :func:`write_mhealth_tree`).
* Sleep: ``<subject>_<Posture>_<placement>.txt`` in the authors' formats F1 (``a,ax,ay,az;``) and
  F2 (header, then ``ax,ay,az``) (:func:`write_sleep_file`, :func:`write_sleep_tree`).

Every writer returns what it wrote (values as parsed back from the written text), so tests compare
a loader's output with the truth exactly. Default WISDM subject ids (1700..) lie outside the real
archive's 1600..1650, so the size/sha256 check against the shipped lists never applies to them.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

WISDM_CODES = "ABCDEFGHIJKLMOPQRS"
WISDM_SUBJECTS = (1700, 1701, 1702)

# the authors' file-name spellings of the 12 postures (Table 2 order) and 3 placements
SLEEP_POSTURE_TOKENS = ["Up", "UpRight", "RightUp", "Right", "RightDown", "DownRight", "Down",
                        "DownLeft", "LeftDown", "Left", "LeftUp", "UpLeft"]
SLEEP_PLACEMENT_TOKENS = ["co", "nguc", "bung"]


def _fmt(v: float) -> str:
    return f"{v:.7g}"


# ----------------------------------------------------------------------------------------------
# WISDM


def wisdm_rows(subject: int, blocks, *, t0: int = 252207666810782, seed: int = 0) -> pd.DataFrame:
    """Rows of one file: ``blocks`` = [(activity code, n_rows, rate_hz), ...]. Columns subject,
    activity (code), timestamp (ns, device clock), x, y, z (float64 exactly as written)."""
    rng = np.random.default_rng([seed, subject])
    parts, t = [], t0
    for code, n, rate in blocks:
        ts = t + np.round(np.arange(n) * 1e9 / rate).astype(np.int64)
        t = int(ts[-1]) + 10**9 if n else t  # a gap between activities, as in the archive
        xyz = rng.normal(0, 4, (n, 3)) + np.array([0.0, 9.8, 0.0])
        xyz = np.array([[float(_fmt(v)) for v in row] for row in xyz]).reshape(n, 3)
        parts.append(pd.DataFrame({"subject": subject, "activity": code, "timestamp": ts,
                                   "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]}))
    return pd.concat(parts, ignore_index=True)


def wisdm_text(rows: pd.DataFrame) -> str:
    return "".join(f"{r.subject},{r.activity},{r.timestamp},{_fmt(r.x)},{_fmt(r.y)},{_fmt(r.z)};\n"
                   for r in rows.itertuples())


def write_wisdm_file(root: Path, subject: int, placement: str, blocks=None, *, seed: int = 0,
                     text: str | None = None) -> tuple[Path, pd.DataFrame]:
    """Write ``root/wisdm-dataset/raw/<placement>/accel/data_<subject>_accel_<placement>.txt``.

    ``blocks`` default: activities A, B, C with 30 rows each at 20 Hz. ``text`` overrides the
    content (for malformed-input tests). Returns (path, rows written)."""
    blocks = blocks if blocks is not None else [(c, 30, 20.0) for c in "ABC"]
    rows = wisdm_rows(subject, blocks, seed=seed + (0 if placement == "phone" else 1))
    path = Path(root) / "wisdm-dataset" / "raw" / placement / "accel" / f"data_{subject}_accel_{placement}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(wisdm_text(rows) if text is None else text)
    return path, rows


def write_wisdm_tree(root: Path, subjects=None, *, activities: str = "ABC", n: int = 30,
                     rate_hz: float = 20.0, seed: int = 0) -> dict[tuple[int, str], pd.DataFrame]:
    """A small archive layout. ``subjects``: {subject: placements} (default: 1700 and 1701 with
    phone and watch, 1702 watch only). Returns {(subject, placement): rows written}."""
    subjects = subjects if subjects is not None else {1700: ("phone", "watch"), 1701: ("phone", "watch"),
                                                      1702: ("watch",)}
    out = {}
    for s, placements in subjects.items():
        for p in placements:
            _, rows = write_wisdm_file(root, s, p, [(c, n, rate_hz) for c in activities], seed=seed)
            out[(s, p)] = rows
    (Path(root) / "wisdm-dataset" / "activity_key.txt").write_text(
        "".join(f"{c} = {c}\n" for c in WISDM_CODES))
    return out


def expected_wisdm_stream(written: dict[tuple[int, str], pd.DataFrame]) -> pd.DataFrame:
    """The rows a loader must return, in stream order (phone files sorted, then watch files sorted)."""
    keys = sorted(written, key=lambda k: (k[1] != "phone", f"data_{k[0]}_accel_{k[1]}.txt"))
    return pd.concat([written[k].assign(placement=k[1]) for k in keys], ignore_index=True)


def make_wisdm_zip(zip_path: Path, source_root: Path, *, extra_members: dict[str, bytes] | None = None) -> Path:
    """The UCI download's shape: ``zip_path`` holds ``wisdm-dataset.zip``, which holds
    ``wisdm-dataset/...`` as found under ``source_root``. ``extra_members`` go into the inner zip
    as given (e.g. a malicious ``../evil.txt``)."""
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        for p in sorted((Path(source_root) / "wisdm-dataset").rglob("*")):
            if p.is_file():
                z.write(p, p.relative_to(source_root).as_posix())
        for name, data in (extra_members or {}).items():
            z.writestr(name, data)
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w") as z:
        z.writestr("wisdm-dataset.zip", inner.getvalue())
        z.writestr("README.txt", "outer archive\n")
    return zip_path


# ----------------------------------------------------------------------------------------------
# MHEALTH


def mhealth_values(blocks, *, seed: int = 0) -> np.ndarray:
    """(n, 24) values of one log: ``blocks`` = [(label, n_rows), ...]; signals as written (7 digits)."""
    rng = np.random.default_rng(seed)
    n = sum(k for _, k in blocks)
    signals = np.vectorize(lambda v: float(_fmt(v)))(rng.normal(0, 5, (n, 23)))
    labels = np.concatenate([np.full(k, lab) for lab, k in blocks]) if blocks else np.zeros(0)
    return np.column_stack([signals, labels])


def write_mhealth_log(path: Path, blocks=None, *, seed: int = 0, sep: str = "\t",
                      text: str | None = None) -> np.ndarray:
    """Write one ``mHealth_subject<k>.log`` (default blocks: null, 1, null, 2 with 40 rows each)."""
    blocks = blocks if blocks is not None else [(0, 40), (1, 40), (0, 40), (2, 40)]
    values = mhealth_values(blocks, seed=seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if text is None:
        text = "".join(sep.join([*(_fmt(v) for v in row[:23]), str(int(row[23]))]) + "\n" for row in values)
    path.write_text(text)
    return values


def write_mhealth_tree(root: Path, subjects=(1, 2, 10), *, folder: str = "MHEALTHDATASET",
                       blocks=None) -> dict[int, np.ndarray]:
    """Logs for ``subjects`` under ``root/folder``; returns {subject: values written}."""
    return {s: write_mhealth_log(Path(root) / folder / f"mHealth_subject{s}.log", blocks, seed=s) for s in subjects}


# ----------------------------------------------------------------------------------------------
# Sleep


def write_sleep_file(path: Path, xyz: np.ndarray, fmt: str = "F1") -> np.ndarray:
    """Write (n, 3) samples in format F1 (``i,ax,ay,az;``) or F2 (header + ``ax,ay,az``); returns them as written."""
    xyz = np.vectorize(lambda v: float(_fmt(v)))(np.asarray(xyz, float).reshape(-1, 3))
    if fmt == "F1":
        text = "".join(f"{i},{_fmt(a)},{_fmt(b)},{_fmt(c)};\n" for i, (a, b, c) in enumerate(xyz))
    elif fmt == "F2":
        text = "ax,ay,az\n" + "".join(f"{_fmt(a)},{_fmt(b)},{_fmt(c)}\n" for a, b, c in xyz)
    else:
        raise ValueError(f"fmt must be F1 or F2, got {fmt!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return xyz


def write_sleep_tree(root: Path, subjects=(1, 2), *, postures=None, placements=None, n: int = 20,
                     seed: int = 0) -> dict[str, np.ndarray]:
    """Files ``<subject>_<Posture>_<placement>.txt`` under ``root`` (F1 for odd subjects, F2 for even).

    ``postures``/``placements``: indices into the Table 2 / neck-chest-abdomen order (default all).
    Returns {file name: samples written}."""
    rng = np.random.default_rng(seed)
    out = {}
    for s in subjects:
        for k in postures if postures is not None else range(12):
            for p in placements if placements is not None else range(3):
                name = f"{s}_{SLEEP_POSTURE_TOKENS[k]}_{SLEEP_PLACEMENT_TOKENS[p]}.txt"
                out[name] = write_sleep_file(Path(root) / name, rng.normal(0, 0.5, (n, 3)),
                                             "F1" if s % 2 else "F2")
    return out
