"""Mixed precision that fits the GPU at hand: which autocast dtype, and a GradScaler where fp16 needs one.

``TrainConfig.precision`` is ``"fp32"`` (default: no autocast), ``"auto"``, ``"bf16"`` or ``"fp16"``;
the older ``TrainConfig.bf16=True`` still means ``"bf16"``. :func:`resolve_precision` turns the
request into what a device does:

- not CUDA (CPU, MPS): ``"fp32"`` whatever was asked (the engine trains those in fp32, as before);
- ``"auto"`` on CUDA: ``"bf16"`` where the GPU computes bf16 natively (compute capability >= 8.0:
  A100, H100, H200, L4, RTX 30xx and later), else ``"fp16"`` (V100 7.0, T4 7.5). bf16 has fp32's
  exponent range, so it needs no loss scaling; fp16 does: :func:`with_grad_scaler` wraps the
  optimizer with ``torch.amp.GradScaler`` (scale the loss, unscale the gradients, skip the step
  whose gradients overflowed, adapt the scale);
- ``"bf16"``/``"fp16"`` on CUDA: as asked.

``engine.fit`` resolves the precision once per run and returns it in ``FitResult.config.precision``,
so a run record names what ran. The logic is tested on CPU by faking the device's capability.
"""

from __future__ import annotations

import contextlib

import torch

PRECISIONS = ("fp32", "auto", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
#: compute capability from which a GPU has native bf16 tensor cores (Ampere)
NATIVE_BF16_CAPABILITY = (8, 0)


def requested(precision: str | bool | None, bf16: bool = False) -> str:
    """The precision asked for: ``precision`` (a name, or a bool from the older ``bf16`` flag),
    where the legacy ``bf16=True`` turns the default ``"fp32"`` into ``"bf16"``."""
    if isinstance(precision, bool) or precision is None:
        precision = "bf16" if precision else "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return "bf16" if bf16 and precision == "fp32" else precision


def native_bf16(device: torch.device | str) -> bool:
    """Whether the CUDA ``device`` computes bf16 natively (compute capability >= 8.0)."""
    device = torch.device(device)
    if device.type != "cuda":
        return False
    if tuple(torch.cuda.get_device_capability(device)) < NATIVE_BF16_CAPABILITY:
        return False
    # including_emulation=False: older GPUs report bf16 "supported" through slow emulation
    return bool(torch.cuda.is_bf16_supported(including_emulation=False))


def resolve_precision(precision: str | bool | None, device: torch.device | str, bf16: bool = False) -> str:
    """What runs on ``device`` for the request (see the module docstring): ``"fp32"``, ``"bf16"`` or
    ``"fp16"``."""
    want = requested(precision, bf16)
    if torch.device(device).type != "cuda":
        return "fp32"
    if want == "auto":
        return "bf16" if native_bf16(device) else "fp16"
    return want


def autocast(x: torch.Tensor, precision: str | bool | None = "fp32"):
    """The autocast context of ``precision`` for the device of ``x``: a no-op for fp32 and off CUDA."""
    p = resolve_precision(precision, x.device)
    if p == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=_DTYPES[p])


class ScaledOptimizer:
    """An optimizer with the ``torch.amp.GradScaler`` that fp16 training needs.

    :meth:`backward_step` is ``scaler.scale(loss).backward(); scaler.step(optimizer);
    scaler.update()`` (a step whose gradients hold inf/NaN is skipped and the scale lowered).
    ``methods._optimise`` calls it in place of ``loss.backward(); optimizer.step()``.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler):
        self.optimizer, self.scaler = optimizer, scaler

    @property
    def param_groups(self):
        return self.optimizer.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def backward_step(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()


def with_grad_scaler(optimizer: torch.optim.Optimizer, precision: str, device: torch.device | str):
    """``optimizer`` wrapped in a :class:`ScaledOptimizer` when ``precision`` (resolved) is fp16 on
    CUDA; otherwise ``optimizer`` itself."""
    if precision == "fp16" and torch.device(device).type == "cuda":
        return ScaledOptimizer(optimizer, torch.amp.GradScaler("cuda"))
    return optimizer


__all__ = ["PRECISIONS", "ScaledOptimizer", "autocast", "native_bf16", "requested", "resolve_precision",
           "with_grad_scaler"]
