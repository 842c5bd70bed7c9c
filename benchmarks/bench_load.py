"""Benchmark: load the whole WISDM data found (cold = parsed-copy cache cleared, warm = cached).

Each load runs in a fresh Python process, which reports its wall time for ``wisdm.load`` and its
peak resident memory (``resource.getrusage(...).ru_maxrss``, imports included). Targets (for the
team's shared subset, 19 phone + 43 watch files, on 2 CPU cores): cold <= 10 s, warm <= 1 s,
peak memory <= 1.5 GB.

    python benchmarks/bench_load.py [--root FOLDER] [--repeats 3]

``--root`` defaults to where the registry finds WISDM. The cache is cleared first: run it on a
copy whose cache you do not mind rebuilding. The OS file cache is not dropped (needs root), so
"cold" means "parsed from text", not "read from a cold disk".
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGETS = {"cold_s": 10.0, "warm_s": 1.0, "peak_rss_gb": 1.5}

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {repo!r})
from smoothdistill_lib import wisdm
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
rec = wisdm.load({root!r})
dt = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
print(json.dumps({{"seconds": dt, "rows": len(rec), "files": len(rec.info["files"]),
                  "peak_rss_gb": peak / 2**20, "import_rss_gb": base / 2**20,
                  "frame_gb": rec.frame.memory_usage().sum() / 2**30}}))
"""


def run_once(root: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD.format(repo=str(REPO), root=str(root))],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    sys.path.insert(0, str(REPO))
    from smoothdistill_lib import datasets, wisdm

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    root = args.root or datasets.locate("wisdm")
    if root is None:
        print("WISDM not found (set SMOOTHDISTILL_DATA or use --root)", file=sys.stderr)
        return 2
    print(f"root: {root}   cache: {wisdm.cache_dir(root)}")
    cold, warm = [], []
    for _ in range(args.repeats):
        wisdm.clear_cache(root)
        cold.append(run_once(root))
        warm.append(run_once(root))
    best = {"cold_s": min(r["seconds"] for r in cold), "warm_s": min(r["seconds"] for r in warm),
            "peak_rss_gb": max(r["peak_rss_gb"] for r in cold + warm)}
    r0 = cold[0]
    print(f"loaded {r0['rows']:,} rows from {r0['files']} files; frame {r0['frame_gb'] * 1024:.0f} MiB; "
          f"interpreter + imports {r0['import_rss_gb'] * 1024:.0f} MiB")
    for label, runs in (("cold", cold), ("warm", warm)):
        print(f"{label} runs (s): " + ", ".join(f"{r['seconds']:.2f}" for r in runs))
    print(f"{'measure':<14}{'best':>10}{'target':>10}{'ratio':>8}")
    for k, target in TARGETS.items():
        print(f"{k:<14}{best[k]:>10.3f}{target:>10.3f}{best[k] / target:>8.2f}")
    return 0 if all(best[k] <= t for k, t in TARGETS.items()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
