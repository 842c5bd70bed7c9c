"""Execute a chapter in one run mode and store it with its outputs, widget state and measured time.

    .venv/bin/python tools/execute_chapter.py book/02_collecting_data.ipynb --mode demo \
        --data /work/shared/data

What it does, in order:
1. runs every cell with nbclient in a kernel of this Python, cwd = the notebook's folder,
   ``SMOOTHDISTILL_MODE=<mode>``, inline PNG figures, ``store_widget_state=True`` (so ipywidgets
   render in the built book); stops at the first error and writes nothing;
2. records the wall time in ``book/_timings.json`` (device ``cpu`` or ``gpu``), unless ``--no-record``;
   ``--timings book/_timings_loaded.json --out /tmp/x.ipynb`` records a run made while other work
   loads the machine in its own file (with the load average and torch's thread count), so the
   book's time tables keep the quiet measurements and the instructor guide can show both;
3. re-runs the set-up cell plus the cells tagged ``chapter-timings`` in a fresh kernel and puts
   their outputs back, so the chapter's "time to run" table includes the run just measured;
4. checks the result (no error output, first output is the provenance banner, size limit) and
   writes the notebook in place.

Nothing the book needs is stripped: outputs, glue data and widget state stay. Only nbclient's
per-cell execution timestamps are not recorded (they would churn every diff).
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import sys
import time
from pathlib import Path

import nbformat
import torch
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from smoothdistill_lib import nb as nbhelpers  # noqa: E402
from smoothdistill_lib.config import MODES  # noqa: E402

TIMINGS_TAG = "chapter-timings"
MAX_BYTES = 2_000_000


def _client(notebook, cwd: Path, timeout: int) -> NotebookClient:
    return NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",  # jupyter_client starts it with this interpreter (sys.executable)
        resources={"metadata": {"path": str(cwd)}},
        store_widget_state=True,
        record_timing=False,
        allow_errors=False,
    )


def _device() -> str:
    try:
        import torch

        return "gpu" if torch.cuda.is_available() else "cpu"
    except ImportError:  # pragma: no cover
        return "cpu"


def _device_name() -> str:
    from smoothdistill_lib.provenance import device_description

    return f"{device_description()} ({os.cpu_count()} cores)"


def _load_average() -> float:
    """The 1-minute load average (NaN where the OS has none): how busy the machine was."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def _refresh_timing_cells(notebook, cwd: Path, timeout: int) -> int:
    """Re-run the set-up cell and the ``chapter-timings`` cells; copy their outputs back."""
    code = [c for c in notebook.cells if c.cell_type == "code"]
    tagged = [c for c in notebook.cells if TIMINGS_TAG in c.get("metadata", {}).get("tags", [])]
    if not tagged or not code:
        return 0
    mini = nbformat.v4.new_notebook(metadata=copy.deepcopy(notebook.metadata))
    # the set-up cell, then nb.setup() (the book's table style, as in the chapter), then the timing cells
    style = nbformat.v4.new_code_cell("nb.setup()")
    mini.cells = [copy.deepcopy(code[0]), style] + [copy.deepcopy(c) for c in tagged]
    _client(mini, cwd, timeout).execute()
    for original, fresh in zip(tagged, mini.cells[2:], strict=True):
        original.outputs = fresh.outputs
    return len(tagged)


def check_notebook(notebook, size_bytes: int, chapter: bool = True) -> list[str]:
    """Problems that must never be committed (empty list = fine). ``chapter``: a numbered chapter,
    whose first output must be its provenance banner (the landing page and the guide have none)."""
    problems = []
    for i, cell in enumerate(notebook.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                problems.append(f"cell {i}: error output {out.get('ename')}: {out.get('evalue')}")
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    first = outputs[0] if outputs else {}
    if chapter and "Provenance" not in str(first.get("data", {}).get("text/markdown", "")):
        problems.append("the first output is not the provenance banner (nb.banner())")
    if size_bytes > MAX_BYTES:
        problems.append(f"notebook is {size_bytes / 1e6:.2f} MB > {MAX_BYTES / 1e6:.0f} MB: shrink figures/outputs")
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("notebook", type=Path, help="chapter to execute, e.g. book/01_preface.ipynb")
    p.add_argument("--mode", choices=MODES, default="demo")
    p.add_argument("--data", type=Path, default=None, help="sets SMOOTHDISTILL_DATA (where datasets are)")
    p.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    p.add_argument("--no-record", action="store_true", help="do not write book/_timings.json")
    p.add_argument("--timings", type=Path, default=None,
                   help="record the wall time in this file instead of book/_timings.json (e.g. "
                        "book/_timings_loaded.json for a run on a loaded machine; the chapter's time "
                        "table is then left as it is)")
    p.add_argument("--out", type=Path, default=None, help="write here instead of in place")
    args = p.parse_args(argv)

    path = args.notebook.resolve()
    if not path.is_file():
        print(f"error: no notebook at {args.notebook}", file=sys.stderr)
        return 2
    if args.data is not None and not args.data.is_dir():
        print(f"error: --data {args.data} is not a folder", file=sys.stderr)
        return 2
    os.environ["SMOOTHDISTILL_MODE"] = args.mode
    os.environ["SMOOTHDISTILL_PROGRESS"] = "0"  # no progress bar is stored in a chapter (config.show_progress)
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    if args.data is not None:
        os.environ["SMOOTHDISTILL_DATA"] = str(args.data.resolve())

    notebook = nbformat.read(path, as_version=4)
    chapter = path.stem
    load_before = _load_average()
    t0 = time.perf_counter()
    try:
        _client(notebook, path.parent, args.timeout).execute()
    except CellExecutionError as e:
        print(f"error: {args.notebook} failed in mode {args.mode}; nothing written.\n{e}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - t0
    print(f"{chapter}: executed in mode {args.mode} in {seconds:.1f} s")

    if not args.no_record and args.timings is not None:  # a loaded run: its own file, tables untouched
        nbhelpers.record_timing(chapter, args.mode, _device(), seconds, path=args.timings,
                                device_name=_device_name(), threads=torch.get_num_threads(),
                                load_average=round((load_before + _load_average()) / 2, 2))
        print(f"{chapter}: recorded in {args.timings}")
    elif not args.no_record:  # the load too, so a table can tell a quiet run from a loaded one
        nbhelpers.record_timing(chapter, args.mode, _device(), seconds, device_name=_device_name(),
                                threads=torch.get_num_threads(),
                                load_average=round((load_before + _load_average()) / 2, 2))
        n = _refresh_timing_cells(notebook, path.parent, args.timeout)
        if n:
            print(f"{chapter}: refreshed {n} '{TIMINGS_TAG}' cell(s)")

    text = nbformat.writes(notebook)
    problems = check_notebook(notebook, len(text.encode()), chapter=bool(re.match(r"\d\d_", args.notebook.name)))
    if problems:
        print(f"error: {args.notebook} not written:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    out = args.out or path
    out.write_text(text)
    print(f"{chapter}: wrote {out} ({len(text.encode()) / 1e3:.0f} kB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
