"""Small two-head students for embedded devices (chapter 11, SMLDist): a MobileNetV3-style net and a
plain small CNN, both following the models contract.

Input ``(N, 1, 3, L)`` windows in the ``"axes"`` layout (rows x, y, z). Both nets read the three axes
as three input channels of a ``(N, 3, 1, L)`` image and use only ``(1, k)`` 2-D convolutions: Conv2d is
the operator every exporter and int8 kernel supports best (ONNX QLinearConv, TFLite, CMSIS-NN), so
the same net exports and quantises without special cases. Any window length ``L >= 8`` works (global
average pooling before the heads).

Besides ``features(x) -> (N, F)`` and ``heads`` (the contract), a student exposes
``stages(x) -> list`` of its intermediate feature maps ``(N, C_i, L_i)`` (one per stage, the
time axis last) and ``forward_with_stages(x) -> (logits tuple, stages, features)`` in ONE pass, which
stage and memory distillation (:mod:`smldist`) need.

MobileNetV3 (Howard et al. 2019): inverted residual blocks (1x1 expansion -> depthwise conv -> optional
squeeze-excitation -> 1x1 linear projection, a residual where shapes allow), hard-swish activations,
channel counts scaled by a width multiplier and rounded to multiples of 8. The block table is ours
(the SMLDist abstract names the architecture but not its sizes): 4 stages, time strides 2-2-2-1.

>>> net = build_student("mobilenet_v3s", (18, 2))
>>> [t.shape for t in net(torch.zeros(4, 1, 3, 100))]
[torch.Size([4, 18]), torch.Size([4, 2])]
"""

from __future__ import annotations

import torch
from torch import nn

from smoothdistill_lib.models import MultiHeadModel, build_model, register_model

#: ``(kernel, expansion, out_channels, squeeze_excite, activation, time_stride)`` per block at width
#: 1.0; blocks with the same stage number form one stage of ``stages(x)``.
MOBILENET_BLOCKS = (
    # stage 1
    (3, 1, 16, True, "relu", 2),
    # stage 2
    (5, 3, 24, False, "relu", 2),
    (5, 3, 24, False, "relu", 1),
    # stage 3
    (5, 3, 40, True, "hswish", 2),
    (5, 3, 40, True, "hswish", 1),
    # stage 4
    (5, 3, 64, True, "hswish", 1),
)
MOBILENET_STAGES = (1, 2, 2, 3, 3, 4)  # stage of each block above


def make_divisible(value: float, divisor: int = 8) -> int:
    """MobileNet's channel rounding: nearest multiple of ``divisor``, never below 90 % of ``value``."""
    out = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if out < 0.9 * value:
        out += divisor
    return out


def _act(name: str) -> nn.Module:
    return nn.Hardswish() if name == "hswish" else nn.ReLU()


class SqueezeExcite(nn.Module):
    """Squeeze-excitation: ``x * hardsigmoid(W2 relu(W1 mean_t(x)))`` per channel; ``(N, C, 1, L)`` in and out."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = make_divisible(channels / reduction)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)
        self.relu = nn.ReLU()
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc2(self.relu(self.fc1(self.pool(x)))))


class InvertedResidual(nn.Module):
    """MobileNetV3 block on ``(N, C_in, 1, L)`` -> ``(N, C_out, 1, ceil(L / stride))``."""

    def __init__(self, c_in: int, c_out: int, kernel: int, expansion: int, se: bool, act: str, stride: int):
        super().__init__()
        hidden = make_divisible(c_in * expansion)
        layers: list[nn.Module] = []
        if hidden != c_in:  # 1x1 expansion (skipped when the expansion ratio is 1, as in MobileNetV3)
            layers += [nn.Conv2d(c_in, hidden, 1, bias=False), nn.BatchNorm2d(hidden), _act(act)]
        layers += [nn.Conv2d(hidden, hidden, (1, kernel), stride=(1, stride), padding=(0, kernel // 2),
                             groups=hidden, bias=False), nn.BatchNorm2d(hidden), _act(act)]  # depthwise
        if se:
            layers.append(SqueezeExcite(hidden))
        layers += [nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out)]  # linear bottleneck
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.residual else out


class _Student(MultiHeadModel):
    """Shared plumbing: ``stages`` list, ``features`` = global average of the last map + head input."""

    layout = "axes"

    def _check_and_reshape(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return x.transpose(1, 2)  # (N, 1, C, L) -> (N, C, 1, L): the channels become input channels

    def _stage_maps(self, x: torch.Tensor) -> list[torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _pool(self, last: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Intermediate maps, one ``(N, C_i, L_i)`` per stage (the height-1 axis squeezed)."""
        return [m.squeeze(2) for m in self._stage_maps(self._check_and_reshape(x))]

    def forward_with_stages(self, x: torch.Tensor):
        """``(logits tuple, [stage maps (N, C_i, L_i)], features (N, F))`` in one forward pass."""
        maps = self._stage_maps(self._check_and_reshape(x))
        f = self._pool(maps[-1])
        return tuple(h(f) for h in self.heads), [m.squeeze(2) for m in maps], f

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 1, C, L)`` -> ``(N, feature_dim)``."""
        return self._pool(self._stage_maps(self._check_and_reshape(x))[-1])


class MobileNetV3Student(_Student):
    """MobileNetV3-style student (see the module docstring); ``width`` scales every channel count.

    Stem Conv(3 -> 16w, (1, 3), stride 2) + BN + hard-swish, the blocks of :data:`MOBILENET_BLOCKS`,
    a 1x1 conv to ``last_channels * w`` + BN + hard-swish, global average pooling = ``features``
    ``(N, F)``, dropout-free linear heads. ``stages(x)``: the output of each of the 4 stages.
    """

    def __init__(self, n_classes: tuple[int, ...], width: float = 1.0, last_channels: int = 96,
                 window_length: int | None = None, n_channels: int = 3):  # fmt: skip
        if not (isinstance(width, int | float) and 0.1 <= width <= 4.0):
            raise ValueError(f"MobileNetV3Student: width must be a number in [0.1, 4], got {width!r}")
        feat = make_divisible(last_channels * width)
        super().__init__(n_classes, feature_dim=feat, n_channels=n_channels)
        self.width, self.min_length = float(width), 8
        c = make_divisible(16 * width)
        self.stem = nn.Sequential(nn.Conv2d(n_channels, c, (1, 3), stride=(1, 2), padding=(0, 1), bias=False),
                                  nn.BatchNorm2d(c), nn.Hardswish())  # fmt: skip
        stage_blocks: dict[int, list[nn.Module]] = {}
        for (k, e, out, se, act, s), stage in zip(MOBILENET_BLOCKS, MOBILENET_STAGES):
            out = make_divisible(out * width)
            stage_blocks.setdefault(stage, []).append(InvertedResidual(c, out, k, e, se, act, s))
            c = out
        self.blocks = nn.ModuleList(nn.Sequential(*b) for b in stage_blocks.values())
        self.stage_channels = [b[-1].block[-1].num_features for b in self.blocks]
        self.last = nn.Sequential(nn.Conv2d(c, feat, 1, bias=False), nn.BatchNorm2d(feat), nn.Hardswish())
        self.gap = nn.AdaptiveAvgPool2d(1)

    def _stage_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps, h = [], self.stem(x)
        for stage in self.blocks:
            h = stage(h)
            maps.append(h)
        return maps

    def _pool(self, last: torch.Tensor) -> torch.Tensor:
        return self.gap(self.last(last)).flatten(1)


class SmallCNN(_Student):
    """The plain small CNN a practitioner tries first: 3 x [Conv(1, 5) + BN + ReLU + MaxPool(1, 2)]
    with ``channels`` (default 16, 32, 64), global average pooling = ``features`` ``(N, channels[-1])``,
    linear heads. ``stages(x)``: the output of each conv block."""

    def __init__(self, n_classes: tuple[int, ...], channels: tuple[int, ...] = (16, 32, 64), kernel: int = 5,
                 window_length: int | None = None, n_channels: int = 3):  # fmt: skip
        channels = tuple(int(c) for c in channels)
        if not channels or min(channels) < 1:
            raise ValueError(f"SmallCNN: channels must be positive ints, got {channels!r}")
        super().__init__(n_classes, feature_dim=channels[-1], n_channels=n_channels)
        self.min_length = 2 ** len(channels)
        c_in, blocks = n_channels, []
        for c in channels:
            blocks.append(nn.Sequential(nn.Conv2d(c_in, c, (1, kernel), padding=(0, kernel // 2), bias=False),
                                        nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d((1, 2))))  # fmt: skip
            c_in = c
        self.blocks = nn.ModuleList(blocks)
        self.stage_channels = list(channels)
        self.gap = nn.AdaptiveAvgPool2d(1)

    def _stage_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = []
        for block in self.blocks:
            x = block(x)
            maps.append(x)
        return maps

    def _pool(self, last: torch.Tensor) -> torch.Tensor:
        return self.gap(last).flatten(1)


#: the students, registered in ``models.MODELS`` when this module is imported (``smldist`` imports
#: it), so ``build_model``, ``engine.fit`` and experiment configs know them
STUDENT_SPECS = {
    "mobilenet_v3s": register_model(
        "mobilenet_v3s", lambda n_classes, **kw: MobileNetV3Student(n_classes, **kw),
        "MobileNetV3-style student: depthwise-separable inverted residuals + squeeze-excitation, width multiplier",
        layout="axes", options=("width", "last_channels", "window_length", "n_channels"), replace=True,
    ),
    "small_cnn": register_model(
        "small_cnn", lambda n_classes, **kw: SmallCNN(n_classes, **kw),
        "plain small CNN: 3 x [Conv(1,5)-BN-ReLU-MaxPool] -> global average pooling -> heads",
        layout="axes", options=("channels", "kernel", "window_length", "n_channels"), replace=True,
    ),
}


def build_student(name: str, n_classes: tuple[int, ...], **options) -> _Student:
    """Build student ``name`` (``"mobilenet_v3s"`` | ``"small_cnn"``); see :func:`models.build_model`."""
    if name not in STUDENT_SPECS:
        raise ValueError(f"unknown student {name!r}; choose one of {', '.join(STUDENT_SPECS)}")
    return build_model(name, n_classes, **options)
