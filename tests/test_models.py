"""Tests of the model registry: shapes, parameter counts, the faithful net's row-0 quirk, BN switch."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from smoothdistill_lib.models import MODELS, build_model, count_parameters, describe

torch.set_num_threads(1)

N = 4
L = 100
HEADS = [(18, 2), (7,)]


def _x(n: int = N, length: int = L, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 1, 3, length, generator=torch.Generator().manual_seed(seed))


def _linear(i: int, o: int) -> int:
    return i * o + o


def _mtlnet_params(n_classes: tuple[int, ...], flat: int = 1216) -> int:
    # the authors' layer table (reference notes §1.1), written as a formula
    trunk = (32 * 1 * 9 + 32) + (64 * 32 * 9 + 64) + _linear(flat, 1024) + _linear(1024, 512)
    return trunk + sum(_linear(512, c) for c in n_classes)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("n_classes", HEADS)
def test_shapes_every_model_and_head_count(name, n_classes):
    model = build_model(name, n_classes).eval()
    out = model(_x())
    assert isinstance(out, tuple) and len(out) == len(n_classes)
    assert [tuple(t.shape) for t in out] == [(N, c) for c in n_classes]
    assert isinstance(model.heads, nn.ModuleList) and len(model.heads) == len(n_classes)
    assert model.features(_x()).shape == (N, model.feature_dim)
    assert MODELS[name].layout in ("faithful", "axes") and MODELS[name].description


@pytest.mark.parametrize("name", list(MODELS))
def test_forward_equals_heads_of_features(name):
    model = build_model(name, (5, 3)).eval()
    x = _x()
    with torch.no_grad():
        out = model(x)
        f = model.features(x)
        ref = tuple(h(f) for h in model.heads)
    assert all(torch.equal(a, b) for a, b in zip(out, ref, strict=True))


@pytest.mark.parametrize(
    "n_classes, expected",
    [((18, 2), 1_800_084), ((12, 3), 1_797_519), ((13, 3), 1_798_032)],  # WISDM, Sleep, MHEALTH
)
def test_mtlnet_parameter_counts_match_reference(n_classes, expected):
    n = count_parameters(build_model("mtlnet", n_classes))
    assert n == expected
    assert n == _mtlnet_params(n_classes)


def test_single_task_mtlnet_drops_second_head():
    n = count_parameters(build_model("mtlnet", (18,)))
    assert n == _mtlnet_params((18,))
    assert n == 1_800_084 - _linear(512, 2)


def test_corrected_mtlnet_flatten_and_bn_param_counts():
    plain = build_model("mtlnet_corrected", (18, 2))
    assert count_parameters(plain) == _mtlnet_params((18, 2), flat=64 * 3 * 19)
    bn = build_model("mtlnet_corrected", (18, 2), batchnorm=True)
    assert count_parameters(bn) - count_parameters(plain) == 2 * (32 + 64 + 1024 + 512)


def _rows_perturbed(x: torch.Tensor) -> torch.Tensor:
    y = x.clone()
    y[:, :, 1:, :] = torch.randn(y[:, :, 1:, :].shape, generator=torch.Generator().manual_seed(9)) * 5
    return y


def test_faithful_mtlnet_sees_only_row_0():
    model = build_model("mtlnet", (18, 2)).eval()
    x = _x()
    with torch.no_grad():
        a, b = model(x), model(_rows_perturbed(x))
        c = model(x + torch.cat([torch.ones_like(x[:, :, :1]), torch.zeros_like(x[:, :, 1:])], dim=2))
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])  # row 0 does matter


def test_corrected_mtlnet_uses_all_rows():
    for row in (1, 2):
        model = build_model("mtlnet_corrected", (18, 2)).eval()
        x = _x()
        y = x.clone()
        y[:, :, row, :] += 1.0
        with torch.no_grad():
            assert not torch.equal(model(x)[0], model(y)[0])


def test_batchnorm_present_only_when_asked():
    def n_bn(m: nn.Module) -> int:
        return sum(isinstance(s, nn.modules.batchnorm._BatchNorm) for s in m.modules())

    assert n_bn(build_model("mtlnet", (18, 2))) == 0
    assert n_bn(build_model("mtlnet_corrected", (18, 2))) == 0
    assert n_bn(build_model("mtlnet_corrected", (18, 2), batchnorm=True)) == 4  # 2 convs + 2 FCs
    assert n_bn(build_model("anponet", (18, 2))) == 2
    with pytest.raises(ValueError, match="faithful"):
        from smoothdistill_lib.models import MTLNet

        MTLNet((18, 2), faithful=True, batchnorm=True)


def test_faithful_mtlnet_has_no_dropout():
    model = build_model("mtlnet", (18, 2))
    assert not any(isinstance(m, nn.Dropout) for m in model.modules())
    x = _x()
    model.train()
    assert torch.equal(model(x)[0], model(x)[0])


def test_unknown_model_lists_registry():
    with pytest.raises(ValueError) as e:
        build_model("resnet", (18, 2))
    for name in MODELS:
        assert name in str(e.value)


@pytest.mark.parametrize("bad", [18, (), (18, 0), (18.0, 2)])
def test_bad_n_classes(bad):
    with pytest.raises(ValueError, match="n_classes"):
        build_model("lstm", bad)


def test_unknown_option_is_named():
    with pytest.raises(ValueError, match="batchnorm"):
        build_model("mtlnet", (18, 2), batchnorm=True)


@pytest.mark.parametrize("name", ["lstm", "bilstm", "gru", "anponet"])
@pytest.mark.parametrize("length", [37, 160])
def test_recurrent_models_take_other_window_lengths(name, length):
    model = build_model(name, (18, 2), window_length=100).eval()
    assert [tuple(t.shape) for t in model(_x(2, length))] == [(2, 18), (2, 2)]


@pytest.mark.parametrize("name", ["mtlnet", "mtlnet_corrected"])
def test_cnn_window_length_option(name):
    model = build_model(name, (18, 2), window_length=128).eval()
    assert [tuple(t.shape) for t in model(_x(2, 128))] == [(2, 18), (2, 2)]
    with pytest.raises(ValueError, match="window_length=128"):
        model(_x(2, 100))
    with pytest.raises(ValueError, match="too short"):
        build_model(name, (18, 2), window_length=20)


def test_bad_input_shape_is_explained():
    model = build_model("gru", (18, 2))
    with pytest.raises(ValueError, match=r"\(N, 1, 3, L\)"):
        model(torch.zeros(2, 3, 100))


@pytest.mark.parametrize("name", list(MODELS))
def test_gradients_reach_every_parameter(name):
    options = {"batchnorm": True} if name == "mtlnet_corrected" else {}
    model = build_model(name, (6, 3), **options).train()
    out = model(_x())
    loss = sum(nn.functional.cross_entropy(o, torch.arange(N) % o.shape[1]) for o in out)
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert p.grad.abs().sum() > 0, pname


def test_describe_mtlnet_shape_table():
    model = build_model("mtlnet", (18, 2))
    table = describe(model, (2, 1, 3, 100))
    assert list(table.columns) == ["layer", "type", "output_shape", "parameters"]
    shapes = dict(zip(table["layer"], table["output_shape"]))
    assert shapes["conv.0"] == (2, 32, 3, 92)
    assert shapes["conv.2"] == (2, 32, 2, 46)  # stride (2, 2): rows 3 -> 2
    assert shapes["conv.6"] == (2, 1216)
    assert shapes["heads.1"] == (2, 2)
    assert table["parameters"].sum() == count_parameters(model)
    assert model.training  # mode restored


@pytest.mark.parametrize("name", list(MODELS))
def test_describe_accounts_for_every_parameter(name):
    model = build_model(name, (18, 2))
    table = describe(model)
    assert table["parameters"].sum() == count_parameters(model)
    assert table["output_shape"].iloc[-1] == (1, 2)


def test_input_influence_faithful_sees_exactly_row_0_corrected_sees_everything():
    import numpy as np

    from smoothdistill_lib.models import input_influence
    from smoothdistill_lib.windows import to_layout

    ids = np.arange(3 * L).reshape(1, 1, 3, L)  # entry (axis a, time t) has id a * L + t
    row0 = set(to_layout(ids, "axes", "faithful")[0, 0, 0].tolist())  # what faithful row 0 holds
    torch.manual_seed(0)
    faithful = build_model("mtlnet", (12, 3))
    infl = input_influence(faithful, n_windows=2)
    assert infl.shape == (3, L) and faithful.training  # mode restored
    seen = set(np.flatnonzero(infl.numpy().ravel() > 0).tolist())
    assert len(seen) == 100 and seen == row0  # the x/y/z values of time steps 0..33, interleaved
    assert int(np.flatnonzero((infl > 0).any(dim=0).numpy()).max()) == 33
    corrected = build_model("mtlnet_corrected", (12, 3))
    assert int((input_influence(corrected, n_windows=2) > 0).sum()) == 3 * L
    # given windows are used as they are, and the global RNG is left alone
    state = torch.random.get_rng_state()
    X = _x(2)
    np.testing.assert_array_equal(input_influence(faithful, X=X).numpy(), input_influence(faithful, X=X).numpy())
    assert torch.equal(state, torch.random.get_rng_state())
    with pytest.raises(ValueError, match=r"X must be windows \(N, 1, C, L\)"):
        input_influence(faithful, X=torch.zeros(2, 3, L))


def test_register_model_adds_a_buildable_entry_with_its_cost(monkeypatch):
    from smoothdistill_lib import models

    monkeypatch.setattr(models, "MODELS", dict(MODELS))  # the registry is process-wide: restore it after
    spec = models.register_model("tiny_lstm", lambda n_classes, **kw: models.RecurrentNet(n_classes, hidden_size=8, **kw),
                                 "an 8-unit LSTM", options=("window_length", "n_channels"), run_cost=0.5)
    assert models.MODELS["tiny_lstm"] is spec and spec.run_cost == 0.5 and spec.layout == "axes"
    net = models.build_model("tiny_lstm", (3, 2))
    out = net(torch.zeros(4, 1, 3, 100))  # (N, 1, channels, L) windows
    assert [tuple(o.shape) for o in out] == [(4, 3), (4, 2)]
    with pytest.raises(ValueError, match="run_cost of 'other' must be a positive number, got 0"):
        models.register_model("other", lambda n_classes, **kw: None, "x", run_cost=0)
    with pytest.raises(ValueError, match="'mtlnet' is already registered$"):
        models.register_model("mtlnet", lambda n_classes, **kw: None, "x", replace=True)
