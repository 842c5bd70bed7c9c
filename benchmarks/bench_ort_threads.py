"""Benchmark: chapter 11's deployment work with other cores busy, onnxruntime's defaults against ours.

Chapter 11 exports each student to ONNX, quantises it to int8 (``quantize_static``, calibrated in an
onnxruntime session), and measures logits, accuracy and batch-1 latency in onnxruntime sessions:
``export.deployment_report``. On a loaded two-core CI machine (two chapters at once) its cell once
passed nbval's 300 s timeout. This script runs that work for one MobileNetV3-style student while
``--busy`` processes spin on other cores (``while True: pass``, started and stopped by this script),
in three set-ups, interleaved, each the median of ``--repeats``:

- ``before``: onnxruntime's defaults where the library took them before (the calibration session:
  a thread per core that spins; the library's sessions: spinning allowed), torch's default threads;
- ``after``: :func:`export.session_options` everywhere (no spinning, one inter-op thread, torch's
  thread count; latency and logits on one thread), torch's default threads;
- ``before, torch 1 thread`` and ``after, torch 1 thread``: the same with ``torch.set_num_threads(1)``
  (what a notebook kernel could do on a loaded machine; ``nb.setup`` does not today), which takes
  torch's own contention out of the comparison of onnxruntime's settings.

Columns: seconds of the whole ``deployment_report`` and of ``quantize_int8`` alone, and each as a
ratio to ``before``.

    python benchmarks/bench_ort_threads.py [--busy 1] [--repeats 3] [--windows 512]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _defaults_options(threads=None):
    """The session options the library used before: the thread count it asked for (none for the
    calibration session, which kept onnxruntime's defaults), spinning allowed."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads is not None:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = threads
    opts.log_severity_level = 3
    return opts


def main() -> int:
    sys.path.insert(0, str(REPO))
    import numpy as np
    import torch

    from smoothdistill_lib import export, students  # noqa: F401  (students registers the student)
    from smoothdistill_lib.models import build_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--busy", type=int, default=1, help="processes spinning on other cores meanwhile")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--windows", type=int, default=512, help="calibration windows (as many test windows)")
    ap.add_argument("--latency-repeats", type=int, default=300)
    args = ap.parse_args()

    torch.manual_seed(0)
    net = build_model("mobilenet_v3s", (18, 2), width=1.0).eval()
    rng = np.random.default_rng(0)
    calib = rng.standard_normal((args.windows, 1, 3, 100)).astype(np.float32)
    X_test = rng.standard_normal((args.windows, 1, 3, 100)).astype(np.float32)
    y_test = [rng.integers(0, 18, args.windows), rng.integers(0, 2, args.windows)]
    default_threads = torch.get_num_threads()
    real = (export.session_options, export._calibration_sessions)

    def setup(name):
        if name.startswith("before"):
            export.session_options, export._calibration_sessions = (
                _defaults_options, lambda threads=None: contextlib.nullcontext())
        else:
            export.session_options, export._calibration_sessions = real
        torch.set_num_threads(1 if "1 thread" in name else default_threads)

    names = ["before", "after", "before, torch 1 thread", "after, torch 1 thread"]
    times = {n: {"deployment_report": [], "quantize_int8": []} for n in names}
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        time.sleep(0.5)
        with tempfile.TemporaryDirectory(prefix="bench-ort-") as tmp:
            fp32 = export.export_onnx(net, Path(tmp) / "s.onnx")
            for r in range(args.repeats):
                for n in names:  # interleaved: the machine's load drifts alike for every set-up
                    setup(n)
                    t0 = time.perf_counter()
                    export.quantize_int8(fp32, Path(tmp) / f"q{r}.int8.onnx", calib)
                    times[n]["quantize_int8"].append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    export.deployment_report(net, f"s{r}", Path(tmp) / n.replace(" ", "_").replace(",", ""),
                                             calib, X_test, y_test, repeats=args.latency_repeats)
                    times[n]["deployment_report"].append(time.perf_counter() - t0)
    finally:
        for p in busy:
            p.kill()
            p.wait()
        setup("after")
        torch.set_num_threads(default_threads)

    med = {n: {k: statistics.median(v) for k, v in d.items()} for n, d in times.items()}
    print(f"cpus: {os.cpu_count()}   busy processes: {args.busy}   torch threads by default: {default_threads}   "
          f"load average (1 min): {os.getloadavg()[0]:.1f}   repeats: {args.repeats}")
    print(f"{'set-up':24s} {'deployment_report s':>20s} {'x before':>9s} {'quantize_int8 s':>16s} {'x before':>9s}")
    b = med["before"]
    for n in names:
        m = med[n]
        print(f"{n:24s} {m['deployment_report']:20.2f} {m['deployment_report'] / b['deployment_report']:9.2f} "
              f"{m['quantize_int8']:16.2f} {m['quantize_int8'] / b['quantize_int8']:9.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
