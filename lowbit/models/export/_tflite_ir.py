"""The TFLite graph the exporter builds (:mod:`lowbit.models.export._tflite_graph`): tensors,
operators, ONNX attribute and padding helpers, and the builder that appends to it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

__all__ = ["Graph", "GraphBuilder", "Op", "Tensor", "attrs", "same_or_valid", "spatial"]


@dataclass
class Tensor:
    """One TFLite tensor: NHWC ``shape`` (batch 1), dtype name, quantization, constant data.

    ``layout`` is how its values map back to the ONNX tensor: ``("nhwc", (C, H, W))`` or
    ``("flat", perm)`` with ``perm[i]`` the ONNX feature index of feature i (None: same)."""

    name: str
    shape: list[int]
    dtype: str
    scale: np.ndarray | None = None
    zero_point: np.ndarray | None = None
    axis: int = 0
    data: np.ndarray | None = None
    layout: tuple = ("flat", None)


@dataclass
class Op:
    """One TFLite operator: builtin name, tensor indices, options (name, fields)."""

    code: str
    inputs: list[int]
    outputs: list[int]
    options: tuple[str, dict[str, Any]] | None = None


@dataclass
class Graph:
    """The converted graph: tensors, operators in execution order, graph input/output and
    ``probes``: integer layer (``"<name>:b"``: an add's second operand) → its input tensor."""

    tensors: list[Tensor] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list)
    inputs: list[int] = field(default_factory=list)
    outputs: list[int] = field(default_factory=list)
    probes: dict[str, int] = field(default_factory=dict)


def attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def spatial(attrs: dict[str, Any], rank: int) -> tuple[list[int], list[int], list[int]]:
    """(strides, dilations, pads top/left/bottom/right) as 2-D (a 1-D op gets H = 1)."""
    n = rank - 2
    strides = list(attrs.get("strides", [1] * n))
    dil = list(attrs.get("dilations", [1] * n))
    pads = list(attrs.get("pads", [0] * (2 * n)))
    if n == 1:
        return [1, *strides], [1, *dil], [0, pads[0], 0, pads[1]]
    return strides, dil, pads


def same_or_valid(size, kernel, strides, dil, pads) -> tuple[str, list[int], bool]:
    """('SAME' | 'VALID', output H/W, whether an explicit PAD is needed first)."""
    onnx_out = [
        (size[i] + pads[i] + pads[i + 2] - dil[i] * (kernel[i] - 1) - 1) // strides[i] + 1
        for i in range(2)
    ]
    if not any(pads):
        return "VALID", onnx_out, False
    same = True
    for i in range(2):
        out = math.ceil(size[i] / strides[i])
        total = max((out - 1) * strides[i] + dil[i] * (kernel[i] - 1) + 1 - size[i], 0)
        same &= out == onnx_out[i] and (pads[i], pads[i + 2]) == (total // 2, total - total // 2)
    return ("SAME", onnx_out, False) if same else ("VALID", onnx_out, True)


class GraphBuilder:
    """Appends tensors and operators to ``self.g`` (a :class:`Graph`)."""

    g: Graph

    def tensor(self, name: str, shape, dtype="int8", *, like: int | None = None, **kw) -> int:
        if like is not None:
            src = self.g.tensors[like]
            kw = {"scale": src.scale, "zero_point": src.zero_point, "layout": src.layout, **kw}
        self.g.tensors.append(Tensor(name, [int(s) for s in shape], dtype, **kw))
        return len(self.g.tensors) - 1

    def act(self, name: str, shape, grid: tuple[float, int], layout) -> int:
        scale, zp = grid
        return self.tensor(
            name,
            shape,
            scale=np.array([scale], np.float32),
            zero_point=np.array([zp], np.int64),
            layout=layout,
        )

    def const(self, name: str, data: np.ndarray, **kw) -> int:
        dtype = {np.int8: "int8", np.int32: "int32", np.int64: "int64", np.float32: "float32"}[
            data.dtype.type
        ]
        return self.tensor(name, data.shape, dtype, data=data, **kw)

    def op(self, code: str, inputs, outputs, options=None) -> Op:
        op = Op(code, list(inputs), list(outputs), options)
        self.g.ops.append(op)
        return op

    def grid_of(self, idx: int) -> tuple[float, int]:
        t = self.g.tensors[idx]
        return float(t.scale[0]), int(t.zero_point[0])

    def requantize(self, src: int, grid: tuple[float, int], name: str) -> int:
        if self.grid_of(src) == grid:
            return src
        t = self.g.tensors[src]
        out = self.act(name, t.shape, grid, t.layout)
        self.op("QUANTIZE", [src], [out])
        return out

    # -- nodes ---------------------------------------------------------------------------
