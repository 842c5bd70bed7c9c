"""Each method's step function: what it optimises, what it leaves alone, and its registry."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from smoothdistill_lib.ema import EMATeacher
from smoothdistill_lib.engine import TrainConfig
from smoothdistill_lib.losses import kd_loss
from smoothdistill_lib.methods import METHODS, get_method


def _batch(seed: int = 0, n: int = 16):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(n, 1, 3, 12, generator=g),
        torch.randint(0, 4, (n,), generator=g),
        torch.randint(0, 3, (n,), generator=g),
    )


def _adam(*models):
    return torch.optim.Adam([p for m in models for p in m.parameters()], lr=1e-2)


def _same(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def _close(a: nn.Module, b: nn.Module) -> None:
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


CFG = TrainConfig(method="multitask", epochs=1, alpha=0.3)


def test_registry_has_the_five_methods():
    assert set(METHODS) == {"singletask", "multitask", "sd_dropout", "born_again", "smooth_distill"}
    assert METHODS["singletask"].single_task and METHODS["smooth_distill"].teacher == "ema"
    assert METHODS["born_again"].stage1 == "multitask"
    with pytest.raises(ValueError, match="unknown method"):
        get_method("distill")


def test_multitask_step_optimises_the_alpha_mix(tiny_net):
    torch.manual_seed(0)
    model = tiny_net()
    twin = copy.deepcopy(model)
    batch = _batch()
    out = METHODS["multitask"].step({"student": model}, _adam(model), None, batch, CFG)
    # the same update done by hand
    opt = _adam(twin)
    z1, z2 = twin(batch[0])
    (0.3 * F.cross_entropy(z1, batch[1]) + 0.7 * F.cross_entropy(z2, batch[2])).backward()
    opt.step()
    assert _same(model, twin)
    assert out["loss"].item() == pytest.approx(0.3 * out["ce1"].item() + 0.7 * out["ce2"].item())
    assert not out["loss"].requires_grad


def test_singletask_nets_are_independent(tiny_net):
    torch.manual_seed(0)
    m1, m2 = tiny_net((4,)), tiny_net((3,))
    solo = copy.deepcopy(m1)
    batch = _batch()
    METHODS["singletask"].step({"task1": m1, "task2": m2}, _adam(m1, m2), None, batch, CFG)
    # net 1 moves exactly as if trained alone on task 1 with plain CE
    opt = _adam(solo)
    F.cross_entropy(solo(batch[0])[0], batch[1]).backward()
    opt.step()
    assert _same(m1, solo)


def test_smooth_distill_first_step_has_zero_kd_then_teacher_trails_by_ema(tiny_net):
    torch.manual_seed(0)
    model = tiny_net()
    twin = copy.deepcopy(model)
    teacher = EMATeacher(model, decay=0.9)
    t_init = [p.clone() for p in teacher.module.parameters()]
    cfg = TrainConfig(method="smooth_distill", epochs=1, ema_decay=0.9)
    batch = _batch()
    out = METHODS["smooth_distill"].step({"student": model}, _adam(model), teacher, batch, cfg)
    # teacher == student at init, so KD is 0 (up to float rounding) and the step is a multitask step
    assert abs(out["kd1"].item()) < 1e-6 and abs(out["kd2"].item()) < 1e-6
    METHODS["multitask"].step({"student": twin}, _adam(twin), None, batch, cfg)
    _close(model, twin)
    for t0, s, t in zip(t_init, model.parameters(), teacher.module.parameters()):
        torch.testing.assert_close(t, 0.9 * t0 + 0.1 * s.detach())
        assert t.grad is None and not t.requires_grad  # the teacher never receives gradients
    # second step: KD is positive and the loss is alpha (CE1 + lam KD1) + (1 - alpha) (CE2 + lam KD2)
    out = METHODS["smooth_distill"].step({"student": model}, _adam(model), teacher, _batch(1), cfg)
    assert out["kd1"].item() > 0
    want = 0.5 * (out["ce1"] + 0.5 * out["kd1"]) + 0.5 * (out["ce2"] + 0.5 * out["kd2"])
    assert out["loss"].item() == pytest.approx(want.item())


def test_born_again_teacher_is_frozen_and_kd_uses_ba_temperature(tiny_net):
    torch.manual_seed(0)
    student, teacher = tiny_net(), tiny_net()
    teacher.eval().requires_grad_(False)
    before = copy.deepcopy(teacher)
    cfg = TrainConfig(method="born_again", epochs=1, ba_temperature=4.0, ba_lam=0.25)
    batch = _batch()
    with torch.no_grad():
        want_kd1 = kd_loss(student(batch[0])[0], teacher(batch[0])[0], 4.0)
    out = METHODS["born_again"].step({"student": student}, _adam(student), teacher, batch, cfg)
    assert out["kd1"].item() == pytest.approx(want_kd1.item())
    assert _same(teacher, before)
    assert all(p.grad is None for p in teacher.parameters())
    want = 0.5 * (out["ce1"] + 0.25 * out["kd1"]) + 0.5 * (out["ce2"] + 0.25 * out["kd2"])
    assert out["loss"].item() == pytest.approx(want.item())


def test_sd_dropout_without_dropout_is_multitask_and_with_dropout_adds_sdd(tiny_net):
    torch.manual_seed(0)
    model = tiny_net()
    twin = copy.deepcopy(model)
    batch = _batch()
    cfg0 = TrainConfig(method="sd_dropout", epochs=1, sdd_dropout=0.0)
    out = METHODS["sd_dropout"].step({"student": model}, _adam(model), None, batch, cfg0)
    assert abs(out["kd1"].item()) < 1e-6  # identical views: no consistency term
    METHODS["multitask"].step({"student": twin}, _adam(twin), None, batch, cfg0)
    _close(model, twin)
    cfg = TrainConfig(method="sd_dropout", epochs=1)  # p = 0.5, T = 2, weight 1
    out = METHODS["sd_dropout"].step({"student": model}, _adam(model), None, batch, cfg)
    assert out["kd1"].item() > 0 and out["kd2"].item() > 0
    want = 0.5 * (out["ce1"] + out["kd1"]) + 0.5 * (out["ce2"] + out["kd2"])
    assert out["loss"].item() == pytest.approx(want.item())
