"""Root pytest configuration: notebooks under book/ run through nbval in quick mode.

``pytest`` collects ``tests/`` and ``book/`` (pyproject ``testpaths``); nbval (``--nbval-lax`` in
``addopts``) runs every chapter ``book/NN_*.ipynb`` and compares the outputs of the cells
tagged ``nbval-check-output`` (a cell tag, invisible to readers) with the stored ones. Nothing else
in ``book/`` is collected.
"""

import os

# Chapters run by nbval use the smallest run size; the same code path as demo/full.
os.environ.setdefault("SMOOTHDISTILL_MODE", "quick")
os.environ.setdefault("MPLBACKEND", "Agg")
# One torch/OpenMP thread per process: pytest-xdist runs two workers on CI's two cores and the
# notebook kernels nbval starts inherit this. With more threads than free cores, torch's and
# onnxruntime's pools spin against each other: on a loaded 2-core machine the same chapter cell took
# 5-6x longer (benchmarks/bench_ort_threads.py) and once passed nbval's cell timeout. The committed
# records were made with one thread too.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# Only numbered chapters are tests: not the template (book/_template.ipynb), not build output or
# checkpoints. Globs are relative to this file's folder.
collect_ignore_glob = [
    "book/[!0-9]*.ipynb",
    "book/**/.ipynb_checkpoints/*",
    "_build/*",
    "book/_build/*",
]

# Tests and chapters use data subsets on purpose (quick mode; the team's shared WISDM copy holds 19 of
# 51 phone and 43 of 51 watch subjects): opt in, so that the loaders' IncompleteDataWarning does not
# add a stderr line to checked chapter outputs. Tests of the warning unset it.
os.environ.setdefault("SMOOTHDISTILL_ALLOW_SUBSET", "1")

# Chapters read the recorded runs in results/ and some also run grids in the chapter's mode (chapter
# 11's ablation, MHEALTH grids when the data are present). Tests work on a copy, so a test run never
# writes quick-mode records into the repository's results/ (one copy per test process).
if "SMOOTHDISTILL_RESULTS" not in os.environ:
    import shutil
    import tempfile
    from pathlib import Path

    _copy = Path(tempfile.mkdtemp(prefix="smoothdistill-results-")) / "results"
    shutil.copytree(Path(__file__).resolve().parent / "results", _copy, ignore=shutil.ignore_patterns(".*"))
    os.environ["SMOOTHDISTILL_RESULTS"] = str(_copy)
