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

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["HELDOUT_LAYERS", "HELDOUT_NETWORKS", "Case", "cases"]

_OPSET = 17


class _Net:
    """A tiny ONNX graph builder tracking each tensor's shape (C, H, W) or (T, D)."""

    def __init__(self, name: str, shape: tuple[int, ...], seed: int) -> None:
        from onnx import TensorProto, helper

        self.name, self.nodes, self.inits = name, [], []
        self.shapes: dict[str, tuple[int, ...]] = {"x": shape}
        self.rng = np.random.default_rng(seed)
        self._n = 0
        self.input = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, *shape])

    def _name(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}{self._n}"

    def _init(self, array: np.ndarray, prefix: str = "w") -> str:
        from onnx import numpy_helper

        name = self._name(prefix)
        self.inits.append(numpy_helper.from_array(array.astype(np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], shape: tuple[int, ...], **attrs) -> str:
        from onnx import helper

        out = self._name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        self.shapes[out] = shape
        return out

    def conv(self, x: str, cout: int, k: int, *, stride: int = 1, groups: int = 1,
             relu: bool = True) -> str:  # fmt: skip
        cin, h, w = self.shapes[x]
        fan_in = cin // groups * k * k
        weight = self.rng.normal(0, math.sqrt(2 / fan_in), (cout, cin // groups, k, k))
        bias = self.rng.normal(0, 0.05, cout)
        oh, ow = (h + 2 * (k // 2) - k) // stride + 1, (w + 2 * (k // 2) - k) // stride + 1
        y = self.node("Conv", [x, self._init(weight), self._init(bias, "b")], (cout, oh, ow),
                      kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4,
                      group=groups)  # fmt: skip
        return self.node("Relu", [y], (cout, oh, ow)) if relu else y

    def add(self, a: str, b: str, *, relu: bool = False) -> str:
        y = self.node("Add", [a, b], self.shapes[a])
        return self.node("Relu", [y], self.shapes[a]) if relu else y

    def maxpool(self, x: str, k: int = 3, stride: int = 2) -> str:
        c, h, w = self.shapes[x]
        pad = k // 2
        shape = (c, (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1)
        return self.node("MaxPool", [x], shape, kernel_shape=[k, k], strides=[stride] * 2,
                         pads=[pad] * 4)  # fmt: skip

    def head(self, x: str, classes: int = 1000) -> str:
        """Global average pool, flatten, fully connected."""
        c = self.shapes[x][0]
        pooled = self.node("GlobalAveragePool", [x], (c, 1, 1))
        flat = self.node("Flatten", [pooled], (c,))
        return self.gemm(flat, classes)

    def gemm(self, x: str, out: int) -> str:
        fan_in = self.shapes[x][-1]
        weight = self.rng.normal(0, math.sqrt(1 / fan_in), (out, fan_in))
        return self.node("Gemm", [x, self._init(weight), self._init(np.zeros(out), "b")],
                         (out,), transB=1)  # fmt: skip

    def concat(self, xs: list[str]) -> str:
        c = sum(self.shapes[x][0] for x in xs)
        return self.node("Concat", xs, (c, *self.shapes[xs[0]][1:]), axis=1)

    def _shape_const(self, dims: tuple[int, ...]) -> str:
        from onnx import numpy_helper

        name = self._name("shape")
        self.inits.append(numpy_helper.from_array(np.array(dims, np.int64), name))
        return name

    def split2(self, x: str) -> tuple[str, str]:
        from onnx import helper

        c, h, w = self.shapes[x]
        a, b = self._name("split"), self._name("split")
        sizes = self._shape_const((c // 2, c - c // 2))
        self.nodes.append(helper.make_node("Split", [x, sizes], [a, b], axis=1, name=a))
        self.shapes[a], self.shapes[b] = (c // 2, h, w), (c - c // 2, h, w)
        return a, b

    def shuffle(self, x: str, groups: int = 2) -> str:
        c, h, w = self.shapes[x]
        five = self.node("Reshape", [x, self._shape_const((1, groups, c // groups, h, w))],
                         (groups, c // groups, h, w))  # fmt: skip
        swapped = self.node("Transpose", [five], (c // groups, groups, h, w),
                            perm=[0, 2, 1, 3, 4])  # fmt: skip
        return self.node("Reshape", [swapped, self._shape_const((1, c, h, w))], (c, h, w))

    # --- sequences (T, D) ---
    def linear(self, x: str, out: int) -> str:
        t, d = self.shapes[x]
        weight = self.rng.normal(0, math.sqrt(1 / d), (d, out))
        y = self.node("MatMul", [x, self._init(weight)], (t, out))
        return self.node("Add", [y, self._init(np.zeros(out), "b")], (t, out))

    def layernorm(self, x: str) -> str:
        d = self.shapes[x][-1]
        return self.node("LayerNormalization",
                         [x, self._init(np.ones(d), "g"), self._init(np.zeros(d), "b")],
                         self.shapes[x], axis=-1)  # fmt: skip

    def gelu(self, x: str) -> str:
        shape = self.shapes[x]
        scaled = self.node("Div", [x, self._init(np.array(math.sqrt(2.0)), "c")], shape)
        erf = self.node("Erf", [scaled], shape)
        one = self.node("Add", [erf, self._init(np.array(1.0), "c")], shape)
        half = self.node("Mul", [x, self._init(np.array(0.5), "c")], shape)
        return self.node("Mul", [half, one], shape)

    def attention(self, x: str, heads: int) -> str:
        t, d = self.shapes[x]
        hd = d // heads

        def split_heads(y: str) -> str:
            r = self.node("Reshape", [y, self._shape_const((1, t, heads, hd))], (t, heads, hd))
            return self.node("Transpose", [r], (heads, t, hd), perm=[0, 2, 1, 3])

        q, k, v = (split_heads(self.linear(x, d)) for _ in range(3))
        kt = self.node("Transpose", [k], (heads, hd, t), perm=[0, 1, 3, 2])
        scores = self.node("MatMul", [q, kt], (heads, t, t))
        scaled = self.node("Mul", [scores, self._init(np.array(1 / math.sqrt(hd)), "c")],
                           (heads, t, t))  # fmt: skip
        probs = self.node("Softmax", [scaled], (heads, t, t), axis=-1)
        ctx = self.node("MatMul", [probs, v], (heads, t, hd))
        merged = self.node("Transpose", [ctx], (t, heads, hd), perm=[0, 2, 1, 3])
        flat = self.node("Reshape", [merged, self._shape_const((1, t, d))], (t, d))
        return self.linear(flat, d)

    def model(self, out: str):
        from onnx import TensorProto, helper

        y = helper.make_tensor_value_info(out, TensorProto.FLOAT, [1, *self.shapes[out]])
        graph = helper.make_graph(self.nodes, self.name, [self.input], [y], self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)])
        model.ir_version = 8
        return model


def resnet18(size: int = 112):
    """ResNet-18 (He et al., 2016), ImageNet widths, at ``size``² input."""
    n = _Net(f"resnet18-{size}", (3, size, size), seed=18)
    x = n.maxpool(n.conv("x", 64, 7, stride=2))
    for cout, stride in ((64, 1), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
                         (512, 1)):  # fmt: skip
        y = n.conv(n.conv(x, cout, 3, stride=stride), cout, 3, relu=False)
        short = x if n.shapes[x][0] == cout and stride == 1 else n.conv(
            x, cout, 1, stride=stride, relu=False)  # fmt: skip
        x = n.add(y, short, relu=True)
    return n.model(n.head(x))


def mobilenet_v2(size: int = 112):
    """MobileNetV2 (Sandler et al., 2018), width 1.0, at ``size``² input."""
    n = _Net(f"mobilenetv2-{size}", (3, size, size), seed=2)
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
    n = _Net(f"shufflenetv2-{size}", (3, size, size), seed=3)
    x = n.maxpool(n.conv("x", 24, 3, stride=2))
    for c, repeats in ((116, 4), (232, 8), (464, 4)):
        half = c // 2
        for i in range(repeats):
            if i == 0:  # downsampling unit: both branches stride 2
                left = n.conv(n.conv(x, n.shapes[x][0], 3, stride=2, groups=n.shapes[x][0],
                                     relu=False), half, 1)  # fmt: skip
                right = n.conv(x, half, 1)
            else:
                left, right = n.split2(x)
                right = n.conv(right, half, 1)
            right = n.conv(n.conv(right, half, 3, stride=2 if i == 0 else 1, groups=half,
                                  relu=False), half, 1)  # fmt: skip
            x = n.shuffle(n.concat([left, right]))
    return n.model(n.head(n.conv(x, 1024, 1)))


def inception(size: int = 56):
    """An Inception-style network (Szegedy et al., 2015): a stem, then blocks of parallel
    1x1 / 1x1→3x3 / 1x1→5x5 / pool→1x1 branches joined by Concat."""
    n = _Net(f"inception-{size}", (3, size, size), seed=5)
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
    n = _Net(f"vgg-{size}", (3, size, size), seed=11)
    x = "x"
    for c in (64, 128, 256, 256):
        x = n.maxpool(n.conv(n.conv(x, c, 3), c, 3), 2, 2)
    return n.model(n.head(x, 10))


def transformer(tokens: int = 64, dim: int = 128, layers: int = 2, heads: int = 4):
    """A pre-norm transformer encoder (Vaswani et al., 2017) on ``tokens`` × ``dim``."""
    n = _Net(f"transformer-{tokens}x{dim}", (tokens, dim), seed=7)
    x = "x"
    for _ in range(layers):
        x = n.add(x, n.attention(n.layernorm(x), heads))
        x = n.add(x, n.linear(n.gelu(n.linear(n.layernorm(x), 4 * dim)), dim))
    return n.model(x)


def _conv_layer(cin: int, cout: int, k: int, size: int, *, stride: int = 1, groups: int = 1):
    def build():
        n = _Net(f"conv{k}x{k}-{cin}-{cout}-s{stride}-g{groups}-{size}", (cin, size, size),
                 seed=cin * 31 + cout)  # fmt: skip
        return n.model(n.conv("x", cout, k, stride=stride, groups=groups))

    return build


def _gemm_layer(rows: int, fan_in: int, out: int):
    def build():
        n = _Net(f"gemm-{rows}x{fan_in}-{out}", (rows, fan_in), seed=rows + out)
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
    )  # fmt: skip
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
    )  # fmt: skip
)


def cases(*, networks: bool = True, layers: bool = True, quick: bool = False) -> list[Case]:
    """The held-out cases; ``quick``: two networks and four layers (tests)."""
    nets = [c for c in HELDOUT_NETWORKS if not quick or c.name in ("vgg-32", "transformer-64x128")]
    lays = list(HELDOUT_LAYERS[::4] if quick else HELDOUT_LAYERS)
    return (nets if networks else []) + (lays if layers else [])
