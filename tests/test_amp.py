"""Mixed precision: the choice per GPU generation (faked on CPU), the GradScaler, and run ids."""

from __future__ import annotations

import contextlib

import pytest
import torch

from smoothdistill_lib import amp, experiment
from smoothdistill_lib.engine import TrainConfig


@pytest.fixture
def fake_gpu(monkeypatch):
    """``fake_gpu((major, minor))`` makes torch report a CUDA device of that compute capability."""

    def install(capability):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                            lambda including_emulation=True: including_emulation or capability >= (8, 0))

    return install


@pytest.mark.parametrize("capability, want", [((7, 0), "fp16"), ((7, 5), "fp16"), ((8, 0), "bf16"),
                                              ((8, 9), "bf16"), ((9, 0), "bf16")])  # fmt: skip
def test_auto_picks_bf16_on_ampere_and_later_and_fp16_before(fake_gpu, capability, want):
    fake_gpu(capability)
    assert amp.resolve_precision("auto", "cuda") == want
    assert amp.native_bf16("cuda") is (want == "bf16")


def test_explicit_requests_and_the_older_bf16_flag(fake_gpu):
    fake_gpu((7, 5))
    assert amp.resolve_precision("fp16", "cuda") == "fp16"
    assert amp.resolve_precision("bf16", "cuda") == "bf16"  # asked for: honoured (emulated on 7.5)
    assert amp.resolve_precision("fp32", "cuda", bf16=True) == "bf16"  # TrainConfig(bf16=True) as before
    assert amp.resolve_precision("fp32", "cuda") == "fp32"
    for p in amp.PRECISIONS:  # CPU and MPS always train in fp32
        assert amp.resolve_precision(p, "cpu") == "fp32"
        assert amp.resolve_precision(p, "mps", bf16=True) == "fp32"
    with pytest.raises(ValueError, match="precision must be one of"):
        amp.resolve_precision("fp8", "cuda")
    with pytest.raises(ValueError, match="TrainConfig.precision must be one of"):
        TrainConfig(precision="half")


@pytest.mark.filterwarnings("ignore:CUDA is not available")  # the GPU is faked: autocast says so
def test_autocast_dtype_per_precision(fake_gpu):
    fake_gpu((7, 5))
    x_cpu = torch.zeros(2)
    assert isinstance(amp.autocast(x_cpu, "fp16"), contextlib.nullcontext)
    assert isinstance(amp.autocast(x_cpu, True), contextlib.nullcontext)
    x_cuda = type("T", (), {"device": torch.device("cuda")})()
    ctx = amp.autocast(x_cuda, "auto")
    assert isinstance(ctx, torch.autocast) and ctx.fast_dtype == torch.float16
    fake_gpu((9, 0))
    assert amp.autocast(x_cuda, "auto").fast_dtype == torch.bfloat16


@pytest.mark.filterwarnings("ignore:torch.cuda.amp.GradScaler is enabled")  # no CUDA here
def test_grad_scaler_only_for_fp16_on_cuda():
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))])
    assert amp.with_grad_scaler(opt, "fp16", "cpu") is opt
    assert amp.with_grad_scaler(opt, "bf16", "cuda") is opt
    wrapped = amp.with_grad_scaler(opt, "fp16", "cuda")
    assert isinstance(wrapped, amp.ScaledOptimizer) and wrapped.optimizer is opt
    assert isinstance(wrapped.scaler, torch.amp.GradScaler)


def test_fit_records_the_precision_it_ran_and_run_ids_do_not_change(tiny_net):
    import numpy as np

    from smoothdistill_lib.engine import fit

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 1, 3, 12)).astype(np.float32)
    y1, y2 = rng.integers(0, 4, 60), rng.integers(0, 3, 60)
    res = fit((X, y1, y2), np.arange(40), np.arange(40, 60), None,
              TrainConfig(method="multitask", epochs=1, precision="auto"), progress=False, build=tiny_net,
              n_classes=(4, 3))  # fmt: skip
    assert res.config.precision == "fp32"  # CPU: what ran
    assert experiment.TRAIN_ADDED_LATER["precision"] == "fp32"
    exp = experiment.Experiment(name="t", datasets=["sleepsim"], methods=["multitask"], seeds=[0], folds=[0], epochs=1)
    spec = experiment.expand(exp, "quick")[0]
    assert spec.train["precision"] == "fp32" and "precision" not in spec.identity()["train"]
    exp.train_options = {"precision": "auto"}
    assert experiment.expand(exp, "quick")[0].run_id != spec.run_id  # a precision other than fp32 is a new run
