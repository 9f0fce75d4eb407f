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
from onnx import helper

from lowbit.models.export._onnx_edit import GraphEdit, attr

__all__ = ["flatten_channels_last"]


def _shape(model: onnx.ModelProto, tensor: str) -> list[int] | None:
    inferred = onnx.shape_inference.infer_shapes(model)
    for info in (*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input):
        if info.name == tensor:
            dims = info.type.tensor_type.shape.dim
            return [d.dim_value if d.HasField("dim_value") else -1 for d in dims]
    return None


def flatten_channels_last(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose Flatten of a (N, C, spatial...) map (2-D or 1-D) feeding one
    Gemm/MatMul with a constant weight flattens channels last, (spatial..., C) (module
    docstring); other graphs unchanged."""
    g = GraphEdit(onnx.ModelProto.FromString(model.SerializeToString()))
    for flatten in [n for n in g.graph.node if n.op_type == "Flatten"]:
        if flatten.input[0].endswith("__nhwc"):
            continue  # flattened channels-last already (the pass is idempotent)
        shape = _shape(g.model, flatten.input[0])
        if attr(flatten, "axis", 1) != 1 or shape is None or len(shape) < 3 or min(shape[1:]) < 1:
            continue
        c, spatial = shape[1], int(np.prod(shape[2:]))
        if spatial == 1:
            continue  # (C, 1, 1): the orders agree
        layer = g.through_qdq(flatten.output[0])
        if layer is None or layer.op_type not in ("Gemm", "MatMul"):
            continue
        # an integer kernel: a dequantized activation and int8/uint8 weight codes (a float
        # weight or input means ONNX Runtime runs a float Gemm)
        dq, x_dq = g.weight_dq(layer.input[1]), g.producer(layer.input[0])
        if dq is None or x_dq is None or x_dq.op_type != "DequantizeLinear":
            continue
        tensor = g.inits[dq.input[0]]
        if tensor.data_type not in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8):
            continue
        channel_axis = attr(dq, "axis", 1) if g.array(dq.input[1]).size > 1 else None
        weight = g.array(dq.input[0])
        in_axis = 1 if (layer.op_type == "Gemm" and attr(layer, "transB", 0)) else 0
        if weight.ndim != 2 or weight.shape[in_axis] != c * spatial or channel_axis == in_axis:
            continue
        if in_axis == 1:
            permuted = weight.reshape(-1, c, spatial).transpose(0, 2, 1).reshape(weight.shape)
        else:
            permuted = weight.reshape(c, spatial, -1).transpose(1, 0, 2).reshape(weight.shape)
        g.set(dq.input[0], permuted)
        nhwc = f"{flatten.input[0]}__nhwc"
        perm = [0, *range(2, len(shape)), 1]  # channels last: (N, C, *S) -> (N, *S, C)
        transpose = helper.make_node(
            "Transpose",
            [flatten.input[0]],
            [nhwc],
            perm=perm,
            name=f"{flatten.name or 'flatten'}__channels_last",
        )
        flatten.input[0] = nhwc
        g.insert_before(flatten.output[0], transpose)
    return g.finish()
