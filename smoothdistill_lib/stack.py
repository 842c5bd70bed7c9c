"""Replica-stacked training: R runs that differ only in seed and/or fold, trained as ONE stacked model.

A small net (MTL-net: 1.8 M parameters, batch 64) leaves a GPU launch-bound: every step is a few
dozen tiny kernels. Stacking R replicas turns them into the same few dozen kernels, each R times
larger. :class:`StackedNet` holds the R copies' parameters and buffers stacked along a new first
dimension (``torch.func.stack_module_state``) and runs them with ``torch.func.vmap`` over
``torch.func.functional_call`` (a convolution with batched weights becomes one grouped convolution).

Each replica is the run it would have been alone (:func:`fit_stacked` returns one ``FitResult`` per
run, as ``engine.fit`` would):

- its own weights, initialised by ``torch.manual_seed(seed)`` exactly as ``engine.fit`` does;
- its own data order: its own ``torch.Generator().manual_seed(seed)``, one ``randperm`` of ITS fit
  indices per epoch, the same batch bounds;
- its own loss: the method's *objective* (``methods.Method.objective``, the very function the
  unstacked step uses) is mapped over replicas, and the loss summed over replicas, so each replica's
  gradient is its own loss's gradient;
- its own optimizer state: Adam is element-wise, so one Adam over the stacked tensors is R Adams
  (the step counter is shared, and equal, since every replica takes the same number of steps);
- its own EMA teacher (one ``_foreach_lerp_`` over the stacked tensors, the same kernel), its own
  validation, selection on validation, best weights and predictions.

Results equal R separate ``engine.fit`` runs up to float rounding (``tests/test_stack.py``: the grouped
convolution and the batched matmuls sum in another order). Replicas must have equally many fit
windows (so every step has the same batch shape); :func:`fit_stacked` splits runs of different
sizes into stacks of equal size (K folds give at most two sizes).

Not stacked (each run trains alone with ``engine.fit``, with one line saying why):

- ``sd_dropout``: its four dropout masks per step come from the global RNG stream. ``vmap`` needs
  ``randomness="different"`` for dropout and then draws other masks: stacked runs would be
  statistically equivalent but not reproducible from their seed, and a record's numbers would depend
  on which runs shared its stack. Runs are kept reproducible instead.
- models with active dropout (the RNNs, AnpoNet: ``dropout=0.2``) for the same reason, and models
  with ``nn.LSTM``/``nn.GRU``, which ``vmap`` cannot batch (cuDNN's fused RNN has no batching rule).
  MTL-net (both variants) has no dropout; ``mtlnet_corrected(batchnorm=True)`` stacks its BatchNorm
  running statistics along with the weights.

Timing: each replica's ``train_seconds`` and ``epoch_seconds`` are the stack's wall time divided by R
(what the run cost); ``FitResult.config`` is the config it ran; ``stack_info`` says how it was stacked.

Options (GPU only, not measured: no GPU yet; ``tools/gpu_check.sh`` measures them):
``fuse_teacher``: the student's and the EMA teacher's forward as ONE stacked call over 2R replicas
(nets without BatchNorm, whose teacher would need eval mode); ``compile``: the stacked forward
through ``torch.compile(mode="reduce-overhead")``, which captures steady-state steps in CUDA graphs.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import sys
import time
from collections.abc import Iterator, Sequence
from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from tqdm.auto import tqdm

from smoothdistill_lib import amp, compute
from smoothdistill_lib import engine as E
from smoothdistill_lib.config import show_progress
from smoothdistill_lib.ema import EMATeacher
from smoothdistill_lib.experiment import prepare_for, run_inputs
from smoothdistill_lib.fileio import canonical_json
from smoothdistill_lib.losses import kd_loss_vmappable
from smoothdistill_lib.methods import METHODS, Method, _optimise, _out, autocast, get_method, precision
from smoothdistill_lib.models import build_model
from smoothdistill_lib.records import record_body

#: methods whose runs can be stacked: those with an objective (``methods.Method.objective``; it has
#: no randomness)
STACKABLE_METHODS = tuple(name for name, m in METHODS.items() if m.objective is not None)
#: replicas per stack when the runner groups a grid (memory: 25 MTL-nets + Adam + teacher ~ 0.9 GB)
MAX_REPLICAS = 25


def _esc(name: str) -> str:
    # nn.Module attribute names cannot hold dots
    return name.replace(".", "__")


class StackedNet(nn.Module):
    """R nets of one architecture as one module, their tensors stacked along a new dim 0.

    ``forward(x)``: ``x`` ``(R, B, 1, C, L)`` (replica r gets ``x[r]``) -> a tuple of ``(R, B, c_k)``
    logits, one per head. ``parameters()``/``buffers()`` are the stacked ``(R, ...)`` tensors, so an
    optimizer or an :class:`~smoothdistill_lib.ema.EMATeacher` built on this module treats all
    replicas at once. The architecture is kept as a ``meta``-device copy (no memory) that
    ``functional_call`` runs with one replica's slices under ``vmap``.
    """

    def __init__(self, nets: Sequence[nn.Module]):
        super().__init__()
        params, buffers = stack_module_state(list(nets))
        self._pnames, self._bnames = list(params), list(buffers)
        for k, v in params.items():
            self.register_parameter(_esc(k), nn.Parameter(v.detach()))
        for k, v in buffers.items():
            self.register_buffer(_esc(k), v)
        # a list, so the meta copy is not a registered submodule (its tensors are no state)
        self._base = [copy.deepcopy(nets[0]).to("meta")]
        self._keys = list(nets[0].state_dict())
        self.replicas = len(nets)
        self.train(nets[0].training)

    def train(self, mode: bool = True) -> StackedNet:
        super().train(mode)
        self._base[0].train(mode)
        return self

    def tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """``(params, buffers)``: name (as in the single net) -> stacked ``(R, ...)`` tensor."""
        return ({k: getattr(self, _esc(k)) for k in self._pnames},
                {k: getattr(self, _esc(k)) for k in self._bnames})  # fmt: skip

    def call_one(self, params: dict, buffers: dict, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One replica: its ``params``/``buffers`` slices on ``x`` ``(B, 1, C, L)`` (used under vmap)."""
        return functional_call(self._base[0], (params, buffers), (x,))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.forward_with(*self.tensors(), x)

    def forward_with(self, params: dict, buffers: dict, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``forward`` with other stacked tensors (e.g. students and teachers concatenated, 2R)."""
        return vmap(self.call_one)(params, buffers, x)

    def replica_state(self, r: int) -> dict[str, torch.Tensor]:
        """Replica ``r``'s ``state_dict`` (views into the stacked tensors, in the single net's order)."""
        params, buffers = self.tensors()
        both = params | buffers
        return {k: both[k][r].detach() for k in self._keys}

    @torch.no_grad()
    def load_replica_state(self, r: int, state: dict[str, torch.Tensor]) -> None:
        params, buffers = self.tensors()
        both = params | buffers
        for k in self._keys:
            both[k][r].copy_(state[k])


class _ReplicaView:
    """``state_dict()`` of one replica, so engine's ``_Best.offer`` clones it like a net's."""

    def __init__(self, net: StackedNet, r: int):
        self.net, self.r = net, r

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.net.replica_state(self.r)


def why_not_stackable(method: Method, net: nn.Module) -> str | None:
    """The reason runs of ``method`` on ``net`` cannot be stacked exactly, or None when they can."""
    if method.name not in STACKABLE_METHODS:
        return (f"{method.name}: its dropout masks come from the global RNG stream, which vmap cannot "
                "reproduce per replica")
    mods = list(net.modules())
    if any(isinstance(m, nn.RNNBase) for m in mods):
        return f"{type(net).__name__} has a recurrent layer (nn.LSTM/GRU), which vmap cannot batch"
    if any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for m in mods):
        return f"{type(net).__name__} has active dropout, which vmap cannot reproduce per replica"
    return None


def _same_but_seed(cfgs: Sequence[E.TrainConfig]) -> None:
    base = {k: v for k, v in cfgs[0].to_dict().items() if k != "seed"}
    for c in cfgs[1:]:
        d = {k: v for k, v in c.to_dict().items() if k != "seed"}
        if d != base:
            diff = sorted(k for k in base if base[k] != d.get(k))
            raise ValueError(f"fit_stacked: runs may differ only in seed and data indices; configs differ in {diff}")


def _has_batchnorm(net: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())


# --------------------------------------------------------------------------------------------
# The stacked loop


@dataclasses.dataclass
class _Options:
    fuse_teacher: bool = False
    compile: bool = False


def _stacked_step(method: Method, nets: dict[str, StackedNet], optimizer, teacher, batch, cfg,
                  opts: _Options) -> dict:  # fmt: skip
    """One optimizer step of every replica: ``batch`` = ``(x (R, B, 1, C, L), y1 (R, B), y2 (R, B))``;
    returns the step dict of ``methods`` with a leading replica dim on every tensor."""
    x = batch[0]
    ema = teacher if isinstance(teacher, EMATeacher) else None
    with autocast(x, precision(cfg)):
        t_logits, s_logits = None, None
        if ema is not None and opts.fuse_teacher:  # one vmapped call over 2R = students + teachers
            sp, sb = nets["student"].tensors()
            tp, tb = ema.module.tensors()
            both = ({k: torch.cat([sp[k], tp[k].detach()]) for k in sp},
                    {k: torch.cat([sb[k], tb[k]]) for k in sb})  # fmt: skip
            z = nets["student"].forward_with(*both, torch.cat([x, x]))
            r = x.shape[0]
            s_logits, t_logits = tuple(t[:r] for t in z), tuple(t[r:].detach() for t in z)
        elif teacher is not None:
            with torch.no_grad():  # the teacher's outputs are constants of the step
                t_logits = teacher(x)
        state = {k: net.tensors() for k, net in nets.items()}

        def one(state, xb, y1, y2, t_logits, s_logits):
            if s_logits is not None:  # precomputed by the fused call: this replica's slice
                models = {"student": lambda _x: s_logits}
            else:
                models = {k: functools.partial(nets[k].call_one, *state[k]) for k in nets}
            # kl_div has no vmap batching rule (a per-replica loop): the same KL without it
            kw = {"kd": kd_loss_vmappable} if t_logits is not None else {}
            return method.objective(models, (xb, y1, y2), cfg, t_logits, **kw)

        # None (no teacher / no fused logits) cannot be mapped over: its in_dim is None
        dims = (0, 0, 0, 0, None if t_logits is None else 0, None if s_logits is None else 0)
        out = vmap(one, in_dims=dims)(state, *batch, t_logits, s_logits)
    # replicas share no parameter: the sum's gradient is each replica's own loss's gradient
    _optimise(optimizer, out["loss"].sum())
    if ema is not None:
        ema.update()
    return _out(**out, teacher_logits=t_logits)


@torch.no_grad()
def _eval_sums(forward, X, y1, y2, idx: torch.Tensor, batch_size: int, prec) -> torch.Tensor:
    """``(R, 4)`` device tensor ``[CE1 sum, CE2 sum, correct1, correct2]`` of each replica over its
    validation indices ``idx`` ``(R, nv)``."""
    r = idx.shape[0]
    per = max(64, batch_size // r)  # ~batch_size windows per stacked call, whatever R
    z1s, z2s = [], []
    for s in range(0, idx.shape[1], per):
        xb = X[idx[:, s : s + per]]
        with autocast(xb, prec):
            z1, z2 = forward(xb)
        z1s.append(z1.float())
        z2s.append(z2.float())
    z1, z2 = torch.cat(z1s, 1), torch.cat(z2s, 1)
    t1, t2 = y1[idx], y2[idx]
    ce = torch.nn.functional.cross_entropy
    return torch.stack([
        ce(z1.transpose(1, 2), t1, reduction="none").sum(1), ce(z2.transpose(1, 2), t2, reduction="none").sum(1),
        (z1.argmax(2) == t1).sum(1).float(), (z2.argmax(2) == t2).sum(1).float(),
    ], dim=1)  # fmt: skip


def _forward_pair(nets: dict[str, StackedNet]):
    if "student" in nets:
        return nets["student"]
    return lambda x: (nets["task1"](x)[0], nets["task2"](x)[0])


def _train_stage(method: Method, nets: dict[str, StackedNet], teacher, data, fits: torch.Tensor,
                 vals: torch.Tensor, cfg, gens, bar, stage: int, device, batchnorm: bool,
                 opts: _Options) -> list[E._Stage]:  # fmt: skip
    """engine._train_stage for R replicas: returns one ``engine._Stage``-like record per replica
    (rows, bests; ``models``/``teacher`` filled in later from the best states)."""
    X, y1, y2 = data
    R, n = fits.shape
    nv = vals.shape[1]
    params = [p for m in nets.values() for p in m.parameters() if p.requires_grad]
    optimizer = amp.with_grad_scaler(E.make_optimizer(params, cfg.lr, device), precision(cfg), device)
    ema = teacher if isinstance(teacher, EMATeacher) else None
    eval_teacher = ema is not None and cfg.eval_teacher
    has_kd = method.kd_terms
    forward = _forward_pair(nets)
    names = (*nets, *(("teacher",) if eval_teacher else ()))
    bests = [{name: E._Best() for name in names} for _ in range(R)]
    rows: list[list[dict]] = [[] for _ in range(R)]
    bounds = E._batch_bounds(n, cfg.batch_size, batchnorm)
    with_teacher = ema is not None
    batch_sums = vmap(E._batch_sums, in_dims=(0, 0, 0, None))
    seconds = 0.0
    for epoch in range(1, cfg.epochs + 1):
        compute.synchronize(device)
        t0 = time.perf_counter()
        for m in nets.values():
            m.train(True)
        sums = torch.zeros(R, len(E._SUMS), device=device)
        # each replica's own order, drawn exactly as engine.fit draws it
        order = torch.stack([fits[r][torch.randperm(n, generator=gens[r]).to(device)] for r in range(R)])
        for s, e in bounds:
            idx = order[:, s:e]
            xb, t1, t2 = X[idx], y1[idx], y2[idx]
            out = _stacked_step(method, nets, optimizer, teacher, (xb, t1, t2), cfg, opts)
            sums += batch_sums(out, t1, t2, with_teacher)
        for m in nets.values():
            m.train(False)
        val = _eval_sums(forward, X, y1, y2, vals, cfg.eval_batch_size, precision(cfg))
        tr_all, va_all = sums.tolist(), val.tolist()  # the one host read of the epoch
        compute.synchronize(device)
        epoch_seconds = (time.perf_counter() - t0) / R  # each run's share of the stack's time
        seconds += epoch_seconds
        tv_all = None
        if eval_teacher:  # diagnostics only, not timed (as engine.fit)
            tv_all = _eval_sums(ema, X, y1, y2, vals, cfg.eval_batch_size, precision(cfg)).tolist()
        for r in range(R):
            tr, va = dict(zip(E._SUMS, tr_all[r])), va_all[r]
            if not math.isfinite(tr["loss"]):
                raise FloatingPointError(
                    f"{cfg.method} (model {cfg.model}, stacked replica {r}) stage {stage} epoch {epoch}: the "
                    f"training loss became {tr['loss']} (non-finite); check the data, lr={cfg.lr:g}, lam={cfg.lam:g}")
            acc1, acc2 = 100.0 * va[2] / nv, 100.0 * va[3] / nv
            if method.single_task:
                bests[r]["task1"].offer(acc1, epoch, _ReplicaView(nets["task1"], r))
                bests[r]["task2"].offer(acc2, epoch, _ReplicaView(nets["task2"], r))
            else:
                bests[r]["student"].offer(E._score(acc1, acc2, cfg.selection), epoch,
                                          _ReplicaView(nets["student"], r))  # fmt: skip
            tv = tv_all[r] if tv_all is not None else None
            if tv is not None:
                bests[r]["teacher"].offer(E._score(100.0 * tv[2] / nv, 100.0 * tv[3] / nv, cfg.selection), epoch,
                                          _ReplicaView(ema.module, r))  # fmt: skip
            row = E._history_row(epoch, stage, n, nv, tr, va, tv, has_kd, with_teacher, cfg.alpha)
            row["epoch_seconds"] = epoch_seconds
            rows[r].append(row)
        if bar is not None:
            bar.update(1)
    return [E._Stage({}, bests[r], rows[r], seconds, None) for r in range(R)]


def _net_for(cfg, m: Method, n_classes, shape: tuple[int, int], build, device, key: str, state: dict) -> nn.Module:
    """A single (unstacked) net holding ``state``, on the training device as engine.fit keeps it."""
    net = E.to_training_device(E._build(cfg, m, n_classes, shape, build)[key], device)
    net.load_state_dict(state)
    return net


def _fit_stack(data_t, fits, vals, tests, cfgs, build, n_classes, device, progress, opts) -> list[E.FitResult]:
    """Train one stack (equal fit sizes); one FitResult per replica (see the module docstring)."""
    cfg = cfgs[0]
    method = get_method(cfg.method)
    X = data_t[0]
    R, shape = len(cfgs), (X.shape[2], X.shape[3])  # (channels, length) of a window
    stages = 2 if method.stage1 else 1
    bar = tqdm(total=cfg.epochs * stages, desc=f"{cfg.method} x{R} stacked", unit="epoch", leave=True,
               disable=not show_progress(progress), file=sys.stderr, dynamic_ncols=True)  # fmt: skip
    gens = [torch.Generator().manual_seed(c.seed) for c in cfgs]  # CPU generators, as engine.fit
    rng = [None] * R

    def build_stack(m: Method) -> tuple[dict[str, StackedNet], list[dict[str, nn.Module]]]:
        per = []
        for r, c in enumerate(cfgs):
            if rng[r] is None:
                torch.manual_seed(c.seed)
            else:  # born_again stage 2: the global RNG where this replica's stage-1 build left it
                torch.set_rng_state(rng[r])
            per.append({k: net.to(device) for k, net in E._build(c, m, n_classes, shape, build).items()})
            rng[r] = torch.get_rng_state()
        return {k: StackedNet([p[k] for p in per]) for k in per[0]}, per

    def compiled(nets):
        if opts.compile:  # CUDA graphs of the steady-state step's forward
            for net in nets.values():
                net.forward = torch.compile(net.forward, mode="reduce-overhead", dynamic=False)
        return nets

    def train(m: Method, teacher, stage: int):
        nets, per = build_stack(m)
        batchnorm = _has_batchnorm(next(iter(per[0].values())))
        if m.teacher == "ema":
            teacher = EMATeacher(nets["student"], cfg.ema_decay, cfg.ema_buffers, cfg.ema_warmup)
        nets = compiled(nets)
        st = _train_stage(m, nets, teacher, data_t, fits, vals, cfg, gens, bar, stage, device, batchnorm, opts)
        return nets, teacher, st

    with E._determinism(cfg.deterministic, device), bar:
        stage1 = None
        if method.stage1:
            nets1, _, st1 = train(get_method(method.stage1), None, 1)
            for r in range(R):  # the frozen teacher: each replica's best stage-1 epoch
                nets1["student"].load_replica_state(r, st1[r].best["student"].state)
            stage1 = (nets1, st1)
            frozen = nets1["student"].eval().requires_grad_(False)
            nets, teacher, st = train(method, frozen, 2)
        else:
            nets, teacher, st = train(method, None, 1)
        results = []
        for r in range(R):
            c = cfgs[r]
            s = st[r]
            last = {k: E._to_cpu(net.replica_state(r)) for k, net in nets.items()}
            s.models = {k: _net_for(c, method, n_classes, shape, build, device, k, s.best[k].state) for k in nets}
            if isinstance(teacher, EMATeacher):  # engine._select loads the teacher's best into .module
                s.teacher = SimpleNamespace(module=_net_for(c, method, n_classes, shape, build, device, "student",
                                                            teacher.module.replica_state(r)))  # fmt: skip
            s1 = None
            if stage1 is not None:
                st1 = stage1[1][r]
                st1.models = {"student": _net_for(c, get_method(method.stage1), n_classes, shape, build, device,
                                                  "student", st1.best["student"].state).eval()}  # fmt: skip
                s1 = st1
            state_dicts, best_epochs, forwards = E._select(s, s1)
            _, y1, y2 = data_t
            splits = {"val": vals[r]} | ({"test": tests[r]} if len(tests[r]) else {})
            predictions = {(split, who): E._predictions(fwd, X, y1, y2, idx, c)
                           for who, fwd in forwards.items() for split, idx in splits.items()}  # fmt: skip
            stage_list = [x for x in ((s1,) if s1 else ()) + (s,)]
            stage_seconds = {f"stage{k + 1}": x.seconds for k, x in enumerate(stage_list)}
            best_epoch = best_epochs["student"] if "student" in best_epochs else best_epochs["task1"]
            results.append(E.FitResult(
                history=pd.DataFrame((s1.rows if s1 else []) + s.rows), best_epoch=int(best_epoch),
                state_dicts=state_dicts, predictions=predictions, train_seconds=float(sum(stage_seconds.values())),
                n_params=int(sum(p.numel() for m in s.models.values() for p in m.parameters())), config=c,
                stage_seconds=stage_seconds, best_epochs=best_epochs, last_state_dicts=last,
                n_classes=n_classes, device=str(device)))  # fmt: skip
            results[-1].stack_info = {"replicas": R, "replica": r, "seconds_are": "the stack's wall time / replicas"}
    return results


def fit_stacked(data, runs: Sequence[tuple], progress: bool = True, *, build=None,
                n_classes: tuple[int, int] | None = None, fuse_teacher: bool = False,
                compile: bool = False) -> list[E.FitResult]:  # fmt: skip
    """Train the ``runs`` as stacked replicas; one ``engine.FitResult`` per run, in order.

    ``runs``: ``(fit_idx, val_idx, test_idx, config)`` tuples of one ``data`` (as :func:`engine.fit`
    takes them) whose configs differ at most in ``seed``. Runs with equally many fit windows share a
    stack; a method or model that cannot be stacked exactly (:func:`why_not_stackable`) trains each
    run alone with ``engine.fit``, after one line on stderr saying why. ``fuse_teacher``/``compile``:
    GPU options (module docstring); ``compile`` needs CUDA.
    """
    if not runs:
        return []
    cfgs = [r[3] for r in runs]
    for c in cfgs:
        if not isinstance(c, E.TrainConfig):
            raise ValueError(f"fit_stacked: each run's config must be a TrainConfig, got {type(c).__name__}")
    _same_but_seed(cfgs)
    if build is None:  # as engine.fit: windows in the layout the model is fed, else one line
        E.check_layout(data, cfgs[0].model, who="fit_stacked")
    method = get_method(cfgs[0].method)
    device = E.resolve_device(cfgs[0].device)
    if compile and device.type != "cuda":
        raise ValueError("fit_stacked: compile=True captures CUDA graphs and needs a CUDA device")
    X, y1, y2, n_classes = E._tensors(data, device, n_classes)
    n = len(X)
    probe = E._build(cfgs[0], method, n_classes, (X.shape[2], X.shape[3]), build)
    reason = why_not_stackable(method, next(iter(probe.values())))
    if reason is not None or len(runs) == 1:
        if reason is not None:
            print(f"stack: {len(runs)} run(s) trained one at a time: {reason}", file=sys.stderr)
        return [E.fit(data, f, v, t, c, progress, build=build, n_classes=n_classes) for f, v, t, c in runs]
    idx = []
    for f, v, t, _ in runs:
        a, b, tt = E._indices(f, "fit_idx", n), E._indices(v, "val_idx", n), E._indices(t, "test_idx", n, True)
        for p, q, na, nb in ((a, b, "fit_idx", "val_idx"), (a, tt, "fit_idx", "test_idx"), (b, tt, "val_idx", "test_idx")):
            if np.intersect1d(p, q).size:
                raise ValueError(f"fit_stacked: {na} and {nb} overlap ({np.intersect1d(p, q).size} windows)")
        idx.append((a, b, tt))
    prec = amp.resolve_precision(cfgs[0].precision, device, cfgs[0].bf16)
    cfgs = [dataclasses.replace(E.with_min_steps(c, len(i[0])), precision=prec) for c, i in zip(cfgs, idx)]
    opts = _Options(fuse_teacher=fuse_teacher and not _has_batchnorm(next(iter(probe.values()))), compile=compile)
    # a stack needs one batch shape: group by (fit, val, test) sizes, keep the runs' order
    groups: dict[tuple, list[int]] = {}
    for i, (a, b, tt) in enumerate(idx):
        groups.setdefault((len(a), len(b), len(tt)), []).append(i)
    out: list[E.FitResult | None] = [None] * len(runs)
    data_t = (X, y1, y2)
    for members in groups.values():
        if len(members) == 1:
            i = members[0]
            out[i] = E.fit(data, *idx[i], cfgs[i], progress, build=build, n_classes=n_classes)
            continue
        t = [torch.stack([torch.as_tensor(idx[i][j], device=device) for i in members]) for j in range(3)]
        res = _fit_stack(data_t, t[0], t[1], list(t[2]), [cfgs[i] for i in members], build, n_classes, device,
                         progress, opts)
        for i, r in zip(members, res):
            out[i] = r
    return out  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# Grids: the runner's stacked path (run ... --stack)


#: the one line a CUDA user reads when stacking is left to its default (off)
CUDA_NOTE = ("note: replica stacking is off by default: it has not yet been checked against unstacked runs on a "
             "GPU (tools/gpu_check.py does); `run --stack` turns it on")


def enabled(stack: bool | None, device=None) -> bool:
    """``--stack``/``--no-stack``: an explicit choice wins; None = off everywhere. On a CPU stacking
    measured no faster than sequential runs (``benchmarks/RESULTS.md``); on CUDA it is opt-in until
    ``tools/gpu_check.py`` has run it on a device and its records matched unstacked runs there (a
    path that has never run on a GPU must not be a GPU user's default): the runner prints
    :data:`CUDA_NOTE` once."""
    if stack is not None:
        return bool(stack)
    return False


def group_key(spec) -> str:
    """Runs with equal keys can share a stack: everything but seed and fold is the same."""
    d = spec.identity()
    d.pop("seed"), d.pop("fold")
    d["train"] = {k: v for k, v in d["train"].items() if k != "seed"}
    return canonical_json(d)


def group_specs(specs: Sequence, max_replicas: int = MAX_REPLICAS) -> list[list]:
    """``specs`` in stack groups of at most ``max_replicas`` (first appearance order)."""
    groups: dict[str, list] = {}
    for s in specs:
        groups.setdefault(group_key(s), []).append(s)
    return [g[i : i + max_replicas] for g in groups.values() for i in range(0, len(g), max_replicas)]


def run_specs(specs: Sequence, device=None, progress: bool = True, max_replicas: int = MAX_REPLICAS,
              run_alone=None) -> Iterator[tuple]:  # fmt: skip
    """``(spec, record body)`` for every spec, a stack group at a time (the bodies of
    :func:`records.record_body`, plus ``provenance["stack"]``). A group that cannot be stacked, or of
    one run, trains each run alone, each with its own time and memory measured, by
    ``run_alone(spec, device) -> body`` (the runner passes ``runner.run_one``; default
    :func:`run_group` of that one spec, the same body)."""
    if run_alone is None:
        def run_alone(spec, device):
            return run_group([spec], device, progress=progress)[0]
    for group in group_specs(specs, max_replicas):
        if len(group) == 1 or not _stackable(group[0]):
            for spec in group:
                yield spec, run_alone(spec, device)
        else:
            yield from zip(group, run_group(group, device, progress=progress))


def _stackable(spec) -> bool:
    """Whether ``spec``'s method and model can be stacked (else its runs go one at a time, each with
    its own time and memory measured)."""
    reason = why_not_stackable(get_method(spec.method), build_model(spec.model, (2, 2), **(spec.train.get(
        "model_options") or {})))
    if reason is not None:
        print(f"stack: {spec.method}/{spec.model} runs one at a time: {reason}", file=sys.stderr)
    return reason is None


def run_group(specs: Sequence, device=None, progress: bool = True) -> list[dict]:
    """Record bodies of ``specs`` (one :func:`group_key`) trained by :func:`fit_stacked`: the body
    ``runner.run_one`` makes (:func:`records.record_body`, the one place a record is assembled), with
    times per run (the group's / its size) and ``provenance["stack"]``. One spec: exactly
    ``runner.run_one``'s body."""
    from datetime import datetime, timezone

    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    first = specs[0]
    if any(group_key(s) != group_key(first) for s in specs):
        raise ValueError("run_group: the runs differ in more than seed and fold")
    prep = prepare_for(first)
    runs = [run_inputs(spec, prep, device) for spec in specs]
    with compute.CostMeter(E.resolve_device(device)) as meter:
        if len(runs) == 1:
            results = [E.fit(prep.windows, *runs[0], progress=progress)]
        else:
            results = fit_stacked(prep.windows, runs, progress=progress)
    finished = datetime.now(timezone.utc).isoformat(timespec="seconds")
    group = [s.run_id for s in specs] if len(specs) > 1 else None
    return [record_body(spec, prep, fit_idx, val_idx, result, meter, started=started, finished=finished,
                        group=group)
            for spec, (fit_idx, val_idx, _, _), result in zip(specs, runs, results)]


def grid_time_estimate(step_seconds: dict[str, float], fit_windows: dict[str, int], *, epochs: int = 300,
                       runs_per_cell: int = 25, batch_size: int = 64, eval_seconds_per_epoch: float = 0.0,
                       stack_speedup: float = 1.0, methods: Sequence[str] | None = None) -> pd.DataFrame:  # fmt: skip
    """Estimated time of a grid from MEASURED step times (chapter 7's estimate until a GPU run exists).

    ``step_seconds``: seconds per optimizer step of each method's step function (e.g.
    ``compute.interleaved_step_times``; singletask's step trains both nets; born_again needs
    ``multitask`` too: its stage 1 is a multitask run). ``fit_windows``: training windows per
    dataset (a fold's fit set). Per run: ``epochs x (ceil(fit / batch_size) x step + eval_seconds_per_epoch)``,
    born_again twice (stage 1 at the multitask step). ``runs_per_cell``: seeds x folds (paper: 25).
    ``stack_speedup``: measured throughput of a stacked run over a single one (1 = one at a time).
    Returns one row per (dataset, method): ``steps per run``, ``hours per run``, ``runs``,
    ``hours`` (all runs of the cell, divided by ``stack_speedup``), plus a ``total`` row. An
    estimate, not a measurement: label it so.
    """
    methods = list(methods if methods is not None else step_seconds)
    if "born_again" in methods and "multitask" not in step_seconds:
        raise ValueError("grid_time_estimate: born_again's stage 1 is a multitask run: give step_seconds['multitask']")
    for name in methods:
        if name not in step_seconds:
            raise ValueError(f"grid_time_estimate: no step time for method {name!r}")
    if stack_speedup <= 0 or epochs < 1 or runs_per_cell < 1 or batch_size < 1:
        raise ValueError("grid_time_estimate: stack_speedup > 0, epochs, runs_per_cell, batch_size >= 1")
    rows = []
    for ds, n_fit in fit_windows.items():
        steps = math.ceil(n_fit / batch_size) * epochs
        for m in methods:
            per_step = step_seconds[m] + (step_seconds["multitask"] if m == "born_again" else 0.0)
            evals = epochs * eval_seconds_per_epoch * (2 if m == "born_again" else 1)
            seconds = steps * per_step + evals
            rows.append({"dataset": ds, "method": m, "steps per run": steps * (2 if m == "born_again" else 1),
                         "hours per run": seconds / 3600, "runs": runs_per_cell,
                         "hours": runs_per_cell * seconds / 3600 / stack_speedup})  # fmt: skip
    out = pd.DataFrame(rows).set_index(["dataset", "method"])
    out.loc[("total", ""), :] = [out["steps per run"].sum(), np.nan, out["runs"].sum(), out["hours"].sum()]
    return out
