"""The EMA teacher of Smooth-Distill: a frozen copy of the student whose weights trail the student's.

After every optimizer step, ``theta_T <- a * theta_T + (1 - a) * theta_S`` with ``a = 0.999``
The teacher starts as an exact copy of the student (the authors'
``load_state_dict(student.state_dict())``), is in eval mode, has ``requires_grad=False`` and runs
under ``no_grad``.

The update is ONE ``torch._foreach_lerp_`` over parameter lists built once: the same kernel that
``torch.optim.swa_utils.get_ema_multi_avg_fn`` uses, without ``AveragedModel.update_parameters``'
per-call list building and its ``n_averaged`` checks, which read a device tensor on the host (a GPU
sync every step). ``tests/test_ema.py`` checks the numbers against ``AveragedModel``;
``benchmarks/bench_step.py`` measures both.

Aligning with ``AveragedModel``: its first ``update_parameters`` call only copies. The authors'
teacher *is* that copy at initialisation, so ``AveragedModel(student, multi_avg_fn=
get_ema_multi_avg_fn(a)); avg.update_parameters(student)`` right after building the student gives
the same sequence of teacher weights as :class:`EMATeacher` (see :func:`averaged_model_reference`).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

BUFFER_POLICIES = ("copy", "average", "keep")


class EMATeacher:
    """EMA copy of ``student``; call :meth:`update` after each optimizer step.

    ``buffers`` (BatchNorm running statistics; MTL-net as released has none):

    - ``"copy"`` (default): the teacher's buffers are copied from the student at every update
      (``AveragedModel(use_buffers=False)`` does the same).
    - ``"average"``: floating-point buffers are averaged like the weights
      (``AveragedModel(use_buffers=True)``); integer buffers (``num_batches_tracked``) are copied.
    - ``"keep"``: buffers are never touched - literally the authors' ``update_ema_teacher``, which
      loops over ``named_parameters()`` only. With BN this leaves the teacher's running stats at
      their initial values (mean 0, var 1), so it only makes sense for BN-free nets.

    ``warmup=True`` uses ``a_t = min(a, (1 + t) / (10 + t))`` at the ``t``-th update (t = 0, 1, ...;
    the ``num_updates`` rule of TensorFlow's ``ExponentialMovingAverage``), so early teachers follow
    the quickly-improving student instead of averaging in the random initialisation for ~1000 steps.
    Not in the paper; off by default.

    ``teacher(x)`` runs the frozen copy under ``no_grad`` and returns its tuple of logits.
    """

    def __init__(self, student: nn.Module, decay: float = 0.999, buffers: str = "copy", warmup: bool = False):
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMATeacher: decay must be in [0, 1], got {decay}")
        if buffers not in BUFFER_POLICIES:
            raise ValueError(f"EMATeacher: buffers must be one of {BUFFER_POLICIES}, got {buffers!r}")
        self.decay, self.buffers, self.warmup = float(decay), buffers, bool(warmup)
        self.num_updates = 0  # a host-side int: the warm-up decay needs no device read
        self.module = copy.deepcopy(student)  # theta_T(0) = theta_S(0)
        self.module.eval()
        self.module.requires_grad_(False)
        # Lists built once; they alias the live tensors of both models.
        self._t_params = list(self.module.parameters())
        self._s_params = list(student.parameters())
        t_buf, s_buf = list(self.module.buffers()), list(student.buffers())
        float_pairs = [(t, s) for t, s in zip(t_buf, s_buf) if t.is_floating_point()]
        int_pairs = [(t, s) for t, s in zip(t_buf, s_buf) if not t.is_floating_point()]
        self._t_fbuf, self._s_fbuf = [t for t, _ in float_pairs], [s for _, s in float_pairs]
        self._t_ibuf, self._s_ibuf = [t for t, _ in int_pairs], [s for _, s in int_pairs]

    def current_decay(self) -> float:
        """The decay the next :meth:`update` uses."""
        if self.warmup:
            t = self.num_updates
            return min(self.decay, (1.0 + t) / (10.0 + t))
        return self.decay

    @torch.no_grad()
    def update(self) -> None:
        """``theta_T <- a theta_T + (1 - a) theta_S`` in one fused kernel; buffers per the policy."""
        weight = 1.0 - self.current_decay()
        torch._foreach_lerp_(self._t_params, self._s_params, weight)
        if self.buffers == "copy":
            if self._t_fbuf:
                torch._foreach_copy_(self._t_fbuf, self._s_fbuf)
        elif self.buffers == "average" and self._t_fbuf:
            torch._foreach_lerp_(self._t_fbuf, self._s_fbuf, weight)
        if self.buffers != "keep" and self._t_ibuf:
            torch._foreach_copy_(self._t_ibuf, self._s_ibuf)
        self.num_updates += 1

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with torch.no_grad():
            return self.module(x)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()


def averaged_model_reference(
    student: nn.Module, decay: float = 0.999, buffers: str = "copy"
) -> AveragedModel:
    """torch's own EMA, aligned with :class:`EMATeacher` (for tests and the book).

    ``AveragedModel``'s first ``update_parameters`` copies the student; calling it once here makes
    that copy the initial teacher, as the authors do. Then call ``update_parameters(student)``
    after every optimizer step. ``buffers="average"`` maps to ``use_buffers=True``.
    """
    if buffers not in ("copy", "average"):
        raise ValueError(f"averaged_model_reference: buffers must be 'copy' or 'average', got {buffers!r}")
    avg = AveragedModel(student, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=buffers == "average")
    avg.update_parameters(student)
    return avg


def run_scale(n_fit: int, batch_size: int, epochs: int, decay: float) -> dict:
    """The teacher's horizon against the length of a run (one table row; chapters 5, 8 and 9).

    Steps per epoch = ceil(n_fit / batch_size) (the engine keeps the last, smaller batch); the
    horizon is 1 / (1 - decay) steps; after t steps the teacher still holds a weight decay^t of the
    initial network.
    """
    if not 0 <= decay < 1:
        raise ValueError(f"decay must be in [0, 1), got {decay}")
    steps = math.ceil(n_fit / batch_size)
    horizon = 1 / (1 - decay)
    return {"fit windows": n_fit, "batch": batch_size, "EMA decay": decay, "steps/epoch": steps,
            "epochs": epochs, "steps in the run": steps * epochs, "horizon (steps)": horizon,
            "horizon (epochs)": horizon / steps,
            "weight of the initial net in the final teacher": decay ** (steps * epochs)}
