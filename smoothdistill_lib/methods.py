"""The five training methods, each one small step function.

A step is a plain function ``step(models, optimizer, teacher, batch, cfg) -> dict``:

- ``models``: ``{"student": net}`` (two heads), or ``{"task1": net1, "task2": net2}`` (single-task,
  one head each);
- ``optimizer``: one optimizer over every trainable parameter of ``models``;
- ``teacher``: ``None``, an :class:`~smoothdistill_lib.ema.EMATeacher` (smooth_distill) or a frozen
  eval-mode net (born_again stage 2);
- ``batch``: ``(x (B, 1, 3, L) float32, y1 (B,) int64, y2 (B,) int64)`` on the training device;
- ``cfg``: a :class:`~smoothdistill_lib.engine.TrainConfig` (only its hyperparameters are read).

It does one optimizer step (and the EMA update) and returns detached device tensors: ``loss`` (the
optimised objective), ``ce1``, ``ce2``, optionally ``kd1``, ``kd2`` (the distillation / SDD terms as
they enter the loss, before ``lam``), ``logits`` ``(z1, z2)`` and optionally ``teacher_logits``. It
never reads a value on the host, so the engine can run steps back to back without a device sync.
Keeping the state explicit in the arguments is what lets :mod:`stack` ``torch.func.vmap`` seeds x
folds without rewriting the methods: each stackable method's loss is an *objective*
``objective(models, batch, cfg, teacher_logits) -> dict`` (``loss``, ``ce1``, ``ce2``, ``logits``,
optionally ``kd1``, ``kd2``; not detached) that its step wraps with autocast and the optimizer step,
and that :mod:`stack` maps over replicas.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from smoothdistill_lib import amp
from smoothdistill_lib.ema import EMATeacher
from smoothdistill_lib.losses import kd_loss, multitask_ce, sdd_loss

Step = Callable[..., dict]


def autocast(x: torch.Tensor, bf16: bool | str = False):
    """Autocast for ``x``'s device: ``bf16`` is the older flag (True = bf16) or a precision name
    (``amp.PRECISIONS``); a no-op context for fp32 and off CUDA (CPU/MPS train in fp32)."""
    return amp.autocast(x, bf16)


def precision(cfg) -> str:
    """The precision a step runs in: ``cfg.precision``, with the older ``cfg.bf16=True`` as bf16."""
    return amp.requested(getattr(cfg, "precision", "fp32"), getattr(cfg, "bf16", False))


def _optimise(optimizer, loss: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    if isinstance(optimizer, amp.ScaledOptimizer):  # fp16: scaled backward, step skipped on overflow
        optimizer.backward_step(loss)
        return
    loss.backward()
    optimizer.step()


def _out(loss, ce1, ce2, logits, kd1=None, kd2=None, teacher_logits=None) -> dict:
    out = {"loss": loss.detach(), "ce1": ce1.detach(), "ce2": ce2.detach(),
           "logits": (logits[0].detach(), logits[1].detach())}
    if kd1 is not None:
        out["kd1"], out["kd2"] = kd1.detach(), kd2.detach()
    if teacher_logits is not None:
        out["teacher_logits"] = teacher_logits
    return out


def singletask_objective(models, batch, cfg, teacher_logits=None) -> dict:
    """``CE1 + CE2`` of two single-head nets: the two nets share no parameter, so each receives
    exactly the gradient of its own CE (Adam is per-parameter, so one optimizer over both = two)."""
    x, y1, y2 = batch
    z1 = models["task1"](x)[0]
    z2 = models["task2"](x)[0]
    ce1, ce2 = F.cross_entropy(z1, y1), F.cross_entropy(z2, y2)
    return {"loss": ce1 + ce2, "ce1": ce1, "ce2": ce2, "logits": (z1, z2)}


def multitask_objective(models, batch, cfg, teacher_logits=None) -> dict:
    """``alpha CE1 + (1 - alpha) CE2`` on one two-head net (paper Eq. 1)."""
    x, y1, y2 = batch
    logits = models["student"](x)
    loss, ce1, ce2 = multitask_ce(logits, y1, y2, cfg.alpha)
    return {"loss": loss, "ce1": ce1, "ce2": ce2, "logits": logits}


def _plain_step(objective, models, optimizer, batch, cfg) -> dict:
    with autocast(batch[0], precision(cfg)):
        o = objective(models, batch, cfg)
    _optimise(optimizer, o["loss"])
    return _out(**o)


def singletask_step(models, optimizer, teacher, batch, cfg) -> dict:
    """Two independent single-head nets on the same batch; each gets only its own task's CE."""
    return _plain_step(singletask_objective, models, optimizer, batch, cfg)


def multitask_step(models, optimizer, teacher, batch, cfg) -> dict:
    """``alpha CE1 + (1 - alpha) CE2`` on one two-head net (paper Eq. 1)."""
    return _plain_step(multitask_objective, models, optimizer, batch, cfg)


def sd_dropout_step(models, optimizer, teacher, batch, cfg) -> dict:
    """SD-Dropout (Lee et al. 2022) as the authors ran it (book/12_authors_code.ipynb).

    Dropout ``p = cfg.sdd_dropout`` on the shared features with four independent masks, two views
    per task; ``SDD_k = T^2 * sdd_loss(view_a, view_b)`` at ``T = cfg.sdd_temperature``; CE on the
    clean logits; ``loss = alpha (CE1 + w SDD1) + (1 - alpha) (CE2 + w SDD2)`` with ``w = cfg.sdd_weight``.
    """
    x, y1, y2 = batch
    model, t, p = models["student"], cfg.sdd_temperature, cfg.sdd_dropout
    head1, head2 = model.heads[0], model.heads[1]
    with autocast(x, precision(cfg)):
        f = model.features(x)
        logits = (head1(f), head2(f))
        _, ce1, ce2 = multitask_ce(logits, y1, y2, cfg.alpha)
        views = [F.dropout(f, p=p, training=True) for _ in range(4)]  # four independent masks
        sdd1 = sdd_loss(head1(views[0]), head1(views[1]), t) * t**2
        sdd2 = sdd_loss(head2(views[2]), head2(views[3]), t) * t**2
        w = cfg.sdd_weight
        loss = cfg.alpha * (ce1 + w * sdd1) + (1.0 - cfg.alpha) * (ce2 + w * sdd2)
    _optimise(optimizer, loss)
    return _out(loss, ce1, ce2, logits, sdd1, sdd2)


def _distill_objective(models, batch, teacher_logits, alpha: float, temperature: float, lam: float,
                       kd: Callable = kd_loss) -> dict:  # fmt: skip
    """CE + lam * KD per task against the teacher's logits of the same batch (paper Eq. 5)."""
    x, y1, y2 = batch
    logits = models["student"](x)
    _, ce1, ce2 = multitask_ce(logits, y1, y2, alpha)
    kd1 = kd(logits[0], teacher_logits[0], temperature)
    kd2 = kd(logits[1], teacher_logits[1], temperature)
    loss = alpha * (ce1 + lam * kd1) + (1.0 - alpha) * (ce2 + lam * kd2)
    return {"loss": loss, "ce1": ce1, "ce2": ce2, "logits": logits, "kd1": kd1, "kd2": kd2}


def smooth_distill_objective(models, batch, cfg, teacher_logits, kd: Callable = kd_loss) -> dict:
    """Smooth-Distill's loss against the EMA teacher's logits (T = cfg.temperature, lam = cfg.lam).
    ``kd``: the KD loss (:mod:`stack` passes ``losses.kd_loss_vmappable``)."""
    return _distill_objective(models, batch, teacher_logits, cfg.alpha, cfg.temperature, cfg.lam, kd)


def born_again_objective(models, batch, cfg, teacher_logits, kd: Callable = kd_loss) -> dict:
    """Born-Again stage 2's loss against the frozen stage-1 net's logits (T = cfg.ba_temperature,
    lam = cfg.ba_lam); ``kd`` as in :func:`smooth_distill_objective`."""
    return _distill_objective(models, batch, teacher_logits, cfg.alpha, cfg.ba_temperature, cfg.ba_lam, kd)


def _distill(objective, models, optimizer, teacher, batch, cfg) -> dict:
    x = batch[0]
    with autocast(x, precision(cfg)):
        # inference_mode: the teacher's outputs are constants here, so skip autograd bookkeeping
        with torch.inference_mode():
            t_logits = teacher(x)
        o = objective(models, batch, cfg, t_logits)
    _optimise(optimizer, o["loss"])
    return _out(**o, teacher_logits=t_logits)


def smooth_distill_step(models, optimizer, teacher: EMATeacher, batch, cfg) -> dict:
    """Smooth-Distill: distil from the EMA teacher (T = cfg.temperature, lam = cfg.lam), then
    ``theta_T <- a theta_T + (1 - a) theta_S`` right after the optimizer step."""
    out = _distill(smooth_distill_objective, models, optimizer, teacher, batch, cfg)
    teacher.update()
    return out


def born_again_step(models, optimizer, teacher, batch, cfg) -> dict:
    """Born-Again stage 2: distil a fresh student from the frozen stage-1 multitask net
    (T = cfg.ba_temperature, lam = cfg.ba_lam). Stage 1 is :func:`multitask_step`."""
    return _distill(born_again_objective, models, optimizer, teacher, batch, cfg)


@dataclass(frozen=True)
class Method:
    """A registry entry: the step, how many nets/heads, what kind of teacher it uses, its name in
    tables, and what its training costs (the note ``compute.method_cost`` stores with the estimate).

    The order of :data:`METHODS` is the paper's (Tables 5-8): every table, test and figure orders
    methods by it (:func:`paper_order`)."""

    name: str
    step: Step
    description: str
    label: str  # display name, e.g. "Smooth-Distill"
    train_cost_note: str  # how its training FLOPs per window are counted (compute.method_cost)
    single_task: bool = False  # two single-head nets instead of one two-head net
    teacher: str | None = None  # None | "ema" (built from the student) | "stage1" (trained first)
    stage1: str | None = None  # method trained first to give the teacher (born_again)
    sweeps_lam: bool = False  # an experiment's ``lams`` apply to it (its loss weighs KD by lambda)
    extra_head_passes: int = 0  # head passes per step beyond the forward (SD-Dropout's dropout views)
    kd_terms: bool = False  # its step returns kd1/kd2 (distillation or SDD terms) for the history
    # the step's loss without the optimizer step (stack.py maps it over replicas); None: not stackable
    objective: Step | None = None
    # expected cost of one run in multitask runs (same epochs and data): shards.py balances grids by it
    run_cost: float = 1.0

    @property
    def models_trained(self) -> int:
        """Networks trained for one run: two single-task nets, or a teacher stage and a student."""
        return 2 if self.single_task or self.stage1 else 1


METHODS: dict[str, Method] = {
    "singletask": Method("singletask", singletask_step,
                         "two independent single-head nets, plain CE each (cost counts both)",
                         "Single-task", "2 models x 3 x forward", single_task=True,
                         objective=singletask_objective, run_cost=2.0),
    "multitask": Method("multitask", multitask_step, "one two-head net, alpha CE1 + (1 - alpha) CE2",
                        "Multitask", "3 x forward", objective=multitask_objective),
    "sd_dropout": Method("sd_dropout", sd_dropout_step,
                         "multitask + symmetric KL between dropout views of the shared features (T=2)",
                         "SD-Dropout", "3 x (forward + 4 dropout-view head passes)", extra_head_passes=4,
                         kd_terms=True, run_cost=2.0),
    "born_again": Method("born_again", born_again_step,
                         "stage 1 multitask teacher, stage 2 fresh student with CE + lam KD (T=3)",
                         "Born-Again", "stage 1: 3 x forward; stage 2: 3 x forward + teacher forward",
                         teacher="stage1", stage1="multitask", kd_terms=True, objective=born_again_objective,
                         run_cost=2.0),
    "smooth_distill": Method("smooth_distill", smooth_distill_step,
                             "CE + lam KD from an EMA teacher updated after every step (T=3; a=0.999 at full size)",
                             "Smooth-Distill", "3 x forward + teacher forward + EMA (3 x params per step of {batch_size})",
                             teacher="ema", sweeps_lam=True, kd_terms=True, objective=smooth_distill_objective,
                             run_cost=1.35),
}

#: methods whose loss weighs distillation by lambda, swept by an experiment's ``lams``
LAM_METHODS = tuple(name for name, m in METHODS.items() if m.sweeps_lam)


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]


def known_first(values, known) -> list:
    """The distinct ``values``: those in ``known`` first, in ``known``'s order, then the others in the
    order they first appear. The one ordering rule for methods, models, splits, ... in tables and
    figures (a registry's order is the paper's)."""
    present = list(dict.fromkeys(values))
    return [v for v in known if v in present] + [v for v in present if v not in known]


def paper_order(methods) -> list[str]:
    """The distinct ``methods`` in the paper's order (:data:`METHODS`), unknown names last."""
    return known_first(methods, METHODS)
