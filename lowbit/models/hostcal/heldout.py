"""The held-out set of the host check: FP32 ONNX networks and single layers that the host
calibration never measures (:mod:`lowbit.models.hostcal.check` quantizes them with ONNX
Runtime's own static quantizer, times them and compares with hwsim).

Kept apart from the fitting set on purpose: nothing in :mod:`~lowbit.models.hostcal.bench`,
:mod:`~lowbit.models.hostcal.conv` or the fit imports this module, and a test checks that no
held-out layer shape is one the calibration measures. The networks are the architectures
people deploy, at reduced input sizes so that a check stays within a minute on one core:
ResNet-18 (basic blocks, residual adds), MobileNetV2 (inverted residuals, depthwise),
ShuffleNetV2 (channel split, concat, channel shuffle), an Inception-style block network
(parallel branches, concat), a VGG-style plain stack and a pre-norm transformer encoder.
Weights are random (latency does not depend on their values), seeded per network.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lowbit.models.hostcal.graphs import GraphBuilder

__all__ = ["HELDOUT_LAYERS", "HELDOUT_NETWORKS", "Case", "cases"]


def resnet18(size: int = 112):
    """ResNet-18 (He et al., 2016), ImageNet widths, at ``size``² input."""
    n = GraphBuilder(f"resnet18-{size}", (3, size, size), seed=18)
    x = n.maxpool(n.conv("x", 64, 7, stride=2))
    for cout, stride in ((64, 1), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
                         (512, 1)):  # fmt: skip
        y = n.conv(n.conv(x, cout, 3, stride=stride), cout, 3, relu=False)
        short = (
            x
            if n.shapes[x][0] == cout and stride == 1
            else n.conv(x, cout, 1, stride=stride, relu=False)
        )
        x = n.add(y, short, relu=True)
    return n.model(n.head(x))


def mobilenet_v2(size: int = 112):
    """MobileNetV2 (Sandler et al., 2018), width 1.0, at ``size``² input."""
    n = GraphBuilder(f"mobilenetv2-{size}", (3, size, size), seed=2)
    x = n.conv("x", 32, 3, stride=2)
    settings = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1))  # fmt: skip
    for t, c, repeats, s in settings:
        for i in range(repeats):
            cin = n.shapes[x][0]
            y = n.conv(x, cin * t, 1) if t != 1 else x
            y = n.conv(y, cin * t, 3, stride=s if i == 0 else 1, groups=cin * t)
            y = n.conv(y, c, 1, relu=False)
            x = n.add(x, y) if i > 0 else y
    return n.model(n.head(n.conv(x, 1280, 1)))


def shufflenet_v2(size: int = 112):
    """ShuffleNetV2 1.0× (Ma et al., 2018) at ``size``² input."""
    n = GraphBuilder(f"shufflenetv2-{size}", (3, size, size), seed=3)
    x = n.maxpool(n.conv("x", 24, 3, stride=2))
    for c, repeats in ((116, 4), (232, 8), (464, 4)):
        half = c // 2
        for i in range(repeats):
            if i == 0:  # downsampling unit: both branches stride 2
                left = n.conv(
                    n.conv(x, n.shapes[x][0], 3, stride=2, groups=n.shapes[x][0], relu=False),
                    half,
                    1,
                )
                right = n.conv(x, half, 1)
            else:
                left, right = n.split2(x)
                right = n.conv(right, half, 1)
            right = n.conv(
                n.conv(right, half, 3, stride=2 if i == 0 else 1, groups=half, relu=False), half, 1
            )
            x = n.shuffle(n.concat([left, right]))
    return n.model(n.head(n.conv(x, 1024, 1)))


def inception(size: int = 56):
    """An Inception-style network (Szegedy et al., 2015): a stem, then blocks of parallel
    1x1 / 1x1→3x3 / 1x1→5x5 / pool→1x1 branches joined by Concat."""
    n = GraphBuilder(f"inception-{size}", (3, size, size), seed=5)
    x = n.maxpool(n.conv(n.conv("x", 32, 3, stride=2), 64, 3))
    for b1, b3, b5, bp in ((64, 96, 32, 32), (96, 128, 48, 48), (128, 160, 64, 64)):
        a = n.conv(x, b1, 1)
        b = n.conv(n.conv(x, b3 // 2, 1), b3, 3)
        c = n.conv(n.conv(x, b5 // 4, 1), b5, 5)
        d = n.conv(n.maxpool(x, 3, 1), bp, 1)
        x = n.concat([a, b, c, d])
    return n.model(n.head(x, 100))


def vgg(size: int = 32):
    """A VGG-style plain conv stack (Simonyan & Zisserman, 2015) on CIFAR-sized input."""
    n = GraphBuilder(f"vgg-{size}", (3, size, size), seed=11)
    x = "x"
    for c in (64, 128, 256, 256):
        x = n.maxpool(n.conv(n.conv(x, c, 3), c, 3), 2, 2)
    return n.model(n.head(x, 10))


def transformer(tokens: int = 64, dim: int = 128, layers: int = 2, heads: int = 4):
    """A pre-norm transformer encoder (Vaswani et al., 2017) on ``tokens`` × ``dim``."""
    n = GraphBuilder(f"transformer-{tokens}x{dim}", (tokens, dim), seed=7)
    x = "x"
    for _ in range(layers):
        x = n.add(x, n.attention(n.layernorm(x), heads))
        x = n.add(x, n.linear(n.gelu(n.linear(n.layernorm(x), 4 * dim)), dim))
    return n.model(x)


def _conv_layer(cin: int, cout: int, k: int, size: int, *, stride: int = 1, groups: int = 1):
    def build():
        n = GraphBuilder(
            f"conv{k}x{k}-{cin}-{cout}-s{stride}-g{groups}-{size}",
            (cin, size, size),
            seed=cin * 31 + cout,
        )
        return n.model(n.conv("x", cout, k, stride=stride, groups=groups))

    return build


def _gemm_layer(rows: int, fan_in: int, out: int):
    def build():
        n = GraphBuilder(f"gemm-{rows}x{fan_in}-{out}", (rows, fan_in), seed=rows + out)
        return n.model(n.linear("x", out))

    return build


@dataclass(frozen=True, slots=True)
class Case:
    """One held-out model: a name, its kind (``network`` / ``layer``) and its FP32 builder."""

    name: str
    kind: str
    build: Callable


HELDOUT_NETWORKS = (
    Case("resnet18-112", "network", lambda: resnet18(112)),
    Case("mobilenetv2-112", "network", lambda: mobilenet_v2(112)),
    Case("shufflenetv2-112", "network", lambda: shufflenet_v2(112)),
    Case("inception-56", "network", lambda: inception(56)),
    Case("vgg-32", "network", lambda: vgg(32)),
    Case("transformer-64x128", "network", lambda: transformer(64, 128)),
)

#: single layers at the sizes real networks have (no shape of the calibration's sets): 3x3,
#: 1x1, strided, depthwise and grouped convs on 56²-7² maps; GEMMs of 1-128 rows
HELDOUT_LAYERS = tuple(
    Case(
        f"conv{k}x{k} {cin}->{cout} /{s} g{g} @{size}",
        "layer",
        _conv_layer(cin, cout, k, size, stride=s, groups=g),
    )
    for cin, cout, k, size, s, g in (
        (64, 64, 3, 56, 1, 1),
        (128, 128, 3, 28, 1, 1),
        (256, 256, 3, 14, 1, 1),
        (512, 512, 3, 7, 1, 1),
        (64, 128, 3, 56, 2, 1),
        (3, 32, 3, 112, 2, 1),
        (64, 256, 1, 56, 1, 1),
        (256, 64, 1, 56, 1, 1),
        (128, 512, 1, 28, 1, 1),
        (96, 96, 3, 56, 1, 96),
        (144, 144, 3, 56, 2, 144),
        (384, 384, 3, 14, 1, 384),
        (128, 128, 3, 28, 1, 4),
        (232, 232, 1, 14, 1, 1),
    )
) + tuple(
    Case(f"gemm {rows}x{fan_in}->{out}", "layer", _gemm_layer(rows, fan_in, out))
    for rows, fan_in, out in (
        (1, 512, 1000),
        (1, 1024, 1024),
        (16, 256, 256),
        (64, 128, 512),
        (128, 512, 128),
        (128, 256, 256),
    )
)


def cases(*, networks: bool = True, layers: bool = True, quick: bool = False) -> list[Case]:
    """The held-out cases; ``quick``: two networks and four layers (tests)."""
    nets = [c for c in HELDOUT_NETWORKS if not quick or c.name in ("vgg-32", "transformer-64x128")]
    lays = list(HELDOUT_LAYERS[::4] if quick else HELDOUT_LAYERS)
    return (nets if networks else []) + (lays if layers else [])
