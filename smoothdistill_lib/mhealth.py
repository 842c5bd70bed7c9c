"""MHEALTH (UCI 319) loader: three body-worn accelerometers stacked as one :class:`Recording`.

Files: ``<root>/MHEALTHDATASET/mHealth_subject<k>.log`` (what the UCI zip unpacks to) or
``<root>/mhealth/...`` or ``<root>/...`` directly. Each line holds 24 whitespace-separated columns
(23 signals, then the label 0..12), sampled at 50 Hz, accelerations in m/s^2. Kept: chest accel
(columns 0-2), left-ankle accel (5-7), right-lower-arm accel (14-16) and the label (23).

Stream order (the authors' vertical stacking, which the paper's 60,786 windows require): every
subject's chest rows, then every subject's ankle rows, then every subject's arm rows; within a
placement, subjects in ``file_order``: ``"numeric"`` (1, 2, ..., 10; the default) or ``"authors"``
(``sorted()`` of the file names: 1, 10, 2, ..., 9, which is what the authors' code produced).

Values are checked after the cast to float32 (the training dtype): ``1e39`` is a finite float64
but ``inf`` in float32, and is reported with its file and line. Loading every log found from a
folder without all 10 warns (:class:`~smoothdistill_lib.errors.IncompleteDataWarning`) unless
``subset_ok=True`` or ``SMOOTHDISTILL_ALLOW_SUBSET=1``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from smoothdistill_lib.errors import warn_incomplete
from smoothdistill_lib.recordings import (
    FLOAT32_OVERFLOW,
    Recording,
    as_float32,
    make_frame,
    sessions_from_runs,
)

ACTIVITY_NAMES = [
    "null", "standing", "sitting", "lying", "walking", "stairs", "waist_bends", "frontal_arms",
    "knees_bending", "cycling", "jogging", "running", "jump",
]
PLACEMENT_NAMES = ["chest", "left_ankle", "right_lower_arm"]
PLACEMENT_COLUMNS = {"chest": (0, 1, 2), "left_ankle": (5, 6, 7), "right_lower_arm": (14, 15, 16)}
LABEL_COLUMN = 23
N_COLUMNS = 24
SAMPLING_RATE_HZ = 50.0
#: Rows of the full archive (10 subjects), as documented. The authors stack the three placements
#: into one stream of 3 x this many rows, which gives the paper's 60,786 windows.
DOCUMENTED_ROWS = 1_215_745
SUBJECTS = tuple(range(1, 11))  # the archive's 10 logs, mHealth_subject1..10.log
FOLDERS = ("MHEALTHDATASET", "mhealth", ".")  # looked for under root, in this order
_FILE_RE = re.compile(r"^mHealth_subject(\d+)\.log$")


def find_dir(root: Path | str) -> Path | None:
    """The folder under ``root`` that holds ``mHealth_subject*.log`` files, or None."""
    for sub in FOLDERS:
        d = Path(root) / sub
        if d.is_dir() and any(_FILE_RE.match(p.name) for p in d.iterdir()):
            return d
    return None


def log_files(root: Path | str, file_order: str = "numeric") -> pd.DataFrame:
    """Columns ``path, subject`` of the logs found, in ``file_order``; empty if none."""
    if file_order not in ("numeric", "authors"):
        raise ValueError(f"file_order must be 'numeric' or 'authors', got {file_order!r}")
    d = find_dir(root)
    rows = [] if d is None else [(d / p.name, int(m.group(1))) for p in d.iterdir() if (m := _FILE_RE.match(p.name))]
    df = pd.DataFrame(rows, columns=["path", "subject"])
    key = df.subject if file_order == "numeric" else df.path.map(lambda p: p.name)
    return df.iloc[np.argsort(key.to_numpy(), kind="stable")].reset_index(drop=True)


def _scan_for_error(path: Path) -> ValueError:
    """Exact first bad line (hand-written: pandas fills short lines with NaN instead of failing)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != N_COLUMNS:
                return ValueError(
                    f"{path}, line {lineno}: expected {N_COLUMNS} whitespace-separated columns, found {len(fields)}"
                )
            try:
                values = [float(v) for v in fields]
            except ValueError:
                return ValueError(f"{path}, line {lineno}: a value is not a number: {line.strip()[:120]!r}")
            label = values[LABEL_COLUMN]
            if label != int(label) or not 0 <= label < len(ACTIVITY_NAMES):
                return ValueError(
                    f"{path}, line {lineno}: label {fields[LABEL_COLUMN]!r} is not one of 0..{len(ACTIVITY_NAMES) - 1}"
                )
            if not np.isfinite(values).all():
                return ValueError(f"{path}, line {lineno}: non-finite value")
            if not np.isfinite(as_float32(values)).all():
                return ValueError(
                    f"{path}, line {lineno}: value out of range: {FLOAT32_OVERFLOW}"
                )
    return ValueError(f"{path}: could not be parsed as an MHEALTH log")


def read_log(path: Path | str) -> tuple[np.ndarray, np.ndarray]:
    """One log: ``(signals (n, 24-1) float64, labels (n,) int16)``; ValueError names file and line
    (wrong column count, a non-number, a label outside 0..12, a value not finite in float32)."""
    path = Path(path)
    try:
        df = pd.read_csv(path, sep=r"\s+", header=None, engine="c", dtype=np.float64)
    except pd.errors.EmptyDataError as e:
        raise ValueError(f"{path}: empty MHEALTH log") from e
    except (pd.errors.ParserError, ValueError) as e:
        raise _scan_for_error(path) from e
    values = df.to_numpy()
    # finite in float32 too (checked after the cast): the signals are trained on as float32
    if values.shape[1] != N_COLUMNS or not np.isfinite(as_float32(values)).all():
        raise _scan_for_error(path)
    labels = values[:, LABEL_COLUMN]
    if ((labels != np.round(labels)) | (labels < 0) | (labels >= len(ACTIVITY_NAMES))).any():
        raise _scan_for_error(path)
    return values[:, :LABEL_COLUMN], labels.astype(np.int16)


def check_complete(root: Path | str, *, subset_ok: bool | None = None, stacklevel: int = 3) -> list[int]:
    """Warn (one line, ``IncompleteDataWarning``) when ``root`` lacks some of the 10 documented logs,
    naming how many and which; silent when ``subset_ok`` or ``$SMOOTHDISTILL_ALLOW_SUBSET`` opts in.
    Returns the missing subject ids."""
    missing = sorted(set(SUBJECTS) - set(log_files(root).subject))
    if missing:
        # no folder path: the message is printed into chapters (`datasets` names the folder)
        warn_incomplete(
            f"MHEALTH is incomplete here: its folder holds {len(SUBJECTS) - len(missing)} of "
            f"{len(SUBJECTS)} subject logs (missing: {', '.join(f'mHealth_subject{s}.log' for s in missing[:4])}"
            + (", ..." if len(missing) > 4 else "") + "; `python -m smoothdistill_lib datasets` shows the folder)",
            subset_ok, stacklevel=stacklevel + 1,
        )
    return missing


def load(root: Path | str, subjects=None, *, drop_null: bool = False, file_order: str = "numeric",
         subset_ok: bool | None = None) -> Recording:
    """Load the MHEALTH logs under ``root`` as one :class:`Recording` (placements stacked).

    ``subjects``: ids 1..10 to keep (default: every log found; asking for an absent one raises
    FileNotFoundError naming it). ``drop_null=True`` removes label 0 (Null, ~72 % of rows; the
    paper keeps it). Sessions are contiguous runs of one subject/placement/label (in the original
    rows, so dropping Null never merges two runs). ``info["sessions"]``: one row per session.
    Loading every log found (``subjects=None``) from a folder without all 10 warns
    (``IncompleteDataWarning``) unless ``subset_ok=True`` or ``$SMOOTHDISTILL_ALLOW_SUBSET`` is set.
    """
    files = log_files(root, file_order)
    if subjects is not None:
        wanted = sorted({int(s) for s in subjects})
        missing = sorted(set(wanted) - set(files.subject))
        if missing:
            where = find_dir(root) or Path(root) / FOLDERS[0]
            raise FileNotFoundError(
                "MHEALTH: requested subject log(s) not found: "
                + ", ".join(str(where / f"mHealth_subject{s}.log") for s in missing)
            )
        files = files[files.subject.isin(wanted)].reset_index(drop=True)
    if files.empty:
        raise FileNotFoundError(
            f"MHEALTH: no mHealth_subject<k>.log files under {Path(root)} (looked in "
            + ", ".join(str(Path(root) / f) for f in FOLDERS) + ")"
        )
    if subjects is None:
        check_complete(root, subset_ok=subset_ok)
    logs = [read_log(p) for p in files.path]
    n = np.array([len(lab) for _, lab in logs])
    subject = np.repeat(files.subject.to_numpy(np.int32), n)
    labels = np.concatenate([lab for _, lab in logs])
    parts = {k: [] for k in ("xyz", "subject", "activity", "placement", "run")}
    for pid, name in enumerate(PLACEMENT_COLUMNS):
        cols = list(PLACEMENT_COLUMNS[name])
        parts["xyz"].append(np.concatenate([sig[:, cols] for sig, _ in logs]).astype(np.float32))
        parts["subject"].append(subject)
        parts["activity"].append(labels)
        parts["placement"].append(np.full(len(labels), pid, dtype=np.int8))
    stacked = {k: np.concatenate(v) for k, v in parts.items() if v}
    run = sessions_from_runs(stacked["placement"], stacked["subject"], stacked["activity"])
    if drop_null:
        keep = stacked["activity"] != 0
        stacked = {k: v[keep] for k, v in stacked.items()}
        run = run[keep]
    session = sessions_from_runs(run)
    xyz = stacked["xyz"]
    frame = make_frame(x=xyz[:, 0], y=xyz[:, 1], z=xyz[:, 2], subject=stacked["subject"],
                       activity=stacked["activity"], placement=stacked["placement"], session=session)
    starts = np.flatnonzero(np.r_[True, session[1:] != session[:-1]]) if len(session) else np.array([], int)
    sessions = pd.DataFrame({
        "session": session[starts],
        "subject": stacked["subject"][starts],
        "placement": [PLACEMENT_NAMES[i] for i in stacked["placement"][starts]],
        "activity": [ACTIVITY_NAMES[i] for i in stacked["activity"][starts]],
        "start": starts,
        "n_samples": np.diff(np.r_[starts, len(session)]),
    })
    return Recording(
        name="mhealth",
        frame=frame,
        activity_names=list(ACTIVITY_NAMES),
        placement_names=list(PLACEMENT_NAMES),
        sampling_rate_hz=SAMPLING_RATE_HZ,
        info={"sessions": sessions, "files": list(files.path), "root": Path(root), "units": "m/s^2",
              "drop_null": drop_null, "file_order": file_order},
    )
