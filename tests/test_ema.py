"""The EMA teacher: numbers against torch's AveragedModel, no gradients, buffer policies, warm-up."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from smoothdistill_lib.ema import EMATeacher, averaged_model_reference


def _train_steps(student, callbacks, steps: int = 5, seed: int = 0):
    """Adam steps on random batches; after each step call every callback (the EMA updates)."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(student.parameters(), lr=1e-2)
    for _ in range(steps):
        x = torch.randn(8, 1, 3, 12, generator=g)
        y = torch.randint(0, 4, (8,), generator=g)
        opt.zero_grad()
        nn.functional.cross_entropy(student(x)[0], y).backward()
        opt.step()
        for cb in callbacks:
            cb()


def test_teacher_starts_as_exact_copy_frozen_and_in_eval_mode(tiny_net):
    torch.manual_seed(0)
    student = tiny_net()
    teacher = EMATeacher(student)
    for (k, a), b in zip(student.state_dict().items(), teacher.state_dict().values()):
        assert torch.equal(a, b), k
        assert a.data_ptr() != b.data_ptr()  # a copy, not an alias
    assert not teacher.module.training
    assert all(not p.requires_grad for p in teacher.module.parameters())
    out = teacher(torch.randn(2, 1, 3, 12))
    assert not any(o.requires_grad for o in out)


def test_one_update_is_the_ema_formula(tiny_net):
    torch.manual_seed(0)
    student = tiny_net()
    teacher = EMATeacher(student, decay=0.9)
    init = [p.detach().clone() for p in student.parameters()]
    _train_steps(student, [teacher.update], steps=1)
    for t0, s, t in zip(init, student.parameters(), teacher.module.parameters()):
        torch.testing.assert_close(t, 0.9 * t0 + 0.1 * s.detach())


@pytest.mark.parametrize("buffers", ["copy", "average"])
def test_matches_torch_averaged_model(buffers, tiny_net):
    """Same teacher weights as AveragedModel + get_ema_multi_avg_fn, after it copies at init."""
    torch.manual_seed(0)
    student = tiny_net(batchnorm=True)
    ours = EMATeacher(student, decay=0.99, buffers=buffers)
    ref = averaged_model_reference(student, decay=0.99, buffers=buffers)
    _train_steps(student, [ours.update, lambda: ref.update_parameters(student)], steps=7)
    for p, q in zip(ours.module.parameters(), ref.module.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    for (k, b), c in zip(ours.module.named_buffers(), ref.module.buffers()):
        if b.is_floating_point():  # AveragedModel also "averages" num_batches_tracked (an int): we copy it
            torch.testing.assert_close(b, c, rtol=0, atol=0, msg=k)
    # and the teacher really differs from the student (it trails it)
    assert not torch.equal(next(ours.module.parameters()), next(student.parameters()))


def test_buffer_policies_on_a_batchnorm_net(tiny_net):
    torch.manual_seed(0)
    student = tiny_net(batchnorm=True)
    teachers = {b: EMATeacher(student, decay=0.9, buffers=b) for b in ("copy", "average", "keep")}
    init_mean = student.body[2].running_mean.clone()
    _train_steps(student, [t.update for t in teachers.values()], steps=3)
    s_mean = student.body[2].running_mean
    means = {b: t.module.body[2].running_mean for b, t in teachers.items()}
    assert not torch.equal(s_mean, init_mean)  # BN running stats did move
    assert torch.equal(means["copy"], s_mean)
    assert torch.equal(means["keep"], init_mean)
    # "average" trails the student: strictly between init and student, closer to init at a = 0.9
    assert not torch.equal(means["average"], s_mean) and not torch.equal(means["average"], init_mean)
    d_avg = (means["average"] - init_mean).norm()
    assert 0 < d_avg < (s_mean - init_mean).norm()
    n_tracked = {b: int(t.module.body[2].num_batches_tracked) for b, t in teachers.items()}
    assert n_tracked == {"copy": 3, "average": 3, "keep": 0}


def test_warmup_decay_schedule(tiny_net):
    teacher = EMATeacher(tiny_net(), decay=0.999, warmup=True)
    seen = []
    for _ in range(4):
        seen.append(teacher.current_decay())
        teacher.update()
    assert seen == pytest.approx([1 / 10, 2 / 11, 3 / 12, 4 / 13])
    teacher.num_updates = 10**6
    assert teacher.current_decay() == 0.999
    assert EMATeacher(tiny_net(), decay=0.999).current_decay() == 0.999


def test_bad_arguments_raise_clear_errors(tiny_net):
    with pytest.raises(ValueError, match="decay"):
        EMATeacher(tiny_net(), decay=1.5)
    with pytest.raises(ValueError, match="buffers"):
        EMATeacher(tiny_net(), buffers="mean")
