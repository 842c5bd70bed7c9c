"""Command line: ``python -m smoothdistill_lib <subcommand> ...``.

The subcommands and their options are a stable interface (the book, the README and CI call them).
Each handler lives next to the code it drives and is imported lazily, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from smoothdistill_lib.config import MODES

# subcommand -> (module, handler). A handler takes the parsed Namespace and returns an exit code.
HANDLERS = {
    "datasets": ("smoothdistill_lib.datasets", "cli_datasets"),
    "windows": ("smoothdistill_lib.pipeline", "cli_windows"),
    "train": ("smoothdistill_lib.engine", "cli_train"),
    "run": ("smoothdistill_lib.runner", "cli_run"),
    "report": ("smoothdistill_lib.report", "cli_report"),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m smoothdistill_lib", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("datasets", help="list each dataset, where it is looked for, and whether it is present")

    w = sub.add_parser("windows", help="window a dataset, split it, and print counts and leakage as JSON")
    w.add_argument("--dataset", required=True, help="wisdm | mhealth | sleep | sleepsim")
    w.add_argument("--protocol", default="paper", choices=["paper", "subject"])
    w.add_argument("--seed", type=int, default=42)
    w.add_argument("--mode", choices=MODES, default=None, help="run size (default: $SMOOTHDISTILL_MODE)")

    t = sub.add_parser("train", help="train one model with one method; print one JSON object")
    t.add_argument("--dataset", required=True)
    t.add_argument("--method", required=True,
                   help="singletask | multitask | sd_dropout | born_again | smooth_distill")
    t.add_argument("--model", default="mtlnet", help="mtlnet | mtlnet_corrected | lstm | bilstm | gru | anponet")
    t.add_argument("--mode", choices=MODES, default=None)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--epochs", type=int, default=None)
    t.add_argument("--protocol", default="paper", choices=["paper", "subject"])
    t.add_argument("--fold", type=int, default=0)
    t.add_argument("--lam", type=float, default=None, help="distillation weight lambda")
    t.add_argument("--device", default=None, help="cuda | mps | cpu (default: best available)")

    r = sub.add_parser("run", help="run (or resume) an experiment grid from a config file")
    r.add_argument("config", help="path to a YAML/JSON experiment config (see configs/)")
    r.add_argument("--mode", choices=MODES, default=None)
    r.add_argument("--device", default=None)
    r.add_argument("--limit", type=int, default=None, help="run at most this many pending runs, then stop")
    r.add_argument("--methods", default=None,
                   help="comma-separated: run only these methods' pending runs now (a grid in stages)")
    r.add_argument("--require-clean", action="store_true",
                   help="refuse to start when tracked files have uncommitted changes (for records to publish)")
    r.add_argument("--stack", action=argparse.BooleanOptionalAction, default=None,
                   help="train runs differing only in seed/fold as one replica-stacked model (default: on for CUDA)")
    r.add_argument("--shard", default=None, metavar="K/N",
                   help="run only shard K of N (1..N) of the grid, balanced by cost (a Slurm job array)")

    rep = sub.add_parser("report", help="print an experiment's tables as markdown and write CSVs")
    rep.add_argument("experiment", help="experiment name (folder under results/) or its path")
    rep.add_argument("--out", default=None, help="folder for the CSVs (default: the experiment folder)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module, name = HANDLERS[args.command]
    handler = getattr(importlib.import_module(module), name)
    try:
        return int(handler(args) or 0)
    except (FileNotFoundError, ValueError) as e:  # bad input: one clear line, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
