"""Keep an INT8 CNN in ONNX Runtime's NHWC layout up to its classifier.

ONNX Runtime runs INT8 convolutions channels-last (``QLinearConv`` NHWC, ``NhwcMaxPool``)
and inserts a Transpose back to NCHW wherever the graph needs NCHW order: before the
``Flatten`` that feeds the first fully connected layer. That Transpose costs one operator,
and ONNX Runtime's transpose optimizer may push it up through a Clip (a sub-8-bit
activation's clamp) and a MaxPool, which then runs as the plain NCHW ``MaxPool`` -- on this
host 4-9x slower than ``NhwcMaxPool`` at batch 64 (measured on the demo's configs).

:func:`flatten_channels_last` removes the need for NCHW order: it flattens in (H, W, C)
order ((L, C) for a 1-D map) -- an explicit channels-last Transpose before the
``Flatten``, which ONNX Runtime cancels against its own NHWC transpose -- and permutes the
consumer's weight columns to match. The network computes exactly the same function: the
same products, summed in another order by an integer kernel, so the outputs are
bit-identical. A float classifier (a weight-only or float plan) is left alone: summing
float products in another order changes the last bits.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

__all__ = ["flatten_channels_last"]


def _shape(model: onnx.ModelProto, tensor: str) -> list[int] | None:
    inferred = onnx.shape_inference.infer_shapes(model)
    for info in (*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input):
        if info.name == tensor:
            dims = info.type.tensor_type.shape.dim
            return [d.dim_value if d.HasField("dim_value") else -1 for d in dims]
    return None


def _consumers(graph: onnx.GraphProto, tensor: str) -> list[onnx.NodeProto]:
    return [n for n in graph.node if tensor in n.input]


def _through_qdq(graph: onnx.GraphProto, tensor: str) -> onnx.NodeProto | None:
    """The single node that consumes ``tensor``, looking through a Q → DQ pair."""
    nodes = _consumers(graph, tensor)
    while len(nodes) == 1 and nodes[0].op_type in ("QuantizeLinear", "DequantizeLinear"):
        nodes = _consumers(graph, nodes[0].output[0])
    return nodes[0] if len(nodes) == 1 else None


def _weight(graph: onnx.GraphProto, name: str) -> tuple[onnx.TensorProto, int | None] | None:
    """The initializer behind a layer's weight input (directly, or the codes of its
    DequantizeLinear) and the DQ's per-channel axis (None: per tensor or no DQ)."""
    inits = {t.name: t for t in graph.initializer}
    if name in inits:
        return inits[name], None
    producer = next((n for n in graph.node if name in n.output), None)
    if producer is None or producer.op_type != "DequantizeLinear":
        return None
    codes = inits.get(producer.input[0])
    scale = inits.get(producer.input[1])
    if codes is None or scale is None:
        return None
    axis = next((a.i for a in producer.attribute if a.name == "axis"), 1)
    return codes, (axis if numpy_helper.to_array(scale).size > 1 else None)


def _integer_input(graph: onnx.GraphProto, layer: onnx.NodeProto) -> bool:
    """Does ``layer`` read a dequantized (integer) activation -- an INT8 kernel's input?"""
    producer = next((n for n in graph.node if layer.input[0] in n.output), None)
    return producer is not None and producer.op_type == "DequantizeLinear"


def flatten_channels_last(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose Flatten of a (N, C, spatial...) map (2-D or 1-D) feeding one
    Gemm/MatMul with a constant weight flattens channels last, (spatial..., C) (module
    docstring); other graphs unchanged."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    before: dict[str, onnx.NodeProto] = {}
    for flatten in [n for n in graph.node if n.op_type == "Flatten"]:
        if flatten.input[0].endswith("__nhwc"):
            continue  # flattened channels-last already (the pass is idempotent)
        axis = next((a.i for a in flatten.attribute if a.name == "axis"), 1)
        shape = _shape(model, flatten.input[0])
        if axis != 1 or shape is None or len(shape) < 3 or min(shape[1:]) < 1:
            continue
        c, spatial = shape[1], int(np.prod(shape[2:]))
        if spatial == 1:
            continue  # (C, 1, 1): the orders agree
        layer = _through_qdq(graph, flatten.output[0])
        if layer is None or layer.op_type not in ("Gemm", "MatMul"):
            continue
        found = _weight(graph, layer.input[1])
        if found is None or not _integer_input(graph, layer):
            continue
        tensor, channel_axis = found
        if tensor.data_type not in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8):
            continue  # a float weight: ONNX Runtime runs a float Gemm
        weight = numpy_helper.to_array(tensor)
        trans_b = any(a.name == "transB" and a.i for a in layer.attribute)
        in_axis = 1 if (layer.op_type == "Gemm" and trans_b) else 0
        if weight.ndim != 2 or weight.shape[in_axis] != c * spatial or channel_axis == in_axis:
            continue
        if in_axis == 1:
            permuted = weight.reshape(-1, c, spatial).transpose(0, 2, 1).reshape(weight.shape)
        else:
            permuted = weight.reshape(c, spatial, -1).transpose(1, 0, 2).reshape(weight.shape)
        tensor.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(permuted), tensor.name))
        nhwc = f"{flatten.input[0]}__nhwc"
        perm = [0, *range(2, len(shape)), 1]  # channels last: (N, C, *S) -> (N, *S, C)
        transpose = helper.make_node(
            "Transpose", [flatten.input[0]], [nhwc], perm=perm,
            name=f"{flatten.name or 'flatten'}__channels_last",
        )  # fmt: skip
        flatten.input[0] = nhwc
        before[flatten.output[0]] = transpose
    if before:  # inserted at the end: inserting into the repeated field shifts references
        nodes = []
        for node in graph.node:
            if node.output and node.output[0] in before:
                nodes.append(before[node.output[0]])
            nodes.append(onnx.NodeProto.FromString(node.SerializeToString()))
        graph.ClearField("node")
        graph.node.extend(nodes)
    onnx.checker.check_model(model)
    return model
