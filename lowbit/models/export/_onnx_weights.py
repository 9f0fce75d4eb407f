"""Weights and biases of the QDQ graph as integer codes (:mod:`lowbit.models.export.onnx_quant`).

Weights become int8 (or uint8, zero point 128) codes with one float32 scale per output
channel behind a DequantizeLinear, refined to a finer integer scale for the int32 bias
(:func:`_refine`); a Conv/Gemm bias becomes int32 codes on the accumulator scale s_x·s_w.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from lowbit.models.compression._intbias import REFINE_LIMIT
from lowbit.models.export._qdq_grids import ExportError, LayerQuant

#: the exporter's graph builder (``onnx_quant._Graph``, which imports this module): typed
#: structurally here so the two modules do not import each other
_Graph = Any

__all__ = ["quantize_bias", "quantize_weight"]


def _weight_layout(node: onnx.NodeProto, codes: np.ndarray) -> tuple[np.ndarray, int]:
    """(codes laid out like the ONNX weight input, the output-channel axis)."""
    if node.op_type == "Conv":
        return codes, 0
    trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
    if node.op_type == "Gemm" and trans_b:
        return codes, 0
    return codes.T, 1  # Gemm without transB and MatMul hold W^T: (in, out)


def quantize_weight(g: _Graph, node: onnx.NodeProto, layer: LayerQuant, weight_type: str):
    """Replace the float weight input by int8/uint8 codes + DequantizeLinear (per channel).

    Returns the per-channel weight scales (for the bias) and the storage type (s8/u8).
    """
    w = layer.weight
    name = node.input[1]
    if name not in g.inits:
        raise ExportError(f"layer {layer.name!r}: weight {name!r} is not an initializer")
    float_w = numpy_helper.to_array(g.inits[name])
    codes, axis = _weight_layout(node, w.codes)
    scales = w.scales.astype(np.float32)
    if float_w.shape != codes.shape:
        raise ExportError(
            f"layer {layer.name!r}: ONNX weight shape {float_w.shape} != grid {codes.shape}"
        )
    expected = codes.astype(np.float64) * scales.reshape(_axis_shape(codes.ndim, axis))
    tol = 1e-4 * float(np.abs(expected).max() + 1e-12)
    if float(np.abs(float_w - expected).max()) > tol:
        raise ExportError(f"layer {layer.name!r}: ONNX weights are not on the layer's grid")
    codes, scales = _refine(codes.astype(np.int64), scales, axis)
    stored, zero_points, dtype = _store(codes, axis, weight_type, layer.name)
    base = f"{layer.name}.weight"
    q = g.add_init(g.name(base + "_quantized"), stored)
    s = g.add_init(g.name(base + "_scale"), scales)
    z = g.add_init(g.name(base + "_zero_point"), zero_points)
    out = g.name(base + "_dequantized")
    g.nodes.append(helper.make_node("DequantizeLinear", [q, s, z], [out], axis=axis))
    node.input[1] = out
    return scales, dtype


def _refine(codes: np.ndarray, scales: np.ndarray, axis: int):
    """(codes · k, scales / k) per channel with the largest integer k keeping |codes · k| <=
    :data:`lowbit.models.compression._intbias.REFINE_LIMIT`: the same weight values on a finer
    integer
    scale, so
    a k-times finer int32 bias grid (s_x · s_w / k). The rule is the fake-quant model's
    (:func:`lowbit.models.compression._intbias.integer_layer`, whose codes arrive here refined
    already:
    k = 1)."""
    other = tuple(i for i in range(codes.ndim) if i != axis)
    peak = np.maximum(np.abs(codes).max(axis=other), 1)
    k = np.maximum(REFINE_LIMIT // peak, 1)
    shape = _axis_shape(codes.ndim, axis)
    return codes * k.reshape(shape), (scales / k).astype(np.float32)


def _store(codes: np.ndarray, axis: int, weight_type: str, name: str):
    """(stored codes, per-channel zero points, storage type name) with stored − zero point =
    codes. The zero point is 0 (s8) or 128 (u8) unless a channel's codes need a shift to fit
    (8-bit asymmetric grids, or a −128 code negated by a folded BatchNorm): ONNX Runtime's
    integer kernels take per-channel weight zero points. ``u8`` is used only where s8 codes
    could saturate u8·s8 arithmetic without VNNI (some |code| > 64, module docstring)."""
    other = tuple(i for i in range(codes.ndim) if i != axis)
    lo, hi = codes.min(axis=other), codes.max(axis=other)
    if int((hi - lo).max()) > 255:
        raise ExportError(f"layer {name!r}: weight codes span more than 8 bits")
    kind = "s8"
    if weight_type == "u8":
        s8_zp = np.clip(0, -128 - lo, 127 - hi)
        if int(np.abs(codes + s8_zp.reshape(_axis_shape(codes.ndim, axis))).max()) > 64:
            kind = "u8"
    if kind == "s8":
        dtype, default, qmin, qmax = np.int8, 0, -128, 127
    else:
        dtype, default, qmin, qmax = np.uint8, 128, 0, 255
    zp = np.clip(default, qmin - lo, qmax - hi)
    stored = codes + zp.reshape(_axis_shape(codes.ndim, axis))
    return stored.astype(dtype), zp.astype(dtype), kind


def _axis_shape(ndim: int, axis: int) -> tuple[int, ...]:
    shape = [1] * ndim
    shape[axis] = -1
    return tuple(shape)


def quantize_bias(g: _Graph, node: onnx.NodeProto, layer: LayerQuant, w_scales: np.ndarray):
    """Conv/Gemm bias as int32 on the accumulator scale s_x · s_w[c] (+ DequantizeLinear)."""
    if node.op_type not in ("Conv", "Gemm") or len(node.input) < 3 or not node.input[2]:
        return
    name = node.input[2]
    if name not in g.inits:
        return
    bias = numpy_helper.to_array(g.inits[name]).astype(np.float64)
    if bias.shape != w_scales.shape:
        return  # a broadcast Gemm bias: leave it float
    scale = (np.float64(np.float32(layer.inputs[0].scale)) * w_scales.astype(np.float64)).astype(
        np.float32
    )
    limit = np.iinfo(np.int32)
    codes = np.clip(np.round(bias / scale.astype(np.float64)), limit.min, limit.max)
    base = f"{layer.name}.bias"
    q = g.add_init(g.name(base + "_quantized"), codes.astype(np.int32))
    s = g.add_init(g.name(base + "_scale"), scale)
    z = g.add_init(g.name(base + "_zero_point"), np.zeros(scale.shape, dtype=np.int32))
    out = g.name(base + "_dequantized")
    g.nodes.append(helper.make_node("DequantizeLinear", [q, s, z], [out], axis=0))
    node.input[2] = out
