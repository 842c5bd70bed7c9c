"""Export for devices: ONNX round trip against torch, int8 QDQ quantisation, measurements, errors."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from smoothdistill_lib import export, students  # noqa: F401  (students registers chapter 11's models)
from smoothdistill_lib.compute import count_flops
from smoothdistill_lib.models import build_model


@pytest.fixture(scope="module")
def trained_like():
    """A MobileNetV3 student whose BatchNorm statistics are not the defaults (one pass in train mode),
    so folding BN into the convolutions is exercised, and windows to calibrate and test on."""
    torch.manual_seed(0)
    net = build_model("mobilenet_v3s", (6, 2), width=1.0)
    X = np.random.default_rng(0).standard_normal((160, 1, 3, 100)).astype(np.float32)
    net.train()
    with torch.no_grad():
        net(torch.as_tensor(X))
    return net.eval(), X


def test_onnx_round_trip_matches_torch(tmp_path, trained_like):
    net, X = trained_like
    path = export.export_onnx(net, tmp_path / "s.onnx")
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert [o.name for o in model.graph.output] == ["task1", "task2"]
    assert model.opset_import[0].version == export.DEFAULT_OPSET
    assert not any(n.op_type == "Identity" for n in model.graph.node)
    assert export.check_onnx(net, path, X) <= 1e-4  # fp32: same logits as torch
    z = export.onnx_logits(path, X[:7])  # dynamic batch
    assert [a.shape for a in z] == [(7, 6), (7, 2)]
    assert net.training is False


def test_int8_is_at_least_three_times_smaller_and_close(tmp_path, trained_like):
    net, X = trained_like
    fp32 = export.export_onnx(net, tmp_path / "s.onnx")
    int8 = export.quantize_int8(fp32, tmp_path / "s.int8.onnx", X[:96])
    assert fp32.stat().st_size >= 3 * int8.stat().st_size
    q = onnx.load(str(int8))
    ops = {n.op_type for n in q.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ format
    assert not (tmp_path / "s.int8.pre.onnx").exists()  # the intermediate file is removed
    ref, got = export.onnx_logits(fp32, X[96:]), export.onnx_logits(int8, X[96:])
    diff = max(np.abs(a - b).max() for a, b in zip(ref, got))
    assert 0 < diff < 0.5  # quantised: not identical, but close
    # compact names change nothing numerically: the same file re-compacted gives the same logits
    before = export.onnx_logits(int8, X[:8])
    export.compact_names(int8)
    for a, b in zip(before, export.onnx_logits(int8, X[:8])):
        np.testing.assert_array_equal(a, b)


def test_deployment_report_rows(tmp_path, trained_like):
    net, X = trained_like
    y = (np.arange(64) % 6, np.arange(64) % 2)
    rows = export.deployment_report(net, "mnv3", tmp_path, X[:64], X[64:128], y, repeats=20)
    assert [r["precision"] for r in rows] == ["fp32", "int8"]
    fp32, int8 = rows
    assert fp32["params"] == 63488 and fp32["flops"] == count_flops(net)["value"]
    assert fp32["file_bytes"] == (tmp_path / "mnv3.onnx").stat().st_size
    assert fp32["max_abs_diff"] <= 1e-4 and int8["max_abs_diff"] > 0
    assert fp32["latency_ms"] > 0 and int8["latency_ms"] > 0
    for r in rows:
        assert 0 <= r["acc_task1"] <= 100 and 0 <= r["f1_task2"] <= 100
    # the accuracy is onnxruntime's own: recompute it from its logits
    z1 = export.onnx_logits(tmp_path / "mnv3.onnx", X[64:128])[0]
    assert fp32["acc_task1"] == pytest.approx(100 * np.mean(z1.argmax(1) == y[0]))
    # the discordant windows behind the int8 change: recomputed from both precisions' logits
    q1 = export.onnx_logits(tmp_path / "mnv3.int8.onnx", X[64:128])[0]
    a, b = z1.argmax(1) == y[0], q1.argmax(1) == y[0]
    assert "vs_fp32" not in fp32
    assert int8["vs_fp32"]["task1"] == {"n": 64, "fp32_only": int(np.sum(a & ~b)), "int8_only": int(np.sum(b & ~a))}
    v = int8["vs_fp32"]["task1"]
    assert int8["acc_task1"] - fp32["acc_task1"] == pytest.approx(100 * (v["int8_only"] - v["fp32_only"]) / 64)


def test_unsupported_model_or_opset_is_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"opset 9 is not supported for SmallCNN"):
        export.export_onnx(build_model("small_cnn", (4, 2)), tmp_path / "a.onnx", opset=9)
    with pytest.raises(ValueError, match=r"model RecurrentNet is not supported: it holds LSTM"):
        export.export_onnx(build_model("lstm", (4, 2)), tmp_path / "b.onnx")
    with pytest.raises(ValueError, match="models contract"):
        export.export_onnx(torch.nn.Linear(3, 2), tmp_path / "c.onnx")
    with pytest.raises(ValueError, match="calibration"):
        export.quantize_int8(tmp_path / "a.onnx", tmp_path / "a8.onnx", np.zeros((0, 1, 3, 100)))
    assert not (tmp_path / "a.onnx").exists()


def test_mtlnet_teacher_exports_too(tmp_path):
    torch.manual_seed(0)
    net = build_model("mtlnet_corrected", (6, 2)).eval()
    X = np.random.default_rng(1).standard_normal((8, 1, 3, 100)).astype(np.float32)
    path = export.export_onnx(net, tmp_path / "t.onnx", opset=13)
    assert export.check_onnx(net, path, X) <= 1e-4


def test_onnxruntime_sessions_do_not_spin_and_calibration_keeps_its_ranges(tmp_path, trained_like, monkeypatch):
    """On a loaded CPU (CI: two chapters on two cores) onnxruntime's default threads busy-wait beside
    torch's. Every session here, and quantize_static's calibration session (which takes no options),
    runs without spinning on one inter-op thread and torch's thread count (one for latency/logits);
    the int8 model it calibrates is byte for byte the one onnxruntime's defaults give."""
    import contextlib
    import importlib

    ort_quantize = importlib.import_module("onnxruntime.quantization.quantize")

    def settings(opts):
        return (opts.intra_op_num_threads, opts.inter_op_num_threads,
                opts.get_session_config_entry("session.intra_op.allow_spinning"),
                opts.get_session_config_entry("session.inter_op.allow_spinning"))

    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    assert settings(export.session_options()) == (3, 1, "0", "0") and settings(export.session_options(2))[0] == 2
    net, X = trained_like
    fp32 = export.export_onnx(net, tmp_path / "s.onnx")
    assert settings(export.session(fp32).get_session_options()) == (1, 1, "0", "0")

    seen = []
    original = ort_quantize.create_calibrator
    with export._calibration_sessions():
        assert ort_quantize.create_calibrator is not original
        cal = ort_quantize.create_calibrator(fp32, augmented_model_path=str(tmp_path / "aug.onnx"))
        seen.append(settings(cal.infer_session.get_session_options()))
    assert ort_quantize.create_calibrator is original and seen == [(3, 1, "0", "0")]

    ours = export.quantize_int8(fp32, tmp_path / "ours.int8.onnx", X[:96]).read_bytes()
    monkeypatch.setattr(export, "_calibration_sessions", lambda threads=None: contextlib.nullcontext())
    defaults = export.quantize_int8(fp32, tmp_path / "defaults.int8.onnx", X[:96]).read_bytes()
    assert ours == defaults
