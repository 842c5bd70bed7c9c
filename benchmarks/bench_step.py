"""Step-time benchmark of the training engine, measured side by side in ONE run.

1. Cost of Smooth-Distill over plain multitask: time per training step of each on the faithful
   MTL-net at batch 64 (same batches, interleaved rounds, median). Targets: ratio <= 1.35 on CPU,
   <= 1.05 on GPU (the teacher forward is ~1/3 of a step's FLOPs, the EMA a single fused kernel).
2. This engine vs a loop written the way the authors wrote theirs (``smooth_distill_train.py``):
   ``DataLoader`` over a ``TensorDataset`` (shuffle), the per-parameter Python EMA loop of
   ``self_kd_loss.update_ema_teacher``, ``.item()`` on every loss and count every step, and the same
   per-epoch validation loop at batch 64. Same data, same epochs, Smooth-Distill in both. Targets:
   engine >= 1.2x faster on CPU, >= 5x on GPU.
3. The EMA update alone: ``EMATeacher.update`` (one ``_foreach_lerp_``) vs
   ``AveragedModel.update_parameters`` with ``get_ema_multi_avg_fn`` vs the authors' loop.

Usage: ``python benchmarks/bench_step.py [--device cpu|cuda] [--threads 2] [--windows 3200]``.
Prints one table and the ratios (and ``--json`` writes them).
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from smoothdistill_lib.compute import interleaved_step_times, synchronize  # noqa: E402
from smoothdistill_lib.ema import EMATeacher, averaged_model_reference  # noqa: E402
from smoothdistill_lib.engine import (  # noqa: E402
    TrainConfig,
    fit,
    make_optimizer,
    resolve_device,
    to_training_device,
)
from smoothdistill_lib.methods import METHODS  # noqa: E402
from smoothdistill_lib.models import build_model  # noqa: E402

N_CLASSES = (12, 3)  # Sleep's (posture, placement)


def _data(n: int, device: torch.device, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 1, 3, 100, generator=g)
    y1 = torch.randint(0, N_CLASSES[0], (n,), generator=g)
    y2 = torch.randint(0, N_CLASSES[1], (n,), generator=g)
    X[:, 0, 0, :] += y1[:, None].float() * 0.3  # something learnable
    return X.to(device), y1.to(device), y2.to(device)


# ----------------------------------------------------------------------------- 1. step ratio


def bench_steps(device: torch.device, rounds: int, steps: int) -> dict:
    """Median seconds per step of multitask and smooth_distill (engine step functions), timed by
    ``compute.interleaved_step_times`` (the same timer as chapter 7)."""
    X, y1, y2 = _data(64 * steps, device)
    batches = [(X[i : i + 64], y1[i : i + 64], y2[i : i + 64]) for i in range(0, len(X), 64)]
    cfg = TrainConfig(method="smooth_distill", epochs=1)
    runners = {}
    for name in ("multitask", "smooth_distill"):
        torch.manual_seed(0)
        model = to_training_device(build_model("mtlnet", N_CLASSES), device).train()  # as engine.fit does
        opt = make_optimizer(model.parameters(), cfg.lr, device)
        teacher = EMATeacher(model, cfg.ema_decay) if name == "smooth_distill" else None
        step, batch = METHODS[name].step, itertools.cycle(batches)  # every round: the same batches
        runners[name] = lambda m=model, o=opt, t=teacher, s=step, b=batch: s({"student": m}, o, t, next(b), cfg)
    table = interleaved_step_times(runners, rounds=rounds, steps_per_round=len(batches), device=device)
    return {(k, c): table.loc[k, col] / 1000 for k in runners
            for c, col in (("wall", "wall ms per step"), ("cpu", "process CPU ms per step"))}


# ----------------------------------------------------------------------------- 2. authors' loop


def _authors_kd(student_logits, teacher_logits, temp):
    soft_targets = F.softmax(teacher_logits / temp, dim=-1)
    soft_prob = F.log_softmax(student_logits / temp, dim=-1)
    return F.kl_div(soft_prob, soft_targets.detach(), reduction="batchmean", log_target=False) * (temp * temp)


@torch.no_grad()
def _authors_ema(student, teacher, decay):
    student_params = dict(student.named_parameters())
    teacher_params = dict(teacher.named_parameters())
    for name, p in student_params.items():
        teacher_params[name].data.mul_(decay).add_(p.data, alpha=1 - decay)


def authors_loop(X, y1, y2, fit_idx, val_idx, epochs: int, device: torch.device, seed: int = 0) -> float:
    """Smooth-Distill as in ``smooth_distill_train.py`` (one fold); returns synchronised seconds."""
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(seed)
    model = build_model("mtlnet", N_CLASSES).to(device)
    teacher = build_model("mtlnet", N_CLASSES).to(device)
    teacher.load_state_dict(model.state_dict())
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad = False
    optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
    # the authors feed two copies of X (inputs1, inputs2) through the dataset
    train_ds = TensorDataset(X[fit_idx], X[fit_idx], y1[fit_idx], y2[fit_idx])
    val_ds = TensorDataset(X[val_idx], X[val_idx], y1[val_idx], y2[val_idx])
    train_loader = DataLoader(train_ds, batch_size=64, shuffle=True)
    val_loader = DataLoader(val_ds, batch_size=64, shuffle=False)
    alpha, lam, temp = 0.5, 0.5, 3.0
    best, best_wts = 0.0, None
    synchronize(device)
    t0 = time.perf_counter()
    for _ in range(epochs):
        model.train()
        sums = [0.0] * 5
        c1 = c2 = total = 0
        for inputs1, _inputs2, targets1, targets2 in train_loader:
            optimizer.zero_grad()
            o1, o2 = model(inputs1)
            with torch.no_grad():
                t1, t2 = teacher(inputs1)
            l1, l2 = F.cross_entropy(o1, targets1), F.cross_entropy(o2, targets2)
            k1, k2 = _authors_kd(o1, t1, temp), _authors_kd(o2, t2, temp)
            loss = alpha * (l1 + lam * k1) + (1 - alpha) * (l2 + lam * k2)
            loss.backward()
            optimizer.step()
            _authors_ema(model, teacher, 0.999)
            for i, v in enumerate((l1, l2, k1, k2, loss)):
                sums[i] += v.item()
            total += targets1.size(0)
            c1 += (o1.argmax(1) == targets1).sum().item()
            c2 += (o2.argmax(1) == targets2).sum().item()
        model.eval()
        v1 = v2 = vt = 0
        with torch.no_grad():
            for inputs1, _inputs2, targets1, targets2 in val_loader:
                o1, o2 = model(inputs1)
                F.cross_entropy(o1, targets1).item()
                F.cross_entropy(o2, targets2).item()
                vt += targets1.size(0)
                v1 += (o1.argmax(1) == targets1).sum().item()
                v2 += (o2.argmax(1) == targets2).sum().item()
        if 100 * v1 / vt > best:
            best, best_wts = 100 * v1 / vt, copy.deepcopy(model.state_dict())
    synchronize(device)
    del best_wts
    return time.perf_counter() - t0


def bench_loops(device: torch.device, n: int, epochs: int, repeats: int) -> dict:
    X, y1, y2 = _data(n, device)
    perm = np.random.default_rng(0).permutation(n)
    fit_idx, val_idx = perm[: int(0.8 * n)], perm[int(0.8 * n) :]
    cfg = TrainConfig(method="smooth_distill", model="mtlnet", epochs=epochs, eval_teacher=False, device=str(device),
                      selection="task1")
    data = (X.cpu().numpy(), y1.cpu().numpy(), y2.cpu().numpy())
    fi, vi = torch.as_tensor(fit_idx, device=device), torch.as_tensor(val_idx, device=device)
    times = {(k, c): [] for k in ("engine", "authors") for c in ("wall", "cpu")}
    for r in range(repeats + 1):  # round 0 warms up
        c0 = time.process_time()
        res = fit(data, fit_idx, val_idx, None, cfg, progress=False, n_classes=N_CLASSES)
        c1 = time.process_time()
        wall = authors_loop(X, y1, y2, fi, vi, epochs, device)
        c2 = time.process_time()
        if r:
            times[("engine", "wall")].append(res.train_seconds)
            times[("engine", "cpu")].append(c1 - c0)
            times[("authors", "wall")].append(wall)
            times[("authors", "cpu")].append(c2 - c1)
    return {k: statistics.median(v) for k, v in times.items()}


# ----------------------------------------------------------------------------- 3. EMA update alone


def bench_ema(device: torch.device, reps: int) -> dict:
    torch.manual_seed(0)
    student = build_model("mtlnet", N_CLASSES).to(device)
    ours, ref, theirs = EMATeacher(student), averaged_model_reference(student), copy.deepcopy(student)
    fns = {"EMATeacher (_foreach_lerp_)": ours.update,
           "AveragedModel + get_ema_multi_avg_fn": lambda: ref.update_parameters(student),
           "authors' per-parameter loop": lambda: _authors_ema(student, theirs, 0.999)}
    out = {}
    for name, fn in fns.items():
        for _ in range(10):
            fn()
        synchronize(device)
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        synchronize(device)
        out[name] = (time.perf_counter() - t0) / reps
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--windows", type=int, default=3200, help="windows in part 2 (80%% fit, 20%% val)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds in part 1")
    ap.add_argument("--steps", type=int, default=20, help="steps per round in part 1")
    ap.add_argument("--repeats", type=int, default=2, help="timed repeats in part 2")
    ap.add_argument("--json", default=None, help="also write the numbers to this file")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    cpu = device.type == "cpu"
    print(f"device {device}  torch {torch.__version__}  threads {torch.get_num_threads()}", flush=True)

    # Wall time is the measure; process CPU time (all threads) is printed beside it because a shared
    # CPU machine inflates wall times of whichever side a neighbour's burst happens to hit.
    steps = bench_steps(device, args.rounds, args.steps)
    step_ratio = {c: steps[("smooth_distill", c)] / steps[("multitask", c)] for c in ("wall", "cpu")}
    print("\n1. time per training step, faithful MTL-net, batch 64 (median of rounds)")
    print(f"   {'':<16} {'wall ms':>9} {'cpu ms':>9}")
    for k in ("multitask", "smooth_distill"):
        print(f"   {k:<16} {1000 * steps[(k, 'wall')]:9.2f} {1000 * steps[(k, 'cpu')]:9.2f}")
    target1 = 1.35 if cpu else 1.05
    print(f"   smooth_distill / multitask = {step_ratio['wall']:.3f} wall, {step_ratio['cpu']:.3f} cpu   "
          f"(target <= {target1}) {'OK' if step_ratio['wall'] <= target1 else 'MISSED'}", flush=True)

    loops = bench_loops(device, args.windows, args.epochs, args.repeats)
    speedup = {c: loops[("authors", c)] / loops[("engine", c)] for c in ("wall", "cpu")}
    print(
        f"\n2. smooth_distill, {args.windows} windows (80/20 fit/val), {args.epochs} epochs incl. validation"
    )
    print(f"   {'':<16} {'wall s':>9} {'cpu s':>9}")
    for k in ("engine", "authors"):
        print(f"   {k:<16} {loops[(k, 'wall')]:9.2f} {loops[(k, 'cpu')]:9.2f}")
    target2 = 1.2 if cpu else 5.0
    print(f"   authors' loop / engine = {speedup['wall']:.2f}x wall, {speedup['cpu']:.2f}x cpu   "
          f"(target >= {target2}x) {'OK' if speedup['wall'] >= target2 else 'MISSED'}", flush=True)

    ema = bench_ema(device, 200)
    print("\n3. one EMA update of MTL-net (1.8 M parameters)")
    for k, v in ema.items():
        print(f"   {k:<38} {1e6 * v:9.1f} us")

    if args.json:
        Path(args.json).write_text(json.dumps({
            "device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "step_seconds": {f"{k}/{c}": v for (k, c), v in steps.items()}, "step_ratio": step_ratio,
            "loop_seconds": {f"{k}/{c}": v for (k, c), v in loops.items()}, "loop_speedup": speedup,
            "ema_seconds": ema,
        }, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
