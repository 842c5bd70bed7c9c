"""Compute accounting for Table 7: parameters, size, FLOPs, wall time, peak memory, energy.

Every figure is a **record** ``{"value", "unit", "how"}``: ``how`` says how it was measured, so a
table can show an estimate as an estimate. Conventions:

- **Size**: bytes of the state_dict with floating tensors counted as fp32 (4 bytes), divided by
  2**20 ("MB" = MiB). MTL-net for WISDM: 1,800,084 params -> 6.87 MB.
- **FLOPs**: ``torch.utils.flop_counter.FlopCounterMode``, which counts **2 FLOPs per
  multiply-accumulate** of convolutions and matrix products and ignores bias adds, activations,
  pooling and normalisation. So FLOPs = 2 x MACs: MTL-net for WISDM has 3,260,032 MACs, 6,520,064
  FLOPs per window. FlopCounterMode sees nothing inside an ``nn.LSTM`` run by oneDNN/cuDNN (0 FLOPs)
  and a decomposed GRU only on CPU, so every ``nn.LSTM``/``nn.GRU``/``nn.RNN`` is counted by the
  analytic gate formula instead (same convention), per layer, direction and time step:
  ``2 * g * H * (I + H)`` with g = 4 gates (LSTM), 3 (GRU), 1 (RNN), input size I, hidden size H
  (LSTM projections add ``2 * H * P``, and the recurrent input is P).
- **Training FLOPs** are an estimate: forward + backward = 3 x forward per trained model, plus the
  teacher's forward where a method has one.
- **Time**: ``time.perf_counter`` with ``torch.cuda.synchronize`` before and after on GPU.
- **Peak memory**: ``torch.cuda.max_memory_allocated`` on GPU. On CPU, the process's peak resident
  set size during the block: Linux's ``VmHWM``, reset at the block's start by writing ``5`` to
  ``/proc/self/clear_refs`` (so runs of one grid are comparable; it includes what the process
  already holds, e.g. the loaded data). Where that reset is not possible (macOS, Windows, old
  kernels) the figure is ``ru_maxrss`` since process start, and its ``how`` says so.
- **Energy**: NVML's energy counter (``nvmlDeviceGetTotalEnergyConsumption``) where the GPU has one;
  otherwise an estimate ``P x t`` labelled ``"estimate: P x t with P=<W> W (<which>)"``, P being the
  GPU's board power (TDP) or, on a CPU / unknown device, the paper's convention (A100 SXM, 400 W).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence

import pandas as pd
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence
from torch.utils.flop_counter import FlopCounterMode

from smoothdistill_lib.methods import get_method
from smoothdistill_lib.models import DEFAULT_WINDOW_LENGTH, build_model, count_parameters
from smoothdistill_lib.provenance import cpu_name

__all__ = [
    "CostMeter",
    "count_flops",
    "count_parameters",
    "energy_estimate",
    "flops_by_layer",
    "gpu_hours_estimate",
    "gpu_power_watts",
    "interleaved_step_times",
    "method_cost",
    "model_cost",
    "model_size_mb",
    "rnn_flops",
    "synchronize",
]

PAPER_POWER_WATTS = 400.0  # NVIDIA A100 SXM TDP: the paper computed energy as A100 power x time
#: The paper's training times (its §6.1, A100), quoted, not computed, as multiples of ONE single-task
#: network's training time: the book's one normalisation for time ratios (single-task trains two
#: networks, "effectively doubling": 2.0). Chapters 7 and 10 read them here.
PAPER_TIME_RATIO = {"singletask": 2.0, "multitask": 1.5, "sd_dropout": 5.18, "born_again": 3.3,
                    "smooth_distill": 1.72}
#: The paper's training energies in kWh (its §6.1), the single-task figure counting both networks;
#: Born-Again's is not given in its text.
PAPER_ENERGY_KWH = {"singletask": 0.557, "multitask": 0.431, "sd_dropout": 1.444, "born_again": None,
                    "smooth_distill": 0.485}
#: An assumption for estimates, not a measurement: seconds per optimizer step of the book's networks
#: (batch 64, eager PyTorch) on one data-centre GPU, (low, high). Such a step launches a few hundred
#: small kernels and waits on their launches more than on arithmetic (a few microseconds each), so it
#: takes milliseconds whatever the GPU's FLOPs; recurrent networks, whose time steps run one after
#: another, sit nearer the high end. Whatever is computed from it is labelled an estimate;
#: tools/gpu_check.py measures the real figure (long-mode records on CUDA).
GPU_STEP_SECONDS_ASSUMED = (0.002, 0.010)
_FLOPS_HOW = ("torch.utils.flop_counter.FlopCounterMode (2 FLOPs per multiply-accumulate of conv/linear/"
              "matmul; bias, activations, pooling, normalisation not counted)")
_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


def _record(value, unit: str, how: str, **extra) -> dict:
    return {"value": value, "unit": unit, "how": how, **extra}


def _device(device) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def model_size_mb(model: nn.Module) -> float:
    """Size of ``model``'s state_dict in MB (2**20 bytes), floating tensors counted as fp32."""
    total = 0
    for t in model.state_dict().values():
        total += t.numel() * (4 if t.is_floating_point() else t.element_size())
    return total / 2**20


def rnn_flops(module: nn.RNNBase, steps: int) -> int:
    """Analytic forward FLOPs (2 per MAC) of ``module`` over ``steps`` = batch x time steps.

    Per layer, direction and step: ``2 * (g*H*(I + R) + P*H)`` with g gates (LSTM 4, GRU 3, RNN 1),
    hidden size H, layer input I (input_size, then R * directions), recurrent size R (= proj_size P
    if the LSTM has projections, else H; P = 0 without projections). Biases are not counted.
    """
    if module.mode not in _GATES:
        raise ValueError(f"rnn_flops: unsupported recurrent mode {module.mode!r}")
    g, h = _GATES[module.mode], module.hidden_size
    proj = getattr(module, "proj_size", 0) or 0
    r = proj or h
    dirs = 2 if module.bidirectional else 1
    macs = 0
    for layer in range(module.num_layers):
        i = module.input_size if layer == 0 else r * dirs
        macs += dirs * (g * h * (i + r) + proj * h)
    return 2 * macs * steps


def _rnn_steps(inp) -> int:
    if isinstance(inp, PackedSequence):
        return int(inp.data.shape[0])  # the packed rows are exactly the (sample, step) pairs run
    return int(inp.shape[0] * inp.shape[1]) if inp.dim() == 3 else int(inp.shape[0])


def _input_shape(model: nn.Module, input_shape: Sequence[int] | None) -> tuple[int, ...]:
    """``input_shape``, else ``(1, C, L)`` with the model's channels and window length."""
    if input_shape is not None:
        return tuple(input_shape)
    return (1, getattr(model, "n_channels", 3), getattr(model, "fixed_length", None) or DEFAULT_WINDOW_LENGTH)


def count_flops(model: nn.Module, input_shape: Sequence[int] | None = None, batch_size: int = 1) -> dict:
    """Forward FLOPs per window of ``model`` on inputs ``(batch_size, *input_shape)`` (eval mode);
    ``input_shape`` defaults to ``(1, C, L)``, the model's channels and window length.

    Record ``{"value": FLOPs per window, "unit", "how", "macs"}``; recurrent layers by the analytic
    formula (:func:`rnn_flops`), everything else by ``FlopCounterMode`` (module docstring).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    x = torch.zeros(batch_size, *_input_shape(model, input_shape), device=device)  # zeros: no RNG draw
    counter = FlopCounterMode(display=False)
    rnns = [m for m in model.modules() if isinstance(m, nn.RNNBase)]
    correction, before = [0], {}

    def pre(module, _args):
        before[module] = counter.get_total_flops()

    def post(module, args, _out):
        # Replace whatever FlopCounterMode saw inside the RNN (0 for oneDNN/cuDNN kernels, the
        # decomposed matmuls otherwise) by the formula, so every device gives the same number.
        seen = counter.get_total_flops() - before.pop(module)
        correction[0] += rnn_flops(module, _rnn_steps(args[0])) - seen

    hooks = [h for m in rnns for h in (m.register_forward_pre_hook(pre), m.register_forward_hook(post))]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), counter:
            model(x)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    total = (counter.get_total_flops() + correction[0]) / batch_size
    total = int(total) if float(total).is_integer() else total  # per-window counts are whole numbers
    how = _FLOPS_HOW + (f"; {len(rnns)} recurrent module(s) by the analytic gate formula" if rnns else "")
    return _record(total, "FLOPs per window", how, macs=total / 2)


def model_cost(model: nn.Module, input_shape: Sequence[int] | None = None) -> dict:
    """``{"params", "size_mb", "flops"}`` records of one model (inference, per window)."""
    return {
        "params": _record(count_parameters(model), "parameters", "sum of numel over model.parameters()"),
        "size_mb": _record(model_size_mb(model), "MB (2^20 bytes)", "state_dict bytes, floating tensors as fp32"),
        "flops": count_flops(model, input_shape),
    }


def _head_flops(model: nn.Module) -> int:
    # SD-Dropout runs the heads on 4 extra dropout views; heads are Linear layers (models contract).
    return sum(2 * m.in_features * m.out_features for m in getattr(model, "heads", nn.ModuleList()).modules()
               if isinstance(m, nn.Linear))


def method_cost(
    method: str,
    model: str = "mtlnet",
    n_classes: Sequence[int] = (18, 2),
    input_shape: Sequence[int] | None = None,
    builder: Callable[..., nn.Module] | None = None,
    batch_size: int = 64,
    **model_options,
) -> dict:
    """Table 7 cost of training ``method`` with architecture ``model`` for tasks ``n_classes=(c1, c2)``.

    Inference figures (``params``, ``size_mb``, ``flops`` per window) count what is deployed:
    singletask = two single-head models, every other method one two-head model. Training figures
    count what is trained: ``train_params`` (held in memory: smooth_distill and born_again keep a
    teacher copy) and ``train_flops`` per training window per epoch (estimate, 3 x forward per
    trained model; born_again counts both stages, smooth_distill adds the teacher's forward and the
    EMA update spread over a batch of ``batch_size``, sd_dropout adds 4 head passes).
    ``builder(name, n_classes, **model_options)`` defaults to ``models.build_model``, which is given
    ``n_channels`` = ``input_shape[1]`` (default ``(1, 3, window_length)``). What each method
    trains and its cost note come from its ``methods.METHODS`` entry.
    """
    meth = get_method(method)
    if len(n_classes) != 2:
        raise ValueError(f"n_classes must be (c1, c2) for the two tasks, got {tuple(n_classes)!r}")
    if input_shape is None:
        input_shape = (1, 3, model_options.get("window_length", DEFAULT_WINDOW_LENGTH))
    if builder is None:
        builder, model_options = build_model, {**model_options, "n_channels": int(input_shape[1])}
    c1, c2 = (int(c) for c in n_classes)
    heads = [(c1,), (c2,)] if meth.single_task else [(c1, c2)]
    with torch.random.fork_rng(devices=[]):  # building models draws init weights: keep the caller's RNG
        nets = [builder(model, h, **model_options) for h in heads]
    costs = [model_cost(m, input_shape) for m in nets]
    params = sum(c["params"]["value"] for c in costs)
    size = sum(c["size_mb"]["value"] for c in costs)
    fwd = sum(c["flops"]["value"] for c in costs)
    how_fwd = costs[0]["flops"]["how"]

    # every trained net: forward + backward (2 x forward); extra head passes (SD-Dropout's views) likewise
    train = 3 * (fwd + meth.extra_head_passes * _head_flops(nets[0]))
    if meth.stage1:  # the stage-1 teacher is trained first (3 x forward) and then run (1 x forward)
        train += 3 * fwd
    if meth.teacher:
        train += fwd  # the teacher's forward on every batch
    if meth.teacher == "ema":  # EMA update = 3 FLOPs per parameter (mul, mul, add) per step
        train += 3 * params / batch_size
    held = 2 * params if meth.teacher else params  # a teacher copy is held while training
    note = meth.train_cost_note.format(batch_size=batch_size)
    unit_note = "2 single-head models" if meth.single_task else "1 two-head model"
    return {
        "method": method,
        "model": model,
        "n_classes": [c1, c2],
        "models_at_inference": len(nets),
        "models_trained": meth.models_trained,
        "params": _record(params, "parameters", f"inference: {unit_note}"),
        "size_mb": _record(size, "MB (2^20 bytes)", f"inference: {unit_note}, state_dict as fp32"),
        "flops": _record(fwd, "FLOPs per window", f"inference: {unit_note}; {how_fwd}"),
        "train_params": _record(held, "parameters", "held while training (teacher copies included)"),
        "train_flops": _record(train, "FLOPs per training window per epoch",
                               f"estimate: backward = 2 x forward; {note}", estimate=True),
    }


# --------------------------------------------------------------------------------------------
# Measuring a block of work: time, peak memory, energy


def gpu_hours_estimate(steps: float) -> tuple[float, float]:
    """GPU-hours for ``steps`` optimizer steps at :data:`GPU_STEP_SECONDS_ASSUMED` (low, high): an
    estimate, never a measurement. Validation passes are not added (7-12 % of a long epoch on one CPU
    core, ``benchmarks/bench_arch.py``)."""
    if not steps >= 0:
        raise ValueError(f"gpu_hours_estimate: steps must be a number >= 0, got {steps!r}")
    low, high = GPU_STEP_SECONDS_ASSUMED
    return steps * low / 3600, steps * high / 3600


def synchronize(device=None) -> None:
    """Wait for queued GPU work on ``device`` (no-op on CPU), so wall-clock times are honest."""
    device = _device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


_GPU_POWER = (  # (name fragments, board power in W, label); first match wins, order matters
    (("H100", "PCIE"), 350.0, "NVIDIA H100 PCIe TDP"),
    (("H100",), 700.0, "NVIDIA H100 SXM TDP"),
    (("H200",), 700.0, "NVIDIA H200 SXM TDP"),
    (("A100", "PCIE"), 250.0, "NVIDIA A100 PCIe TDP"),
    (("A100",), 400.0, "NVIDIA A100 SXM TDP"),
    (("V100",), 300.0, "NVIDIA V100 SXM2 TDP"),
    (("L40S",), 350.0, "NVIDIA L40S TDP"),
    (("L40",), 300.0, "NVIDIA L40 TDP"),
    (("L4",), 72.0, "NVIDIA L4 TDP"),
    (("T4",), 70.0, "NVIDIA T4 TDP"),
)


def gpu_power_watts(name: str) -> tuple[float, str] | None:
    """Board power (TDP) and a label for a GPU name such as ``"NVIDIA A100-SXM4-40GB"``, else None."""
    upper = name.upper()
    for parts, watts, label in _GPU_POWER:
        if all(p in upper for p in parts):
            return watts, label
    return None


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type


def energy_estimate(seconds: float, power_watts: float | None = None, device_name: str | None = None) -> dict:
    """Energy record ``P x t`` in kWh, labelled as an estimate.

    P = ``power_watts`` if given, else the board power of ``device_name`` if known
    (:func:`gpu_power_watts`), else the paper's convention (A100 SXM, 400 W).
    """
    if power_watts is not None:
        label = f"given{'; ' + device_name if device_name else ''}"
    else:
        is_cpu = (device_name or "").lower().startswith("cpu")
        known = None if is_cpu else gpu_power_watts(device_name or "")
        if known:
            power_watts, label = known
        else:
            power_watts = PAPER_POWER_WATTS
            label = f"NVIDIA A100 SXM TDP, the paper's convention; not measured on {device_name or 'this device'}"
    return _record(power_watts * seconds / 3.6e6, "kWh", f"estimate: P x t with P={power_watts:g} W ({label})",
                   estimate=True, joules=power_watts * seconds)


def _energy_reader(device: torch.device) -> Callable[[], float] | None:
    """A function returning the GPU's cumulative energy in mJ (NVML), or None where unavailable."""
    if device.type != "cuda":
        return None
    try:
        import pynvml

        pynvml.nvmlInit()  # reference-counted; left initialised for later meters
        index = device.index if device.index is not None else torch.cuda.current_device()
        try:  # match by UUID: NVML and CUDA may number GPUs differently (CUDA_VISIBLE_DEVICES)
            uuid = str(torch.cuda.get_device_properties(index).uuid)
            handle = pynvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else "GPU-" + uuid)
        except Exception:
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)  # raises NotSupported before Volta
        return lambda: float(pynvml.nvmlDeviceGetTotalEnergyConsumption(handle))
    except Exception:
        return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux >= 4.0); ``False`` where impossible.
    Hand-written: neither ``resource`` nor psutil can reset the high-water mark."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _vm_hwm_mb() is not None
    except OSError:
        return False


def _vm_hwm_mb() -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**10  # kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def _peak_rss_mb() -> float | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux


class CostMeter:
    """Measure a block: ``with CostMeter(device) as m: train(); m.records()``.

    ``records()`` -> ``{"seconds", "peak_memory", "energy"}`` records (module docstring says how
    each is measured). ``power_watts`` overrides P of the energy estimate.
    """

    def __init__(self, device=None, power_watts: float | None = None):
        self.device = _device(device)
        self.power_watts = power_watts
        self.seconds: float | None = None
        self._energy_mj: float | None = None

    def __enter__(self) -> CostMeter:
        self._reader = _energy_reader(self.device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._rss_reset = _reset_peak_rss()
        synchronize(self.device)
        self._e0 = self._reader() if self._reader else None
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        synchronize(self.device)
        self.seconds = time.perf_counter() - self._t0
        # read the peak now: records() may be called after later blocks have moved the mark
        self._rss_peak = _vm_hwm_mb() if getattr(self, "_rss_reset", False) else _peak_rss_mb()
        if self._reader:
            self._energy_mj = self._reader() - self._e0

    def records(self) -> dict:
        """``{"seconds": s, "peak_memory": MB, "energy": kWh}`` records of the finished block."""
        if self.seconds is None:
            raise RuntimeError("CostMeter.records() called before the measured block finished")
        dev, name = self.device, _device_name(self.device)
        sync = ", torch.cuda.synchronize before and after" if dev.type == "cuda" else ""
        out = {"seconds": _record(self.seconds, "s", f"wall clock, time.perf_counter{sync}; {name}")}
        if dev.type == "cuda":
            peak = torch.cuda.max_memory_allocated(dev) / 2**20
            out["peak_memory"] = _record(peak, "MB (2^20 bytes)", f"torch.cuda.max_memory_allocated in the "
                                         f"block on {name} (PyTorch tensors; allocator cache and CUDA context "
                                         "not included)")
        elif getattr(self, "_rss_reset", False):
            # tracemalloc would miss tensors (PyTorch allocates them outside Python's allocator)
            out["peak_memory"] = _record(self._rss_peak, "MB (2^20 bytes)", "process peak resident set size "
                                         "during the block (Linux VmHWM, reset at its start via "
                                         f"/proc/self/clear_refs; includes data already loaded); {name}")
        else:
            out["peak_memory"] = _record(self._rss_peak, "MB (2^20 bytes)", "process peak resident set size "
                                         "since process start (resource ru_maxrss), not reset per block; "
                                         f"{name}")
        if self._energy_mj is not None:
            joules = self._energy_mj / 1000.0
            out["energy"] = _record(joules / 3.6e6, "kWh", f"measured: NVML total energy counter of {name}, "
                                    "difference over the block (whole GPU)", estimate=False, joules=joules)
        else:
            out["energy"] = energy_estimate(self.seconds, self.power_watts,
                                            name if dev.type == "cuda" else _cpu_label())
        return out


def _cpu_label() -> str:
    return f"cpu: {cpu_name()}"


# --------------------------------------------------------------------------------------------
# Per-layer FLOPs and interleaved step timing (used by chapters 4, 7 and benchmarks/bench_step.py)


def flops_by_layer(model: nn.Module, input_shape: Sequence[int] | None = None) -> pd.DataFrame:
    """Forward FLOPs per window of each leaf module of ``model`` (eval mode, inputs of zeros).

    One row per leaf module in ``named_modules`` order: ``layer`` (qualified name, as in
    ``models.describe``), ``type``, ``FLOPs`` and ``how`` (``"FlopCounterMode"`` or, for
    ``nn.LSTM``/``nn.GRU``/``nn.RNN``, ``"gate formula"``: :func:`rnn_flops`, as in :func:`count_flops`).
    Work done outside any leaf module (a functional op in a ``forward``) gets one extra row,
    ``"(outside leaf modules)"``, so the column always sums to ``count_flops(model)["value"]``.
    """
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    counter = FlopCounterMode(display=False)
    leaves = [(n, m) for n, m in model.named_modules() if n and not any(True for _ in m.children())]
    rnn_steps: dict[str, int] = {}

    def remember(name):
        def hook(_module, args, _out):  # an RNN may run several times per forward: add them up
            rnn_steps[name] = rnn_steps.get(name, 0) + _rnn_steps(args[0])

        return hook

    hooks = [m.register_forward_hook(remember(n)) for n, m in leaves if isinstance(m, nn.RNNBase)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), counter:
            model(torch.zeros(1, *_input_shape(model, input_shape), device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    # FlopCounterMode keys its per-module counts by "<ClassName>.<qualified name>"; parents include
    # their children, so only leaves are read and the remainder is reported separately.
    counts = {k: sum(v.values()) for k, v in counter.get_flop_counts().items()}
    root = type(model).__name__
    rows = []
    for name, module in leaves:
        if isinstance(module, nn.RNNBase):
            rows.append((name, type(module).__name__, rnn_flops(module, rnn_steps.get(name, 0)), "gate formula"))
        else:
            rows.append((name, type(module).__name__, int(counts.get(f"{root}.{name}", 0)), "FlopCounterMode"))
    rnn_seen = sum(counts.get(f"{root}.{n}", 0) for n, m in leaves if isinstance(m, nn.RNNBase))
    outside = counter.get_total_flops() - rnn_seen - sum(r[2] for r in rows if r[3] == "FlopCounterMode")
    if outside:
        rows.append(("(outside leaf modules)", "-", int(outside), "FlopCounterMode"))
    return pd.DataFrame(rows, columns=["layer", "type", "FLOPs", "how"])


def interleaved_step_times(
    steps: Mapping[str, Callable[[], object]],
    rounds: int = 5,
    steps_per_round: int = 4,
    device=None,
    warmup_rounds: int = 1,
) -> pd.DataFrame:
    """Median milliseconds per call of each function in ``steps`` (name -> one training step).

    The functions take turns: every round runs ``steps_per_round`` calls of each, in order, so a
    burst of background load hits all of them alike (times taken minutes apart on a shared machine
    are not comparable). The first ``warmup_rounds`` rounds are not counted. The clock is read after
    :func:`synchronize` on ``device`` (queued GPU kernels count). Returns a DataFrame indexed by name
    with ``wall ms per step`` (``time.perf_counter``), ``process CPU ms per step``
    (``time.process_time``, all threads of this process: far less sensitive to other processes on a
    shared CPU) and ``rounds`` (rounds counted). Hand-written: ``torch.utils.benchmark.Timer`` times
    one statement at a time and cannot interleave several.
    """
    if not steps:
        raise ValueError("interleaved_step_times: steps must name at least one function")
    for name, value in (("rounds", rounds), ("steps_per_round", steps_per_round)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"interleaved_step_times: {name} must be a positive int, got {value!r}")
    if not isinstance(warmup_rounds, int) or warmup_rounds < 0:
        raise ValueError(f"interleaved_step_times: warmup_rounds must be an int >= 0, got {warmup_rounds!r}")
    device = _device(device)
    wall = {name: [] for name in steps}
    cpu = {name: [] for name in steps}
    for r in range(warmup_rounds + rounds):
        for name, step in steps.items():
            synchronize(device)
            w0, c0 = time.perf_counter(), time.process_time()
            for _ in range(steps_per_round):
                step()
            synchronize(device)
            if r >= warmup_rounds:
                wall[name].append((time.perf_counter() - w0) / steps_per_round)
                cpu[name].append((time.process_time() - c0) / steps_per_round)
    out = pd.DataFrame({
        "wall ms per step": {n: 1000 * statistics.median(t) for n, t in wall.items()},
        "process CPU ms per step": {n: 1000 * statistics.median(t) for n, t in cpu.items()},
        "rounds": {n: len(t) for n, t in wall.items()},
    })
    out.index.name = "step"
    return out
