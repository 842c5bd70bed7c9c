"""Export a trained two-head net for a device: ONNX (fp32), a check against torch, static int8 (QDQ),
and what a deployment needs to know: parameters, file size, FLOPs, latency, accuracy and macro-F1.

- :func:`export_onnx` writes ``model`` (eval mode) as ONNX with one input ``x`` ``(batch, 1, 3, L)``
  (dynamic batch) and one output per head, ``task1``, ``task2``, ... Supported: the convolutional
  nets (students, MTL-net) at opsets :data:`SUPPORTED_OPSETS`; anything else raises ONE ``ValueError``
  naming the model or opset (a recurrent net exports to ONNX, but the int8 path below and most
  micro-controller runtimes do not cover its loops, so it is refused here rather than half-supported).
- :func:`check_onnx`: onnxruntime's logits against torch's on the same windows (max ``|delta|``).
- :func:`quantize_int8`: ``onnxruntime.quantization.quantize_static`` in QDQ format, int8 weights
  and uint8 activations calibrated (min-max) on windows the caller gives (training windows, never
  test windows), after onnxruntime's ``quant_pre_process`` (shape inference, graph optimisation).
  Per-tensor weight scales by default: per-channel scales (``per_channel=True``) are kinder to
  depthwise convolutions but store a float scale, a zero point and an int32 bias per channel, which in
  a 5-tap depthwise layer outweighs its 5 int8 weights (on the 65k-parameter student: 2.5x smaller
  than fp32 instead of 3.2x).
- :func:`latency_ms`: median wall time of one window (batch 1) in an onnxruntime session on ONE CPU
  thread (``intra_op_num_threads = inter_op_num_threads = 1``): the closest a laptop gets to a
  single-core wearable; the absolute numbers are this CPU's.
- :func:`deployment_report`: all of the above for fp32 and int8, one dict per precision.

Every onnxruntime session made here, and ``quantize_static``'s calibration session, runs with
:func:`session_options`: no spinning threads, one inter-op thread, and torch's thread count (one
for latency and logits), so a loaded machine (CI runs two chapters on two cores) is not made slower
by threads that busy-wait.
"""

from __future__ import annotations

import contextlib
import importlib
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from smoothdistill_lib.compute import count_flops
from smoothdistill_lib.engine import predict
from smoothdistill_lib.metrics import classification_metrics
from smoothdistill_lib.models import count_parameters

# onnx, onnx_ir and onnxruntime are the optional extra [deploy]: imported where used, so the rest of
# the library (and Colab's quick install) works without them.

#: ONNX opsets this module exports to and tests (onnxruntime 1.30 runs them all; QDQ needs >= 13)
SUPPORTED_OPSETS = tuple(range(13, 22))
DEFAULT_OPSET = 17
#: layer types export_onnx accepts; a net holding any other parameterised layer is refused
_SUPPORTED_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d)


def _check_exportable(model: nn.Module, opset: int) -> None:
    name = type(model).__name__
    if isinstance(opset, bool) or not isinstance(opset, int) or opset not in SUPPORTED_OPSETS:
        raise ValueError(f"export_onnx: opset {opset!r} is not supported for {name}; use one of "
                         f"{SUPPORTED_OPSETS[0]}..{SUPPORTED_OPSETS[-1]} (int8 QDQ needs >= 13)")
    if not isinstance(getattr(model, "heads", None), nn.ModuleList):
        raise ValueError(f"export_onnx: model {name} does not follow the models contract (no `heads` ModuleList)")
    bad = sorted({type(m).__name__ for m in model.modules()
                  if any(True for _ in m.parameters(recurse=False)) and not isinstance(m, _SUPPORTED_LAYERS)})
    if bad:
        raise ValueError(f"export_onnx: model {name} is not supported: it holds {', '.join(bad)} layer(s); "
                         "only convolutional nets (Conv, Linear, BatchNorm) export and quantise here")


def export_onnx(model: nn.Module, path: str | Path, window_length: int = 100, opset: int = DEFAULT_OPSET) -> Path:
    """Write ``model`` as ONNX to ``path``: input ``x`` ``(batch, 1, 3, window_length)``, outputs
    ``task1``, ``task2``, ... ``(batch, c_k)``. Eval mode; the model's mode and device are restored.
    Raises ``ValueError`` naming the model or opset when it is not supported (module docstring)."""
    _check_exportable(model, opset)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n_heads = len(model.heads)
    was_training, param = model.training, next(model.parameters())
    device = param.device
    model.eval().cpu()
    try:
        x = torch.zeros(2, 1, 3, window_length)
        # The TorchScript exporter: deterministic for these plain conv nets, needs no onnxscript at
        # run time, and names inputs/outputs and the dynamic batch axis directly.
        with torch.no_grad(), _quiet_export():
            torch.onnx.export(model, (x,), str(path), input_names=["x"],
                              output_names=[f"task{k + 1}" for k in range(n_heads)],
                              dynamic_axes={"x": {0: "batch"}, **{f"task{k + 1}": {0: "batch"} for k in range(n_heads)}},
                              opset_version=opset, do_constant_folding=True, dynamo=False)  # fmt: skip
    finally:
        model.to(device).train(was_training)
    _tidy(path)
    return path


def _tidy(path: Path) -> None:
    """Remove the exporter's ``Identity`` nodes (it shares equal constants, e.g. two identical folded
    BN biases, through them) so every Conv bias is an initializer, which the int8 quantiser needs to
    quantise it; uses onnx_ir's own passes."""
    import onnx_ir as ir
    from onnx_ir.passes.common import IdentityEliminationPass, RemoveUnusedNodesPass

    model = ir.load(str(path))
    for p in (IdentityEliminationPass(), RemoveUnusedNodesPass()):
        p(model)
    ir.save(model, str(path))


class _quiet_export:
    """Silence the exporter's deprecation warning (the TorchScript path is chosen on purpose)."""

    def __enter__(self):
        import warnings

        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        # the models' input checks compare shapes in Python: constant for a traced fixed-L net
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        return self

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)


def session_options(threads: int | None = None):
    """onnxruntime ``SessionOptions`` for a CPU shared with torch and with other processes:
    ``threads`` intra-op threads (default: torch's thread count, ``torch.get_num_threads()``), one
    inter-op thread (sessions run sequentially), and no spinning.

    onnxruntime's defaults are a thread per physical core whose workers spin (busy-wait) for work
    between operators: in a notebook kernel beside torch's threads, on a machine whose other cores
    are busy (CI runs two chapters at once on two cores), a spinning worker takes the core a thread
    of the same computation waits for. ``benchmarks/bench_ort_threads.py`` measures it."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, int(torch.get_num_threads() if threads is None else threads))
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    opts.log_severity_level = 3  # warnings about unused initialisers etc. are noise here
    return opts


def session(path: str | Path, threads: int = 1):
    """An onnxruntime CPU session of ``path`` running on ``threads`` intra-op threads
    (:func:`session_options`: one inter-op thread, no spinning)."""
    import onnxruntime as ort

    return ort.InferenceSession(str(path), sess_options=session_options(threads), providers=["CPUExecutionProvider"])


@contextlib.contextmanager
def _calibration_sessions(threads: int | None = None):
    """While active, ``quantize_static``'s calibration session runs with :func:`session_options`.

    ``quantize_static`` takes no ``SessionOptions``: its calibrator builds its session with
    onnxruntime's defaults (a spinning thread per core) and runs every calibration batch in it. We
    wrap ``create_calibrator`` where ``quantize_static`` looks it up, and give the calibrator it
    returns a session of the same (augmented) model with our options and onnxruntime's own
    "no graph optimisation" setting: the same arithmetic, so the same ranges (tested). Where an
    onnxruntime version lays this out otherwise, calibration keeps its defaults."""
    import onnxruntime as ort

    # the module, by its full name: onnxruntime.quantization's `quantize` is a function of that name
    ort_quantize = importlib.import_module("onnxruntime.quantization.quantize")
    original = getattr(ort_quantize, "create_calibrator", None)
    if original is None:
        yield
        return

    def create_calibrator(*args, **kwargs):
        calibrator = original(*args, **kwargs)
        path = getattr(calibrator, "augmented_model_path", None)
        if path is not None and getattr(calibrator, "infer_session", None) is not None:
            opts = session_options(threads)
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # as the calibrator's own
            calibrator.infer_session = ort.InferenceSession(
                str(path), sess_options=opts,
                providers=getattr(calibrator, "execution_providers", None) or ["CPUExecutionProvider"])
        return calibrator

    ort_quantize.create_calibrator = create_calibrator
    try:
        yield
    finally:
        ort_quantize.create_calibrator = original


def onnx_logits(path_or_session, X, batch_size: int = 512) -> tuple[np.ndarray, ...]:
    """Logits of an ONNX model on windows ``X`` ``(N, 1, 3, L)``: a tuple of ``(N, c_k)`` float32 arrays."""
    sess = session(path_or_session) if isinstance(path_or_session, str | Path) else path_or_session
    X = np.ascontiguousarray(np.asarray(X, dtype=np.float32))
    parts = [sess.run(None, {"x": X[s:s + batch_size]}) for s in range(0, len(X), batch_size)]
    return tuple(np.concatenate([p[k] for p in parts]) for k in range(len(parts[0])))


def check_onnx(model: nn.Module, path: str | Path, X) -> float:
    """Largest ``|torch logit - onnxruntime logit|`` over every head and window of ``X``."""
    ref = predict(model, X, device="cpu")
    got = onnx_logits(path, X)
    return float(max(np.abs(a - b).max() for a, b in zip(ref, got)))


def quantize_int8(fp32_path: str | Path, int8_path: str | Path, calibration, batch_size: int = 64,
                  per_channel: bool = False) -> Path:  # fmt: skip
    """Static int8 quantisation (QDQ) of ``fp32_path`` into ``int8_path``, calibrated (min-max) on
    ``calibration`` windows ``(N, 1, 3, L)``; weights int8 (one scale per tensor, or per output channel
    when ``per_channel``), activations uint8, biases int32; then :func:`compact_names`."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    calib = np.ascontiguousarray(np.asarray(calibration, dtype=np.float32))
    if calib.ndim != 4 or len(calib) == 0:
        raise ValueError(f"quantize_int8: calibration must be windows (N, 1, 3, L), N >= 1; got {calib.shape}")

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._batches = iter([{"x": calib[s:s + batch_size]} for s in range(0, len(calib), batch_size)])

        def get_next(self):
            return next(self._batches, None)

    int8_path = Path(int8_path)
    int8_path.parent.mkdir(parents=True, exist_ok=True)
    prepped = int8_path.with_name(int8_path.stem + ".pre.onnx")
    try:
        quant_pre_process(str(fp32_path), str(prepped), skip_symbolic_shape=True)
        with _calibration_sessions():  # torch's thread count, no spinning (see session_options)
            quantize_static(str(prepped), str(int8_path), Reader(), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            per_channel=per_channel)  # fmt: skip
    finally:
        prepped.unlink(missing_ok=True)
    compact_names(int8_path)
    return int8_path


def compact_names(path: str | Path) -> Path:
    """Rewrite ``path`` in place with short tensor names (``t0``, ``t1``, ...), no node names, doc
    strings or shape annotations (``value_info``); graph inputs and outputs keep their names.

    Hand-written (a rename over the protobuf): ONNX stores every tensor name as text wherever it is
    used, and a QDQ graph names each weight, scale and zero point after its torch module path. For a
    25k-parameter student those names took more bytes than its int8 weights; onnxruntime and the
    onnx checker need only unique names. The arithmetic is untouched (tested: same logits).
    """
    import onnx

    model = onnx.load(str(path))
    g = model.graph
    keep = {v.name for v in (*g.input, *g.output)}
    rename: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        return rename.setdefault(name, f"t{len(rename)}")

    for t in g.initializer:
        t.name = short(t.name)
    for node in g.node:
        node.name, node.doc_string = "", ""
        node.input[:] = [short(n) for n in node.input]
        node.output[:] = [short(n) for n in node.output]
    del g.value_info[:]
    g.doc_string = ""
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return Path(path)


def latency_ms(path: str | Path, window_length: int = 100, repeats: int = 300, warmup: int = 30) -> float:
    """Median milliseconds of one batch-1 inference of ``path`` on one CPU thread (onnxruntime)."""
    sess = session(path, threads=1)
    x = np.random.default_rng(0).standard_normal((1, 1, 3, window_length)).astype(np.float32)
    for _ in range(warmup):
        sess.run(None, {"x": x})
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sess.run(None, {"x": x})
        times.append(time.perf_counter() - t0)
    return 1000.0 * statistics.median(times)


def onnx_scores(path: str | Path, X, y_true: Sequence, n_classes: Sequence[int]) -> dict:
    """Test accuracy and macro-F1 (percent) of each head: ``{"acc_task1", "f1_task1", ...}``."""
    logits = onnx_logits(path, X)
    out = {}
    for k, (z, y, c) in enumerate(zip(logits, y_true, n_classes), start=1):
        m = classification_metrics(np.asarray(y), z.argmax(1), n_classes=int(c))
        out[f"acc_task{k}"], out[f"f1_task{k}"] = m["accuracy"], m["macro_f1"]
    return out


def deployment_report(model: nn.Module, name: str, folder: str | Path, calibration, X_test, y_test: Sequence,
                      window_length: int = 100, opset: int = DEFAULT_OPSET, repeats: int = 300) -> list[dict]:  # fmt: skip
    """Export ``model`` as ``<folder>/<name>.onnx`` and ``<name>.int8.onnx`` and measure both.

    Returns two rows (fp32, int8): ``model``, ``precision``, ``params``, ``file_bytes``, ``flops``
    (per window, FlopCounterMode on the torch model: the same operations in both precisions),
    ``latency_ms`` (:func:`latency_ms`), ``max_abs_diff`` (onnxruntime vs torch logits on the test
    windows; for int8 the deviation quantisation causes), and ``acc_task{k}``/``f1_task{k}`` on
    ``X_test`` with labels ``y_test`` (one array per head). The int8 row also holds ``vs_fp32``:
    per task, the test windows ``n``, those only fp32 gets right (``fp32_only``) and those only int8
    gets right (``int8_only``): the discordant pairs behind the accuracy change, for McNemar's test
    and its interval (:func:`stats.paired_proportion_change`).
    """
    folder = Path(folder)
    fp32 = export_onnx(model, folder / f"{name}.onnx", window_length, opset)
    int8 = quantize_int8(fp32, folder / f"{name}.int8.onnx", calibration)
    n_classes = [h.out_features for h in model.heads]
    params, flops = count_parameters(model), count_flops(model, (1, 3, window_length))["value"]
    rows, right = [], {}
    for precision, path in (("fp32", fp32), ("int8", int8)):
        logits = onnx_logits(path, X_test)
        right[precision] = [z.argmax(1) == np.asarray(y) for z, y in zip(logits, y_test)]
        rows.append({"model": name, "precision": precision, "params": params,
                     "file_bytes": path.stat().st_size, "flops": flops,
                     "latency_ms": latency_ms(path, window_length, repeats=repeats),
                     "max_abs_diff": check_onnx(model, path, X_test),
                     **onnx_scores(path, X_test, y_test, n_classes)})  # fmt: skip
    rows[1]["vs_fp32"] = {f"task{k}": {"n": int(len(a)), "fp32_only": int(np.sum(a & ~b)), "int8_only": int(np.sum(b & ~a))}
                          for k, (a, b) in enumerate(zip(right["fp32"], right["int8"]), start=1)}
    return rows
