"""Command line: ``python -m smoothdistill_lib <subcommand> ...``.

The subcommands and their options are a stable interface (the book, the README and CI call them).
Each handler lives next to the code it drives and is imported lazily, so ``--help`` stays fast.

Every expected failure, from every subcommand, ends in ONE line on stderr, ``error: <message>``,
and exit status 2 (130 for Ctrl-C): bad arguments, a :class:`~smoothdistill_lib.errors.UserError`
(refusals, damaged downloads), ``ValueError`` (bad input: the message names the file, line or
argument), ``FileNotFoundError`` / ``PermissionError`` / other ``OSError`` (missing or unreadable
files, a full disk), ``FloatingPointError`` (a run that became non-finite), YAML syntax errors and
torch's refusal to unpickle a checkpoint. Anything else is a bug and keeps its traceback.
``--debug`` (before or after the subcommand) shows the traceback of an expected failure too.
Warnings (e.g. an incomplete dataset) print as one ``warning: ...`` line.
"""

from __future__ import annotations

import argparse
import importlib
import pickle
import sys
import warnings

from smoothdistill_lib.config import MODES
from smoothdistill_lib.errors import MAX_SEED, UserError, whole_number_problem

# subcommand -> (module, handler). A handler takes the parsed Namespace and returns an exit code.
HANDLERS = {
    "datasets": ("smoothdistill_lib.datasets", "cli_datasets"),
    "windows": ("smoothdistill_lib.pipeline", "cli_windows"),
    "train": ("smoothdistill_lib.engine", "cli_train"),
    "run": ("smoothdistill_lib.runner", "cli_run"),
    "backfill": ("smoothdistill_lib.runner", "cli_backfill"),
    "report": ("smoothdistill_lib.report", "cli_report"),
    "score": ("smoothdistill_lib.checkpoints", "cli_score"),
}


#: exit status of an expected failure (argparse's own, for bad arguments, is also 2)
EXIT_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """argparse, with a bad argument reported as ONE line (argparse prints the usage first)."""

    def error(self, message: str):
        self.exit(EXIT_ERROR, f"error: {message} (see {self.prog} --help)\n")


def _int_at_least(minimum: int):
    """argparse type: a whole number >= ``minimum`` (``--epochs 0`` once silently trained the mode's
    default, so ``--epochs`` takes ``_int_at_least(1)``)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be a whole number >= {minimum}, got {value}")
        return value

    return parse


def _seed(text: str) -> int:
    """argparse type: a seed every library here accepts, 0 .. 2**32 - 1 (``--seed -5`` failed inside
    scikit-learn with "expected non-negative integer", a huge one inside torch with "Overflow when
    unpacking long long", neither naming the option)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    why = whole_number_problem(value, 0, MAX_SEED)
    if why is not None:
        raise argparse.ArgumentTypeError(why)
    return value


def _subjects(text: str) -> list[int]:
    """argparse type: comma-separated subject ids, e.g. ``3,4``."""
    try:
        ids = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        ids = []
    if not ids:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of subject ids, e.g. 3,4")
    return ids


def _device(text: str) -> str:
    """argparse type: a device torch can use here (checked now, not after the data are prepared)."""
    # imported here on purpose (the data flow would allow the top): engine imports torch, and the
    # CLI imports only what a subcommand needs, so that --help and argument errors stay fast
    from smoothdistill_lib.engine import resolve_device

    try:
        resolve_device(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def build_parser() -> argparse.ArgumentParser:
    # --debug is accepted before and after the subcommand (SUPPRESS: a subparser's default never
    # overwrites a value given before it)
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the full traceback of an error (default: one line)")
    p = _Parser(prog="python -m smoothdistill_lib", description=__doc__.splitlines()[0], parents=[debug])
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sub.add_parser("datasets", parents=[debug],
                   help="list each dataset, where it is looked for, and whether it is present")

    w = sub.add_parser("windows", parents=[debug], help="window a dataset, split it, and print counts and leakage as JSON")
    w.add_argument("--dataset", required=True, help="wisdm | mhealth | sleep | sleepsim")
    w.add_argument("--protocol", default="paper", choices=["paper", "subject"])
    w.add_argument("--seed", type=_seed, default=42, help="split seed, 0 .. 2**32 - 1 (default 42)")
    w.add_argument("--mode", choices=MODES, default=None, help="run size (default: $SMOOTHDISTILL_MODE)")

    t = sub.add_parser("train", parents=[debug], help="train one model with one method; print one JSON object")
    t.add_argument("--dataset", required=True)
    t.add_argument("--method", required=True,
                   help="singletask | multitask | sd_dropout | born_again | smooth_distill")
    t.add_argument("--model", default="mtlnet", help="mtlnet | mtlnet_corrected | lstm | bilstm | gru | anponet")
    t.add_argument("--mode", choices=MODES, default=None)
    t.add_argument("--seed", type=_seed, default=0, help="training seed, 0 .. 2**32 - 1")
    t.add_argument("--epochs", type=_int_at_least(1), default=None, help="epochs (default: the mode's)")
    t.add_argument("--protocol", default="paper", choices=["paper", "subject"])
    t.add_argument("--fold", type=_int_at_least(0), default=0)
    t.add_argument("--lam", type=float, default=None, help="distillation weight lambda")
    t.add_argument("--device", type=_device, default=None, help="cuda | mps | cpu (default: best available)")

    r = sub.add_parser("run", parents=[debug], help="run (or resume) an experiment grid from a config file")
    r.add_argument("config", help="path to a YAML/JSON experiment config (see configs/)")
    r.add_argument("--mode", choices=MODES, default=None)
    r.add_argument("--device", type=_device, default=None)
    r.add_argument("--limit", type=_int_at_least(0), default=None, help="run at most this many pending runs, then stop")
    r.add_argument("--methods", default=None,
                   help="comma-separated: run only these methods' pending runs now (a grid in stages)")
    r.add_argument("--require-clean", action="store_true",
                   help="refuse to start when tracked files have uncommitted changes (for records to publish)")
    r.add_argument("--stack", action=argparse.BooleanOptionalAction, default=None,
                   help="train runs differing only in seed/fold as one replica-stacked model (default: off; opt-in until tools/gpu_check.py has checked it on a GPU)")
    r.add_argument("--shard", default=None, metavar="K/N",
                   help="run only shard K of N (1..N) of the grid, balanced by cost (a Slurm job array)")
    r.add_argument("--networks", action=argparse.BooleanOptionalAction, default=True,
                   help="keep each run's trained networks beside its record (default; --no-networks for huge grids)")

    b = sub.add_parser("backfill", parents=[debug],
                       help="re-run records that keep no per-window predictions; add them where the re-run reproduces the record")
    b.add_argument("config", help="the experiment's config (see configs/)")
    b.add_argument("--limit", type=_int_at_least(0), default=None, help="re-run at most this many records, then stop")
    b.add_argument("--methods", default=None, help="comma-separated: only these methods' records")
    b.add_argument("--datasets", default=None, help="comma-separated: only these datasets' records")
    b.add_argument("--protocols", default=None, help="comma-separated: only these protocols' records")
    b.add_argument("--require-clean", action="store_true",
                   help="refuse to start when tracked files have uncommitted changes")

    rep = sub.add_parser("report", parents=[debug], help="print an experiment's tables as markdown and write CSVs")
    rep.add_argument("experiment", help="experiment name (folder under results/) or its path")
    rep.add_argument("--out", default=None, help="folder for the CSVs (default: the experiment folder)")

    sc = sub.add_parser("score", parents=[debug],
                        help="score a saved network (a run or a checkpoint) on subjects of a dataset; print its metrics")
    sc.add_argument("checkpoint", help="a run, results/<experiment>/runs/<run_id>, or a checkpoint (.pt / .json)")
    sc.add_argument("--subjects", type=_subjects, required=True, help="comma-separated subject ids, e.g. 3,4")
    sc.add_argument("--network", choices=["student", "teacher"], default="student",
                    help="which network of the run (default: student)")
    sc.add_argument("--dataset", default=None, help="a registered dataset (default: the one it was trained on)")
    sc.add_argument("--mode", choices=MODES, default=None,
                    help="run size the dataset is loaded at (default: the mode it was trained in)")
    return p


def expected_errors() -> tuple[type[BaseException], ...]:
    """The exception classes that are expected failures (one line, no traceback); the rest are bugs."""
    import yaml

    return (UserError, ValueError, FileNotFoundError, PermissionError, OSError, FloatingPointError,
            yaml.YAMLError, pickle.UnpicklingError)


def one_line(e: BaseException) -> str:
    """``e``'s message as one line: a YAML error (or an error caused by one) ends in ``(line L,
    column C: problem)`` instead of YAML's five-line excerpt; other multi-line messages are joined
    with ``; ``; an empty message falls back to the class name."""
    import yaml

    cause = e if isinstance(e, yaml.MarkedYAMLError) else e.__cause__
    if isinstance(cause, yaml.MarkedYAMLError) and cause.problem_mark is not None:
        m = cause.problem_mark
        where = f"line {m.line + 1}, column {m.column + 1}: {cause.problem or cause.context or 'invalid YAML'}"
        if cause is e:
            text = where if m.name.startswith("<") else f"{m.name}, {where}"
        else:
            text = f"{str(e).splitlines()[0]} ({where})"
    else:
        text = str(e)
    parts = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return "; ".join(parts) or type(e).__name__


def _warning_line(message, category, filename, lineno, file=None, line=None):
    # warnings on the command line: one line each, like errors (the default format adds the source line)
    print(f"warning: {message} [{category.__name__}]", file=sys.stderr if file is None else file)


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, run the subcommand's handler, return the exit status (see the module doc).
    Bad arguments and ``--help`` return their status too (argparse's SystemExit is not let through)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # the message (or help) is printed already
        return e.code if isinstance(e.code, int) else EXIT_ERROR
    debug = getattr(args, "debug", False)
    module, name = HANDLERS[args.command]
    with warnings.catch_warnings():
        if not debug:
            warnings.showwarning = _warning_line
        try:
            handler = getattr(importlib.import_module(module), name)
            return int(handler(args) or 0)
        except expected_errors() as e:  # bad input or a refusal: one clear line, no traceback
            if debug:
                raise
            print(f"error: {one_line(e)}", file=sys.stderr)
            return EXIT_ERROR
        except KeyboardInterrupt:
            if debug:
                raise
            print("error: interrupted", file=sys.stderr)
            return 130


if __name__ == "__main__":
    raise SystemExit(main())
