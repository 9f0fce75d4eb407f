"""ONNX graphs for the host calibration and its held-out check, built without torch:
:class:`GraphBuilder` (FP32 layers with seeded random weights, shapes tracked) and
:func:`quantize_int8` (ONNX Runtime's own static quantizer, as a user would run it)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

__all__ = ["GraphBuilder", "input_shape", "quantize_int8"]

_OPSET = 17


class GraphBuilder:
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

    def conv(
        self, x: str, cout: int, k: int, *, stride: int = 1, groups: int = 1, relu: bool = True
    ) -> str:
        cin, h, w = self.shapes[x]
        fan_in = cin // groups * k * k
        weight = self.rng.normal(0, math.sqrt(2 / fan_in), (cout, cin // groups, k, k))
        bias = self.rng.normal(0, 0.05, cout)
        oh, ow = (h + 2 * (k // 2) - k) // stride + 1, (w + 2 * (k // 2) - k) // stride + 1
        y = self.node(
            "Conv",
            [x, self._init(weight), self._init(bias, "b")],
            (cout, oh, ow),
            kernel_shape=[k, k],
            strides=[stride, stride],
            pads=[k // 2] * 4,
            group=groups,
        )
        return self.node("Relu", [y], (cout, oh, ow)) if relu else y

    def relu6(self, x: str) -> str:
        """ReLU6 as exported: a Clip to [0, 6]."""
        lo, hi = self._init(np.array(0.0), "lo"), self._init(np.array(6.0), "hi")
        return self.node("Clip", [x, lo, hi], self.shapes[x])

    def add(self, a: str, b: str, *, relu: bool = False) -> str:
        y = self.node("Add", [a, b], self.shapes[a])
        return self.node("Relu", [y], self.shapes[a]) if relu else y

    def maxpool(self, x: str, k: int = 3, stride: int = 2) -> str:
        c, h, w = self.shapes[x]
        pad = k // 2
        shape = (c, (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1)
        return self.node(
            "MaxPool", [x], shape, kernel_shape=[k, k], strides=[stride] * 2, pads=[pad] * 4
        )

    def head(self, x: str, classes: int = 1000) -> str:
        """Global average pool, flatten, fully connected."""
        c = self.shapes[x][0]
        pooled = self.node("GlobalAveragePool", [x], (c, 1, 1))
        flat = self.node("Flatten", [pooled], (c,))
        return self.gemm(flat, classes)

    def gemm(self, x: str, out: int) -> str:
        fan_in = self.shapes[x][-1]
        weight = self.rng.normal(0, math.sqrt(1 / fan_in), (out, fan_in))
        return self.node(
            "Gemm", [x, self._init(weight), self._init(np.zeros(out), "b")], (out,), transB=1
        )

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
        five = self.node(
            "Reshape",
            [x, self._shape_const((1, groups, c // groups, h, w))],
            (groups, c // groups, h, w),
        )
        swapped = self.node("Transpose", [five], (c // groups, groups, h, w), perm=[0, 2, 1, 3, 4])
        return self.node("Reshape", [swapped, self._shape_const((1, c, h, w))], (c, h, w))

    # --- sequences (T, D) ---
    def linear(self, x: str, out: int) -> str:
        t, d = self.shapes[x]
        weight = self.rng.normal(0, math.sqrt(1 / d), (d, out))
        y = self.node("MatMul", [x, self._init(weight)], (t, out))
        return self.node("Add", [y, self._init(np.zeros(out), "b")], (t, out))

    def layernorm(self, x: str) -> str:
        d = self.shapes[x][-1]
        return self.node(
            "LayerNormalization",
            [x, self._init(np.ones(d), "g"), self._init(np.zeros(d), "b")],
            self.shapes[x],
            axis=-1,
        )

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
        scaled = self.node(
            "Mul", [scores, self._init(np.array(1 / math.sqrt(hd)), "c")], (heads, t, t)
        )
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


class _RandomReader:
    """ONNX Runtime's CalibrationDataReader protocol over a few seeded random inputs."""

    def __init__(self, name: str, shape: tuple[int, ...], samples: int) -> None:
        rng = np.random.default_rng(0)
        self._items = iter(
            [{name: rng.normal(size=shape).astype(np.float32)} for _ in range(samples)]
        )

    def get_next(self):
        return next(self._items, None)


def input_shape(model) -> tuple[int, ...]:
    """The first input's shape (batch 1; every held-out input is fully static)."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    return tuple(int(d.dim_value) or 1 for d in dims)


def quantize_int8(fp32_path: Path, int8_path: Path, *, samples: int = 4) -> Path:
    """``fp32_path`` quantized by ONNX Runtime's ``quantize_static`` (QDQ, per-channel int8
    weights, uint8 activations, MinMax calibration on ``samples`` random inputs)."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    model = onnx.load(str(fp32_path))
    reader = _RandomReader(model.graph.input[0].name, input_shape(model), samples)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer's "consider pre-processing" advice, per model
    try:
        quantize_static(
            str(fp32_path),
            str(int8_path),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
    finally:
        root.setLevel(level)
    return int8_path
