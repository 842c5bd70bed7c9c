"""Grid shards: ``run CONFIG --shard K/N`` runs a deterministic 1/N of a grid's runs (K = 1..N).

N machines (a Slurm job array: ``configs/slurm_array.sh``) then fill one results folder, or N
folders whose ``runs/*.json`` are copied into one (each record is its own file named by its run id,
so the union of the shards' folders is the grid's folder).

Balance by expected cost, not by count: a singletask run trains two nets, born_again two stages,
sd_dropout four extra head passes and a bigger backward, Smooth-Distill a teacher forward and an EMA
update. Each method's ``run_cost`` in ``methods.METHODS`` weighs it in multitask runs (chapter 7's
measured step costs give the same order), each model's in ``models.MODELS`` in MTL-net runs (a
BiLSTM epoch costs about three MTL-net ones on a CPU); a training ratio r scales a run by r.
Assignment is greedy longest-processing-time: runs sorted by cost (largest first, ties in the grid's own order) each go
to the shard with the least cost so far (ties: the lowest K). Every machine computes the same
assignment from the same config, so no coordination is needed; the shards are disjoint and cover
the grid.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from smoothdistill_lib.errors import UserError
from smoothdistill_lib.methods import METHODS
from smoothdistill_lib.models import MODELS

#: expected cost of one run, in multitask runs (same epochs, same data): the registry's ``run_cost``
METHOD_COST = {name: m.run_cost for name, m in METHODS.items()}
_SHARD_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def parse_shard(text: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"K/N"`` -> ``(K, N)`` with ``1 <= K <= N``; None stays None. Bad values raise ValueError
    with one line saying what is expected."""
    if text is None:
        return None
    if isinstance(text, tuple):
        k, n = text
    else:
        m = _SHARD_RE.match(str(text))
        if not m:
            raise UserError(f"--shard {text!r}: expected K/N with whole numbers, e.g. --shard 1/4 "
                             "(shard K of N, K = 1..N)")
        k, n = int(m.group(1)), int(m.group(2))
    if n < 1 or not 1 <= k <= n:
        raise UserError(f"--shard {k}/{n}: K must be in 1..N and N >= 1 (shard K of N, e.g. 1/{max(n, 1)} .. "
                         f"{max(n, 1)}/{max(n, 1)})")
    return k, n


def run_cost(spec) -> float:
    """Expected cost of one run: :data:`METHOD_COST` x the model's ``run_cost`` x training ratio."""
    ratio = spec.train_ratio if spec.train_ratio is not None else 1.0
    model = MODELS[spec.model].run_cost if spec.model in MODELS else 1.0
    return METHOD_COST.get(spec.method, 1.0) * model * ratio


def assign(specs: Sequence, n: int) -> list[int]:
    """Shard index (0..n-1) of each spec: greedy longest-processing-time over :func:`run_cost`."""
    load = [0.0] * n
    out = [0] * len(specs)
    # sorted() is stable: equal costs keep the grid's order
    for i in sorted(range(len(specs)), key=lambda i: -run_cost(specs[i])):
        k = min(range(n), key=lambda j: (load[j], j))
        out[i] = k
        load[k] += run_cost(specs[i])
    return out


def select(specs: Sequence, shard: str | tuple[int, int] | None) -> list:
    """The specs of shard ``"K/N"`` in the grid's order (all of them when ``shard`` is None)."""
    kn = parse_shard(shard)
    if kn is None:
        return list(specs)
    k, n = kn
    return [s for s, a in zip(specs, assign(specs, n)) if a == k - 1]


def lock_name(shard: str | tuple[int, int] | None) -> str:
    """The runner's lock file: shards of one grid in one folder do not block each other (they run
    disjoint runs); two runs of the same shard do."""
    kn = parse_shard(shard)
    return ".lock" if kn is None else f".lock-shard-{kn[0]}-of-{kn[1]}"


__all__ = ["METHOD_COST", "assign", "lock_name", "parse_shard", "run_cost", "select"]
