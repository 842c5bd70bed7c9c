"""Compute accounting: parameter/size/FLOP conventions, the RNN formula, method costs, meters."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from smoothdistill_lib import compute
from smoothdistill_lib.compute import (
    CostMeter,
    count_flops,
    count_parameters,
    energy_estimate,
    gpu_power_watts,
    method_cost,
    model_cost,
    model_size_mb,
    rnn_flops,
)
from smoothdistill_lib.methods import METHODS
from smoothdistill_lib.models import build_model

torch.set_num_threads(1)


class TinyNet(nn.Module):
    """Contract-shaped toy: (N,1,3,L) -> conv -> features -> two heads."""

    def __init__(self, n_classes=(4, 2), length=20):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, (1, 5))
        self.fc = nn.Linear(2 * 3 * (length - 4), 8)
        self.heads = nn.ModuleList(nn.Linear(8, c) for c in n_classes)

    def features(self, x):
        return torch.relu(self.fc(torch.relu(self.conv(x)).flatten(1)))

    def forward(self, x):
        f = self.features(x)
        return tuple(h(f) for h in self.heads)


def tiny_builder(name, n_classes, **_):
    return TinyNet(n_classes)


def tiny_macs(n_classes=(4, 2), length=20):
    t = length - 4
    return 2 * 3 * t * 5 + (2 * 3 * t) * 8 + 8 * sum(n_classes)


def test_tiny_flops_are_two_per_mac_bias_free():
    net = TinyNet()
    r = count_flops(net, (1, 3, 20))
    assert r["value"] == 2 * tiny_macs() and r["macs"] == tiny_macs()
    assert "FlopCounterMode" in r["how"] and r["unit"] == "FLOPs per window"
    assert count_flops(net, (1, 3, 20), batch_size=4)["value"] == r["value"]  # per window


def test_size_and_params_conventions():
    net = TinyNet()
    n = count_parameters(net)
    assert n == (2 * 5 + 2) + (2 * 3 * 16 * 8 + 8) + (8 * 4 + 4) + (8 * 2 + 2)
    assert model_size_mb(net) == pytest.approx(4 * n / 2**20)
    bn = nn.BatchNorm1d(3)  # running stats are floats (fp32), num_batches_tracked an int64
    assert model_size_mb(bn) == pytest.approx((4 * 4 * 3 + 8) / 2**20)


def test_mtlnet_wisdm_flops_match_reference_macs():
    net = build_model("mtlnet", (18, 2))
    # per window: conv1 32x(1x9) over 3x92, conv2 64x(32x9) over 2x38, FCs, two heads
    macs = 32 * 9 * 3 * 92 + 64 * 32 * 9 * 2 * 38 + 1216 * 1024 + 1024 * 512 + 512 * (18 + 2)
    assert macs == 3_260_032  # reference notes §1.1 [RUN]
    cost = model_cost(net)
    assert cost["flops"]["value"] == 2 * 3_260_032
    assert cost["params"]["value"] == 1_800_084
    assert cost["size_mb"]["value"] == pytest.approx(1_800_084 * 4 / 2**20)
    assert round(cost["size_mb"]["value"], 2) == 6.87


def _lstm_cell_loop_flops(input_size, hidden, steps, batch):
    """FlopCounterMode on an unrolled LSTMCell loop (which it does see): independent of our formula."""
    cell = nn.LSTMCell(input_size, hidden)
    x = torch.randn(batch, input_size)
    with FlopCounterMode(display=False) as fc:
        h = c = torch.zeros(batch, hidden)
        for _ in range(steps):
            h, c = cell(x, (h, c))
    return fc.get_total_flops()


def test_rnn_formula_against_flop_counter():
    # LSTM: FlopCounterMode counts 0 for nn.LSTM (oneDNN kernel) but sees an unrolled LSTMCell
    lstm = nn.LSTM(3, 8, batch_first=True)
    assert rnn_flops(lstm, steps=2 * 5) == _lstm_cell_loop_flops(3, 8, steps=5, batch=2) > 0
    # GRU / RNN / projected LSTM are decomposed into matmuls on CPU: FlopCounterMode sees them
    for m in (nn.GRU(3, 8, num_layers=2, batch_first=True, bidirectional=True), nn.RNN(3, 8, batch_first=True)):
        with FlopCounterMode(display=False) as fc:
            m(torch.randn(2, 5, 3))
        assert rnn_flops(m, steps=10) == fc.get_total_flops() > 0
    proj = nn.LSTM(3, 8, batch_first=True, proj_size=4)
    with pytest.warns(UserWarning), FlopCounterMode(display=False) as fc:  # "not supported with oneDNN"
        proj(torch.randn(2, 5, 3))
    assert rnn_flops(proj, steps=10) == fc.get_total_flops() == 2 * (4 * 8 * (3 + 4) + 4 * 8) * 10


def test_lstm_model_flops_nonzero_and_equal_formula():
    net = build_model("lstm", (18, 2))  # 2-layer LSTM(3 -> 64) over 100 steps, FC 128, heads
    r = count_flops(net, (1, 3, 100))
    lstm_part = 2 * 100 * (4 * 64 * (3 + 64) + 4 * 64 * (64 + 64))
    fc_part = 2 * (64 * 128 + 128 * 20)
    assert r["value"] == lstm_part + fc_part
    with FlopCounterMode(display=False) as fc:  # why the formula: the fused LSTM kernel is invisible
        net(torch.zeros(1, 1, 3, 100))
    assert fc.get_total_flops() in (fc_part, fc_part + lstm_part)  # 0 for the LSTM with oneDNN/cuDNN
    assert "analytic gate formula" in r["how"]
    bi = count_flops(build_model("bilstm", (18, 2)), (1, 3, 100))["value"]
    assert bi == 2 * 100 * 2 * (4 * 64 * (3 + 64) + 4 * 64 * (128 + 64)) + 2 * (128 * 128 + 128 * 20)


def test_method_cost_counts_models_per_method():
    f = 2 * tiny_macs((4, 2))
    costs = {m: method_cost(m, "tiny", (4, 2), (1, 3, 20), builder=tiny_builder, batch_size=8)
             for m in METHODS}
    single_f = 2 * tiny_macs((4,)) + 2 * tiny_macs((2,))
    assert costs["singletask"]["flops"]["value"] == single_f
    assert costs["singletask"]["models_at_inference"] == 2 and costs["singletask"]["models_trained"] == 2
    p = count_parameters(TinyNet((4, 2)))
    assert costs["singletask"]["params"]["value"] == count_parameters(TinyNet((4,))) + count_parameters(TinyNet((2,)))
    for m in ("multitask", "sd_dropout", "born_again", "smooth_distill"):
        assert costs[m]["flops"]["value"] == f and costs[m]["params"]["value"] == p
        assert costs[m]["models_at_inference"] == 1
    assert costs["multitask"]["train_flops"]["value"] == 3 * f
    assert costs["born_again"]["train_flops"]["value"] == 7 * f
    assert costs["born_again"]["train_params"]["value"] == 2 * p
    assert costs["smooth_distill"]["train_flops"]["value"] == pytest.approx(4 * f + 3 * p / 8)
    assert costs["sd_dropout"]["train_flops"]["value"] == 3 * (f + 4 * 2 * 8 * (4 + 2))
    assert costs["smooth_distill"]["train_flops"]["how"].startswith("estimate")
    with pytest.raises(ValueError, match="unknown method"):
        method_cost("ensemble", builder=tiny_builder)
    with pytest.raises(ValueError, match=r"\(c1, c2\)"):
        method_cost("multitask", n_classes=(4,), builder=tiny_builder)


def test_method_cost_mtlnet_singletask_doubles_size():
    single = method_cost("singletask", "mtlnet", (18, 2))
    multi = method_cost("multitask", "mtlnet", (18, 2))
    # two trunks, one head each: 2 x 1,800,084 minus the heads each one lacks
    assert single["params"]["value"] == 2 * 1_800_084 - (512 * 2 + 2) - (512 * 18 + 18)
    assert multi["flops"]["value"] == 2 * 3_260_032
    assert single["flops"]["value"] == 2 * (2 * 3_260_032 - 512 * 20)


def test_gpu_power_lookup_and_estimate():
    assert gpu_power_watts("NVIDIA A100-SXM4-40GB")[0] == 400
    assert gpu_power_watts("NVIDIA A100-PCIE-40GB")[0] == 250
    assert gpu_power_watts("NVIDIA H100 80GB HBM3")[0] == 700
    assert gpu_power_watts("NVIDIA L40S")[0] == 350 and gpu_power_watts("NVIDIA L4")[0] == 72
    assert gpu_power_watts("Tesla T4")[0] == 70 and gpu_power_watts("Mystery GPU") is None
    e = energy_estimate(3600, device_name="Tesla T4")
    assert e["value"] == pytest.approx(0.070) and e["unit"] == "kWh" and e["estimate"] is True
    assert e["how"] == "estimate: P x t with P=70 W (NVIDIA T4 TDP)"
    e = energy_estimate(9000, device_name="cpu: Some CPU")
    assert e["value"] == pytest.approx(1.0) and "paper's convention" in e["how"] and "cpu: Some CPU" in e["how"]
    assert energy_estimate(1800, power_watts=100)["value"] == pytest.approx(0.05)


def test_cost_meter_on_cpu():
    with CostMeter("cpu", power_watts=50) as m:
        time.sleep(0.05)
    rec = m.records()
    assert set(rec) == {"seconds", "peak_memory", "energy"}
    assert 0.05 <= rec["seconds"]["value"] < 2 and rec["seconds"]["unit"] == "s"
    assert rec["peak_memory"]["value"] > 10 and "peak resident set size" in rec["peak_memory"]["how"]
    assert rec["energy"]["value"] == pytest.approx(50 * rec["seconds"]["value"] / 3.6e6)
    assert rec["energy"]["how"].startswith("estimate: P x t with P=50 W")
    with pytest.raises(RuntimeError, match="before the measured block"):
        CostMeter("cpu").records()


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc/self/clear_refs")
def test_cpu_peak_memory_is_reset_per_block_on_linux():
    """A block that allocates 200 MB peaks higher than a later block that allocates nothing:
    the second figure is not the process's all-time peak."""
    import numpy as np

    with CostMeter("cpu") as big:
        a = np.ones(25_000_000)  # 200 MB, touched
        del a
    with CostMeter("cpu") as small:
        pass
    big_mb, small_mb = big.records()["peak_memory"], small.records()["peak_memory"]
    assert "VmHWM" in small_mb["how"] and "reset at its start" in small_mb["how"]
    assert big_mb["value"] - small_mb["value"] > 150


def test_cost_meter_falls_back_to_ru_maxrss_where_the_peak_cannot_be_reset(monkeypatch):
    monkeypatch.setattr(compute, "_reset_peak_rss", lambda: False)
    with CostMeter("cpu") as m:
        pass
    rec = m.records()["peak_memory"]
    assert "ru_maxrss" in rec["how"] and "not reset" in rec["how"] and rec["value"] > 10


def test_cost_meter_uses_the_energy_counter_when_present(monkeypatch):
    readings = iter([1_000.0, 7_201_000.0])  # mJ: 7,200 J = 0.002 kWh
    monkeypatch.setattr(compute, "_energy_reader", lambda device: lambda: next(readings))
    with CostMeter("cpu") as m:
        pass
    e = m.records()["energy"]
    assert e["value"] == pytest.approx(0.002) and e["joules"] == pytest.approx(7200)
    assert e["estimate"] is False and e["how"].startswith("measured: NVML")


def test_cost_functions_leave_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    method_cost("smooth_distill", "tiny", (4, 2), (1, 3, 20), builder=tiny_builder)
    assert torch.equal(torch.rand(3), expected)
    net = TinyNet()
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    assert isinstance(count_flops(net, (1, 3, 20))["value"], int)
    assert torch.equal(torch.rand(3), expected)


class _Outside(nn.Module):
    """A functional matmul outside any leaf module, plus an LSTM (counted by the gate formula)."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(20, 6))
        self.lstm = nn.LSTM(3, 5, batch_first=True)
        self.heads = nn.ModuleList([nn.Linear(5, 2)])

    def forward(self, x):
        x = x[:, 0]  # (N, 3, 20)
        x = (x @ self.w).transpose(1, 2)  # (N, 6, 3): 2 * 3 * 20 * 6 FLOPs outside the leaves
        out, _ = self.lstm(x)
        return (self.heads[0](out[:, -1]),)


def test_flops_by_layer_sums_to_count_flops_with_rnns_by_formula():
    mtlnet = build_model("mtlnet", (12, 3))
    for net in (TinyNet(), _Outside(), mtlnet, build_model("gru", (12, 3))):
        shape = (1, 3, 20) if not hasattr(net, "layout") else (1, 3, 100)
        table = compute.flops_by_layer(net, shape)
        assert table["FLOPs"].sum() == count_flops(net, shape)["value"], type(net).__name__
    table = compute.flops_by_layer(_Outside(), (1, 3, 20)).set_index("layer")
    assert table.loc["(outside leaf modules)", "FLOPs"] == 2 * 3 * 20 * 6
    lstm = table.loc["lstm"]
    assert lstm["how"] == "gate formula" and lstm["FLOPs"] == rnn_flops(nn.LSTM(3, 5), 6)
    mtl = compute.flops_by_layer(mtlnet).set_index("layer")["FLOPs"]
    assert mtl["conv.0"] == 2 * 32 * 9 * 3 * 92  # 32 kernels of 9 taps at 3 x 92 output positions
    assert mtl["fc.0"] == 2 * 1216 * 1024 and mtl["conv.1"] == 0  # activations are not counted
    assert list(mtl.index) == [n for n, m in mtlnet.named_modules() if n and not list(m.children())]


def test_interleaved_step_times_take_turns_and_skip_the_warmup():
    calls = []
    steps = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b") or time.sleep(0.002)}
    table = compute.interleaved_step_times(steps, rounds=3, steps_per_round=2, device="cpu", warmup_rounds=1)
    assert calls == ["a", "a", "b", "b"] * 4  # 1 warm-up + 3 counted rounds, methods in turn
    assert list(table.index) == ["a", "b"] and table.index.name == "step"
    assert (table["rounds"] == 3).all()
    assert table.loc["b", "wall ms per step"] >= 2.0 > table.loc["a", "wall ms per step"]
    assert table.loc["b", "process CPU ms per step"] < table.loc["b", "wall ms per step"]  # sleeping is not CPU
    with pytest.raises(ValueError, match="steps_per_round"):
        compute.interleaved_step_times(steps, steps_per_round=0)
    with pytest.raises(ValueError, match="at least one"):
        compute.interleaved_step_times({})


def test_gpu_hours_estimate_is_steps_times_the_assumed_step_range():
    low, high = compute.GPU_STEP_SECONDS_ASSUMED
    assert 0 < low < high
    assert compute.gpu_hours_estimate(36_000) == pytest.approx((10 * low, 10 * high))
    with pytest.raises(ValueError, match="steps must be a number >= 0"):
        compute.gpu_hours_estimate(float("nan"))
