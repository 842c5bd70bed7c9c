"""SMLDist (Chen et al., arXiv 2107.07331): multi-level distillation of a trained MTL-net into a small
student, and the ablation runner of chapter 11.

Only the paper's abstract was available to us. It names three levels; the equations below are OUR
reading of it (each level is switchable on its own, ``levels`` in :class:`SMLDistConfig`):

- **stage** ("constrains the learning direction of the intermediate features"): a FitNets-style hint.
  Teacher stage ``j`` (MTL-net conv block output, ``(N, C_t, L_t)``, rows folded into channels) is
  paired with the student stage at the same relative depth; the student map goes through a learned
  1x1 projection ``P`` (``C_s -> C_t``), the teacher map is brought to the student's length
  (adaptive average pooling when longer, linear interpolation when shorter), both are flattened per
  window and scaled to unit norm, and
  ``L_stage = mean_pairs mean_n || P(s_n)/|P(s_n)| - t_n/|t_n| ||^2``  (= 2 - 2 cos, in [0, 4]).
- **memory** ("how to explain and store the inner relationship between high-dimensional features
  based on Hopfield networks"): a modern Hopfield layer (Ramsauer et al. 2020), :class:`HopfieldLayer`,
  ``Z = softmax(beta Q K^T) V`` with ``Q = R W_q``, ``K = Y W_k``, ``V = Y W_v``. The batch's features are
  the stored patterns and the queries at once (self-association, the window's own pattern masked
  out). The teacher's association is the closed-form Hopfield update on its unit-norm features
  ``t^``: ``A_T = softmax(beta_T t^ t^T)``, its retrieval ``Z_T = A_T t^``. The student's layer is
  learned: ``A_S = softmax(beta Q K^T)``, ``Z_S = A_S (s W_v)`` with ``W_v`` mapping to the teacher's width.
  ``L_mem = KL(A_T || A_S)`` (rows, batch mean) ``+ mean_n || Z_S,n/|Z_S,n| - Z_T,n/|Z_T,n| ||^2``:
  how windows relate (association) and what each retrieves (storage).
- **logits** ("distilled logits by a smoothed conditional rule to keep the probable distribution and
  improve the correctness of the soft target"): ``p = softmax(z_T / T)``; where the teacher's argmax
  is the true class the target is ``p``; where it is wrong, the probabilities of the predicted class
  and the true class are swapped, so the target is still a permutation of the teacher's softened
  distribution (same entropy, same "dark knowledge" among the other classes) but its argmax is the
  true class. ``L_logits = T^2 KL(q || softmax(z_S / T))`` (batch mean), per task.

Objective of one student step (``alpha`` weights the two tasks as in paper Eq. 1):
``alpha (CE_1 + lam_l L_logits,1) + (1 - alpha) (CE_2 + lam_l L_logits,2) + lam_s L_stage + lam_m L_mem``;
a level not in ``levels`` contributes nothing (``levels=()`` is plain multitask training).

The teacher is the Smooth-Distill EMA teacher of the same split and fold (``engine.fit`` with
``method="smooth_distill"``), frozen. It never sees augmentation here, so its outputs on the fit
windows are computed ONCE per student architecture (:func:`teacher_targets`) and reused by every
ablation run: the same numbers as running it in every step, without its cost.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from smoothdistill_lib import (
    export,
    provenance,
    stats,
    students,  # noqa: F401  (registers the students in models.MODELS)
)
from smoothdistill_lib.checkpoints import fit_or_load
from smoothdistill_lib.config import get_mode, project_root, results_dir
from smoothdistill_lib.engine import TrainConfig, make_optimizer, predict
from smoothdistill_lib.fileio import atomic_write_json
from smoothdistill_lib.metrics import classification_metrics
from smoothdistill_lib.models import build_model, count_parameters
from smoothdistill_lib.pipeline import prepare
from smoothdistill_lib.windows import to_layout

LEVELS = ("logits", "stage", "memory")
#: the ablation's level combinations, in the chapter's order
COMBINATIONS = {"none": (), "logits": ("logits",), "logits+stage": ("logits", "stage"),
                "logits+memory": ("logits", "memory"), "all": ("logits", "stage", "memory")}  # fmt: skip


# --------------------------------------------------------------------------------------------
# Level 3: logits (the conditional soft target)


def conditional_target(teacher_logits: torch.Tensor, y: torch.Tensor, temperature: float = 3.0) -> torch.Tensor:
    """Soft target ``(N, C)`` from teacher logits ``(N, C)`` and labels ``y`` ``(N,)``.

    ``p = softmax(z_T / T)``. Rows where ``argmax p == y``: ``p`` unchanged. Other rows: ``p[argmax]``
    and ``p[y]`` swap places, so the row keeps the teacher's values (a permutation of them) and its
    largest value sits on the true class. No gradient flows into the teacher.
    """
    p = F.softmax(teacher_logits.detach() / temperature, dim=-1)
    top = p.argmax(dim=-1)
    wrong = top != y
    rows = torch.arange(len(y), device=p.device)[wrong]
    q = p.clone()
    q[rows, y[wrong]] = p[rows, top[wrong]]
    q[rows, top[wrong]] = p[rows, y[wrong]]
    return q


def logits_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, y: torch.Tensor,
                temperature: float = 3.0) -> torch.Tensor:  # fmt: skip
    """``T^2 KL(q || softmax(z_S / T))``, batch mean, with ``q`` = :func:`conditional_target`; inputs ``(N, C)``."""
    q = conditional_target(teacher_logits, y, temperature)
    log_p = F.log_softmax(student_logits / temperature, dim=-1)
    return F.kl_div(log_p, q, reduction="batchmean") * temperature**2


# --------------------------------------------------------------------------------------------
# Level 1: stage


def match_length(t: torch.Tensor, length: int) -> torch.Tensor:
    """``(N, C, L_t)`` -> ``(N, C, length)``: adaptive average pooling when longer, linear
    interpolation when shorter, unchanged when equal."""
    if t.shape[-1] == length:
        return t
    if t.shape[-1] > length:
        return F.adaptive_avg_pool1d(t, length)
    return F.interpolate(t, size=length, mode="linear", align_corners=False)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.flatten(1), dim=1)


def stage_loss(student_maps: Sequence[torch.Tensor], teacher_maps: Sequence[torch.Tensor],
               projections: nn.ModuleList) -> torch.Tensor:  # fmt: skip
    """Mean over pairs of ``mean_n || P(s)/|P(s)| - t/|t| ||^2``; ``student_maps[k]`` ``(N, C_s, L_s)``,
    ``teacher_maps[k]`` ``(N, C_t, L_t)`` (any length: matched to ``L_s``), ``projections[k]`` maps
    ``C_s -> C_t`` (a 1x1 ``Conv1d`` or ``Identity``)."""
    if not (len(student_maps) == len(teacher_maps) == len(projections)) or not student_maps:
        raise ValueError(f"stage_loss: need as many student maps, teacher maps and projections (>= 1), got "
                         f"{len(student_maps)}, {len(teacher_maps)}, {len(projections)}")
    losses = []
    for s, t, proj in zip(student_maps, teacher_maps, projections):
        ps = proj(s)
        tt = match_length(t.detach(), ps.shape[-1])
        losses.append((_unit(ps) - _unit(tt)).pow(2).sum(dim=1).mean())
    return torch.stack(losses).mean()


# --------------------------------------------------------------------------------------------
# Level 2: memory (modern Hopfield layer)


class HopfieldLayer(nn.Module):
    """Modern Hopfield layer (Ramsauer et al. 2020): ``Z = softmax(beta (R W_q)(Y W_k)^T) (Y W_v)``.

    ``R`` ``(N_q, d_in)`` state (query) patterns, ``Y`` ``(N_s, d_in)`` stored patterns (default ``R``:
    self-association). ``W_q``, ``W_k``: ``d_in -> d_hidden``; ``W_v``: ``d_in -> d_out``, no biases.
    ``beta`` defaults to ``1 / sqrt(d_hidden)``. ``mask`` ``(N_q, N_s)`` bool, True = excluded.
    Returns ``(Z (N_q, d_out), A (N_q, N_s))``. With ``W_q = W_k = W_v = I`` one call is exactly the
    paper's update rule ``xi_new = Y^T softmax(beta Y xi)`` for every query ``xi`` (tested), which for
    large ``beta`` retrieves the stored pattern nearest to ``xi``. Hand-written: a few lines of
    attention; torch's ``scaled_dot_product_attention`` does not return ``A``, which the memory loss needs.
    """

    def __init__(self, d_in: int, d_hidden: int, d_out: int, beta: float | None = None):
        super().__init__()
        self.w_q = nn.Linear(d_in, d_hidden, bias=False)
        self.w_k = nn.Linear(d_in, d_hidden, bias=False)
        self.w_v = nn.Linear(d_in, d_out, bias=False)
        self.beta = float(beta) if beta is not None else 1.0 / math.sqrt(d_hidden)

    def forward(self, r: torch.Tensor, y: torch.Tensor | None = None, mask: torch.Tensor | None = None):
        y = r if y is None else y
        scores = self.beta * self.w_q(r) @ self.w_k(y).T
        if mask is not None:
            scores = scores.masked_fill(mask, float("-inf"))
        a = scores.softmax(dim=-1)
        return a @ self.w_v(y), a


def hopfield_update(xi: torch.Tensor, stored: torch.Tensor, beta: float, mask: torch.Tensor | None = None):
    """Closed-form Hopfield update ``(softmax(beta xi Y^T) Y, A)`` for queries ``xi`` ``(N_q, d)`` and stored
    patterns ``Y`` ``(N_s, d)`` (no learned weights): the teacher's side of the memory level."""
    scores = beta * xi @ stored.T
    if mask is not None:
        scores = scores.masked_fill(mask, float("-inf"))
    a = scores.softmax(dim=-1)
    return a @ stored, a


def memory_loss(student_features: torch.Tensor, teacher_features: torch.Tensor, layer: HopfieldLayer,
                teacher_beta: float = 8.0) -> torch.Tensor:  # fmt: skip
    """``KL(A_T || A_S) + mean_n || Z_S^ - Z_T^ ||^2`` over a batch (module docstring).

    ``student_features`` ``(N, F_s)``, ``teacher_features`` ``(N, F_t)``; ``layer`` maps ``F_s`` to
    ``d_out = F_t``. Each window's own pattern is masked out of both associations (it would always
    win, telling nothing about how windows relate). Needs ``N >= 2``.
    """
    n = len(student_features)
    if n < 2:
        raise ValueError(f"memory_loss: needs a batch of at least 2 windows, got {n}")
    eye = torch.eye(n, dtype=torch.bool, device=student_features.device)
    t = F.normalize(teacher_features.detach(), dim=1)
    z_t, a_t = hopfield_update(t, t, teacher_beta, mask=eye)
    z_s, a_s = layer(F.normalize(student_features, dim=1), mask=eye)
    # KL(A_T || A_S) per row, the masked diagonal (0 * log 0) left out
    log_a_s = torch.log(a_s.masked_fill(eye, 1.0).clamp_min(1e-12))
    log_a_t = torch.log(a_t.masked_fill(eye, 1.0).clamp_min(1e-12))
    kl = (a_t * (log_a_t - log_a_s)).sum(dim=1).mean()
    retrieval = (F.normalize(z_s, dim=1) - F.normalize(z_t, dim=1)).pow(2).sum(dim=1).mean()
    return kl + retrieval


# --------------------------------------------------------------------------------------------
# The teacher's side: stage maps of MTL-net, cached targets


def teacher_stage_modules(teacher: nn.Module) -> list[nn.Module]:
    """The modules whose outputs are the teacher's stages: MTL-net's two max-pooling layers (the end
    of each conv block). Other nets: ``ValueError`` naming the model."""
    conv = getattr(teacher, "conv", None)
    pools = [m for m in conv.modules() if isinstance(m, nn.MaxPool2d)] if conv is not None else []
    if len(pools) < 1:
        raise ValueError(f"smldist: teacher {type(teacher).__name__} has no conv stages (MTL-net's `conv` "
                         "with max-pooling); stage distillation needs an MTL-net teacher")
    return pools


@torch.no_grad()
def teacher_outputs(teacher: nn.Module, X: torch.Tensor, batch_size: int = 512):
    """``(logits tuple of (N, c_k), [stage maps (N, C*H, T)], features (N, F))`` of a frozen teacher on
    windows ``X`` ``(N, 1, 3, L)`` in the axes layout (converted for a faithful MTL-net)."""

    layout = getattr(teacher, "layout", "axes")
    grabbed: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: grabbed.append(out))
             for m in teacher_stage_modules(teacher)]  # fmt: skip
    teacher.eval()
    logits, stages, feats = [], [], []
    try:
        for s in range(0, len(X), batch_size):
            xb = to_layout(X[s:s + batch_size], "axes", layout)
            grabbed.clear()
            f = teacher.features(xb)
            logits.append(tuple(h(f) for h in teacher.heads))
            stages.append([g.flatten(1, 2) for g in grabbed])  # (N, C, H, T) -> (N, C*H, T)
            feats.append(f)
    finally:
        for h in hooks:
            h.remove()
    n_heads, n_stages = len(logits[0]), len(stages[0])
    return (tuple(torch.cat([b[k] for b in logits]) for k in range(n_heads)),
            [torch.cat([b[k] for b in stages]) for k in range(n_stages)], torch.cat(feats))  # fmt: skip


def stage_pairs(n_student: int, n_teacher: int) -> list[int]:
    """Student stage index (0-based) paired with each teacher stage: the same relative depth,
    ``round((j + 1) * S / K) - 1`` for teacher stage ``j`` of ``K`` and ``S`` student stages."""
    return [max(0, min(n_student - 1, round((j + 1) * n_student / n_teacher) - 1)) for j in range(n_teacher)]


def teacher_targets(teacher: nn.Module, X: torch.Tensor, student: nn.Module, batch_size: int = 512) -> dict:
    """What the student learns from, for windows ``X``: ``{"logits": (z1, z2), "stages": [maps matched to
    the paired student stage's length], "features": (N, F_t), "pairs": [student stage per teacher stage]}``."""
    logits, stages, feats = teacher_outputs(teacher, X, batch_size)
    with torch.no_grad():
        lengths = [m.shape[-1] for m in student.stages(X[:2])]
    pairs = stage_pairs(len(lengths), len(stages))
    return {"logits": logits, "features": feats, "pairs": pairs,
            "stages": [match_length(t, lengths[p]) for t, p in zip(stages, pairs)]}  # fmt: skip


class DistillHeads(nn.Module):
    """The trainable parts of distillation that are NOT deployed: one 1x1 projection per stage pair
    (``Identity`` where channels agree) and the student's Hopfield layer (``F_s -> F_t``)."""

    def __init__(self, student: nn.Module, teacher_stage_channels: Sequence[int], pairs: Sequence[int],
                 teacher_dim: int, hidden: int = 32):  # fmt: skip
        super().__init__()
        cs = student.stage_channels
        self.projections = nn.ModuleList(
            nn.Identity() if cs[p] == ct else nn.Conv1d(cs[p], ct, 1) for p, ct in zip(pairs, teacher_stage_channels)
        )
        self.hopfield = HopfieldLayer(student.feature_dim, hidden, teacher_dim)


# --------------------------------------------------------------------------------------------
# Training a student


@dataclass
class SMLDistConfig:
    """One student run. ``levels``: subset of :data:`LEVELS` (empty = plain multitask CE).
    ``epochs`` defaults to the run mode's; ``alpha``, ``lr``, ``batch_size``, ``temperature`` as in
    :class:`engine.TrainConfig`. ``lam_*`` weight the three levels; ``memory_beta`` is the teacher's
    inverse temperature ``beta_T``; ``memory_hidden`` the Hopfield layer's ``d_hidden``. Untuned: the
    abstract gives no values."""

    student: str = "mobilenet_v3s"
    student_options: dict = field(default_factory=dict)
    levels: tuple = ()
    epochs: int = field(default_factory=lambda: get_mode().epochs)
    batch_size: int = 64
    lr: float = 1e-3
    alpha: float = 0.5
    temperature: float = 3.0
    lam_logits: float = 0.5
    lam_stage: float = 1.0
    lam_memory: float = 1.0
    memory_beta: float = 8.0
    memory_hidden: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        self.levels = tuple(self.levels)
        unknown = [lv for lv in self.levels if lv not in LEVELS]
        if unknown or len(set(self.levels)) != len(self.levels):
            raise ValueError(f"SMLDistConfig.levels must be distinct entries of {LEVELS}, got {self.levels!r}")
        for name in ("lr", "alpha", "temperature", "lam_logits", "lam_stage", "lam_memory", "memory_beta"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
                raise ValueError(f"SMLDistConfig.{name} must be a finite number >= 0, got {v!r}")
        if not (isinstance(self.epochs, int) and self.epochs >= 1 and isinstance(self.batch_size, int)
                and self.batch_size >= 2):
            raise ValueError(f"SMLDistConfig: epochs must be >= 1 and batch_size >= 2, got {self.epochs}, "
                             f"{self.batch_size}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self) | {"levels": list(self.levels)}


@dataclass
class StudentResult:
    """A trained student: best-epoch weights (selected on VALIDATION), history, test metrics."""

    state_dict: dict
    best_epoch: int
    history: pd.DataFrame
    metrics: dict  # (split, task) -> classification_metrics without the confusion matrix
    train_seconds: float
    n_params: int
    config: SMLDistConfig


def _batches(n: int, batch_size: int) -> list[tuple[int, int]]:
    # as the engine: the last partial batch counts, but a lone last window joins the batch before it
    # (the students have BatchNorm, and memory distillation needs >= 2 windows)
    bounds = [(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds = bounds[:-2] + [(bounds[-2][0], n)]
    return bounds


def _scores(model: nn.Module, X, y1, y2, idx, n_classes) -> dict:
    z1, z2 = predict(model, X[idx], device="cpu")
    out = {}
    for k, (z, y, c) in enumerate(((z1, y1, n_classes[0]), (z2, y2, n_classes[1])), start=1):
        m = classification_metrics(np.asarray(y[idx]), z.argmax(1), n_classes=c)
        m.pop("confusion")
        out[k] = m
    return out


def fit_student(X, y1, y2, fit_idx, val_idx, test_idx, cfg: SMLDistConfig, teacher: nn.Module | None = None,
                n_classes: tuple[int, int] | None = None, targets: dict | None = None) -> StudentResult:  # fmt: skip
    """Train ``cfg.student`` on ``X[fit_idx]`` (``(N, 1, 3, L)`` float32, axes layout; labels ``y1``,
    ``y2`` ``(N,)``), select the epoch with the best mean validation accuracy of the two tasks
    (strict ``>``, weights cloned), and score val and test.

    Like ``engine.fit``: seeded model init and batch order (``torch.randperm`` with a generator of
    ``cfg.seed``), Adam (``engine.make_optimizer``), selection on validation only, and a non-finite
    training loss stops the run with ``FloatingPointError``. ``teacher`` (frozen MTL-net) is needed
    when ``cfg.levels`` is not empty; ``targets`` = :func:`teacher_targets` on ``X[fit_idx]`` can be
    passed to share them between runs (they must be for this student architecture's stages).
    """
    X = torch.as_tensor(X, dtype=torch.float32)
    y1, y2 = torch.as_tensor(np.asarray(y1), dtype=torch.long), torch.as_tensor(np.asarray(y2), dtype=torch.long)
    fit_idx, val_idx, test_idx = (torch.as_tensor(np.asarray(i), dtype=torch.long) for i in (fit_idx, val_idx, test_idx))
    if n_classes is None:
        n_classes = (int(y1.max()) + 1, int(y2.max()) + 1)
    if cfg.levels and teacher is None and targets is None:
        raise ValueError(f"fit_student: levels {cfg.levels} need a teacher (or its targets)")
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    student = build_model(cfg.student, tuple(n_classes), **cfg.student_options)
    params = list(student.parameters())
    heads = None
    if cfg.levels:
        if targets is None:
            targets = teacher_targets(teacher, X[fit_idx], student)
        if len(targets["logits"][0]) != len(fit_idx):
            raise ValueError("fit_student: targets must hold the teacher's outputs on X[fit_idx]")
        heads = DistillHeads(student, [t.shape[1] for t in targets["stages"]], targets["pairs"],
                             targets["features"].shape[1], cfg.memory_hidden)  # fmt: skip
        params += list(heads.parameters())
    optimizer = make_optimizer(params, cfg.lr, torch.device("cpu"))
    best = (-math.inf, 0, None)
    rows, seconds, n = [], 0.0, len(fit_idx)
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        student.train()
        sums = dict.fromkeys(("loss", "ce", "logits", "stage", "memory"), 0.0)
        order = torch.randperm(n, generator=gen)
        for s, e in _batches(n, cfg.batch_size):
            pos = order[s:e]  # positions in fit_idx (and in the cached targets)
            idx = fit_idx[pos]
            xb, t1, t2 = X[idx], y1[idx], y2[idx]
            (z1, z2), maps, feats = student.forward_with_stages(xb)
            ce1, ce2 = F.cross_entropy(z1, t1), F.cross_entropy(z2, t2)
            terms = {"ce": cfg.alpha * ce1 + (1 - cfg.alpha) * ce2}
            if "logits" in cfg.levels:
                tz1, tz2 = (z[pos] for z in targets["logits"])
                terms["logits"] = cfg.lam_logits * (cfg.alpha * logits_loss(z1, tz1, t1, cfg.temperature)
                                                    + (1 - cfg.alpha) * logits_loss(z2, tz2, t2, cfg.temperature))
            if "stage" in cfg.levels:
                terms["stage"] = cfg.lam_stage * stage_loss([maps[p] for p in targets["pairs"]],
                                                            [t[pos] for t in targets["stages"]], heads.projections)
            if "memory" in cfg.levels:
                terms["memory"] = cfg.lam_memory * memory_loss(feats, targets["features"][pos], heads.hopfield,
                                                               cfg.memory_beta)
            loss = sum(terms.values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            bs = float(len(pos))
            sums["loss"] += float(loss.detach()) * bs
            for k, v in terms.items():
                sums[k] += float(v.detach()) * bs
        if not math.isfinite(sums["loss"]):
            raise FloatingPointError(
                f"smldist student {cfg.student} levels {cfg.levels} seed {cfg.seed} epoch {epoch}: the training "
                f"loss became {sums['loss']} (non-finite); check the data, lr={cfg.lr:g} and the level weights")
        val = _scores(student, X, y1, y2, val_idx, n_classes)
        score = 0.5 * (val[1]["accuracy"] + val[2]["accuracy"])
        if score > best[0]:
            best = (score, epoch, {k: v.detach().clone() for k, v in student.state_dict().items()})
        seconds += time.perf_counter() - t0
        rows.append({"epoch": epoch, **{f"train_{k}": v / n for k, v in sums.items()},
                     "val_acc_task1": val[1]["accuracy"], "val_acc_task2": val[2]["accuracy"],
                     "val_acc_mean": score})  # fmt: skip
    student.load_state_dict(best[2])
    metrics = {}
    for split, idx in (("val", val_idx), ("test", test_idx)):
        if len(idx):
            for task, m in _scores(student, X, y1, y2, idx, n_classes).items():
                metrics[(split, task)] = m
    return StudentResult(best[2], best[1], pd.DataFrame(rows), metrics, seconds, count_parameters(student), cfg)


# --------------------------------------------------------------------------------------------
# The ablation: teacher -> each student x each combination of levels, JSON records


@dataclass
class Ablation:
    """The grid of ``configs/smldist.yaml``: ``datasets`` x ``protocols`` x ``students`` x
    ``combinations`` (names of :data:`COMBINATIONS`) x ``seeds``, fold 0.

    ``students`` maps a name to :class:`SMLDistConfig` fields (``student``, ``student_options``, ...)
    and optionally its own ``combinations``. ``config``: overrides for every student run (e.g.
    ``epochs``; default the mode's). ``teacher``: the MTL-net variant distilled from. ``export``: also
    export every trained net (ONNX fp32 + int8, :func:`export.deployment_report`) into its record.
    ``modes`` maps a mode name to overrides of ``datasets``, ``protocols``, ``students``,
    ``combinations``, ``seeds``, ``config`` (demo keeps the grid small). ``seeds: None`` = the mode's."""

    name: str = "smldist"
    datasets: list = field(default_factory=lambda: ["sleepsim", "wisdm"])
    protocols: list = field(default_factory=lambda: ["paper", "subject"])
    students: dict = field(default_factory=lambda: {"mobilenet_v3s": {"student": "mobilenet_v3s"}})
    combinations: list = field(default_factory=lambda: list(COMBINATIONS))
    seeds: list | None = None
    teacher: str = "mtlnet_corrected"
    config: dict = field(default_factory=dict)
    export: bool = True
    calibration_windows: int = 256
    modes: dict = field(default_factory=dict)

    def for_mode(self, mode: str) -> Ablation:
        """This grid with the overrides of ``modes[mode]`` applied."""
        over = dict(self.modes.get(mode) or {})
        bad = sorted(set(over) - {"datasets", "protocols", "students", "combinations", "seeds", "config"})
        if bad:
            raise ValueError(f"ablation {self.name}: modes.{mode} may not override {bad}")
        return dataclasses.replace(self, **over, modes={})

    def jobs(self) -> list[tuple[str, str, dict]]:
        """``(student name, combination, SMLDistConfig fields)`` of every student run of one seed."""
        out = []
        for name, opts in self.students.items():
            opts = dict(opts)
            combos = opts.pop("combinations", self.combinations)
            out += [(name, c, opts) for c in combos]
        return out


def load_ablation(path: str | Path) -> Ablation:
    """Read an :class:`Ablation` from YAML; unknown keys or combinations raise ``ValueError`` naming them."""

    path = Path(path)
    raw = yaml.safe_load(path.read_text()) or {}
    unknown = sorted(set(raw) - {f.name for f in dataclasses.fields(Ablation)} - {"description"})
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}")
    raw.pop("description", None)
    abl = Ablation(**raw)
    for variant in (abl, *(abl.for_mode(m) for m in abl.modes)):
        bad = [c for _, c, _ in variant.jobs() if c not in COMBINATIONS]
        if bad:
            raise ValueError(f"{path}: unknown combination(s) {sorted(set(bad))}; choose from {list(COMBINATIONS)}")
    return abl


def _run_id(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _teacher(prep, fit_idx, val_idx, test_idx, model: str, mode, seed: int):
    """The Smooth-Distill EMA teacher of this split and fold (trained once, then loaded from checkpoints/)."""

    cfg = TrainConfig.for_mode(mode, method="smooth_distill", model=model, seed=seed, device="cpu")
    layout = build_model(model, (2, 2)).layout
    data = prep.windows
    if layout != "axes":  # the faithful MTL-net is trained on the authors' layout

        data = (to_layout(data.X, "axes", layout), data.y1, data.y2)
    ck = fit_or_load(project_root() / "checkpoints" / "smldist", data, fit_idx, val_idx, test_idx, cfg,
                     data_options=prep.options, name=f"teacher_{model}_{mode.name}", progress=False,
                     n_classes=prep.windows.n_classes)  # fmt: skip
    net = build_model(model, prep.windows.n_classes, window_length=prep.windows.X.shape[-1])
    net.load_state_dict(ck.state_dicts["teacher"])
    return net.eval().requires_grad_(False), ck


def load_teacher(dataset: str, protocol: str = "paper", mode: str | None = None, model: str = "mtlnet_corrected"):
    """``(teacher, prepared, (fit_idx, val_idx, test_idx))`` for a dataset and protocol (fold 0), the teacher
    trained as in :func:`run_ablation` (so after a run it is loaded from ``checkpoints/``, not trained)."""

    m = get_mode(mode)
    prep = prepare(dataset, protocol=protocol, mode=m.name)
    fit_idx, val_idx = (np.asarray(i) for i in prep.split.folds[0])
    test_idx = np.asarray(prep.split.test)
    teacher, _ = _teacher(prep, fit_idx, val_idx, test_idx, model, m, seed=0)
    return teacher, prep, (fit_idx, val_idx, test_idx)


def deployment_table(records: Sequence[dict], mean_over_seeds: bool = False) -> pd.DataFrame:
    """One row per exported net and precision (records with ``deployment``): dataset, protocol, model
    (``student/combination`` or ``MTL-net teacher``), precision, parameters, kB on disk, FLOPs per window,
    latency (ms, batch 1, one thread), test accuracy / macro-F1 of both tasks, max |delta| vs torch, and
    ``val acc task 1``: the fp32 network's validation accuracy (the number to choose a student by).
    ``mean_over_seeds``: one row per dataset, protocol, model and precision, means over the seeds, with
    ``seeds``."""
    rows = []
    for r in records:
        s = r["spec"]
        name = "MTL-net teacher" if s["student"] == "teacher" else f"{s['student']} ({s['combination']})"
        val = (r.get("metrics") or {}).get("val_task1", {}).get("accuracy", np.nan)
        for d in r.get("deployment", []):
            rows.append({"dataset": s["dataset"], "protocol": s["protocol"], "model": name,
                         "precision": d["precision"], "params": d["params"], "kB": d["file_bytes"] / 1000,
                         "kFLOPs": d["flops"] / 1000, "latency ms": d["latency_ms"],
                         "acc task 1": d["acc_task1"], "F1 task 1": d["f1_task1"],
                         "acc task 2": d["acc_task2"], "F1 task 2": d["f1_task2"],
                         "max |delta|": d["max_abs_diff"], "val acc task 1": val})  # fmt: skip
    df = pd.DataFrame(rows)
    if not mean_over_seeds or df.empty:
        return df
    keys = ["dataset", "protocol", "model", "precision"]
    out = df.groupby(keys, sort=False).mean(numeric_only=True)
    out["seeds"] = df.groupby(keys, sort=False).size()
    out["params"] = out["params"].astype(int)
    return out.reset_index()


def _scores_of(net: nn.Module, w, idx_by_split: dict) -> dict:

    metrics = {}
    for split, idx in idx_by_split.items():
        z = predict(net, to_layout(w.X[idx], "axes", getattr(net, "layout", "axes")), device="cpu")
        for t, (zk, y) in enumerate(zip(z, (w.y1, w.y2)), start=1):
            mm = classification_metrics(np.asarray(y[idx]), zk.argmax(1), n_classes=w.n_classes[t - 1])
            mm.pop("confusion")
            metrics[f"{split}_task{t}"] = mm
    return metrics


def _deploy(net: nn.Module, name: str, w, calib_idx, test_idx) -> list[dict]:


    X = to_layout(w.X, "axes", getattr(net, "layout", "axes"))
    with tempfile.TemporaryDirectory() as folder:
        return export.deployment_report(net, name, folder, X[calib_idx], X[test_idx],
                                        (w.y1[test_idx], w.y2[test_idx]), window_length=w.X.shape[-1])  # fmt: skip


def run_ablation(path: str | Path | Ablation, mode: str | None = None, results: str | Path | None = None,
                 progress: bool = True) -> list[dict]:  # fmt: skip
    """Run the ablation ``path`` (YAML or :class:`Ablation`) in ``mode``; return this mode's records.

    Per dataset x protocol: prepare the windows (``pipeline.prepare``, fold 0), train or load the
    teacher (:func:`_teacher`), then every student x combination x seed (:func:`fit_student`). Each
    finished run is one JSON record ``<results>/<name>/runs/<run_id>.json`` written atomically
    (``fileio.atomic_write_json``) with ``provenance.provenance()``; ``run_id`` hashes the run's whole
    spec, so a run whose record exists is skipped (resumable) and a changed setting is a new run.
    The teacher gets a record too (``student = "teacher"``). With ``export``, a record also holds
    ``deployment``: the fp32 and int8 rows of :func:`export.deployment_report` (int8 calibrated on
    ``calibration_windows`` fit windows drawn with the seed; measured on the test windows).
    ``results`` defaults to ``config.results_dir()``.
    """

    abl = load_ablation(path) if not isinstance(path, Ablation) else path
    m = get_mode(mode)
    abl = abl.for_mode(m.name)
    seeds = abl.seeds if abl.seeds is not None else list(range(m.n_seeds))
    runs_dir = Path(results or results_dir()) / abl.name / "runs"
    records = []
    for dataset in abl.datasets:
        for protocol in abl.protocols:
            prep = prepare(dataset, protocol=protocol, mode=m.name)
            w, split = prep.windows, prep.split
            fit_idx, val_idx = (np.asarray(i) for i in split.folds[0])
            test_idx = np.asarray(split.test)
            data_id = {"dataset": dataset, "protocol": protocol, "mode": m.to_dict(), "fold": 0,
                       "n_fit": len(fit_idx), "n_val": len(val_idx), "n_test": len(test_idx)}  # fmt: skip
            prov_data = {"dataset": dataset, "protocol": protocol, "n_windows": len(w)}
            teacher, ck, targets_cache = None, None, {}
            X = torch.as_tensor(w.X)
            for seed in seeds:
                calib_idx = np.sort(np.random.default_rng(seed).choice(
                    fit_idx, size=min(abl.calibration_windows, len(fit_idx)), replace=False))
                for student_key, combo, opts in [("teacher", None, {})] + abl.jobs():
                    if student_key == "teacher":
                        cfg = None
                        identity = {**data_id, "student": "teacher", "model": abl.teacher, "seed": 0,
                                    "export": abl.export}  # fmt: skip
                    else:
                        cfg = SMLDistConfig(**{"epochs": m.epochs, **abl.config, **opts,
                                               "levels": COMBINATIONS[combo], "seed": seed})  # fmt: skip
                        identity = {**data_id, "student": student_key, "combination": combo,
                                    "teacher": abl.teacher, "config": cfg.to_dict(), "export": abl.export}
                    run_id = _run_id(identity)
                    out = runs_dir / f"{run_id}.json"
                    if any(r["run_id"] == run_id for r in records):  # the teacher: one record per split
                        continue
                    if out.exists():
                        records.append(json.loads(out.read_text()))
                        continue
                    if teacher is None:
                        teacher, ck = _teacher(prep, fit_idx, val_idx, test_idx, abl.teacher, m, seed=0)
                    if progress:
                        print(f"smldist {dataset}/{protocol} {student_key} {combo or ''} seed {seed}", flush=True)
                    if cfg is None:
                        net = teacher
                        rec = {"params": count_parameters(teacher),
                               "best_epoch": ck.metadata["best_epochs"].get("teacher"),
                               "train_seconds": ck.metadata.get("train_seconds"), "history": []}  # fmt: skip
                    else:
                        arch = json.dumps(opts, sort_keys=True, default=str)
                        if cfg.levels and arch not in targets_cache:
                            probe = build_model(cfg.student, w.n_classes, **cfg.student_options)
                            targets_cache[arch] = teacher_targets(teacher, X[fit_idx], probe)
                        res = fit_student(w.X, w.y1, w.y2, fit_idx, val_idx, test_idx, cfg, teacher,
                                          w.n_classes, targets_cache.get(arch))  # fmt: skip
                        net = build_model(cfg.student, w.n_classes, **cfg.student_options)
                        net.load_state_dict(res.state_dict)
                        rec = {"params": res.n_params, "best_epoch": res.best_epoch,
                               "train_seconds": res.train_seconds,
                               "history": res.history.to_dict(orient="records")}  # fmt: skip
                    rec["metrics"] = _scores_of(net.eval(), w, {"val": val_idx, "test": test_idx})
                    if abl.export:
                        rec["deployment"] = _deploy(net, student_key, w, calib_idx, test_idx)
                    rec = {"schema": 1, "run_id": run_id, "spec": identity, **rec,
                           "provenance": provenance.provenance(mode=m.name, data=prov_data, device="cpu")}
                    atomic_write_json(out, rec)
                    records.append(rec)
    return records


def read_records(path: str | Path | Ablation, mode: str | None = None, results: str | Path | None = None) -> list[dict]:
    """The committed records of the ablation ``path`` in ``mode`` (``results/<name>/runs``), without
    training anything or touching data: what a chapter shows first. Only the grid's datasets and
    protocols of that mode; sorted by dataset, protocol, student, combination, seed."""
    abl = (load_ablation(path) if not isinstance(path, Ablation) else path).for_mode(get_mode(mode).name)
    runs_dir = Path(results or results_dir()) / abl.name / "runs"
    out = []
    for f in sorted(runs_dir.glob("*.json")):
        rec = json.loads(f.read_text())
        s = rec.get("spec", {})
        if (s.get("mode", {}).get("name") == get_mode(mode).name and s.get("dataset") in abl.datasets
                and s.get("protocol") in abl.protocols):
            out.append(rec)
    key = lambda r: (r["spec"]["dataset"], r["spec"]["protocol"], r["spec"]["student"],  # noqa: E731
                     r["spec"].get("combination") or "", r["spec"].get("config", {}).get("seed", 0))
    return sorted(out, key=key)


def _name(spec: dict) -> str:
    return "MTL-net teacher" if spec["student"] == "teacher" else f"{spec['student']} ({spec['combination']})"


def int8_change(records: Sequence[dict], task: int = 1) -> pd.DataFrame:
    """What int8 quantisation changes in test accuracy, per dataset x protocol x model (points), from
    the discordant test windows of every seed's fp32 and int8 export, pooled over seeds
    (:func:`stats.paired_proportion_change`: Wald interval, McNemar's exact p). Records made before
    the discordant counts were stored (no ``vs_fp32``) are left out. Columns ``seeds, windows,
    fp32 only, int8 only, change, ci_low, ci_high, p (McNemar)``."""
    pooled: dict = {}
    for r in records:
        s = r["spec"]
        for d in r.get("deployment", []):
            v = (d.get("vs_fp32") or {}).get(f"task{task}")
            if d["precision"] != "int8" or v is None:
                continue
            key = (s["dataset"], s["protocol"], _name(s))
            acc = pooled.setdefault(key, {"seeds": 0, "windows": 0, "fp32 only": 0, "int8 only": 0})
            acc["seeds"] += 1
            acc["windows"] += v["n"]
            acc["fp32 only"] += v["fp32_only"]
            acc["int8 only"] += v["int8_only"]
    rows = []
    for key, acc in pooled.items():
        c = stats.paired_proportion_change(acc["fp32 only"], acc["int8 only"], acc["windows"])
        rows.append({"dataset": key[0], "protocol": key[1], "model": key[2], **acc, "change": c["change"],
                     "ci_low": c["ci_low"], "ci_high": c["ci_high"], "p (McNemar)": c["p_mcnemar"]})
    cols = ["dataset", "protocol", "model", "seeds", "windows", "fp32 only", "int8 only", "change", "ci_low",
            "ci_high", "p (McNemar)"]
    return pd.DataFrame(rows, columns=cols).set_index(["dataset", "protocol", "model"]).sort_index()


def chosen_on_validation(records: Sequence[dict], task: int = 1) -> pd.DataFrame:
    """The student (model and combination of levels) to deploy, per dataset x protocol, chosen by its
    mean **validation** accuracy on ``task`` over seeds (fp32, torch): the test windows play no part
    in the choice. Columns ``model, seeds, val acc`` and the chosen student's mean test accuracy in
    fp32 and int8 (ONNX) for reporting."""
    rows = []
    for r in records:
        s = r["spec"]
        if s["student"] == "teacher":
            continue
        dep = {d["precision"]: d for d in r.get("deployment", [])}
        rows.append({"dataset": s["dataset"], "protocol": s["protocol"], "model": _name(s),
                     "val acc": r["metrics"][f"val_task{task}"]["accuracy"],
                     "test acc fp32": dep.get("fp32", {}).get(f"acc_task{task}", np.nan),
                     "test acc int8": dep.get("int8", {}).get(f"acc_task{task}", np.nan),
                     "kB int8": dep.get("int8", {}).get("file_bytes", np.nan) / 1000})
    if not rows:
        return pd.DataFrame(columns=["model", "seeds", "val acc", "test acc fp32", "test acc int8", "kB int8"])
    df = pd.DataFrame(rows)
    means = df.groupby(["dataset", "protocol", "model"]).agg(
        seeds=("val acc", "size"), **{k: (k, "mean") for k in ("val acc", "test acc fp32", "test acc int8", "kB int8")})
    best = means.reset_index().sort_values("val acc", ascending=False, kind="stable").groupby(
        ["dataset", "protocol"], sort=True).head(1)
    return best.set_index(["dataset", "protocol"]).sort_index()


def ablation_table(records: Sequence[dict]) -> pd.DataFrame:
    """One row per dataset / protocol / student / combination: mean over seeds of test accuracy and
    macro-F1 (percent) of both tasks, parameters and the number of seeds."""
    rows = []
    for r in records:
        s = r["spec"]
        rows.append({"dataset": s["dataset"], "protocol": s["protocol"],
                     "student": "MTL-net teacher" if s["student"] == "teacher" else s["student"],
                     "levels": s.get("combination", "-"), "params": r["params"],
                     "acc task 1": r["metrics"]["test_task1"]["accuracy"],
                     "F1 task 1": r["metrics"]["test_task1"]["macro_f1"],
                     "acc task 2": r["metrics"]["test_task2"]["accuracy"],
                     "F1 task 2": r["metrics"]["test_task2"]["macro_f1"]})  # fmt: skip
    df = pd.DataFrame(rows)
    keys = ["dataset", "protocol", "student", "levels"]
    out = df.groupby(keys, sort=False).mean(numeric_only=True)
    out["seeds"] = df.groupby(keys, sort=False).size()
    out["params"] = out["params"].astype(int)
    return out


__all__ = [
    "COMBINATIONS", "LEVELS", "Ablation", "DistillHeads", "HopfieldLayer", "SMLDistConfig", "StudentResult",
    "ablation_table", "chosen_on_validation", "read_records", "conditional_target", "int8_change", "deployment_table", "load_teacher", "fit_student", "hopfield_update", "load_ablation", "logits_loss",
    "match_length", "memory_loss", "run_ablation", "stage_loss", "stage_pairs", "teacher_outputs",
    "teacher_targets",
]  # fmt: skip

