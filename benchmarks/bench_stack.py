"""Throughput of replica-stacked training vs one run at a time, measured side by side in ONE run.

For R replicas of the faithful MTL-net at batch 64 (each replica its own batch), training windows
per second of

- ``sequential``: R separate nets, each with its own optimizer (and EMA teacher), one engine step
  each (what R ``engine.fit`` runs do, one after the other);
- ``stacked``: one :class:`~smoothdistill_lib.stack.StackedNet` of R replicas, one stacked step
  (what ``stack.fit_stacked`` does).

Timed by ``compute.interleaved_step_times`` (rounds alternate between the contenders, median).
Ratios printed: stacked / sequential at each R, stacked R / one run (R = 1 sequential), and the
stacked Smooth-Distill step over the stacked multitask step.

Targets: on a GPU, 25 stacked replicas >= 10x the throughput of one run and a Smooth-Distill step
<= 1.05x a multitask step; on a CPU, stacked not slower than sequential.

Usage: ``python benchmarks/bench_stack.py [--device cpu|cuda] [--threads 2] [--quick]
[--replicas 1 5 25] [--fuse-teacher] [--compile] [--precision fp32|auto|bf16|fp16] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from smoothdistill_lib import amp  # noqa: E402
from smoothdistill_lib.compute import interleaved_step_times  # noqa: E402
from smoothdistill_lib.ema import EMATeacher  # noqa: E402
from smoothdistill_lib.engine import TrainConfig, make_optimizer, resolve_device, to_training_device  # noqa: E402
from smoothdistill_lib.methods import METHODS, get_method  # noqa: E402
from smoothdistill_lib.models import build_model  # noqa: E402
from smoothdistill_lib.stack import StackedNet, _Options, _stacked_step  # noqa: E402

N_CLASSES = (12, 3)  # Sleep's (posture, placement)
BATCH = 64


def _batches(r: int, n_batches: int, device, seed: int = 0):
    """``n_batches`` stacked batches ``(x (r, 64, 1, 3, 100), y1 (r, 64), y2 (r, 64))``."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        x = torch.randn(r, BATCH, 1, 3, 100, generator=g)
        y1 = torch.randint(0, N_CLASSES[0], (r, BATCH), generator=g)
        y2 = torch.randint(0, N_CLASSES[1], (r, BATCH), generator=g)
        out.append((x.to(device), y1.to(device), y2.to(device)))
    return out


def sequential(method: str, r: int, batches, device, cfg):
    """One step of each of ``r`` separate runs (engine step functions, engine's optimizer)."""
    runs = []
    for i in range(r):
        torch.manual_seed(i)
        net = to_training_device(build_model("mtlnet", N_CLASSES), device).train()
        opt = amp.with_grad_scaler(make_optimizer(net.parameters(), cfg.lr, device), cfg.precision, device)
        teacher = EMATeacher(net, cfg.ema_decay) if method == "smooth_distill" else None
        runs.append((net, opt, teacher))
    step, cycle = METHODS[method].step, itertools.cycle(batches)

    def run():
        x, y1, y2 = next(cycle)
        for i, (net, opt, teacher) in enumerate(runs):
            step({"student": net}, opt, teacher, (x[i], y1[i], y2[i]), cfg)

    return run


def stacked(method: str, r: int, batches, device, cfg, opts: _Options):
    """One stacked step of ``r`` replicas."""
    nets = []
    for i in range(r):
        torch.manual_seed(i)
        nets.append(build_model("mtlnet", N_CLASSES).to(device))
    net = StackedNet(nets).train()
    if opts.compile:
        net.forward = torch.compile(net.forward, mode="reduce-overhead", dynamic=False)
    opt = amp.with_grad_scaler(make_optimizer(net.parameters(), cfg.lr, device), cfg.precision, device)
    teacher = EMATeacher(net, cfg.ema_decay) if method == "smooth_distill" else None
    m, cycle = get_method(method), itertools.cycle(batches)
    return lambda: _stacked_step(m, {"student": net}, opt, teacher, next(cycle), cfg, opts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--quick", action="store_true", help="R = 1, 2, 5; 2 rounds of 2 steps (a smoke test)")
    ap.add_argument("--replicas", type=int, nargs="+", default=None, help="R values (default 1 5 25)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=4, help="steps per round")
    ap.add_argument("--methods", nargs="+", default=["multitask", "smooth_distill"])
    ap.add_argument("--precision", default="fp32", choices=amp.PRECISIONS)
    ap.add_argument("--fuse-teacher", action="store_true", help="student + teacher forward as one call")
    ap.add_argument("--compile", action="store_true", help="torch.compile(mode='reduce-overhead'), CUDA only")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if args.compile and device.type != "cuda":
        ap.error("--compile captures CUDA graphs: CUDA only")
    reps = args.replicas or ([1, 2, 5] if args.quick else [1, 5, 25])
    rounds, steps = (2, 2) if args.quick else (args.rounds, args.steps)
    cfg = TrainConfig(method="smooth_distill", epochs=1, ema_decay=0.999)
    cfg = dataclasses.replace(cfg, precision=amp.resolve_precision(args.precision, device))
    opts = _Options(fuse_teacher=args.fuse_teacher, compile=args.compile)
    print(f"device {device}  torch {torch.__version__}  threads {torch.get_num_threads()}  precision "
          f"{cfg.precision}  fuse_teacher {opts.fuse_teacher}  compile {opts.compile}", flush=True)
    print("faithful MTL-net, batch 64 per replica; training windows per second (median of interleaved rounds)")
    results = {}
    for method in args.methods:
        for r in reps:
            batches = _batches(r, 4, device)
            contenders = {"sequential": sequential(method, r, batches, device, cfg),
                          "stacked": stacked(method, r, batches, device, cfg, opts)}
            t = interleaved_step_times(contenders, rounds=rounds, steps_per_round=steps, device=device)
            for k in contenders:
                ms = t.loc[k, "wall ms per step"]
                results[(method, r, k)] = {"ms": ms, "windows_per_s": BATCH * r / (ms / 1000),
                                           "cpu_ms": t.loc[k, "process CPU ms per step"]}  # fmt: skip
            seq, stk = results[(method, r, "sequential")], results[(method, r, "stacked")]
            print(f"  {method:<15} R={r:<3} sequential {seq['windows_per_s']:9.0f} w/s   stacked "
                  f"{stk['windows_per_s']:9.0f} w/s   stacked/sequential {stk['windows_per_s'] / seq['windows_per_s']:5.2f}x",
                  flush=True)  # fmt: skip
    print("\nratios")
    gpu = device.type == "cuda"
    for method in args.methods:
        one = results[(method, reps[0], "sequential")]["windows_per_s"] / reps[0]  # one run alone
        top = reps[-1]
        gain = results[(method, top, "stacked")]["windows_per_s"] / one
        want = 10.0 if gpu else None
        print(f"  {method}: stacked R={top} / one run = {gain:.2f}x"
              + (f"   (target >= {want}x) {'OK' if gain >= want else 'MISSED'}" if want else ""))
        worst = min(results[(method, r, "stacked")]["windows_per_s"] / results[(method, r, "sequential")]["windows_per_s"]
                    for r in reps if r > 1)  # fmt: skip
        if not gpu:
            print(f"  {method}: worst stacked/sequential over R > 1 = {worst:.2f}x   (target >= 1.0x: not slower) "
                  f"{'OK' if worst >= 1.0 else 'MISSED'}")
    if {"multitask", "smooth_distill"} <= set(args.methods):
        for r in reps:
            ratio = results[("smooth_distill", r, "stacked")]["ms"] / results[("multitask", r, "stacked")]["ms"]
            target = 1.05 if gpu else 1.35
            print(f"  stacked smooth_distill / multitask step, R={r}: {ratio:.3f}   (target <= {target}) "
                  f"{'OK' if ratio <= target else 'MISSED'}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "precision": cfg.precision, "fuse_teacher": opts.fuse_teacher, "compile": opts.compile,
            "results": {f"{m}/R{r}/{k}": v for (m, r, k), v in results.items()}}, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
