"""The dataset registry: what each dataset is, where it is looked for, and one call to load it.

Each :class:`DatasetInfo` carries everything the rest of the library needs to know about a
dataset: its loader, the class names of both tasks (task 1: activity or posture; task 2: placement),
its signal channels, and where its files are looked for. ``windows``, ``train``, ``run`` and
``report`` accept any registered name.

A reader's own data: call :func:`register_dataset` with a name, a loader returning a
:class:`~smoothdistill_lib.recordings.Recording`, the class names of both tasks and the channel
names; e.g. for a two-task recording of accelerometer + gyroscope::

    def load_mine(subjects=None, mode=None, **options) -> Recording:
        ...  # read your files; frame columns ax ay az gx gy gz subject activity placement session

    datasets.register_dataset("mine", load_mine, activity_names=["sit", "walk"],
                              placement_names=["wrist", "hip"],
                              channels=("ax", "ay", "az", "gx", "gy", "gz"))

Loaders are called as ``loader(subjects=None, mode=ModeSettings, **options)``.

The shipped datasets are looked for in :func:`search_dirs`: ``config.data_dir()``
(``$SMOOTHDISTILL_DATA`` or ``~/.cache/smoothdistill``) and, when the library runs from a checkout
that has one beside it, the team's shared copy ``<checkout>/../shared/data``. Missing public datasets
are downloaded into ``config.data_dir()`` by :func:`make_available`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from smoothdistill_lib import config, mhealth, sleep, sleepsim, wisdm
from smoothdistill_lib import download as dl
from smoothdistill_lib.config import ModeSettings
from smoothdistill_lib.errors import UserError, check_new_name
from smoothdistill_lib.recordings import CHANNELS, Recording

Loader = Callable[..., Recording]


@dataclass(frozen=True)
class DatasetInfo:
    """A registry entry. ``loader(subjects=None, mode=ModeSettings, **options) -> Recording``;
    ``find(folder) -> bool`` says whether a data folder holds the files (None: nothing to find,
    e.g. generated or registered data: always present); ``detail(folder) -> str`` describes what
    was found (for ``datasets``)."""

    name: str
    description: str
    loader: Loader
    activity_names: tuple[str, ...]  # task-1 classes, in label order
    placement_names: tuple[str, ...]  # task-2 classes, in label order
    channels: tuple[str, ...] = CHANNELS
    layout: str = "(provided by its loader)"  # where, relative to a data folder, the files are expected
    source: str = "registered by the reader"  # URL, or how to obtain it
    licence: str = "unknown"
    downloadable: bool = False
    find: Callable[[Path], bool] | None = None
    detail: Callable[[Path], str] | None = None


def _wisdm_loader(subjects=None, mode: ModeSettings | None = None, download: bool = True, **options) -> Recording:
    """WISDM with ``mode.wisdm_subjects`` subjects when set: the first N (sorted) having both
    phone and watch files."""
    root = make_available("wisdm", download=download)
    if subjects is None and mode.wisdm_subjects is not None:
        both = wisdm_subjects_with_both(root)
        if len(both) < mode.wisdm_subjects:
            raise FileNotFoundError(
                f"mode {mode.name!r} needs {mode.wisdm_subjects} WISDM subjects with both phone and watch "
                f"files; {root} has {len(both)}"
            )
        subjects = both[: mode.wisdm_subjects]
        # the mode's first N subjects of a partial folder are not the full archive's first N:
        # warn here, since wisdm.load never warns about explicitly chosen subjects
        wisdm.check_complete(root, options.get("placements", wisdm.PLACEMENT_NAMES),
                             subset_ok=options.get("subset_ok"))
    return wisdm.load(root, subjects, **options)


def _mhealth_loader(subjects=None, mode=None, download: bool = True, **options) -> Recording:
    return mhealth.load(make_available("mhealth", download=download), subjects, **options)


def _sleep_loader(subjects=None, mode=None, download: bool = True, **options) -> Recording:
    return sleep.load(make_available("sleep"), subjects, **options)


def _sleepsim_loader(subjects=None, mode=None, download: bool = True, **options) -> Recording:
    return sleepsim.load(None, subjects, mode=mode, **options)


def _wisdm_detail(d: Path) -> str:
    by = wisdm.subjects_by_placement(d)
    return (f"{len(by['phone'])} phone, {len(by['watch'])} watch subjects "
            f"({len(set(by['phone']) & set(by['watch']))} with both)")


DATASETS: dict[str, DatasetInfo] = {
    "wisdm": DatasetInfo(
        "wisdm", "WISDM smartphone + smartwatch accelerometers, 18 activities, 51 subjects (UCI 507)",
        _wisdm_loader, tuple(wisdm.ACTIVITY_NAMES), tuple(wisdm.PLACEMENT_NAMES),
        layout="wisdm-dataset/raw/{phone,watch}/accel/data_<subject>_accel_<phone|watch>.txt",
        source=dl.WISDM_URL, licence="CC BY 4.0", downloadable=True,
        find=lambda d: not wisdm.raw_files(d).empty, detail=_wisdm_detail),
    "mhealth": DatasetInfo(
        "mhealth", "MHEALTH chest / ankle / arm accelerometers, 12 activities + null, 10 subjects (UCI 319)",
        _mhealth_loader, tuple(mhealth.ACTIVITY_NAMES), tuple(mhealth.PLACEMENT_NAMES),
        layout="MHEALTHDATASET/mHealth_subject<k>.log (or mhealth/)",
        source=dl.MHEALTH_URL, licence="CC BY 4.0", downloadable=True,
        find=lambda d: mhealth.find_dir(d) is not None,
        detail=lambda d: f"{len(mhealth.log_files(d))} subject logs"),
    "sleep": DatasetInfo(
        "sleep", "the paper's sleep postures (12 postures x neck/chest/abdomen, 24 subjects)",
        _sleep_loader, tuple(sleep.POSTURE_NAMES), tuple(sleep.PLACEMENT_NAMES),
        layout="sleep/<subject>_<Posture>_<placement>.txt", source="not public: ask the authors",
        find=lambda d: (d / "sleep").is_dir() and sleep.find_dir(d / "sleep") is not None,
        detail=lambda d: f"{sum(1 for p in (d / 'sleep').iterdir() if p.suffix == '.txt')} files"),
    "sleepsim": DatasetInfo(
        "sleepsim", "simulated sleep postures following the paper's protocol (sleepsim.SleepSimParams)",
        _sleepsim_loader, tuple(sleep.POSTURE_NAMES), tuple(sleep.PLACEMENT_NAMES),
        layout="(generated, no files)", source="smoothdistill_lib.sleepsim", licence="MIT (this project)"),
}


def register_dataset(name: str, loader: Loader, activity_names: Sequence[str], placement_names: Sequence[str],
                     channels: Sequence[str] = CHANNELS, description: str = "", *,
                     replace: bool = False) -> DatasetInfo:
    """Add a dataset of your own to the registry, after which every stage accepts ``name``:
    ``pipeline.prepare``, the engine, experiment configs (``run``) and ``report``.

    ``loader(subjects=None, mode=ModeSettings, **options)`` returns a
    :class:`~smoothdistill_lib.recordings.Recording` whose label ids index ``activity_names`` (task 1)
    and ``placement_names`` (task 2) and whose ``channels`` are ``channels`` (any number, e.g. six
    for accelerometer + gyroscope). :func:`load_recording` checks the loader keeps to this.
    Registering an existing name raises unless ``replace``; the shipped names cannot be replaced.
    """
    check_new_name("register_dataset", name, DATASETS, _SHIPPED, replace)
    if not callable(loader):
        raise ValueError(f"register_dataset: loader for {name!r} must be callable")
    for what, names in (("activity_names", activity_names), ("placement_names", placement_names),
                        ("channels", channels)):
        if isinstance(names, str) or len(names) == 0 or len(set(names)) != len(names):
            raise ValueError(f"register_dataset: {what} of {name!r} must be a non-empty list of distinct names")
    info = DatasetInfo(name, description or f"{name} (registered)", loader, tuple(map(str, activity_names)),
                       tuple(map(str, placement_names)), tuple(map(str, channels)))
    DATASETS[name] = info
    return info


def unregister_dataset(name: str) -> None:
    """Remove a dataset added with :func:`register_dataset` (the shipped ones stay)."""
    if name in _SHIPPED:
        raise ValueError(f"unregister_dataset: {name!r} ships with the library")
    DATASETS.pop(name, None)


_SHIPPED = frozenset(DATASETS)


def get_dataset(name: str) -> DatasetInfo:
    """The registry entry of ``name`` (ValueError naming the registered names otherwise)."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)} "
                         "(or add yours with datasets.register_dataset)")
    return DATASETS[name]


def search_dirs() -> list[Path]:
    """Folders searched for datasets, in order (existing or not)."""
    dirs = [config.data_dir()]
    shared = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
    if shared.is_dir() and shared not in dirs:
        dirs.append(shared)
    return dirs


def locate(name: str) -> Path | None:
    """The first search folder that holds dataset ``name`` (None if none, or if it has no files to find)."""
    info = get_dataset(name)
    if info.find is None:
        return None
    return next((d for d in search_dirs() if info.find(d)), None)


def is_present(name: str) -> bool:
    """Whether ``name`` can be loaded without a download (generated and registered data always can)."""
    return get_dataset(name).find is None or locate(name) is not None


def _folder_name(folder: Path) -> str:
    """A search folder as a reader can act on it, never a machine's absolute path (messages are
    printed in the book): the setting that names it, or a path relative to the home folder."""
    if folder == config.data_dir():
        return ("the data folder $SMOOTHDISTILL_DATA" if os.environ.get("SMOOTHDISTILL_DATA")
                else "the data folder ~/.cache/smoothdistill (set SMOOTHDISTILL_DATA to use another)")
    if folder.name == "data" and folder.parent.name == "shared":
        return "the project's shared/data folder"
    try:
        return "~/" + str(folder.relative_to(Path.home()))
    except ValueError:
        return folder.name


def absence(name: str) -> str | None:
    """None when ``name`` is present, else one line: where it was looked for and how to get it."""
    if is_present(name):
        return None
    info = get_dataset(name)
    where = " or ".join(_folder_name(d) for d in search_dirs())
    todo = (f"`python -m smoothdistill_lib run` downloads it ({info.source})" if info.downloadable
            else f"the data are {info.source}")
    return f"{name} is not under {where} (expected {info.layout}); {todo}"


def make_available(name: str, download: bool = True, verify: bool = False) -> Path | None:
    """Make the files of dataset ``name`` available and return the folder that holds them (None for
    datasets without files: sleepsim, registered ones).

    WISDM/MHEALTH: found in :func:`search_dirs`, else downloaded into ``config.data_dir()``
    (``download=False``: DownloadError saying what to fetch and where to put it). WISDM files are
    always checked by size, and by sha256 when ``verify``. Sleep: FileNotFoundError if absent.
    """
    info = get_dataset(name)
    if info.find is None:
        return None
    found = locate(name)
    if name == "wisdm":
        return dl.prepare_wisdm(found or config.data_dir(), download=download, verify=verify)
    if name == "mhealth":
        return dl.prepare_mhealth(found or config.data_dir(), download=download)
    if found is None:
        raise FileNotFoundError(
            f"{name} dataset not found: put its files ({info.layout}) under "
            f"{config.data_dir()} or set SMOOTHDISTILL_DATA; the data are {info.source}."
            + (" Use the dataset 'sleepsim' (simulated) instead." if name == "sleep" else "")
        )
    return found


def wisdm_subjects_with_both(root: Path) -> list[int]:
    """Sorted WISDM subjects that have both a phone and a watch accel file under ``root``."""
    by = wisdm.subjects_by_placement(root)
    return sorted(set(by["phone"]) & set(by["watch"]))


def load_recording(name: str, mode=None, subjects=None, download: bool = True, **options) -> Recording:
    """Load dataset ``name`` as a :class:`Recording`, sized by the run mode.

    ``mode``: a mode name or ``ModeSettings`` (default ``$SMOOTHDISTILL_MODE``). WISDM uses
    ``mode.wisdm_subjects`` subjects when set; sleepsim ``mode.sleepsim_subjects`` x
    ``mode.sleepsim_seconds``. Explicit ``subjects`` win over the mode. ``options`` go to the
    dataset's loader (e.g. ``drop_null``, ``seed``, ``cache``). The recording is checked against
    the registry entry (class names, channels), so a registered loader cannot drift from it.
    """
    info = get_dataset(name)
    m = mode if (mode is not None and not isinstance(mode, str)) else config.get_mode(mode)
    try:
        rec = info.loader(subjects=subjects, mode=m, download=download, **options) if info.find is not None \
            else info.loader(subjects=subjects, mode=m, **options)
    except TypeError as e:  # an option the loader does not take (a typo in data_options): name it
        bad = re.search(r"unexpected keyword argument '(\w+)'", str(e))
        if bad is None:
            raise
        raise UserError(f"dataset {name!r}: its loader takes no option {bad.group(1)!r} (from data_options or a "
                        "load option); check the spelling") from None
    if not isinstance(rec, Recording):
        raise ValueError(f"dataset {name!r}: its loader returned {type(rec).__name__}, not a Recording")
    for what, got, want in (("activity_names", rec.activity_names, info.activity_names),
                            ("placement_names", rec.placement_names, info.placement_names),
                            ("channels", rec.channels, info.channels)):
        if tuple(got) != tuple(want):
            raise ValueError(f"dataset {name!r}: the loader's recording has {what} {list(got)}, "
                             f"the registry {list(want)}")
    if subjects is not None:
        # a loader that ignores ``subjects`` would hand its whole dataset on, and a checkpoint would
        # then be scored on the subjects it was trained on without a word
        asked = sorted({int(x) for x in subjects})
        got = [int(x) for x in rec.subjects()]
        if got != asked:
            extra, missing = sorted(set(got) - set(asked)), sorted(set(asked) - set(got))
            raise UserError(
                f"dataset {name!r}: asked for subjects {asked}, its loader returned "
                + ", ".join(p for p in (f"{len(extra)} others ({_short(extra)})" if extra else "",
                                        f"none of {_short(missing)}" if missing else "") if p)
                + ": the loader must keep exactly the subjects it is given (its `subjects` argument)")
    rec.info["mode"] = m.name
    return rec


def _short(ids: list[int], k: int = 8) -> str:
    """``[1, 2, 3]``, or the first ``k`` ids and how many more."""
    return str(ids) if len(ids) <= k else f"{ids[:k]} and {len(ids) - k} more"


def dataset_status() -> pd.DataFrame:
    """One row per dataset: name, present, location (or where it is looked for), detail, source."""
    rows = []
    for name, info in DATASETS.items():
        where = locate(name)
        if where is not None and info.detail is not None:
            detail = info.detail(where)
        elif name == "sleepsim":
            m = config.get_mode()
            detail = f"generated: {m.sleepsim_subjects} subjects x {m.sleepsim_seconds:g} s (mode {m.name})"
        else:
            detail = ""
        rows.append({
            "dataset": name,
            "present": is_present(name),
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
