"""A compressed model as QONNX: the float network with ``Quant`` nodes at each layer's bits.

QONNX (``qonnx.custom_op.general.Quant``: ``(clamp(round(x / scale + zeropt)) − zeropt) ·
scale`` on a ``bitwidth``-bit signed or unsigned range) is what FINN and hls4ml read. The
graph is ``model.fp32.onnx`` (pruned channels removed, low-rank layers as two layers,
BatchNorm folded) with a ``Quant`` on

* each integer layer's weights, per output channel, at the layer's ``w_bits``: the folded
  weights' levels divided by their largest common factor per channel (the int8 export's
  refinement ``k``, :mod:`lowbit.models.export._onnx_weights`) are the trained grid's codes,
  so the bit width is the config's; a channel whose levels sit off centre (a folded
  BatchNorm negating a −128 code) gets a zero point;
* each quantized input activation, at the layer's ``a_bits`` (the grid's own signed or
  unsigned range: lowbit's uint8 shift of signed grids is undone), and a residual add's or
  global pool's output on its grid.

Biases stay float (the int32 codes times ``s_x·s_w``: the same values). The QONNX executor
computes in float what lowbit's fake-quant model computes with integer arithmetic, so the
two agree but for requantization ties (:func:`check_qonnx` measures it). Needs the
optional ``edge`` extra (``qonnx`` for the check).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from lowbit.models.export._extras import require_extra
from lowbit.models.export._qdq_grids import (
    LAYER_OPS,
    ActGrid,
    ExportError,
    WeightGrid,
    scope_of,
)

__all__ = ["QONNX_DOMAIN", "build_qonnx", "check_qonnx"]

QONNX_DOMAIN = "qonnx.custom_op.general"


def _range(grid: ActGrid) -> tuple[bool, bool, int, int]:
    """(signed, narrow, bit width, zero point) of an activation grid in QONNX's terms."""
    signed = grid.qmin > 0  # a signed grid is stored shifted by 128 (plain.act_grid)
    lo, hi, zp = (grid.qmin - 128, grid.qmax - 128, grid.zero_point - 128) if signed else (
        grid.qmin, grid.qmax, grid.zero_point)  # fmt: skip
    levels = hi - lo + 1
    bits = math.ceil(math.log2(levels))
    narrow = levels == 2**bits - 1
    expect = (
        (-(2 ** (bits - 1)) + narrow, 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1 - narrow)
    )
    if (lo, hi) != expect:
        raise ExportError(f"QONNX export: activation grid [{lo}, {hi}] is not a {bits}-bit range")
    return signed, narrow, bits, zp


class _Builder:
    def __init__(self, model: onnx.ModelProto):
        self.model = model
        self.g = model.graph
        self.inits = {t.name: t for t in self.g.initializer}
        self.fresh = 0

    def const(self, base: str, array: np.ndarray) -> str:
        self.fresh += 1
        name = f"{base}__q{self.fresh}"
        self.g.initializer.append(numpy_helper.from_array(array, name))
        return name

    def quant(self, src: str, label: str, scale, zeropt, bits: int, signed, narrow) -> str:
        """Append a Quant of ``src``; returns its output name."""
        ins = [src, self.const(label + "_scale", np.asarray(scale, np.float32)),
               self.const(label + "_zeropt", np.asarray(zeropt, np.float32)),
               self.const(label + "_bitwidth", np.array(bits, np.float32))]  # fmt: skip
        out = f"{label}__quant{self.fresh}"
        self.g.node.append(helper.make_node(
            "Quant", ins, [out], domain=QONNX_DOMAIN, name=f"/{label}/Quant",
            signed=int(signed), narrow=int(narrow), rounding_mode="ROUND",
        ))  # fmt: skip
        return out

    def weight(self, node: onnx.NodeProto, grid: WeightGrid, label: str) -> None:
        """Quant the weight input on ``grid``'s levels (refinement undone) per channel."""
        bits = grid.bits
        lo_b, hi_b = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        codes = grid.codes.astype(np.int64).reshape(grid.codes.shape[0], -1)
        scale, zeropt = [], []
        for row, s in zip(codes, grid.scales.astype(np.float64), strict=True):
            g = int(np.gcd.reduce(np.abs(row))) or 1  # the int8 export's refinement k
            lo, hi = int(row.min()) // g, int(row.max()) // g
            if hi - lo > hi_b - lo_b:
                raise ExportError(f"QONNX export: {label} weights span more than {bits} bits")
            scale.append(s * g)
            zeropt.append(int(np.clip(0, lo_b - lo, hi_b - hi)))
        transposed = node.op_type == "MatMul" or (
            node.op_type == "Gemm" and not any(a.name == "transB" and a.i for a in node.attribute)
        )  # the ONNX weight is (in, out)
        rank = len(self.inits[node.input[1]].dims)
        shape = [1] * rank
        shape[1 if transposed else 0] = -1
        s = np.array(scale, np.float32).reshape(shape)
        z = np.array(zeropt, np.float32).reshape(shape)
        node.input[1] = self.quant(node.input[1], f"{label}.weight", s, z, bits, True, False)

    def activation(self, node: onnx.NodeProto, idx: int, grid: ActGrid, label: str) -> None:
        signed, narrow, bits, zp = _range(grid)
        node.input[idx] = self.quant(node.input[idx], label, grid.scale, zp, bits, signed, narrow)

    def output(self, node: onnx.NodeProto, grid: ActGrid, label: str) -> None:
        signed, narrow, bits, zp = _range(grid)
        src = node.output[0]
        readers = [(n, i) for n in self.g.node for i, x in enumerate(n.input) if x == src]
        out = self.quant(src, label, grid.scale, zp, bits, signed, narrow)
        for reader, i in readers:
            reader.input[i] = out


def build_qonnx(*, fp32: onnx.ModelProto, quants: list) -> onnx.ModelProto:
    """The QONNX model of a compressed model: its plain float ONNX ``fp32``
    (:func:`lowbit.models.export.deploy.to_onnx` of :func:`~lowbit.models.export.plain.
    deploy_copy`) with Quant nodes for ``quants`` (the same copy's
    :class:`~lowbit.models.export.onnx_quant.LayerQuant` list)."""
    model = onnx.ModelProto()
    model.CopyFrom(fp32)
    b = _Builder(model)
    for layer in quants:
        ops = LAYER_OPS[layer.kind]
        found = [n for n in model.graph.node if n.op_type in ops and scope_of(n) == layer.name]
        if len(found) != 1:
            raise ExportError(f"QONNX export: layer {layer.name!r} not found once in the graph")
        node = found[0]
        if layer.weight is not None and node.input[1] in b.inits:
            b.weight(node, layer.weight, layer.name)
        for idx, grid in enumerate(layer.inputs):
            if grid is not None:
                b.activation(node, idx, grid, f"{layer.name}.input{idx}")
        if layer.output is not None:
            b.output(node, layer.output, f"{layer.name}.output")
    nodes = list(model.graph.node)
    from lowbit.models.export.onnx_quant import topological_order

    del model.graph.node[:]
    model.graph.node.extend(topological_order(nodes, model.graph))
    model.opset_import.append(helper.make_opsetid(QONNX_DOMAIN, 1))
    return model


def check_qonnx(
    *, compressed: Any, model: onnx.ModelProto, samples: int = 500, min_agreement: float = 0.99
) -> dict:
    """QONNX executor vs the fake-quant model on the first ``samples`` test images; raises
    :class:`ExportError` when their argmax agree on fewer than ``min_agreement``."""
    import torch

    from lowbit.models.accuracy import as_model_input, logits
    from lowbit.models.data import load_split
    from lowbit.models.export.ort import INPUT_NAME, OUTPUT_NAME

    require_extra("qonnx.core.onnx_exec", package="qonnx", what="checking a QONNX model")
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    x, y = load_split(compressed.dataset, "test")
    x = as_model_input(compressed, x[:samples])
    with torch.no_grad():
        fake = logits(compressed, x).numpy()
    from qonnx.transformation.infer_shapes import InferShapes

    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)  # the executor wants static shapes: batch = the images checked
    for value in (*fixed.graph.input, *fixed.graph.output):
        value.type.tensor_type.shape.dim[0].dim_value = len(x)
    wrapper = ModelWrapper(fixed).transform(InferShapes())
    out = execute_onnx(wrapper, {INPUT_NAME: x.numpy()})[OUTPUT_NAME]
    labels = y[:samples].numpy()
    agreement = float((out.argmax(1) == fake.argmax(1)).mean())
    if agreement < min_agreement:
        raise ExportError(
            f"QONNX model's argmax agrees with the fake-quant model on {agreement:.2%} of "
            f"{len(labels)} test images, below {min_agreement:.0%} (a bug in the QONNX export)"
        )
    return {
        "split": "test",
        "samples": len(labels),
        "runtime": "qonnx.core.onnx_exec.execute_onnx",
        "argmax_agreement": agreement,
        "max_abs_logit_diff": float(np.abs(out - fake).max()),
        "logit_range": float(np.abs(fake).max()),
        "accuracy_qonnx": float((out.argmax(1) == labels).mean()),
        "accuracy_fake_quant": float((fake.argmax(1) == labels).mean()),
    }
