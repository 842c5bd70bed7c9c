"""Losses against hand-written formulas (numpy), plus their symmetry and gradient flow."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from smoothdistill_lib.losses import kd_loss, multitask_ce, sdd_loss


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p || q) summed over classes, averaged over rows (= torch's ``batchmean``)."""
    return float(np.mean(np.sum(p * (np.log(p) - np.log(q)), axis=1)))


@pytest.fixture
def logits():
    g = torch.Generator().manual_seed(0)
    return torch.randn(7, 5, generator=g, dtype=torch.float64), torch.randn(
        7, 5, generator=g, dtype=torch.float64
    )


@pytest.mark.parametrize("T", [1.0, 3.0])
def test_kd_loss_is_T2_times_kl_teacher_student_batchmean(logits, T):
    s, t = logits
    want = T**2 * _kl(_softmax(t.numpy() / T), _softmax(s.numpy() / T))
    assert kd_loss(s, t, T).item() == pytest.approx(want, rel=1e-10)
    # direction matters: KL(teacher || student), not the reverse
    reverse = T**2 * _kl(_softmax(s.numpy() / T), _softmax(t.numpy() / T))
    assert abs(want - reverse) > 1e-3


def test_kd_loss_zero_for_identical_logits_and_teacher_gets_no_gradient(logits):
    s, t = logits
    assert kd_loss(s, s.clone(), 3.0).item() == pytest.approx(0.0, abs=1e-12)
    s, t = s.clone().requires_grad_(True), t.clone().requires_grad_(True)
    kd_loss(s, t, 3.0).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None  # the teacher's logits are detached inside the loss


@pytest.mark.parametrize("T", [1.0, 2.0])
def test_sdd_loss_is_symmetric_kl_without_T2(logits, T):
    a, b = logits
    pa, pb = _softmax(a.numpy() / T), _softmax(b.numpy() / T)
    want = _kl(pb, pa) + _kl(pa, pb)
    assert sdd_loss(a, b, T).item() == pytest.approx(want, rel=1e-10)
    assert sdd_loss(a, b, T).item() == pytest.approx(sdd_loss(b, a, T).item(), rel=1e-12)
    assert sdd_loss(a, a.clone(), T).item() == pytest.approx(0.0, abs=1e-12)


def test_sdd_loss_gradient_flows_through_both_views(logits):
    a, b = (x.clone().requires_grad_(True) for x in logits)
    sdd_loss(a, b, 2.0).backward()
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0


def test_multitask_ce_is_alpha_mix(logits):
    z1, z2 = logits[0], logits[1][:, :3]
    y1, y2 = torch.tensor([0, 1, 2, 3, 4, 0, 1]), torch.tensor([0, 1, 2, 0, 1, 2, 0])

    def ce(z, y):
        p = _softmax(z.numpy())
        return float(-np.mean(np.log(p[np.arange(len(y)), y.numpy()])))

    total, ce1, ce2 = multitask_ce((z1, z2), y1, y2, alpha=0.3)
    assert ce1.item() == pytest.approx(ce(z1, y1), rel=1e-10)
    assert ce2.item() == pytest.approx(ce(z2, y2), rel=1e-10)
    assert total.item() == pytest.approx(0.3 * ce(z1, y1) + 0.7 * ce(z2, y2), rel=1e-10)
