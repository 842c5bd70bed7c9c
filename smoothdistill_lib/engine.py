"""The training engine: one loop for all five methods, selection on validation, per-epoch history.

``fit(data, fit_idx, val_idx, test_idx, config) -> FitResult``. The data live on the device as
whole tensors; each epoch draws a seeded ``torch.randperm`` of the fit indices and slices it into
batches of ``batch_size`` (the last, partial batch included). A step is a plain function in
:mod:`methods`; the loop only adds its loss sums and correct counts into one device tensor and reads
it once per epoch (no ``.item()`` per step, so a GPU never waits for the host).

Model selection uses the validation set only: after every epoch the validation accuracy of both
tasks is measured and the weights of the best epoch (mean of the two accuracies, strict ``>``;
``selection="task1"`` is the authors' task-1-only rule) are *cloned*. The authors' baselines kept
``model.state_dict()`` without a copy, which aliases the live weights, so they were in effect tested
at their LAST epoch (book/12_authors_code.ipynb). This engine never does that: ``FitResult.state_dicts``
and all predictions come from the best epoch; ``FitResult.last_state_dicts`` holds the last epoch's
weights only so the book can show what the bug would have tested.

Speed, without changing the math: Adam uses torch's fused kernel where one exists, on CPU the
nets with 2-D convolutions train in channels_last memory format, and the EMA update is one
``_foreach_lerp_`` (``benchmarks/bench_step.py`` measures all three against the authors' loop).

Epochs are numbered from 1. Accuracies are percentages (0-100), like :mod:`metrics` and the paper.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from smoothdistill_lib import amp
from smoothdistill_lib.compute import synchronize
from smoothdistill_lib.config import ModeSettings, get_mode, show_progress
from smoothdistill_lib.ema import BUFFER_POLICIES, EMATeacher
from smoothdistill_lib.errors import MAX_SEED, UserError, whole_number_problem
from smoothdistill_lib.methods import METHODS, Method, autocast, get_method, precision
from smoothdistill_lib.metrics import classification_metrics
from smoothdistill_lib.models import MODELS, build_model
from smoothdistill_lib.pipeline import Prepared, prepare

SELECTIONS = ("mean", "task1")


def mode_settings(mode: str | ModeSettings | Prepared | None = None) -> ModeSettings:
    """The run mode's sizes, resolved in one place: a mode name, a ``config.ModeSettings``, a
    ``pipeline.Prepared`` (the mode its data were prepared in, ``options["mode"]``), or None
    (``$SMOOTHDISTILL_MODE``, else demo; what a plain ``TrainConfig()`` takes)."""
    if isinstance(mode, ModeSettings):
        return mode
    if isinstance(mode, Prepared):
        return mode.settings
    return get_mode(mode)


def _default_epochs() -> int:
    return mode_settings().epochs


def _default_ema_decay() -> float:
    return mode_settings().ema_decay


@dataclass
class TrainConfig:
    """Everything that defines a training run (JSON-able with ``dataclasses.asdict``).

    Defaults are the authors' values: Adam lr 1e-3, batch 64, task weight
    ``alpha`` 0.5; Smooth-Distill ``lam`` 0.5, ``temperature`` 3, ``ema_decay`` 0.999 (full mode); SD-Dropout p 0.5,
    T 2, weight 1; Born-Again T 3 and lam 0.5 (the paper lost its values; Smooth-Distill's mirrored).
    ``epochs`` and ``ema_decay`` default to the run mode's (``SMOOTHDISTILL_MODE``; the paper's 0.999 in
    full mode, a shorter horizon for the shorter quick/demo runs, see ``config.ModeSettings``), fixed
    when the config is made.
    ``selection``: ``"mean"`` of both tasks' validation accuracy (the paper's text) or ``"task1"``
    (the authors' code). ``ema_buffers``/``ema_warmup``: see :class:`~smoothdistill_lib.ema.EMATeacher`.
    ``eval_teacher``: also validate/select/test the EMA teacher (smooth_distill; not timed).
    ``deterministic``: deterministic algorithms on CPU: the same seed and the same number of torch
    threads give identical numbers (some CPU kernels, e.g. batch norm's, reduce in a thread-dependent
    order, so 1 and 2 threads can differ in the last digits; run records store ``threads``).
    ``device``: ``None`` picks cuda > mps > cpu. ``bf16``: bf16 autocast on CUDA only.
    ``precision``: ``"fp32"`` (default) | ``"auto"`` (bf16 on GPUs with native bf16, compute capability
    >= 8.0; fp16 with a GradScaler on older ones) | ``"bf16"`` | ``"fp16"``; CUDA only, CPU/MPS train
    in fp32 (see :mod:`~smoothdistill_lib.amp`). ``fit`` returns the config with the precision it ran.
    ``lam=0`` trains the student as plain multitask while the EMA teacher still tracks it: the
    "EMA weights only" ablation (its numbers are the ``teacher`` predictions).
    ``eval_batch_size`` only batches evaluation (results differ at most by float rounding).
    ``min_steps``: train at least this many optimizer steps per stage; ``epochs`` is raised to
    ``ceil(min_steps / batches per epoch)`` when it is too few (``fit`` returns the config it ran).
    """

    method: str = "smooth_distill"
    model: str = "mtlnet"
    model_options: dict = field(default_factory=dict)
    epochs: int = field(default_factory=_default_epochs)
    batch_size: int = 64
    lr: float = 1e-3
    alpha: float = 0.5
    lam: float = 0.5
    temperature: float = 3.0
    ema_decay: float = field(default_factory=_default_ema_decay)
    ema_buffers: str = "copy"
    ema_warmup: bool = False
    sdd_dropout: float = 0.5
    sdd_temperature: float = 2.0
    sdd_weight: float = 1.0
    ba_temperature: float = 3.0
    ba_lam: float = 0.5
    selection: str = "mean"
    seed: int = 0
    device: str | None = None
    bf16: bool = False
    eval_teacher: bool = True
    deterministic: bool = True
    eval_batch_size: int = 1024
    min_steps: int | None = None
    precision: str = "fp32"

    def __post_init__(self) -> None:
        get_method(self.method)  # raises a clear error naming the choices
        for name in ("lr", "alpha", "lam", "temperature", "ema_decay", "sdd_dropout", "sdd_temperature",
                     "sdd_weight", "ba_temperature", "ba_lam"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise ValueError(f"TrainConfig.{name} must be a finite number, got {v!r}")
        checks = [
            ("epochs", isinstance(self.epochs, int) and not isinstance(self.epochs, bool) and self.epochs >= 1,
             "a positive int"),
            ("batch_size", isinstance(self.batch_size, int) and self.batch_size >= 1, "a positive int"),
            ("eval_batch_size", isinstance(self.eval_batch_size, int) and self.eval_batch_size >= 1,
             "a positive int"),
            ("lr", self.lr > 0, "> 0"),
            ("alpha", 0.0 <= self.alpha <= 1.0, "in [0, 1]"),
            ("lam", self.lam >= 0, ">= 0"),
            ("ba_lam", self.ba_lam >= 0, ">= 0"),
            ("temperature", self.temperature > 0, "> 0"),
            ("ba_temperature", self.ba_temperature > 0, "> 0"),
            ("sdd_temperature", self.sdd_temperature > 0, "> 0"),
            ("sdd_weight", self.sdd_weight >= 0, ">= 0"),
            ("ema_decay", 0.0 <= self.ema_decay <= 1.0, "in [0, 1]"),
            ("sdd_dropout", 0.0 <= self.sdd_dropout < 1.0, "in [0, 1)"),
            ("selection", self.selection in SELECTIONS, f"one of {SELECTIONS}"),
            ("precision", self.precision in amp.PRECISIONS, f"one of {amp.PRECISIONS}"),
            ("ema_buffers", self.ema_buffers in BUFFER_POLICIES, f"one of {BUFFER_POLICIES}"),
            ("model_options", isinstance(self.model_options, dict), "a dict"),
            ("min_steps", self.min_steps is None or (isinstance(self.min_steps, int)
                                                     and not isinstance(self.min_steps, bool)
                                                     and self.min_steps >= 1), "None or a positive int"),
            # the range torch, numpy and scikit-learn all take (a ratio run subsamples with this seed)
            ("seed", whole_number_problem(self.seed, 0, MAX_SEED) is None, f"a whole number from 0 to {MAX_SEED}"),
        ]
        for name, ok, want in checks:
            if not ok:
                raise ValueError(f"TrainConfig.{name} must be {want}, got {getattr(self, name)!r}")

    @classmethod
    def for_mode(cls, mode: str | ModeSettings | Prepared | None = None, **fields) -> TrainConfig:
        """A config sized by the run mode the caller chose, not by ``$SMOOTHDISTILL_MODE``:
        ``TrainConfig.for_mode(prepared, method="multitask")`` trains as many epochs, with the batch
        size, EMA decay and minimum steps of the mode ``prepared`` was made in (``mode``: see
        :func:`mode_settings`). ``fields`` override any of them; given ``epochs``, the mode's
        ``min_steps`` no longer applies (pass ``min_steps`` too to keep it), as with ``train --epochs``.
        The config is the same dataclass (same ``to_dict``, so run ids and checkpoint keys made from
        equal values are equal)."""
        ms = mode_settings(mode)
        sizes = {"epochs": ms.epochs, "batch_size": ms.batch_size, "ema_decay": ms.ema_decay,
                 "min_steps": None if "epochs" in fields else ms.min_steps}
        return cls(**{**sizes, **fields})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class FitResult:
    """What :func:`fit` returns (contract in CONTRIBUTING.md).

    ``history``: one row per epoch (``stage`` 1 and 2 for born_again), columns ``epoch, stage,
    train_loss, train_loss_task{k}`` (CE), ``train_kd_task{k}`` (KD or T^2-scaled SDD term; NaN if
    none), ``train_acc_task{k}``, ``val_loss`` (alpha-mix of the CEs), ``val_loss_task{k}``,
    ``val_acc_task{k}``, ``val_acc_mean``, ``teacher_*`` (smooth_distill; NaN otherwise) and
    ``epoch_seconds``. ``best_epoch``: the selected student epoch (for singletask, the task-1 net's;
    ``best_epochs`` has every net's). ``state_dicts``: best weights on CPU, ``{"student"}`` or
    ``{"task1", "task2"}``, plus ``"teacher"`` (smooth_distill: the teacher selected on validation
    when ``eval_teacher``, else the final one; born_again: the stage-1 net). ``predictions[(split,
    who)]``: numpy ``y1_true, y1_pred, y2_true, y2_pred, y1_prob, y2_prob, index`` for split
    ``val``/``test`` and who ``student``/``teacher``. ``train_seconds``: wall time of all training
    epochs incl. the student's validation (device-synchronised; teacher validation excluded);
    ``stage_seconds`` per stage. ``n_params``: parameters of the inference model(s).
    """

    history: pd.DataFrame
    best_epoch: int
    state_dicts: dict[str, dict[str, torch.Tensor]]
    predictions: dict[tuple[str, str], dict[str, np.ndarray]]
    train_seconds: float
    n_params: int
    config: TrainConfig
    stage_seconds: dict[str, float] = field(default_factory=dict)
    best_epochs: dict[str, int] = field(default_factory=dict)
    last_state_dicts: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict, repr=False)
    n_classes: tuple[int, int] = (0, 0)
    device: str = "cpu"

    def accuracy(self, split: str = "test", who: str = "student") -> tuple[float, float]:
        """(task-1, task-2) accuracy in percent of ``predictions[(split, who)]``."""
        p = self.predictions[(split, who)]
        return (float(100.0 * np.mean(p["y1_pred"] == p["y1_true"])),
                float(100.0 * np.mean(p["y2_pred"] == p["y2_true"])))


# --------------------------------------------------------------------------------------------
# Devices, data, models


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as a ``torch.device``; ``None`` picks cuda > mps > cpu.

    ValueError (one line naming the value) for a string torch cannot parse (``"nosuch"``), a device
    type this machine lacks, or a CUDA index beyond the devices present.
    """
    if device is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:  # torch lists its twenty device types; ours names the usual ones
        raise ValueError(
            f"device={device!r} is not a device name torch knows; use 'cpu', 'cuda', 'cuda:<index>' or 'mps'"
        ) from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} requested but CUDA is not available; use device='cpu' or None")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device={device!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={device!r} requested but MPS is not available; use device='cpu' or None")
    return dev


def _to_numpy(a) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def _unpack(data) -> tuple[np.ndarray | torch.Tensor, object, object, tuple[int, int] | None]:
    """``Windows``/``Prepared``/``(X, y1, y2)``/dict -> (X, y1, y2, n_classes or None)."""
    if hasattr(data, "windows") and not hasattr(data, "X"):  # pipeline.Prepared
        data = data.windows
    if hasattr(data, "X") and hasattr(data, "y1") and hasattr(data, "y2"):
        names = (getattr(data, "activity_names", None), getattr(data, "placement_names", None))
        n_classes = (len(names[0]), len(names[1])) if all(n is not None for n in names) else None
        return data.X, data.y1, data.y2, n_classes
    if isinstance(data, dict):
        missing = [k for k in ("X", "y1", "y2") if k not in data]
        if missing:
            raise ValueError(f"fit: data dict lacks {missing}; give X (N,1,C,L), y1 (N,), y2 (N,)")
        return data["X"], data["y1"], data["y2"], None
    if isinstance(data, tuple | list) and len(data) == 3:
        return data[0], data[1], data[2], None
    raise ValueError(
        f"fit: data must be a Windows, a Prepared, (X, y1, y2) or a dict, got {type(data).__name__}"
    )


def data_layout(data) -> str | None:
    """The layout of ``data``'s windows where the data say it (a ``Windows``, a ``Prepared``, a dict
    with a ``"layout"`` key), else None (plain arrays carry no layout)."""
    if isinstance(data, dict):
        return data.get("layout")
    data = data.windows if isinstance(data, Prepared) else data
    return getattr(data, "layout", None) if hasattr(data, "X") else None


def check_layout(data, model: str, who: str = "fit") -> None:
    """Refuse, in one line, windows whose layout is not the one registry model ``model`` is fed.

    The two layouts hold the same numbers in another order (``windows.to_layout``): a net fed the
    other one trains without an error, on windows scrambled for it (the faithful MTL-net on axes
    windows reads x, y and z of a window's first third instead of x over the whole window). Data
    without a layout (arrays) and models outside ``models.MODELS`` are not checked."""
    layout = data_layout(data)
    if layout is None or model not in MODELS or MODELS[model].layout == layout:
        return
    want = MODELS[model].layout
    raise UserError(
        f"{who}: the windows are in the {layout!r} layout but model {model!r} is fed the {want!r} layout; "
        f"prepare them with prepare(..., layout=MODELS[{model!r}].layout) or convert X with "
        f"windows.to_layout(X, {layout!r}, {want!r})")


def _check_mode(data, config: TrainConfig) -> None:
    """Warn (one line) when ``data`` were prepared in one mode while ``config`` carries the epochs and
    EMA decay of ``$SMOOTHDISTILL_MODE``, another mode: the likely sign of a plain ``TrainConfig()``
    beside ``prepare(..., mode=...)``. Only a ``Prepared`` says its mode."""
    if not isinstance(data, Prepared) or "mode" not in data.options:
        return
    here, env = data.settings, mode_settings()
    sizes = (config.epochs, config.ema_decay)
    if here.name != env.name and sizes == (env.epochs, env.ema_decay) != (here.epochs, here.ema_decay):
        warnings.warn(
            f"fit: the data were prepared in mode {here.name!r} but the config has the epochs ({config.epochs}) "
            f"and EMA decay ({config.ema_decay}) of mode {env.name!r} ($SMOOTHDISTILL_MODE); make it with "
            f"TrainConfig.for_mode(prepared, ...) to train in the data's mode", UserWarning, stacklevel=3)


def _tensors(data, device: torch.device, n_classes):
    X, y1, y2, names_nc = _unpack(data)
    X = torch.as_tensor(X, dtype=torch.float32)
    y1 = torch.as_tensor(_to_numpy(y1).astype(np.int64))
    y2 = torch.as_tensor(_to_numpy(y2).astype(np.int64))
    if X.dim() != 4 or X.shape[1] != 1:
        raise ValueError(f"fit: X must be (N, 1, C, L) windows (C channels), got shape {tuple(X.shape)}")
    if not bool(torch.isfinite(X).all()):
        bad = int((~torch.isfinite(X)).any(dim=tuple(range(1, X.dim()))).sum())
        raise ValueError(f"fit: {bad} window(s) of X hold non-finite values (inf/NaN) as float32; check the "
                         "data (a value beyond float32's range, about 3.4e38, becomes inf)")
    if not (len(y1) == len(y2) == len(X)):
        raise ValueError(f"fit: X, y1, y2 lengths differ: {len(X)}, {len(y1)}, {len(y2)}")
    if n_classes is None:
        n_classes = names_nc or (int(y1.max()) + 1, int(y2.max()) + 1)
    n_classes = (int(n_classes[0]), int(n_classes[1]))
    for k, (y, c) in enumerate(((y1, n_classes[0]), (y2, n_classes[1])), start=1):
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= c):
            raise ValueError(f"fit: y{k} labels must be in 0..{c - 1} (n_classes[{k - 1}]={c}), "
                             f"found {int(y.min())}..{int(y.max())}")
    return X.to(device), y1.to(device), y2.to(device), n_classes


def _indices(idx, name: str, n: int, allow_empty: bool = False) -> np.ndarray:
    if idx is None:
        if allow_empty:
            return np.zeros(0, dtype=np.int64)
        raise ValueError(f"fit: {name} is required")
    a = _to_numpy(idx).astype(np.int64).ravel()
    if not allow_empty and a.size == 0:
        raise ValueError(f"fit: {name} is empty")
    if a.size and (a.min() < 0 or a.max() >= n):
        raise ValueError(f"fit: {name} holds indices outside 0..{n - 1}")
    return a


def to_training_device(net: nn.Module, device: torch.device) -> nn.Module:
    """``net`` on ``device``; on CPU, nets with 2-D convolutions go to channels_last memory format.

    Same math, different memory order: oneDNN's channels_last kernels made a faithful MTL-net
    training step ~25 % faster on CPU (its (1, 2) max-pooling ~10x) in ``benchmarks/bench_step.py``;
    logits differ from the default layout only by float rounding (~1e-7). GPUs keep the default.
    """
    net = net.to(device)
    if device.type == "cpu" and any(isinstance(m, nn.Conv2d) for m in net.modules()):
        net = net.to(memory_format=torch.channels_last)
    return net


def _build(cfg: TrainConfig, method: Method, n_classes, input_shape: tuple[int, int],
           build) -> dict[str, nn.Module]:
    """The trained nets: ``{"student"}`` or ``{"task1", "task2"}`` (single-task: one head each),
    built for windows of ``input_shape`` = (channels, length) unless ``model_options`` say otherwise."""

    def make(nc: tuple[int, ...]) -> nn.Module:
        if build is not None:
            return build(nc)
        opts = dict(cfg.model_options)
        if cfg.model in MODELS:
            opts.setdefault("n_channels", input_shape[0])
            opts.setdefault("window_length", input_shape[1])
        return build_model(cfg.model, nc, **opts)

    if method.single_task:
        return {"task1": make((n_classes[0],)), "task2": make((n_classes[1],))}
    return {"student": make(tuple(n_classes))}


def _forward_pair(models: dict[str, nn.Module]) -> Callable:
    """``x -> (z1, z2)`` for either layout of ``models``."""
    if "student" in models:
        return models["student"]
    return lambda x: (models["task1"](x)[0], models["task2"](x)[0])


def make_optimizer(params, lr: float, device: torch.device) -> torch.optim.Optimizer:
    """Adam (the authors' lr 1e-3, default betas/eps) with torch's fused kernel where this torch has one
    for ``device`` (CUDA; CPU and MPS in recent releases), else torch's default implementation.

    Fused Adam is the same update in one pass over all parameters: on CUDA one launch instead of
    dozens, on CPU it cut a faithful MTL-net training step by about a quarter in
    ``benchmarks/bench_step.py``.
    """
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, ValueError):  # no fused kernel for this device in this torch version
        return torch.optim.Adam(params, lr=lr)


def _clone_state(model: nn.Module) -> dict[str, torch.Tensor]:
    # A real copy: ``model.state_dict()`` alone aliases the live weights (the authors' bug, §5.2a).
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _to_cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # contiguous: portable weights whatever memory format they were trained in
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}


# --------------------------------------------------------------------------------------------
# Evaluation


@torch.no_grad()
def _logits(forward: Callable, X: torch.Tensor, idx: torch.Tensor, batch_size: int, bf16: bool | str):
    """``(z1, z2)`` float32 logits of ``X[idx]`` in eval batches, kept on the device (``bf16``: the
    older flag or a precision name)."""
    z1s, z2s = [], []
    for s in range(0, len(idx), batch_size):
        xb = X[idx[s : s + batch_size]]
        with autocast(xb, bf16):
            z1, z2 = forward(xb)
        z1s.append(z1.float())
        z2s.append(z2.float())
    return torch.cat(z1s), torch.cat(z2s)


def _eval_sums(forward, X, y1, y2, idx, batch_size, bf16) -> torch.Tensor:
    """Device tensor ``[CE1 sum, CE2 sum, correct1, correct2]`` over ``idx``."""
    z1, z2 = _logits(forward, X, idx, batch_size, bf16)
    t1, t2 = y1[idx], y2[idx]
    return torch.stack([
        F.cross_entropy(z1, t1, reduction="sum"), F.cross_entropy(z2, t2, reduction="sum"),
        (z1.argmax(1) == t1).sum().float(), (z2.argmax(1) == t2).sum().float(),
    ])


def _set_mode(models: dict[str, nn.Module], train: bool) -> None:
    for m in models.values():
        m.train(train)


@torch.no_grad()
def predict(model: nn.Module, X, batch_size: int = 1024, device=None) -> tuple[np.ndarray, ...]:
    """Logits of ``model`` (eval mode) on ``X`` ``(N, 1, C, L)``: a tuple of ``(N, c_k)`` numpy arrays."""
    param = next(model.parameters(), None)
    dev = resolve_device(device) if device is not None else (param.device if param is not None else "cpu")
    was_training = model.training
    model.eval()
    try:
        X = torch.as_tensor(X, dtype=torch.float32)
        outs = None
        for s in range(0, len(X), batch_size):
            z = model(X[s : s + batch_size].to(dev))
            outs = [[] for _ in z] if outs is None else outs
            for o, t in zip(outs, z):
                o.append(t.float().cpu())
        return tuple(torch.cat(o).numpy() for o in (outs or []))
    finally:
        model.train(was_training)


# --------------------------------------------------------------------------------------------
# The loop

# Layout of the per-epoch training accumulator (one device tensor, read once per epoch).
_SUMS = (
    "loss",
    "ce1",
    "ce2",
    "kd1",
    "kd2",
    "correct1",
    "correct2",
    "t_ce1",
    "t_ce2",
    "t_correct1",
    "t_correct2",
)


def _batch_sums(out: dict, y1: torch.Tensor, y2: torch.Tensor, with_teacher: bool) -> torch.Tensor:
    """The step's losses x batch size and its correct counts, as one small device tensor."""
    bs = float(len(y1))
    z1, z2 = out["logits"]
    zero = out["loss"].new_zeros(())
    kd1, kd2 = out.get("kd1", zero), out.get("kd2", zero)
    parts = [out["loss"] * bs, out["ce1"] * bs, out["ce2"] * bs, kd1 * bs, kd2 * bs,
             (z1.argmax(1) == y1).sum(), (z2.argmax(1) == y2).sum()]
    if with_teacher:
        t1, t2 = out["teacher_logits"]
        parts += [F.cross_entropy(t1.float(), y1) * bs, F.cross_entropy(t2.float(), y2) * bs,
                  (t1.argmax(1) == y1).sum(), (t2.argmax(1) == y2).sum()]
    else:
        parts += [zero, zero, zero, zero]
    return torch.stack([p.float() for p in parts])


def _has_batchnorm(models: dict[str, nn.Module]) -> bool:
    return any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) for net in models.values() for m in net.modules()
    )


def _batch_bounds(n: int, batch_size: int, batchnorm: bool) -> list[tuple[int, int]]:
    """``(start, end)`` of each batch of an epoch. The last, partial batch is a batch too (as the
    authors' ``DataLoader``, ``drop_last=False``), except that a lone last window is merged into the
    batch before it when the net has BatchNorm, whose training mode cannot normalise one sample."""
    starts = list(range(0, n, batch_size))
    bounds = [(s, min(s + batch_size, n)) for s in starts]
    if batchnorm and len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds = bounds[:-2] + [(bounds[-2][0], n)]
    return bounds


class _Best:
    """Best epoch so far of one net on validation (strict ``>``), with cloned weights."""

    def __init__(self):
        self.score, self.epoch, self.state = -float("inf"), 0, None

    def offer(self, score: float, epoch: int, model: nn.Module) -> None:
        if score > self.score:
            self.score, self.epoch, self.state = score, epoch, _clone_state(model)


def _score(acc1: float, acc2: float, selection: str) -> float:
    return acc1 if selection == "task1" else 0.5 * (acc1 + acc2)


@dataclass
class _Stage:
    models: dict[str, nn.Module]
    best: dict[str, _Best]  # who -> best ("student" or "task1"/"task2", and "teacher")
    rows: list[dict]
    seconds: float
    teacher: EMATeacher | None


_TEACHER_COLS = ("teacher_train_loss_task1", "teacher_train_loss_task2", "teacher_train_acc_task1",
                 "teacher_train_acc_task2", "teacher_val_loss_task1", "teacher_val_loss_task2",
                 "teacher_val_acc_task1", "teacher_val_acc_task2", "teacher_val_acc_mean")


def _history_row(
    epoch, stage, n, nv, tr: dict, va: list, tv: list | None, has_kd, has_teacher, alpha
) -> dict:
    """One history row from the epoch's training sums ``tr``, validation sums ``va`` (and ``tv``,
    the teacher's): losses are per-window means, accuracies percentages."""
    nan = float("nan")
    acc1, acc2 = 100.0 * va[2] / nv, 100.0 * va[3] / nv
    row = {
        "epoch": epoch, "stage": stage,
        "train_loss": tr["loss"] / n, "train_loss_task1": tr["ce1"] / n, "train_loss_task2": tr["ce2"] / n,
        "train_kd_task1": tr["kd1"] / n if has_kd else nan, "train_kd_task2": tr["kd2"] / n if has_kd else nan,
        "train_acc_task1": 100.0 * tr["correct1"] / n, "train_acc_task2": 100.0 * tr["correct2"] / n,
        "val_loss": (alpha * va[0] + (1.0 - alpha) * va[1]) / nv,
        "val_loss_task1": va[0] / nv, "val_loss_task2": va[1] / nv,
        "val_acc_task1": acc1, "val_acc_task2": acc2, "val_acc_mean": 0.5 * (acc1 + acc2),
    }
    row.update(dict.fromkeys(_TEACHER_COLS, nan))
    if has_teacher:
        row.update({"teacher_train_loss_task1": tr["t_ce1"] / n, "teacher_train_loss_task2": tr["t_ce2"] / n,
                    "teacher_train_acc_task1": 100.0 * tr["t_correct1"] / n,
                    "teacher_train_acc_task2": 100.0 * tr["t_correct2"] / n})
    if tv is not None:
        t1, t2 = 100.0 * tv[2] / nv, 100.0 * tv[3] / nv
        row.update(
            {
                "teacher_val_loss_task1": tv[0] / nv,
                "teacher_val_loss_task2": tv[1] / nv,
                "teacher_val_acc_task1": t1,
                "teacher_val_acc_task2": t2,
                "teacher_val_acc_mean": 0.5 * (t1 + t2),
            }
        )
    return row


def _train_stage(method: Method, models, teacher, data, fit_idx, val_idx, cfg: TrainConfig, gen, bar,
                 stage: int, device: torch.device, stage_label: str = "") -> _Stage:
    """Train ``models`` for ``cfg.epochs`` epochs with ``method.step``; validate and select each epoch."""
    X, y1, y2 = data
    optimizer = make_optimizer([p for m in models.values() for p in m.parameters() if p.requires_grad],
                               cfg.lr, device)
    optimizer = amp.with_grad_scaler(optimizer, precision(cfg), device)  # fp16: loss scaling
    ema = teacher if isinstance(teacher, EMATeacher) else None
    eval_teacher = ema is not None and cfg.eval_teacher
    has_kd = method.kd_terms
    forward = _forward_pair(models)
    bests = {name: _Best() for name in (*models, *(("teacher",) if eval_teacher else ()))}
    if bar is not None and stage_label:
        bar.set_description(stage_label, refresh=False)
    n, nv = len(fit_idx), len(val_idx)
    bounds = _batch_bounds(n, cfg.batch_size, _has_batchnorm(models))
    rows, seconds = [], 0.0
    for epoch in range(1, cfg.epochs + 1):
        synchronize(device)
        t0 = time.perf_counter()
        _set_mode(models, True)
        sums = torch.zeros(len(_SUMS), device=device)
        order = fit_idx[torch.randperm(n, generator=gen).to(device)]
        for s, e in bounds:
            idx = order[s:e]
            xb, t1, t2 = X[idx], y1[idx], y2[idx]
            out = method.step(models, optimizer, teacher, (xb, t1, t2), cfg)
            sums += _batch_sums(out, t1, t2, ema is not None)
        _set_mode(models, False)
        val = _eval_sums(forward, X, y1, y2, val_idx, cfg.eval_batch_size, precision(cfg))
        tr, va = dict(zip(_SUMS, sums.tolist())), val.tolist()  # the one host read of the epoch
        if not math.isfinite(tr["loss"]):
            raise FloatingPointError(
                f"{cfg.method} (model {cfg.model}, seed {cfg.seed}) stage {stage} epoch {epoch}: the training "
                f"loss became {tr['loss']} (non-finite); likely causes: non-finite or huge input values "
                f"(check the data), a learning rate too high (lr={cfg.lr:g}), or extreme loss weights "
                f"(lam={cfg.lam:g})")
        acc1, acc2 = 100.0 * va[2] / nv, 100.0 * va[3] / nv
        if method.single_task:  # two independent nets: each is selected on its own task
            bests["task1"].offer(acc1, epoch, models["task1"])
            bests["task2"].offer(acc2, epoch, models["task2"])
        else:
            bests["student"].offer(_score(acc1, acc2, cfg.selection), epoch, models["student"])
        synchronize(device)
        epoch_seconds = time.perf_counter() - t0
        seconds += epoch_seconds
        tv = None
        if eval_teacher:  # diagnostics only: not part of the method's cost, so not timed
            tv = _eval_sums(ema, X, y1, y2, val_idx, cfg.eval_batch_size, precision(cfg)).tolist()
            bests["teacher"].offer(
                _score(100.0 * tv[2] / nv, 100.0 * tv[3] / nv, cfg.selection), epoch, ema.module
            )
        row = _history_row(epoch, stage, n, nv, tr, va, tv, has_kd, ema is not None, cfg.alpha)
        row["epoch_seconds"] = epoch_seconds
        rows.append(row)
        if bar is not None:
            post = {"loss": f"{row['train_loss']:.3f}", "val1": f"{acc1:.1f}", "val2": f"{acc2:.1f}"}
            if tv is not None:
                post["teacher_val1"] = f"{row['teacher_val_acc_task1']:.1f}"
            bar.set_postfix(post, refresh=False)
            bar.update(1)
    return _Stage(models, bests, rows, seconds, ema)


@contextlib.contextmanager
def _determinism(enabled: bool, device: torch.device):
    """Deterministic algorithms on CPU for the duration of a fit, restoring the global flags after."""
    if not (enabled and device.type == "cpu"):
        yield
        return
    prev, prev_warn = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev, warn_only=prev_warn)


def _predictions(forward, X, y1, y2, idx: torch.Tensor, cfg: TrainConfig) -> dict[str, np.ndarray]:
    z1, z2 = _logits(forward, X, idx, cfg.eval_batch_size, precision(cfg))
    return {
        "y1_true": y1[idx].cpu().numpy(), "y1_pred": z1.argmax(1).cpu().numpy(),
        "y2_true": y2[idx].cpu().numpy(), "y2_pred": z2.argmax(1).cpu().numpy(),
        "y1_prob": z1.softmax(1).cpu().numpy(), "y2_prob": z2.softmax(1).cpu().numpy(),
        "index": idx.cpu().numpy(),
    }


def _frozen_best(stage1: _Stage | None) -> nn.Module | None:
    """born_again's teacher: the stage-1 net at its best validation epoch, eval mode, frozen."""
    if stage1 is None:
        return None
    net = stage1.models["student"]
    net.load_state_dict(stage1.best["student"].state)
    return net.eval().requires_grad_(False)


def _select(st: _Stage, stage1: _Stage | None):
    """Load every net's best-epoch weights; return ``(state_dicts, best_epochs, forwards)``, where
    ``forwards[who]`` maps ``x`` to ``(z1, z2)`` for who = student (and teacher)."""
    for name, m in st.models.items():
        m.load_state_dict(st.best[name].state)
    _set_mode(st.models, False)
    state_dicts = {name: _to_cpu(st.best[name].state) for name in st.models}
    best_epochs = {name: st.best[name].epoch for name in st.models}
    forwards = {"student": _forward_pair(st.models)}
    if st.teacher is not None:  # smooth_distill: the EMA teacher, selected on validation if evaluated
        if "teacher" in st.best:
            st.teacher.module.load_state_dict(st.best["teacher"].state)
            best_epochs["teacher"] = st.best["teacher"].epoch
        state_dicts["teacher"] = _to_cpu(st.teacher.module.state_dict())
        forwards["teacher"] = st.teacher.module
    elif stage1 is not None:  # born_again: the stage-1 net (already at its best epoch)
        state_dicts["teacher"] = _to_cpu(stage1.best["student"].state)
        best_epochs["teacher"] = stage1.best["student"].epoch
        forwards["teacher"] = stage1.models["student"]
    return state_dicts, best_epochs, forwards


def with_min_steps(cfg: TrainConfig, n_fit: int) -> TrainConfig:
    """``cfg`` with ``epochs`` raised so that a stage takes at least ``cfg.min_steps`` optimizer steps
    on ``n_fit`` training windows (unchanged when ``min_steps`` is None or already met)."""
    if cfg.min_steps is None:
        return cfg
    # the fewer batches of the two rules in _batch_bounds (a lone last window may be merged)
    per_epoch = len(_batch_bounds(n_fit, cfg.batch_size, batchnorm=True))
    need = math.ceil(cfg.min_steps / max(per_epoch, 1))
    return dataclasses.replace(cfg, epochs=max(cfg.epochs, need))


def fit(data, fit_idx, val_idx, test_idx, config: TrainConfig, progress: bool = True, *,
        build: Callable[[tuple[int, ...]], nn.Module] | None = None,
        n_classes: tuple[int, int] | None = None) -> FitResult:
    """Train ``config.method`` on ``data[fit_idx]``, select on ``data[val_idx]``, predict val and test.

    ``data``: a ``windows.Windows`` (or ``pipeline.Prepared``), ``(X, y1, y2)`` or a dict with those
    keys; ``X`` ``(N, 1, C, L)`` float32 (any number C of channels), ``y1``/``y2`` ``(N,)`` ints. ``fit_idx``, ``val_idx``,
    ``test_idx``: absolute indices (``test_idx`` may be ``None`` or empty: no test predictions).
    ``build(n_classes) -> nn.Module`` overrides ``config.model`` (any net following the models
    contract). ``n_classes`` defaults to the label names of ``Windows``, else max label + 1.
    One tqdm bar over epochs (``progress=False`` or ``SMOOTHDISTILL_PROGRESS=0`` silences it).
    Windows in another layout than ``config.model``'s are refused (:func:`check_layout`; not with a
    custom ``build``), and a ``Prepared`` of another mode than the config's sizes warns once
    (``TrainConfig.for_mode(prepared)`` sizes a config by the data's mode).
    """
    if not isinstance(config, TrainConfig):
        raise ValueError(f"fit: config must be a TrainConfig, got {type(config).__name__}")
    if build is None:
        check_layout(data, config.model)
    _check_mode(data, config)
    method = get_method(config.method)
    device = resolve_device(config.device)
    X, y1, y2, n_classes = _tensors(data, device, n_classes)
    n = len(X)
    fit_np = _indices(fit_idx, "fit_idx", n)
    cfg = with_min_steps(config, len(fit_np))
    # what runs on this device ("auto" -> bf16 or fp16 on CUDA, fp32 elsewhere), recorded in the run
    cfg = dataclasses.replace(cfg, precision=amp.resolve_precision(cfg.precision, device, cfg.bf16))
    val_np = _indices(val_idx, "val_idx", n)
    test_np = _indices(test_idx, "test_idx", n, allow_empty=True)
    for a, b, na, nb in ((fit_np, val_np, "fit_idx", "val_idx"), (fit_np, test_np, "fit_idx", "test_idx"),
                         (val_np, test_np, "val_idx", "test_idx")):
        if np.intersect1d(a, b).size:
            raise ValueError(
                f"fit: {na} and {nb} overlap ({np.intersect1d(a, b).size} windows): selection "
                "and test must use windows the model was not trained on"
            )
    fit_t, val_t, test_t = (torch.as_tensor(a, device=device) for a in (fit_np, val_np, test_np))
    data_t, stages = (X, y1, y2), (2 if method.stage1 else 1)
    bar = tqdm(total=cfg.epochs * stages, desc=f"{cfg.method}", unit="epoch", leave=True,
               disable=not show_progress(progress), file=sys.stderr, dynamic_ncols=True)
    with _determinism(cfg.deterministic, device), bar:
        torch.manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)  # CPU generator: same batches on every device

        def train(m: Method, teacher, stage: int, label: str = "") -> _Stage:
            models = {
                k: to_training_device(net, device)
                for k, net in _build(cfg, m, n_classes, (X.shape[2], X.shape[3]), build).items()
            }
            if m.teacher == "ema":  # built here: the teacher starts as a copy of THIS student
                teacher = EMATeacher(models["student"], cfg.ema_decay, cfg.ema_buffers, cfg.ema_warmup)
            return _train_stage(m, models, teacher, data_t, fit_t, val_t, cfg, gen, bar, stage, device, label)

        stage1 = None
        if method.stage1:  # born_again: the multitask teacher, trained and selected on this fold
            stage1 = train(get_method(method.stage1), None, 1, f"{cfg.method} stage 1 (teacher)")
        st = train(method, _frozen_best(stage1), stages, f"{cfg.method} stage 2 (student)" if stage1 else "")
        rows = (stage1.rows if stage1 else []) + st.rows
        stage_seconds = {f"stage{k + 1}": s.seconds for k, s in enumerate(x for x in (stage1, st) if x)}
        last = {name: _to_cpu(m.state_dict()) for name, m in st.models.items()}
        state_dicts, best_epochs, forwards = _select(st, stage1)
        splits = {"val": val_t} | ({"test": test_t} if len(test_t) else {})
        predictions = {(split, who): _predictions(fwd, X, y1, y2, idx, cfg)
                       for who, fwd in forwards.items() for split, idx in splits.items()}
        models = st.models
    best_epoch = best_epochs["student"] if "student" in best_epochs else best_epochs["task1"]
    return FitResult(
        history=pd.DataFrame(rows),
        best_epoch=int(best_epoch),
        state_dicts=state_dicts,
        predictions=predictions,
        train_seconds=float(sum(stage_seconds.values())),
        n_params=int(sum(p.numel() for m in models.values() for p in m.parameters())),
        config=cfg,
        stage_seconds=stage_seconds,
        best_epochs=best_epochs,
        last_state_dicts=last,
        n_classes=n_classes,
        device=str(device),
    )


# --------------------------------------------------------------------------------------------
# CLI: python -m smoothdistill_lib train ...


def _f1_macro(y_true, y_pred, n_classes: int) -> float:
    return float(classification_metrics(y_true, y_pred, n_classes)["macro_f1"])


def cli_train(args) -> int:
    """``train``: prepare one dataset, fit one method on one fold, print ONE JSON object to stdout."""
    mode = get_mode(args.mode)
    # the arguments are checked before the data are prepared (which takes a while), each error naming
    # its option; argparse checks them too, but cli_train may be called with a hand-made Namespace
    if args.epochs is not None and (isinstance(args.epochs, bool) or not isinstance(args.epochs, int)
                                    or args.epochs < 1):
        raise ValueError(f"--epochs must be a whole number >= 1, got {args.epochs!r}")
    if args.lam is not None and not (isinstance(args.lam, (int, float)) and math.isfinite(args.lam) and args.lam >= 0):
        raise ValueError(f"--lam must be a finite number >= 0, got {args.lam!r}")
    if (why := whole_number_problem(args.seed, 0, MAX_SEED)) is not None:
        raise ValueError(f"--seed: {why}")
    try:
        resolve_device(args.device)
    except ValueError as e:
        raise ValueError(f"--device: {e}") from None
    if args.model not in MODELS:
        raise ValueError(f"--model {args.model!r} is unknown; choose one of {', '.join(MODELS)}")
    get_method(args.method)
    layout = MODELS[args.model].layout
    prepared = prepare(args.dataset, protocol=args.protocol, mode=mode.name, layout=layout)
    windows, split = prepared.windows, prepared.split
    if not 0 <= args.fold < len(split.folds):
        raise ValueError(f"--fold {args.fold} is out of range: the split has {len(split.folds)} folds")
    fit_idx, val_idx = split.folds[args.fold]
    kw = {"method": args.method, "model": args.model, "seed": args.seed, "device": args.device}
    if args.epochs is not None:  # the mode's minimum number of steps applies unless epochs are given
        kw["epochs"] = args.epochs
    if args.lam is not None:
        kw["lam"] = args.lam
        kw["ba_lam"] = args.lam
    cfg = TrainConfig.for_mode(prepared, **kw)  # sized by the mode the data were prepared in
    result = fit(windows, fit_idx, val_idx, split.test, cfg, progress=True)
    cfg = result.config  # the epochs it ran (min_steps may raise them)
    p = result.predictions[("test", "student")]
    pv = result.predictions[("val", "student")]
    c1, c2 = result.n_classes
    out = {
        "dataset": args.dataset, "method": args.method, "model": args.model, "mode": mode.name,
        "protocol": args.protocol, "fold": args.fold, "seed": args.seed, "epochs": cfg.epochs,
        "lam": cfg.lam, "device": result.device,
        "test_acc_task1": result.accuracy("test")[0], "test_acc_task2": result.accuracy("test")[1],
        "test_f1_task1": _f1_macro(p["y1_true"], p["y1_pred"], c1),
        "test_f1_task2": _f1_macro(p["y2_true"], p["y2_pred"], c2),
        "val_acc_task1": result.accuracy("val")[0], "val_acc_task2": result.accuracy("val")[1],
        "val_f1_task1": _f1_macro(pv["y1_true"], pv["y1_pred"], c1),
        "val_f1_task2": _f1_macro(pv["y2_true"], pv["y2_pred"], c2),
        "best_epoch": result.best_epoch, "train_seconds": round(result.train_seconds, 3),
        "stage_seconds": {k: round(v, 3) for k, v in result.stage_seconds.items()},
        "params": result.n_params, "n_fit": len(fit_idx), "n_val": len(val_idx), "n_test": len(split.test),
    }
    print(json.dumps(out))
    return 0


__all__ = [
    "METHODS",
    "FitResult",
    "TrainConfig",
    "cli_train",
    "fit",
    "make_optimizer",
    "predict",
    "resolve_device",
    "to_training_device",
]
