"""Benchmark: what keying WISDM's parse cache by file content would cost, against the cached load.

``wisdm.load`` keeps a parsed ``.npz`` copy of each raw file under ``$SMOOTHDISTILL_CACHE`` and finds it
again by the file's path, size, mtime and ctime (one ``stat``). A content key would read and hash
every raw byte on every load, before any cached array is read. This script times, on the same files
(those ``wisdm.load`` reads; the OS file cache warmed first, so disk speed is left out):

- ``stat``: one ``os.stat`` per file (the key in use);
- ``sha256``, ``blake2b``, ``xxh3_64`` (when the ``xxhash`` package is installed): one full pass
  over every file (``hashlib.file_digest``);
- ``cache read``: every file's cached arrays read back (``wisdm._read_cached`` on a hit, what a
  content key would come on top of);
- ``warm load``: the whole ``wisdm.load`` with every file cached (what a chapter waits for).

Each is the median of ``--repeats`` runs; the table puts each beside the cache read and the warm
load as a ratio. The cache is built in a temporary folder, so your own cache is left alone.

    python benchmarks/bench_cache_key.py [--root FOLDER] [--repeats 5]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _hash_all(paths, make) -> None:
    for p in paths:
        with open(p, "rb") as f:
            hashlib.file_digest(f, make)


def main() -> int:
    sys.path.insert(0, str(REPO))
    from smoothdistill_lib import datasets, wisdm

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=None, help="folder holding wisdm-dataset/ (default: the registry's)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    root = args.root or datasets.locate("wisdm")
    if root is None:
        print("WISDM not found (set SMOOTHDISTILL_DATA or use --root)", file=sys.stderr)
        return 2
    files = wisdm.raw_files(root)
    paths = [Path(p) for p in files.path]
    total = sum(p.stat().st_size for p in paths)
    print(f"root: {root}   {len(paths)} raw files, {total / 1e6:.1f} MB   repeats: {args.repeats}   "
          f"cpus: {os.cpu_count()}   load average: {os.getloadavg()[0]:.1f}")
    _hash_all(paths, "md5")  # warm the OS file cache: every pass below reads from memory

    hashers = {"sha256": "sha256", "blake2b": "blake2b"}
    try:
        import xxhash

        hashers["xxh3_64"] = xxhash.xxh3_64
    except ImportError:
        print("xxhash is not installed: xxh3_64 left out")

    with tempfile.TemporaryDirectory(prefix="bench-cache-key-") as tmp:
        os.environ["SMOOTHDISTILL_CACHE"] = tmp
        cdir = wisdm.cache_dir()
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a subset warns; irrelevant here
            for p, pl in zip(paths, files.placement):
                wisdm._read_cached(p, pl, cdir)  # parse from text and write the cache once
        parse = time.perf_counter() - t0

        def cached():
            for p, pl in zip(paths, files.placement):
                wisdm._read_cached(p, pl, cdir)

        def load():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                wisdm.load(root, subset_ok=True)

        rows = {"stat (the key in use)": _median_seconds(lambda: [os.stat(p) for p in paths], args.repeats)}
        for name, make in hashers.items():
            rows[f"{name}, full pass"] = _median_seconds(lambda make=make: _hash_all(paths, make), args.repeats)
        rows["cache read (all hits)"] = _median_seconds(cached, args.repeats)
        rows["warm wisdm.load"] = _median_seconds(load, args.repeats)

    base, warm = rows["cache read (all hits)"], rows["warm wisdm.load"]
    print(f"(parsing every file from text once, to build the cache: {parse:.2f} s)")
    print(f"{'':28s} {'seconds':>9s} {'MB/s':>8s} {'x cache read':>13s} {'x warm load':>12s}")
    for name, s in rows.items():
        print(f"{name:28s} {s:9.4f} {total / 1e6 / s:8.0f} {s / base:13.2f} {s / warm:12.2f}")
    best = min((s, n) for n, s in rows.items() if "full pass" in n)
    print(f"a content key ({best[1].split(',')[0]}) would add {best[0] / warm:.0%} to every warm load; "
          f"a stat key adds {rows['stat (the key in use)'] / warm:.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
