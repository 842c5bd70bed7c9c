"""Losses of the five methods: the CE task mix, Hinton KD and SD-Dropout's symmetric KL.

All take logits ``(N, C)`` and return a scalar tensor. They are thin wrappers over
``torch.nn.functional`` written to match the authors' code exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# SD-Dropout clamps its KL targets at this floor (authors' ``compute_sdd_loss``, utils.py).
SDD_EPS = 1e-8


def multitask_ce(
    logits: tuple[torch.Tensor, torch.Tensor], y1: torch.Tensor, y2: torch.Tensor, alpha: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``alpha * CE1 + (1 - alpha) * CE2`` (paper Eq. 1) and the two CEs (mean over the batch).

    ``logits`` = ``(z1 (N, C1), z2 (N, C2))``; ``y1``, ``y2`` ``(N,)`` int64. Returns
    ``(total, ce1, ce2)``.
    """
    ce1 = F.cross_entropy(logits[0], y1)
    ce2 = F.cross_entropy(logits[1], y2)
    return alpha * ce1 + (1.0 - alpha) * ce2, ce1, ce2


def kd_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 3.0
) -> torch.Tensor:
    """Hinton KD: ``T^2 * KL(softmax(z_T/T) || softmax(z_S/T))``, ``batchmean``, teacher detached.

    ``batchmean`` = sum over classes, mean over the batch (the authors' ``distillation_loss``,
    self_kd_loss.py, including the ``T^2`` factor). Both inputs ``(N, C)``. Zero iff the two
    softened distributions agree.
    """
    log_p_student = F.log_softmax(student_logits / temperature, dim=-1)
    p_teacher = F.softmax(teacher_logits.detach() / temperature, dim=-1)
    return F.kl_div(log_p_student, p_teacher, reduction="batchmean") * temperature**2


def kd_loss_vmappable(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 3.0
) -> torch.Tensor:
    """:func:`kd_loss` without ``F.kl_div``, for use under ``torch.func.vmap`` (:mod:`stack`).

    ``kl_div`` has no vmap batching rule: vmap would loop over the replicas one kernel at a time.
    ``sum_c p_T (log p_T - log p_S)`` is the same KL; it differs from :func:`kd_loss` by float rounding
    only (``tests/test_losses.py``). :func:`kd_loss` stays the engine's, so unstacked runs keep their
    numbers to the last digit.
    """
    log_p_student = F.log_softmax(student_logits / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.detach() / temperature, dim=-1)
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(-1)
    return kl.mean() * temperature**2


def sdd_loss(logits_a: torch.Tensor, logits_b: torch.Tensor, temperature: float = 2.0) -> torch.Tensor:
    """SD-Dropout consistency: ``KL(p_b || p_a) + KL(p_a || p_b)`` at temperature ``T``, ``batchmean``.

    Two dropout views ``(N, C)`` of the same head. Symmetric in its arguments, and NOT detached:
    gradients flow through both views, as in the authors' ``compute_sdd_loss`` (utils.py), whose
    targets are clamped at ``1e-8``. The ``T^2`` factor is NOT included here - the authors apply it
    (with the weight) outside the function; :mod:`methods` does the same.
    """
    log_pa = F.log_softmax(logits_a / temperature, dim=1)
    log_pb = F.log_softmax(logits_b / temperature, dim=1)
    pa, pb = F.softmax(logits_a / temperature, dim=1), F.softmax(logits_b / temperature, dim=1)
    kl_b_a = F.kl_div(log_pa, pb.clamp(min=SDD_EPS), reduction="batchmean")  # KL(p_b || p_a)
    kl_a_b = F.kl_div(log_pb, pa.clamp(min=SDD_EPS), reduction="batchmean")  # KL(p_a || p_b)
    return kl_b_a + kl_a_b
