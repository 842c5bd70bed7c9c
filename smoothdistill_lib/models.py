"""Models: MTL-net (faithful and corrected), LSTM, BiLSTM, GRU and AnpoNet behind one registry.

Every model takes windows ``(N, 1, C, L)`` (``C`` input channels, 3 for x, y, z; any number, e.g.
6 for accelerometer + gyroscope, chosen with ``build_model(..., n_channels=C)``) and returns a **tuple of logits**, one ``(N, c_k)``
tensor per entry of ``n_classes`` (two heads = multitask, one head = single-task). Every model
splits into ``features(x) -> (N, F)`` and ``heads`` (an ``nn.ModuleList`` of ``Linear(F, c_k)``)
with ``forward(x) == tuple(h(features(x)) for h in heads)`` and nothing in between, so SD-Dropout
can put its dropout masks between the two.

Input layouts (see ``windows``): ``"faithful"`` is the authors' reshape without transpose (the
3 rows are consecutive chunks of the interleaved ``x0,y0,z0,x1,...`` stream); ``"axes"`` has the
rows = the channels. ``MODELS[name].layout`` says which layout a model is meant to be fed: the one
place that fact is written (the runner, the engine's CLI and the cost tables read it there).

>>> model = build_model("mtlnet", (18, 2))
>>> [t.shape for t in model(torch.zeros(4, 1, 3, 100))]
[torch.Size([4, 18]), torch.Size([4, 2])]
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn

from smoothdistill_lib.errors import check_new_name
from smoothdistill_lib.windows import to_layout

DEFAULT_WINDOW_LENGTH = 100


class MultiHeadModel(nn.Module):
    """Base class: ``forward(x) = tuple(h(self.features(x)) for h in self.heads)``.

    Subclasses define ``features(x) -> (N, feature_dim)``. ``heads[k]`` is ``Linear(feature_dim,
    n_classes[k])``. ``min_length``/``fixed_length`` describe which window lengths are accepted.
    """

    layout = "axes"

    def __init__(self, n_classes: tuple[int, ...], feature_dim: int, n_channels: int = 3):
        super().__init__()
        if not isinstance(n_channels, int) or isinstance(n_channels, bool) or n_channels < 1:
            raise ValueError(f"{type(self).__name__}: n_channels must be a positive int, got {n_channels!r}")
        self.n_channels = n_channels
        self.n_classes = tuple(n_classes)
        self.feature_dim = feature_dim
        self.heads = nn.ModuleList(nn.Linear(feature_dim, c) for c in self.n_classes)
        self.fixed_length: int | None = None  # set by nets whose FC size depends on L
        self.min_length = 1

    def features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        f = self.features(x)
        return tuple(h(f) for h in self.heads)

    def _check_input(self, x: torch.Tensor) -> None:
        # Shape errors deep inside a conv/LSTM are cryptic; name the expected layout instead.
        name = type(self).__name__
        if x.dim() != 4 or x.shape[1] != 1 or x.shape[2] != self.n_channels:
            raise ValueError(f"{name}: input must be (N, 1, {self.n_channels}, L) windows (built for "
                             f"n_channels={self.n_channels}), got shape {tuple(x.shape)}")
        length = x.shape[3]
        if self.fixed_length is not None and length != self.fixed_length:
            raise ValueError(
                f"{name}: built for window_length={self.fixed_length}, got windows of length {length}; "
                f"build it with build_model(..., window_length={length})"
            )
        if length < self.min_length:
            raise ValueError(f"{name}: windows of length {length} are shorter than its minimum {self.min_length}")


# --------------------------------------------------------------------------------------------
# MTL-net


def _mtlnet_time_length(window_length: int) -> int:
    """Time length after conv(1,9) -> pool /2 -> conv(1,9) -> pool /2 (floor, as MaxPool2d)."""
    t = (window_length - 8) // 2
    return (t - 8) // 2


class MTLNet(MultiHeadModel):
    """MTL-net, the authors' ``HARCNN_Multitask`` (book/12_authors_code.ipynb), optionally corrected.

    Input ``(N, 1, 3, L)``; ``features`` -> ``(N, 512)``; output ``tuple`` of ``(N, c_k)``.

    ``faithful=True`` (registry name ``mtlnet``): exactly the released code. ``MaxPool2d((1, 2),
    stride=2)`` has stride (2, 2) in *both* dims, so rows go 3 -> 2 -> 1 and the logits depend only on
    row 0 of the input (§1.2); flatten 64*1*19 = 1216 for L = 100. No BN, no dropout, default init.
    Meant to be fed the authors' no-transpose layout ("faithful").

    ``faithful=False`` (``mtlnet_corrected``): pooling along time only (stride (1, 2)), so all 3 rows
    reach the FCs: flatten 64*3*19 = 3648. Fed the axes layout. ``batchnorm=True`` follows the
    paper's text ("Batch normalization layers are integrated throughout the network", §3.2; the code
    has none): BatchNorm2d after each conv and BatchNorm1d after each hidden FC (before the ReLU),
    i.e. everywhere except the heads. Biases are kept, so BN adds only its own 2*C parameters.
    """

    def __init__(
        self,
        n_classes: tuple[int, ...],
        window_length: int = DEFAULT_WINDOW_LENGTH,
        faithful: bool = True,
        batchnorm: bool = False,
        n_channels: int = 3,
    ):
        super().__init__(n_classes, feature_dim=512, n_channels=n_channels)
        t_out = _mtlnet_time_length(window_length)
        if t_out < 1:
            raise ValueError(f"MTLNet: window_length={window_length} is too short (needs >= 28 samples)")
        if faithful and batchnorm:
            raise ValueError("MTLNet: the faithful net has no BatchNorm; use mtlnet_corrected for batchnorm=True")
        self.faithful = faithful
        self.layout = "faithful" if faithful else "axes"
        self.fixed_length = window_length
        # The authors pass stride=2 (an int, i.e. (2, 2)); the correction pools along time only.
        stride = 2 if faithful else (1, 2)
        rows = n_channels
        if faithful:  # each (2, 2)-strided pooling keeps rows 0, 2, 4, ...: ceil(rows / 2), twice
            rows = (((rows - 1) // 2 + 1) - 1) // 2 + 1

        def bn2d(c: int) -> list[nn.Module]:
            return [nn.BatchNorm2d(c)] if batchnorm else []

        def bn1d(c: int) -> list[nn.Module]:
            return [nn.BatchNorm1d(c)] if batchnorm else []

        self.conv = nn.Sequential(
            nn.Conv2d(1, 32, kernel_size=(1, 9)), *bn2d(32), nn.ReLU(),
            nn.MaxPool2d(kernel_size=(1, 2), stride=stride),
            nn.Conv2d(32, 64, kernel_size=(1, 9)), *bn2d(64), nn.ReLU(),
            nn.MaxPool2d(kernel_size=(1, 2), stride=stride),
            nn.Flatten(1),
        )
        self.flat_dim = 64 * rows * t_out
        self.fc = nn.Sequential(
            nn.Linear(self.flat_dim, 1024), *bn1d(1024), nn.ReLU(),
            nn.Linear(1024, 512), *bn1d(512), nn.ReLU(),
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 1, 3, L)`` -> ``(N, 512)`` shared features (after the last ReLU)."""
        self._check_input(x)
        return self.fc(self.conv(x))


# --------------------------------------------------------------------------------------------
# Recurrent nets


def _last_hidden(h_n: torch.Tensor, bidirectional: bool) -> torch.Tensor:
    """Last layer's final hidden state from ``h_n`` ``(layers*dirs, N, H)`` -> ``(N, H*dirs)``."""
    if bidirectional:
        # h_n is ordered (layer0 fwd, layer0 bwd, ..., last fwd, last bwd)
        return torch.cat([h_n[-2], h_n[-1]], dim=1)
    return h_n[-1]


class RecurrentNet(MultiHeadModel):
    """2-layer LSTM / BiLSTM / GRU over the time axis (paper §4.2.3; sizes are our choice).

    Input ``(N, 1, 3, L)`` read as a sequence of ``L`` steps of 3 features (axes layout: x, y, z per
    step). The authors' faithful layout would instead feed 3 interleaved chunks per step (reference
    notes §2.2); the paper gives no sizes, so hidden size 64, dropout 0.2 and a 128-unit shared FC
    are our choices. Last layer's final hidden state (both directions concatenated for BiLSTM)
    ``(N, H*dirs)`` -> Dropout -> Linear(H*dirs, fc_size) -> ReLU = ``features`` ``(N, fc_size)``
    -> heads -> ``tuple`` of ``(N, c_k)``. The dropout sits *before* the shared FC so ``forward``
    has none after the features. Any window length works.
    """

    def __init__(
        self,
        n_classes: tuple[int, ...],
        cell: str = "lstm",
        bidirectional: bool = False,
        hidden_size: int = 64,
        num_layers: int = 2,
        dropout: float = 0.2,
        fc_size: int = 128,
        window_length: int | None = None,  # accepted for a uniform interface; any L works
        n_channels: int = 3,
    ):
        super().__init__(n_classes, feature_dim=fc_size, n_channels=n_channels)
        rnn_cls = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.bidirectional = bidirectional
        self.rnn = rnn_cls(n_channels, hidden_size, num_layers=num_layers, batch_first=True,
                           dropout=dropout if num_layers > 1 else 0.0, bidirectional=bidirectional)
        dirs = 2 if bidirectional else 1
        self.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden_size * dirs, fc_size), nn.ReLU())

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 1, C, L)`` -> ``(N, L, C)`` sequence -> RNN -> ``(N, fc_size)``."""
        self._check_input(x)
        seq = x.squeeze(1).transpose(1, 2)
        _, h = self.rnn(seq)
        h_n = h[0] if isinstance(h, tuple) else h  # LSTM returns (h_n, c_n), GRU h_n
        return self.fc(_last_hidden(h_n, self.bidirectional))


class AnpoNet(MultiHeadModel):
    """AnpoNet, our interpretation (paper §4.2.3; no public definition exists).

    The paper: "combining convolutional layers with batch normalization for initial feature
    extraction and LSTM layers for temporal modeling" (citing Vu et al. 2025). Our reading:
    ``(N, 1, 3, L)`` -> ``(N, 3, L)`` (axes as channels) -> 2 x [Conv1d(k=5, pad=2), BatchNorm1d,
    ReLU, MaxPool1d(2)] -> ``(N, 64, L//4)`` -> sequence ``(N, L//4, 64)`` -> 2-layer LSTM (hidden
    64, dropout 0.2) -> last hidden ``(N, 64)`` -> Dropout -> Linear(64, 128) -> ReLU = ``features``
    ``(N, 128)`` -> heads -> ``tuple`` of ``(N, c_k)``. Needs L >= 4.
    """

    def __init__(
        self,
        n_classes: tuple[int, ...],
        channels: tuple[int, int] = (32, 64),
        hidden_size: int = 64,
        dropout: float = 0.2,
        fc_size: int = 128,
        window_length: int | None = None,  # accepted for a uniform interface; any L >= 4 works
        n_channels: int = 3,
    ):
        super().__init__(n_classes, feature_dim=fc_size, n_channels=n_channels)
        c1, c2 = channels
        self.min_length = 4
        self.conv = nn.Sequential(
            nn.Conv1d(n_channels, c1, kernel_size=5, padding=2), nn.BatchNorm1d(c1), nn.ReLU(), nn.MaxPool1d(2),
            nn.Conv1d(c1, c2, kernel_size=5, padding=2), nn.BatchNorm1d(c2), nn.ReLU(), nn.MaxPool1d(2),
        )
        self.rnn = nn.LSTM(c2, hidden_size, num_layers=2, batch_first=True, dropout=dropout)
        self.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden_size, fc_size), nn.ReLU())

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 1, C, L)`` -> ``(N, fc_size)``."""
        self._check_input(x)
        z = self.conv(x.squeeze(1))  # (N, c2, L//4)
        _, (h_n, _) = self.rnn(z.transpose(1, 2))
        return self.fc(h_n[-1])


# --------------------------------------------------------------------------------------------
# Registry


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry: ``builder(n_classes, **options) -> MultiHeadModel``, the input layout it
    is fed (``"faithful"`` | ``"axes"``), the options it takes (``n_channels`` for all) and
    ``run_cost``, a run's expected cost in MTL-net runs (``shards`` balances grids by it)."""

    builder: Callable[..., MultiHeadModel]
    description: str
    layout: str
    options: tuple[str, ...]
    run_cost: float = 1.0


_RECURRENT_OPTIONS = ("hidden_size", "num_layers", "dropout", "fc_size", "window_length", "n_channels")
# run_cost below: a long-mode WISDM epoch of each net as a multiple of MTL-net's, one CPU thread, rounded
# (benchmarks/bench_arch.py, benchmarks/RESULTS.md). Only shards' balance reads it, so a rough
# multiple is enough; on a GPU the recurrent nets cost relatively less, which costs balance, not runs.

MODELS: dict[str, ModelSpec] = {
    "mtlnet": ModelSpec(
        lambda n_classes, window_length=DEFAULT_WINDOW_LENGTH, n_channels=3: MTLNet(
            n_classes, window_length, faithful=True, n_channels=n_channels),
        "MTL-net as released (HARCNN_Multitask): stride-(2,2) pooling, sees input row 0 only, no BN",
        "faithful", ("window_length", "n_channels"),
    ),
    "mtlnet_corrected": ModelSpec(
        lambda n_classes, window_length=DEFAULT_WINDOW_LENGTH, batchnorm=False, n_channels=3: MTLNet(
            n_classes, window_length, faithful=False, batchnorm=batchnorm, n_channels=n_channels),
        "MTL-net with time-only pooling (all 3 axes used, Linear(3648, 1024)); optional BN",
        "axes", ("window_length", "batchnorm", "n_channels"),
    ),
    "lstm": ModelSpec(
        lambda n_classes, **kw: RecurrentNet(n_classes, cell="lstm", **kw),
        "2-layer LSTM over the L time steps (hidden 64) -> FC 128 -> heads",
        "axes", _RECURRENT_OPTIONS, run_cost=1.0,
    ),
    "bilstm": ModelSpec(
        lambda n_classes, **kw: RecurrentNet(n_classes, cell="lstm", bidirectional=True, **kw),
        "2-layer bidirectional LSTM (hidden 64 per direction, concatenated) -> FC 128 -> heads",
        "axes", _RECURRENT_OPTIONS, run_cost=3.3,
    ),
    "gru": ModelSpec(
        lambda n_classes, **kw: RecurrentNet(n_classes, cell="gru", **kw),
        "2-layer GRU over the L time steps (hidden 64) -> FC 128 -> heads",
        "axes", _RECURRENT_OPTIONS, run_cost=2.3,
    ),
    "anponet": ModelSpec(
        lambda n_classes, **kw: AnpoNet(n_classes, **kw),
        "our reading of AnpoNet: 2x [Conv1d-BN-ReLU-pool] -> 2-layer LSTM -> FC 128 -> heads",
        "axes", tuple(p for p in inspect.signature(AnpoNet).parameters if p != "n_classes"), run_cost=0.6,
    ),
}


def _check_n_classes(n_classes) -> tuple[int, ...]:
    if isinstance(n_classes, int) or not hasattr(n_classes, "__len__") or len(n_classes) == 0:
        raise ValueError(
            f"n_classes must be a tuple with one class count per head, e.g. (18, 2) or (18,); got {n_classes!r}"
        )
    out = tuple(n_classes)
    if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in out):
        raise ValueError(f"n_classes entries must be positive ints, got {n_classes!r}")
    return out


_SHIPPED_MODELS = frozenset(MODELS)


def register_model(name: str, builder: Callable[..., MultiHeadModel], description: str, *, layout: str = "axes",
                   options: tuple[str, ...] = ("window_length", "n_channels"), run_cost: float = 1.0,
                   replace: bool = False) -> ModelSpec:
    """Add a model to :data:`MODELS`, after which ``build_model``, the engine, experiment configs
    (``run``) and ``compute`` accept ``name`` in this process (as ``datasets.register_dataset`` does
    for data). ``builder(n_classes, **options) -> MultiHeadModel``; ``layout`` is the window layout
    it is fed; ``options`` the keyword arguments it takes (``n_channels``, set by the engine from the
    windows, among them); ``run_cost`` a run's expected cost in MTL-net runs (grid shards' balance).
    A module defining nets registers them itself (e.g. ``students``), so imports stay one-way.
    Registering an existing name raises unless ``replace``; the shipped names cannot be replaced."""
    check_new_name("register_model", name, MODELS, _SHIPPED_MODELS, replace)
    if not callable(builder):
        raise ValueError(f"register_model: builder for {name!r} must be callable")
    if layout not in ("faithful", "axes"):
        raise ValueError(f"register_model: layout of {name!r} must be 'faithful' or 'axes', got {layout!r}")
    if not (isinstance(run_cost, int | float) and run_cost > 0):
        raise ValueError(f"register_model: run_cost of {name!r} must be a positive number, got {run_cost!r}")
    spec = ModelSpec(builder, description, layout, tuple(options), float(run_cost))
    MODELS[name] = spec
    return spec


def build_model(name: str, n_classes: tuple[int, ...], **options) -> MultiHeadModel:
    """Build registry model ``name`` with one head per entry of ``n_classes``.

    ``options`` are model-specific (``window_length`` and ``n_channels`` (default 3) for all; ``batchnorm`` for
    ``mtlnet_corrected``; ``hidden_size``, ``num_layers``, ``dropout``, ``fc_size`` for the RNNs).
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; the registry has: {', '.join(MODELS)} (chapter 11's students "
                         "are registered by importing smoothdistill_lib.students)")
    n_classes = _check_n_classes(n_classes)
    unknown = sorted(set(options) - set(MODELS[name].options))
    if unknown:
        raise ValueError(f"model {name!r} does not take option(s) {unknown}; it takes {list(MODELS[name].options)}")
    return MODELS[name].builder(n_classes, **options)


# --------------------------------------------------------------------------------------------
# Inspection helpers


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (each shared tensor once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _default_input(model: nn.Module) -> tuple[int, int]:
    """(channels, window length) a model is built for (3 and 100 when it does not say)."""
    return getattr(model, "n_channels", 3), getattr(model, "fixed_length", None) or DEFAULT_WINDOW_LENGTH


def describe(model: nn.Module, input_shape: tuple[int, ...] | None = None) -> pd.DataFrame:
    """Shape table of ``model`` for one forward pass on zeros of ``input_shape`` (default
    ``(1, 1, C, L)`` with the model's channels and window length).

    One row per call of a leaf module, in call order: ``layer`` (qualified name), ``type``,
    ``output_shape`` (a tuple, batch first; the first tensor for RNNs) and ``parameters`` (the
    module's own). The model is run in eval mode under ``no_grad`` and its mode restored.
    """
    rows: list[dict] = []
    hooks = []

    def hook(name: str):
        def record(module: nn.Module, _inputs, output) -> None:
            out = output[0] if isinstance(output, tuple) else output
            rows.append({
                "layer": name,
                "type": type(module).__name__,
                "output_shape": tuple(out.shape),
                "parameters": sum(p.numel() for p in module.parameters(recurse=False)),
            })

        return record

    for name, module in model.named_modules():
        if name and not any(True for _ in module.children()):
            hooks.append(module.register_forward_hook(hook(name)))
    if input_shape is None:
        input_shape = (1, 1, *_default_input(model))
    was_training = model.training
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else "cpu"
        model.eval()
        with torch.no_grad():
            model(torch.zeros(input_shape, device=device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return pd.DataFrame(rows, columns=["layer", "type", "output_shape", "parameters"])


def input_influence(
    model: nn.Module,
    input_shape: tuple[int, ...] | None = None,
    X: torch.Tensor | None = None,
    delta: float = 0.5,
    n_windows: int = 4,
    seed: int = 0,
) -> torch.Tensor:
    """Which input entries the network sees: ``(C, L)`` max |change of any logit| per entry.

    Each entry ``(channel, t)`` of the windows is raised by ``delta`` on its own, the perturbed windows
    are fed to ``model`` in the layout it is meant for (``model.layout``: ``"faithful"`` windows
    are converted with ``windows.to_layout``), and the largest absolute change of any logit over
    the windows is recorded. An entry the network ignores gives exactly 0 (its change never reaches
    the fully connected layers). ``X``: windows ``(N, 1, C, L)`` in the **axes** layout (rows = the
    channels); default ``n_windows`` standard-normal windows of ``input_shape`` (default ``(1, C, L)``
    with the model's channels and window length) drawn with ``seed`` (the global RNG is untouched). Eval mode, no gradients; the model's mode is restored.
    """
    if X is None:
        input_shape = (1, *_default_input(model)) if input_shape is None else tuple(input_shape)
        if len(input_shape) != 3 or input_shape[0] != 1:
            raise ValueError(f"input_influence: input_shape must be (1, C, L), got {input_shape}")
        gen = torch.Generator().manual_seed(seed)
        X = torch.randn(n_windows, *input_shape, generator=gen)
    X = torch.as_tensor(X, dtype=torch.float32)
    if X.ndim != 4 or X.shape[1] != 1:
        raise ValueError(f"input_influence: X must be windows (N, 1, C, L) in the axes layout, got {tuple(X.shape)}")
    n, c, length = X.shape[0], X.shape[2], X.shape[-1]
    param = next(model.parameters(), None)
    X = X.to(param.device if param is not None else "cpu")
    layout = getattr(model, "layout", "axes")
    one_hot = torch.eye(c * length, device=X.device).reshape(c * length, 1, c, length)  # one per (channel, t)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            change = torch.zeros(c * length, device=X.device)
            for i in range(n):  # one window at a time: C*L perturbed copies, bounded memory
                moved = torch.cat(model(to_layout(X[i] + delta * one_hot, "axes", layout)), dim=1)
                # The reference is C*L unperturbed copies, a batch of the same shape: CPU kernels pick
                # their algorithm by batch size, and a different one would differ in the last bit
                # everywhere, hiding the exact zeros this measures.
                same = X[i].expand(c * length, 1, c, length).contiguous()
                base = torch.cat(model(to_layout(same, "axes", layout)), dim=1)
                change = torch.maximum(change, (moved - base).abs().amax(dim=1))
    finally:
        model.train(was_training)
    return change.reshape(c, length).cpu()
