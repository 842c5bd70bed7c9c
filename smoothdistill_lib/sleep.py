"""Loader for the authors' sleep-posture files (the paper's Sleep dataset; not public).

Files: ``<root>/<subject>_<Posture>_<placement>.txt`` (or under ``<root>/sleep/``), one file per
subject, posture and sensor, ADXL345 at 50 Hz. Two formats, detected per file:

* **F1**: every line ``a,ax,ay,az;`` (4 fields, the first ignored, trailing ``;``);
* **F2**: one header line, then ``ax,ay,az``.

Names are parsed like the authors' code: the last two ``_`` tokens of the stem are posture and
placement, lower-cased (``UpRight`` -> ``upright``); what precedes them is the subject. Postures get
ids 0..11 in the paper's Table 2 order; placements the authors' Vietnamese map ``co`` (neck) 0,
``nguc`` (chest) 1, ``bung`` (abdomen) 2 (English names and accented spellings are accepted too).
The authors silently dropped files whose names do not map; here they are an error listing them
(``on_unknown="skip"`` reproduces the authors' behaviour).

Stream order: subject, then placement, then posture (then file name), the same as ``sleepsim``,
never ``os.listdir`` order. Values are kept in the files' units (unknown: g or raw counts), as
float32, and checked after that cast: ``1e39`` is finite in float64 but ``inf`` in float32, and is
reported with its file and line.
"""

from __future__ import annotations

import io
import re
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd

from smoothdistill_lib.recordings import (
    FLOAT32_OVERFLOW,
    Recording,
    as_float32,
    make_frame,
    sessions_from_runs,
)

#: Table 2 order (label 1..12 in the paper, ids 0..11 here) and the angle of the body's rotation
#: about its long axis, in degrees
POSTURE_NAMES = ["up", "up_right", "right_up", "right", "right_down", "down_right", "down",
                 "down_left", "left_down", "left", "left_up", "up_left"]
POSTURE_ANGLES_DEG = [90, 60, 30, 0, 330, 300, 270, 240, 210, 180, 150, 120]
PLACEMENT_NAMES = ["neck", "chest", "abdomen"]
SAMPLING_RATE_HZ = 50.0
#: Windows of the authors' sleep set, paper Table 2 (training + validation, test): 53,546 in all.
#: The recordings are not public; ``sleepsim`` at full size is sized to match this total.
PAPER_WINDOWS = {"train": 42_836, "test": 10_710}

# the authors' lower-cased tokens (process_data.py) plus the Table 2 names without separators
POSTURE_MAP = {name.replace("_", ""): i for i, name in enumerate(POSTURE_NAMES)}
PLACEMENT_MAP = {"co": 0, "nguc": 1, "bung": 2, "neck": 0, "chest": 1, "abdomen": 2}


def _normalise(token: str) -> str:
    # strip accents (cổ -> co, ngực -> nguc, bụng -> bung), case and separators
    t = unicodedata.normalize("NFKD", token)
    t = "".join(c for c in t if not unicodedata.combining(c)).replace("đ", "d").replace("Đ", "D")
    return re.sub(r"[\s\-_.]", "", t.lower())


def parse_name(path: Path | str) -> tuple[str, int | None, int | None]:
    """``(subject token, posture id or None, placement id or None)`` from a file name."""
    tokens = Path(path).stem.split("_")
    if len(tokens) < 3:
        return Path(path).stem, None, None
    return "_".join(tokens[:-2]), POSTURE_MAP.get(_normalise(tokens[-2])), PLACEMENT_MAP.get(_normalise(tokens[-1]))


def find_dir(root: Path | str) -> Path | None:
    """``root/sleep`` or ``root`` itself, whichever holds ``*.txt`` files, else None."""
    for d in (Path(root) / "sleep", Path(root)):
        if d.is_dir() and any(p.suffix == ".txt" for p in d.iterdir()):
            return d
    return None


def _numeric(fields: list[str]) -> bool:
    try:
        [float(f) for f in fields]
    except ValueError:
        return False
    return True


def detect_format(path: Path | str, text: str | None = None) -> str:
    """``"F1"`` or ``"F2"`` from the first lines; ValueError if neither fits."""
    lines = [ln.strip() for ln in (text if text is not None else Path(path).read_text()).splitlines() if ln.strip()]
    if not lines:
        raise ValueError(f"{path}: empty sleep file")
    first = lines[0].rstrip(";").split(",")
    if len(first) == 4 and _numeric(first):
        return "F1"
    if not _numeric(first) and len(lines) > 1 and len(lines[1].split(",")) == 3 and _numeric(lines[1].split(",")):
        return "F2"
    raise ValueError(
        f"{path}, line 1: unrecognised sleep file format: expected 'a,ax,ay,az;' lines (F1) or a header "
        f"line followed by 'ax,ay,az' lines (F2), found {lines[0][:80]!r}"
    )


def _scan_for_error(path: Path, lines: list[str], first_data: int, fmt: str) -> ValueError:
    """The first bad line, with its number (hand-written: the fast parser does not report lines)."""
    n_fields = 4 if fmt == "F1" else 3
    for lineno in range(first_data, len(lines)):
        s = lines[lineno].strip()
        if not s:
            continue
        fields = (s[:-1] if s.endswith(";") else s).split(",")
        if len(fields) != n_fields or not _numeric(fields):
            return ValueError(
                f"{path}, line {lineno + 1}: malformed {fmt} line {lines[lineno][:80]!r}: expected "
                + ("'a,ax,ay,az;'" if fmt == "F1" else "'ax,ay,az'")
            )
        if not np.isfinite([float(f) for f in fields]).all():
            return ValueError(f"{path}, line {lineno + 1}: non-finite value in {lines[lineno][:80]!r}")
        if not np.isfinite(as_float32([float(f) for f in fields[-3:]])).all():
            return ValueError(
                f"{path}, line {lineno + 1}: value out of range in {lines[lineno][:80]!r}: {FLOAT32_OVERFLOW}"
            )
    return ValueError(f"{path}: could not be parsed as an {fmt} sleep file")


def read_file(path: Path | str) -> np.ndarray:
    """One file's samples, (n, 3) float32; ValueError naming the file and first bad line (malformed,
    or a value that is not finite once cast to float32)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8", errors="replace")
    fmt = detect_format(path, text)
    lines = text.splitlines()
    first_data = next(i for i, ln in enumerate(lines) if ln.strip()) + (1 if fmt == "F2" else 0)
    body = "\n".join(ln.strip().removesuffix(";") for ln in lines[first_data:])
    try:
        values = pd.read_csv(io.StringIO(body), header=None, dtype=np.float64).to_numpy()
    except (ValueError, pd.errors.ParserError) as e:
        raise _scan_for_error(path, lines, first_data, fmt) from e
    if values.shape[1] != (4 if fmt == "F1" else 3):
        raise _scan_for_error(path, lines, first_data, fmt)
    xyz = as_float32(values[:, -3:])
    # checked after the cast (the first, ignored F1 column must be finite too: a damaged line)
    if not (np.isfinite(xyz).all() and np.isfinite(values).all()):
        raise _scan_for_error(path, lines, first_data, fmt)
    return xyz


def _subject_ids(tokens: list[str]) -> dict[str, int]:
    """Integer ids: the token's digits when every token has exactly one number, else 1.. in sorted order."""
    nums = {t: re.findall(r"\d+", t) for t in tokens}
    if all(len(v) == 1 for v in nums.values()) and len({int(v[0]) for v in nums.values()}) == len(nums):
        return {t: int(v[0]) for t, v in nums.items()}
    return {t: i for i, t in enumerate(sorted(tokens), start=1)}


def load(root: Path | str, subjects=None, *, on_unknown: str = "raise") -> Recording:
    """Load the sleep files under ``root`` as one :class:`Recording` (stream order in the module doc).

    ``subjects``: integer ids to keep (see ``info["subject_ids"]`` for the name -> id map).
    ``on_unknown``: ``"raise"`` (default) or ``"skip"`` for files whose posture or placement does not
    map. ``info["files"]``: DataFrame path, subject, posture, placement, format, n_samples.
    """
    if on_unknown not in ("raise", "skip"):
        raise ValueError(f"on_unknown must be 'raise' or 'skip', got {on_unknown!r}")
    d = find_dir(root)
    if d is None:
        raise FileNotFoundError(f"sleep: no <subject>_<Posture>_<placement>.txt files under {Path(root)} or {Path(root) / 'sleep'}")
    paths = sorted(p for p in d.iterdir() if p.suffix == ".txt")
    parsed = [(p, *parse_name(p)) for p in paths]
    bad = [p.name for p, _, post, place in parsed if post is None or place is None]
    if bad and on_unknown == "raise":
        raise ValueError(
            f"sleep: {len(bad)} file name(s) in {d} do not map to a posture and placement "
            f"(<subject>_<Posture>_<placement>.txt with Posture in {sorted(POSTURE_MAP)} and placement in "
            f"{sorted(PLACEMENT_MAP)}): {', '.join(bad)}"
        )
    parsed = [t for t in parsed if t[2] is not None and t[3] is not None]
    if not parsed:
        raise FileNotFoundError(f"sleep: no file in {d} has a mappable name")
    ids = _subject_ids(sorted({t[1] for t in parsed}))
    table = pd.DataFrame(
        [(p, ids[s], post, place) for p, s, post, place in parsed], columns=["path", "subject", "posture", "placement"]
    )
    if subjects is not None:
        wanted = sorted({int(s) for s in subjects})
        missing = sorted(set(wanted) - set(table.subject))
        if missing:
            raise FileNotFoundError(f"sleep: no files for subject id(s) {missing} in {d} (ids found: {sorted(set(table.subject))})")
        table = table[table.subject.isin(wanted)]
    table = table.assign(name=table.path.map(lambda p: p.name))
    table = table.sort_values(["subject", "placement", "posture", "name"], kind="stable").reset_index(drop=True)
    arrays, formats = [], []
    for p in table.path:
        arrays.append(read_file(p))
        formats.append(detect_format(p))
    n = np.array([len(a) for a in arrays])
    xyz = np.concatenate(arrays) if arrays else np.zeros((0, 3), np.float32)
    file_idx = np.repeat(np.arange(len(table)), n)
    frame = make_frame(
        x=xyz[:, 0], y=xyz[:, 1], z=xyz[:, 2],
        subject=np.repeat(table.subject.to_numpy(), n),
        activity=np.repeat(table.posture.to_numpy(), n),
        placement=np.repeat(table.placement.to_numpy(), n),
        session=sessions_from_runs(file_idx),
    )
    files = table.drop(columns="name").assign(
        posture=[POSTURE_NAMES[i] for i in table.posture],
        placement=[PLACEMENT_NAMES[i] for i in table.placement],
        format=formats, n_samples=n,
    )
    return Recording(
        name="sleep", frame=frame, activity_names=list(POSTURE_NAMES), placement_names=list(PLACEMENT_NAMES),
        sampling_rate_hz=SAMPLING_RATE_HZ,
        info={"files": files, "subject_ids": ids, "skipped": bad, "root": Path(root),
              "posture_angles_deg": list(POSTURE_ANGLES_DEG)},
    )
