"""The dataset registry: what each dataset is, where it is looked for, and one call to load it.

Datasets are looked for in :func:`search_dirs`: ``config.data_dir()`` (``$SMOOTHDISTILL_DATA`` or
``~/.cache/smoothdistill``) and, when the library runs from a checkout that has one beside it, the
team's shared copy ``<checkout>/../shared/data``. Missing public datasets are downloaded into
``config.data_dir()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from smoothdistill_lib import config
from smoothdistill_lib.download import MHEALTH_URL, WISDM_URL
from smoothdistill_lib.recordings import Recording


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    description: str
    layout: str  # where, relative to a data folder, the files are expected
    source: str  # URL, or how to obtain it
    licence: str
    downloadable: bool


DATASETS = {
    "wisdm": DatasetInfo(
        "wisdm", "WISDM smartphone + smartwatch accelerometers, 18 activities, 51 subjects (UCI 507)",
        "wisdm-dataset/raw/{phone,watch}/accel/data_<subject>_accel_<phone|watch>.txt",
        WISDM_URL, "CC BY 4.0", True),
    "mhealth": DatasetInfo(
        "mhealth", "MHEALTH chest / ankle / arm accelerometers, 12 activities + null, 10 subjects (UCI 319)",
        "MHEALTHDATASET/mHealth_subject<k>.log (or mhealth/)",
        MHEALTH_URL, "CC BY 4.0", True),
    "sleep": DatasetInfo(
        "sleep", "the paper's sleep postures (12 postures x neck/chest/abdomen, 24 subjects)",
        "sleep/<subject>_<Posture>_<placement>.txt", "not public: ask the authors", "unknown", False),
    "sleepsim": DatasetInfo(
        "sleepsim", "simulated sleep postures following the paper's protocol (sleepsim.SleepSimParams)",
        "(generated, no files)", "smoothdistill_lib.sleepsim", "MIT (this project)", False),
}


def _check_name(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[name]


def search_dirs() -> list[Path]:
    """Folders searched for datasets, in order (existing or not)."""
    dirs = [config.data_dir()]
    shared = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
    if shared.is_dir() and shared not in dirs:
        dirs.append(shared)
    return dirs


def _present(name: str, d: Path) -> bool:
    if name == "wisdm":
        from smoothdistill_lib.wisdm import raw_files

        return not raw_files(d).empty
    if name == "mhealth":
        from smoothdistill_lib.mhealth import find_dir

        return find_dir(d) is not None
    if name == "sleep":
        from smoothdistill_lib.sleep import find_dir

        return (d / "sleep").is_dir() and find_dir(d / "sleep") is not None
    return True  # sleepsim


def locate(name: str) -> Path | None:
    """The first search folder that holds dataset ``name`` (None if none; sleepsim: None)."""
    _check_name(name)
    if name == "sleepsim":
        return None
    return next((d for d in search_dirs() if _present(name, d)), None)


def prepare(name: str, download: bool = True, verify: bool = False) -> Path | None:
    """Make dataset ``name`` available and return the folder that holds it (None for sleepsim).

    WISDM/MHEALTH: found in :func:`search_dirs`, else downloaded into ``config.data_dir()``
    (``download=False``: DownloadError saying what to fetch and where to put it). WISDM files are
    always checked by size, and by sha256 when ``verify``. Sleep: FileNotFoundError if absent.
    """
    from smoothdistill_lib import download as dl

    info = _check_name(name)
    if name == "sleepsim":
        return None
    found = locate(name)
    if name == "wisdm":
        return dl.prepare_wisdm(found or config.data_dir(), download=download, verify=verify)
    if name == "mhealth":
        return dl.prepare_mhealth(found or config.data_dir(), download=download)
    if found is None:
        raise FileNotFoundError(
            f"sleep dataset not found: put the authors' files ({info.layout}) under "
            f"{config.data_dir()} or set SMOOTHDISTILL_DATA; the data are {info.source}. "
            "Use the dataset 'sleepsim' (simulated) instead."
        )
    return found


def wisdm_subjects_with_both(root: Path) -> list[int]:
    """Sorted WISDM subjects that have both a phone and a watch accel file under ``root``."""
    from smoothdistill_lib.wisdm import subjects_by_placement

    by = subjects_by_placement(root)
    return sorted(set(by["phone"]) & set(by["watch"]))


def load_recording(name: str, mode=None, subjects=None, download: bool = True, **options) -> Recording:
    """Load dataset ``name`` as a :class:`Recording`, sized by the run mode.

    ``mode``: a mode name or ``ModeSettings`` (default ``$SMOOTHDISTILL_MODE``). WISDM uses
    ``mode.wisdm_subjects`` subjects when set: the first N (sorted) having both phone and watch files.
    sleepsim uses ``mode.sleepsim_subjects`` x ``mode.sleepsim_seconds``. Explicit ``subjects`` win
    over the mode. ``options`` go to the dataset's ``load`` (e.g. ``drop_null``, ``seed``, ``cache``).
    """
    _check_name(name)
    m = mode if (mode is not None and not isinstance(mode, str)) else config.get_mode(mode)
    if name == "sleepsim":
        from smoothdistill_lib import sleepsim

        rec = sleepsim.load(None, subjects, mode=m, **options)
        rec.info["mode"] = m.name
        return rec
    root = prepare(name, download=download)
    if name == "wisdm":
        from smoothdistill_lib import wisdm

        if subjects is None and m.wisdm_subjects is not None:
            both = wisdm_subjects_with_both(root)
            if len(both) < m.wisdm_subjects:
                raise FileNotFoundError(
                    f"mode {m.name!r} needs {m.wisdm_subjects} WISDM subjects with both phone and watch "
                    f"files; {root} has {len(both)}"
                )
            subjects = both[: m.wisdm_subjects]
            # the mode's first N subjects of a partial folder are not the full archive's first N:
            # warn here, since wisdm.load never warns about explicitly chosen subjects
            wisdm.check_complete(root, options.get("placements", wisdm.PLACEMENT_NAMES),
                                 subset_ok=options.get("subset_ok"))
        rec = wisdm.load(root, subjects, **options)
    elif name == "mhealth":
        from smoothdistill_lib import mhealth

        rec = mhealth.load(root, subjects, **options)
    else:
        from smoothdistill_lib import sleep

        rec = sleep.load(root, subjects, **options)
    rec.info["mode"] = m.name
    return rec


def dataset_status() -> pd.DataFrame:
    """One row per dataset: name, present, location (or where it is looked for), detail, source."""
    rows = []
    for name, info in DATASETS.items():
        where = locate(name)
        detail = ""
        if name == "wisdm" and where is not None:
            from smoothdistill_lib.wisdm import subjects_by_placement

            by = subjects_by_placement(where)
            detail = (f"{len(by['phone'])} phone, {len(by['watch'])} watch subjects "
                      f"({len(set(by['phone']) & set(by['watch']))} with both)")
        elif name == "mhealth" and where is not None:
            from smoothdistill_lib.mhealth import log_files

            detail = f"{len(log_files(where))} subject logs"
        elif name == "sleep" and where is not None:
            detail = f"{sum(1 for p in (where / 'sleep').iterdir() if p.suffix == '.txt')} files"
        elif name == "sleepsim":
            m = config.get_mode()
            detail = f"generated: {m.sleepsim_subjects} subjects x {m.sleepsim_seconds:g} s (mode {m.name})"
        rows.append({
            "dataset": name,
            "present": name == "sleepsim" or where is not None,
            "location": str(where) if where is not None else "-",
            "detail": detail,
            "layout": info.layout,
            "downloadable": info.downloadable,
            "source": info.source,
        })
    return pd.DataFrame(rows)


def cli_datasets(args) -> int:
    """``python -m smoothdistill_lib datasets``: print :func:`dataset_status` as a table."""
    status = dataset_status()
    print(f"data folder: {config.data_dir()}  (set SMOOTHDISTILL_DATA to change it)")
    print("searched:    " + ", ".join(str(d) for d in search_dirs()))
    print()
    shown = status.assign(present=status.present.map({True: "yes", False: "no"}))
    print(shown[["dataset", "present", "location", "detail"]].to_string(index=False))
    print()
    for row in status.itertuples():
        if not row.present:
            how = "downloaded on first use" if row.downloadable else "not downloadable"
            print(f"{row.dataset}: expected as <folder>/{row.layout}; {how} (source: {row.source})")
    return 0
