"""Notebook helpers for the chapters: set-up, ``glue`` with a fallback, the provenance banner, timings.

- :func:`glue` stores a value for the book's prose (``{glue:text}`name```) through myst-nb, and
  falls back to plain display where myst-nb is not installed (e.g. Colab).
- :func:`banner` shows where a chapter's outputs come from (mode, device, data, library commit,
  date) as a small table; every chapter shows it as its first output.
- :func:`setup` makes figures compact (PNG, small size, moderate dpi), prints the library's
  warnings as one ``warning: ...`` line, and returns the run mode.
- :func:`data_note` says in one sentence which part of a dataset this machine holds, for the prose.
- :func:`time_table` shows a chapter's measured wall time per mode and device, read from
  ``book/_timings.json`` (written by ``tools/execute_chapter.py``, never by hand).
"""

from __future__ import annotations

import html
import json
import sys
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from smoothdistill_lib import datasets, mhealth, plots, report, wisdm
from smoothdistill_lib.config import MODES, ModeSettings, get_mode, project_root, show_progress
from smoothdistill_lib.errors import IncompleteDataWarning
from smoothdistill_lib.experiment import missing_datasets
from smoothdistill_lib.fileio import atomic_write_json, file_lock, json_hash
from smoothdistill_lib.provenance import provenance
from smoothdistill_lib.records import load_experiment
from smoothdistill_lib.runner import run_experiment

#: the measured-timings file, relative to the repository root
TIMINGS_FILE = Path("book") / "_timings.json"
DEVICES = ("cpu", "gpu")
NOT_MEASURED = "not measured"


def _display(obj: Any) -> None:
    # IPython is always there in a kernel; outside one (plain python, tests) print the text form.
    try:
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython is a dependency of every notebook front end
        print(obj)
        return
    display(obj)


def glue(name: str, value: Any, display: bool = False) -> None:
    """Store ``value`` under ``name`` for the book's prose.

    With myst-nb installed this is ``myst_nb.glue`` (the value's display forms go into the cell's
    outputs, hidden unless ``display``). Without it (Colab), the value is only shown when
    ``display`` is true: the prose then simply reads the numbers printed by the cells.
    Numpy scalars are glued as Python numbers, so that ``{glue:text}`name:,d``` can format them.
    Returns None: a glue call ending a cell adds no output of its own.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"glue name must be a Python-identifier-like string, got {name!r}")
    if isinstance(value, np.generic):  # numpy 2 scalars print as 'np.int64(5)': glue the Python number
        value = value.item()
    try:
        from myst_nb import glue as _myst_glue
    except ImportError:
        if display:
            _display(value)
        return
    _myst_glue(name, value, display=display)


def _format_data(data: Any) -> str:
    if data is None:
        return "none"
    if isinstance(data, Mapping):
        return "; ".join(f"{k}: {_format_value(v)}" for k, v in data.items())
    return str(data)


def _format_value(v: Any) -> str:
    if isinstance(v, list | tuple):
        return ", ".join(str(x) for x in v) if v else "none"
    return str(v)


def provenance_table(prov: Mapping[str, Any]) -> pd.DataFrame:
    """The banner's rows (``field``, ``value``) from a :func:`provenance.provenance` dict.

    Rows: mode, device, data, library (version, commit, whether the checkout had local changes),
    software versions, date (UTC). Missing keys show as ``unknown``.
    """
    get = lambda k: prov.get(k) if prov.get(k) is not None else "unknown"  # noqa: E731
    device = str(get("device"))
    if prov.get("cpu_count") and device.startswith("cpu"):
        device += f" ({prov['cpu_count']} cores)"
    library = f"smoothdistill_lib {get('library')}, commit {get('commit')}"
    if prov.get("dirty"):
        library += " + local changes"
    software = f"Python {get('python')}, torch {get('torch')}, numpy {get('numpy')}"
    rows = [
        ("mode", str(get("mode"))),
        ("device", device),
        ("data", _format_data(prov.get("data"))),
        ("library", library),
        ("software", software),
        ("date (UTC)", str(get("timestamp"))),
    ]
    return pd.DataFrame(rows, columns=["field", "value"])


def banner(mode: str | ModeSettings | None = None, data: Any = None, show: bool = True) -> dict:
    """Show (and return) the provenance of this chapter's outputs.

    ``mode``: run mode name or settings (default ``$SMOOTHDISTILL_MODE``); ``data``: what data the
    chapter uses, e.g. ``{"dataset": "wisdm", "subjects": [1600, 1604], "protocol": "paper"}``.
    The dict comes from :func:`smoothdistill_lib.provenance.provenance`.
    """
    name = mode.name if isinstance(mode, ModeSettings) else get_mode(mode).name
    prov = provenance(mode=name, data=data)
    if show:
        table = provenance_table(prov)
        try:
            from IPython.display import Markdown
        except ImportError:  # pragma: no cover
            print(table.to_string(index=False))
        else:
            _display(Markdown(banner_markdown(table)))
    return prov


def banner_markdown(table: pd.DataFrame) -> str:
    """The banner as one collapsed line: mode, device, library commit and date in the summary; the
    data and software versions inside (a ``<details>`` block, portable HTML)."""
    f = dict(table.itertuples(index=False))
    esc = lambda v: str(v).replace("\n", " ").replace("*", "\\*").replace("_", "\\_")  # noqa: E731
    date = str(f.get("date (UTC)", ""))[:10]
    commit = str(f.get("library", "")).split("commit ")[-1]
    summary = f"Provenance of the outputs: {f.get('mode')} mode · {f.get('device')} · commit {commit} · {date}"
    inner = "\n".join(f"- {esc(k)}: {esc(v)}" for k, v in f.items() if k not in ("mode", "device"))
    return f"<details>\n<summary>{html.escape(summary)}</summary>\n\n{inner}\n\n</details>"


def setup(mode: str | None = None) -> ModeSettings:
    """The book's figure and table style for a chapter; returns the run mode's settings.

    Figures: :data:`plots.THEME` (sized for the book's content column, 150 dpi PNG, one font size).
    Tables: every displayed DataFrame goes through :func:`report.to_html` (integers as integers,
    thousands separators, one number format per quantity, no truncated cells, no index-name header
    row, laid out to fit the content column).
    Warnings: the library's :class:`~smoothdistill_lib.errors.IncompleteDataWarning` prints as one
    ``warning: ...`` line (Python's default adds the library's file path and a source line, which
    would be stored in the chapter); say which data were used in the prose with :func:`data_note`.
    """
    plots.apply_theme()
    _one_line_warnings()
    # plots.THEME gives every figure constrained layout; a chapter that calls fig.tight_layout() (e.g.
    # to keep room for a legend below the panels) chooses tight layout on purpose, and matplotlib's
    # notice about the switch says nothing to a reader
    warnings.filterwarnings("ignore", message="The figure layout has changed to tight", category=UserWarning)
    try:  # inline backend only exists inside a kernel
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        set_matplotlib_formats("png", bbox_inches="tight")
    except ImportError:  # pragma: no cover
        pass
    pd.set_option("display.max_columns", 40)
    pd.set_option("display.max_colwidth", None)  # never "two independent single-head nets, plain CE eac..."
    pd.set_option("display.width", 120)
    _register_table_formatter()
    return get_mode(mode)


def _one_line_warnings() -> None:
    """Show :class:`IncompleteDataWarning` as one ``warning: ...`` line on stderr (as the command
    line does); every other warning keeps Python's format. Installed once per process."""
    shown = warnings.showwarning
    if getattr(shown, "_smoothdistill", False):
        return

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, IncompleteDataWarning):
            print(f"warning: {message}", file=sys.stderr if file is None else file)
        else:
            shown(message, category, filename, lineno, file, line)

    show._smoothdistill = True
    warnings.showwarning = show


def data_note(name: str = "wisdm") -> str:
    """One sentence for a chapter's prose: which part of dataset ``name`` (``wisdm`` or ``mhealth``)
    this machine holds, e.g. "The WISDM data here are a subset: the accelerometer files of 19 of 51
    phone and 43 of 51 watch subjects (15 with both), so WISDM numbers differ from the full
    archive's." No folder path (a reader's machine is not the build machine)."""
    if name not in ("wisdm", "mhealth"):
        raise ValueError(f"data_note knows the file lists of 'wisdm' and 'mhealth', not {name!r}")
    label = name.upper()
    root = datasets.locate(name)
    if root is None:
        return f"{label} is not on this machine, so the parts of this chapter that need it are skipped."
    if name == "wisdm":
        counts = wisdm.file_counts(root)
        if all(have == total for have, total in counts.values()):
            return (f"The {label} data here are the full archive: the accelerometer files of all "
                    + " and ".join(f"{total} {p}" for p, (_, total) in counts.items()) + " subjects.")
        both = len(datasets.wisdm_subjects_with_both(root))
        return (f"The {label} data here are a subset: the accelerometer files of "
                + " and ".join(f"{have:,} of {total:,} {p}" for p, (have, total) in counts.items())
                + f" subjects ({both:,} with both), so {label} numbers differ from the full archive's.")
    n = len(mhealth.SUBJECTS)
    have = n - len(mhealth.check_complete(root, subset_ok=True))
    if have == n:
        return f"The {label} data here are the full archive: the logs of all {n} subjects."
    return (f"The {label} data here are a subset: the logs of {have} of {n} subjects, so {label} numbers "
            "differ from the full archive's.")


def _register_table_formatter() -> None:
    """Route the HTML form of every displayed DataFrame through :func:`report.to_html`."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return
    ip = get_ipython()
    if ip is None:  # plain python, tests
        return
    ip.display_formatter.formatters["text/html"].for_type(pd.DataFrame, report.to_html)


# ---- measured timings ---------------------------------------------------------------------------

def timings_path(root: Path | None = None) -> Path:
    """``book/_timings.json`` under ``root`` (default: the repository root)."""
    return Path(root or project_root()) / TIMINGS_FILE


def load_timings(path: Path | None = None) -> dict:
    """All recorded timings: ``{chapter: {device: {mode: {"seconds": s, ...}}}}`` ({} if no file)."""
    path = Path(path) if path else timings_path()
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e}); delete it and re-run tools/execute_chapter.py") from e


def record_timing(chapter: str, mode: str, device: str, seconds: float, path: Path | None = None,
                  **extra: Any) -> dict:
    """Store one measured wall time (``device`` in ``cpu``/``gpu``) and return the whole table."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if not seconds >= 0:
        raise ValueError(f"seconds must be >= 0, got {seconds!r}")
    path = Path(path) if path else timings_path()
    with _locked(path):  # several chapters may be executed at once: no lost update
        table = load_timings(path)
        table.setdefault(chapter, {}).setdefault(device, {})[mode] = {"seconds": round(float(seconds), 1), **extra}
        atomic_write_json(path, table, sort_keys=True)  # a crash never leaves half a file
    return table


def _locked(path: Path):
    """An exclusive lock for read-modify-write of ``path``: a lock file in the temp folder (named by
    the path's hash), so the repository gets no stray files."""
    return file_lock(Path(tempfile.gettempdir()) / f"smoothdistill-{json_hash(str(path.resolve()), 12)}.lock")


#: chapters whose full mode trains the paper's protocol: it needs a GPU (one home for the fact;
#: the time tables and the landing page's chapter map read it)
FULL_NEEDS_GPU = frozenset({"05_ema_teacher", "06_baselines", "07_smooth_distill_gpu", "08_results",
                            "09_ablations", "10_cost", "11_smldist"})
NEEDS_GPU = "needs a GPU"


def format_seconds(seconds: float | None) -> str:
    """``'45 s'``, ``'3.2 min'``, ``'1.5 h'``; :data:`NOT_MEASURED` for ``None``."""
    if seconds is None:
        return NOT_MEASURED
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def time_table(chapter: str, path: Path | None = None) -> pd.DataFrame:
    """Measured wall time of ``chapter``: one row per measured mode, one column per device that
    measured something (CPU, GPU), and a ``full`` row saying :data:`NEEDS_GPU` where that is why
    it was not measured on a CPU (:data:`FULL_NEEDS_GPU`). Modes never measured are left out.

    The device that measured each entry is kept in the JSON file (e.g. ``"cpu: 2 cores"``).
    """
    entry = load_timings(path).get(chapter, {})
    devices = [d for d in DEVICES if entry.get(d)] or ["cpu"]
    rows = {}
    for m in MODES:
        cells = {d.upper(): entry.get(d, {}).get(m, {}).get("seconds") for d in devices}
        if m == "full" and chapter in FULL_NEEDS_GPU and cells.get("CPU") is None:
            cells["CPU"] = NEEDS_GPU
        if all(v is None for v in cells.values()):
            continue
        rows[m] = {d: (v if isinstance(v, str) else format_seconds(v) if v is not None else "–")
                   for d, v in cells.items()}
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index.name = "mode"
    return df


def grid_when_present(name: str, mode: str | ModeSettings | None = None, root: Path | None = None):
    """Run the experiment ``configs/<name>.yaml`` in ``mode`` when its datasets are on this machine,
    and return its :class:`records.Records`; otherwise print ONE line saying what is missing and how
    to get it, and return None. Nothing is downloaded here; the grid resumes, so a second call trains
    nothing. ``root``: the repository (default :func:`config.project_root`).

    Chapters use it for datasets that are not shipped (MHEALTH): they run by themselves on a machine
    that has the data, and say so in one line elsewhere.
    """
    path = Path(root or project_root()) / "configs" / f"{name}.yaml"
    if not path.exists():
        print(f"{name} runs skipped: {path} is not here; clone the book's repository to run its grids")
        return None
    missing = missing_datasets(path)
    if missing:
        print(f"{name} runs skipped: " + "; ".join(missing.values()))
        return None
    # the runner's bar over runs follows the same switch as the engine's (SMOOTHDISTILL_PROGRESS)
    run_experiment(path, mode=getattr(mode, "name", mode), progress=show_progress())
    return load_experiment(name)
