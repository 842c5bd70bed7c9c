"""Where a run's time goes, per architecture, measured side by side in ONE run (issue: the long
architecture grid costs more than its step times say).

For MTL-net, AnpoNet, LSTM, GRU and BiLSTM, on random windows shaped like WISDM's (3 x 100, the
model's own layout), each part of an epoch is timed on its own, interleaved across the models
(``compute.interleaved_step_times``, so background load hits every model alike):

- ``train step``: one Smooth-Distill step at batch 64 (forward, KD, backward, Adam, EMA update);
- ``eval / window``: one evaluation forward pass per window at the engine's ``eval_batch_size``
  (1024), what validation (every epoch, student and, for diagnostics, teacher) and the final
  predictions cost.

From these it estimates one long-mode epoch of WISDM's paper protocol (``--fit`` training windows,
``--val`` validation windows): steps x step time + validation passes (student, plus the teacher's
when ``eval_teacher``), and prints each part's share and every model's multiple of MTL-net's time.
The gap between a bare step ratio and a whole-run ratio is the evaluation share: a recurrent
network's forward pass is sequential over the window's 100 time steps, so inference does not get
the batch-level speed-up that a convolution does.

Usage: ``OMP_NUM_THREADS=1 python benchmarks/bench_arch.py [--threads 1] [--rounds 3] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from smoothdistill_lib.compute import interleaved_step_times  # noqa: E402
from smoothdistill_lib.ema import EMATeacher  # noqa: E402
from smoothdistill_lib.engine import TrainConfig, make_optimizer  # noqa: E402
from smoothdistill_lib.methods import METHODS  # noqa: E402
from smoothdistill_lib.models import MODELS, build_model  # noqa: E402

ARCHS = ("mtlnet", "anponet", "lstm", "gru", "bilstm")
N_CLASSES = (18, 2)  # WISDM: 18 activities, phone or watch


def _windows(n: int, layout: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 1, 3, 100, generator=g)
    if layout == "faithful":  # the authors' interleaved layout: same numbers, another order
        X = X.permute(0, 1, 3, 2).reshape(n, 1, 3, 100)
    return X, torch.randint(0, N_CLASSES[0], (n,), generator=g), torch.randint(0, N_CLASSES[1], (n,), generator=g)


def measure(rounds: int, steps: int, eval_batch: int) -> pd.DataFrame:
    """Milliseconds per Smooth-Distill training step (batch 64) and per evaluated window, per model."""
    cfg = TrainConfig(method="smooth_distill", epochs=1)
    step_fns, eval_fns = {}, {}
    for name in ARCHS:
        X, y1, y2 = _windows(64 * steps, MODELS[name].layout)
        batches = itertools.cycle([(X[i:i + 64], y1[i:i + 64], y2[i:i + 64]) for i in range(0, len(X), 64)])
        torch.manual_seed(0)
        model = build_model(name, N_CLASSES).train()
        opt = make_optimizer(model.parameters(), cfg.lr, torch.device("cpu"))
        teacher = EMATeacher(model, cfg.ema_decay)
        step = METHODS["smooth_distill"].step
        step_fns[name] = lambda m=model, o=opt, t=teacher, s=step, b=batches: s({"student": m}, o, t, next(b), cfg)
        Xe, _, _ = _windows(eval_batch, MODELS[name].layout, seed=1)
        net = build_model(name, N_CLASSES).eval()

        def evaluate(net=net, Xe=Xe):
            with torch.no_grad():
                net(Xe)

        eval_fns[name] = evaluate
    steps_t = interleaved_step_times(step_fns, rounds=rounds, steps_per_round=steps)
    eval_t = interleaved_step_times(eval_fns, rounds=rounds, steps_per_round=2)
    return pd.DataFrame({"train step (ms)": steps_t["wall ms per step"],
                         "eval per window (ms)": eval_t["wall ms per step"] / eval_batch}).rename_axis("model")


def epoch_split(t: pd.DataFrame, n_fit: int, n_val: int, eval_teacher: bool) -> pd.DataFrame:
    """One epoch's estimated seconds: training steps and validation passes, and their shares."""
    steps = -(-n_fit // 64)
    passes = 2 if eval_teacher else 1
    out = pd.DataFrame({"training (s)": steps * t["train step (ms)"] / 1000,
                        "validation (s)": passes * n_val * t["eval per window (ms)"] / 1000})
    out["epoch (s)"] = out.sum(axis=1)
    out["validation share"] = out["validation (s)"] / out["epoch (s)"]
    for col in ("train step (ms)", "eval per window (ms)"):
        out[f"{col.split(' (')[0]} x MTL-net"] = t[col] / t.loc["mtlnet", col]
    out["epoch x MTL-net"] = out["epoch (s)"] / out.loc["mtlnet", "epoch (s)"]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (the long grids use 1)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=8, help="training steps per round and model")
    ap.add_argument("--eval-batch", type=int, default=1024, help="the engine's eval_batch_size")
    ap.add_argument("--fit", type=int, default=43_388, help="training windows (WISDM subset, paper protocol, fold 0)")
    ap.add_argument("--val", type=int, default=10_848, help="validation windows")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t = measure(args.rounds, args.steps, args.eval_batch)
    out = epoch_split(t, args.fit, args.val, eval_teacher=True)
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(f"torch {torch.__version__}, {args.threads} thread(s); one epoch of {args.fit:,} training and "
              f"{args.val:,} validation windows (student and teacher validated)")
        print(pd.concat([t, out], axis=1).round(3).to_string())
    if args.json:
        Path(args.json).write_text(json.dumps(pd.concat([t, out], axis=1).to_dict(orient="index"), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
