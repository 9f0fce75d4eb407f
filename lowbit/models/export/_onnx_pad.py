"""Pad an INT8 CNN's channel counts up to what the CPU's direct INT8 convolution takes.

ONNX Runtime's fast INT8 convolution (NHWC ``QLinearConv``) needs input and output
channels in multiples of 4 and at least 16 output channels; any other convolution runs its
generic im2col path at ~45 instead of ~20 cycles per output pixel (:mod:`lowbit.models.hostcal.conv`
measures both). A pruned network is full of such counts (16 → 12, 8 → 6) and a grey-scale
stem has 1 input channel, so pruning can make the INT8 model *slower*. A deployment
engineer pads them: :func:`pad_conv_channels` gives every such conv zero filters up to the
aligned count (weight codes at their zero point, scale 1, bias code 0), the convs and the
classifier reading that tensor zero weights for the new channels, and a stem's input a
``Pad`` with zeros. The padded channels compute exact zeros, which every consumer weighs by
zero: the network computes exactly the same function (bit-identical INT8 outputs).

Only a conv whose channels reach plain convs (or a flattened classifier) is padded. A conv
read by a residual add (its channels are shared with the stream's other producers), by a
grouped or depthwise conv (whose groups would have to grow with them), or a grouped conv
itself is left alone, as is any graph this pass does not expect.

hwsim models the padded network on a profile with ``overheads.pad_conv_channels``.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from lowbit.hwsim.profile import aligned_channels
from lowbit.models.export._onnx_edit import GraphEdit, attr

__all__ = [
    "CONV_CHANNEL_MULTIPLE",
    "CONV_MIN_OUT_CHANNELS",
    "aligned_channels",
    "pad_conv_channels",
]

#: ONNX Runtime's direct INT8 (NHWC) convolution takes input and output channels in
#: multiples of 4 and at least 16 output channels; other convolutions run its generic
#: im2col + GEMM path at a fixed extra cost per output pixel (fitted). Found by sweeping a
#: 3x3 conv's channels (1-64 in, 4-64 out) on this host: 8->8, 2->16, 16->15, 16->17 are
#: slow, 4->16, 12->20 and 16->24 are not (models.hostconv.CONV_SWEEP measures it).
CONV_CHANNEL_MULTIPLE = 4
CONV_MIN_OUT_CHANNELS = 16

#: operators a channel travels through unchanged (per-tensor grids, elementwise, pooling)
_PASS = ("QuantizeLinear", "DequantizeLinear", "Clip", "Relu", "MaxPool", "AveragePool")


def _terminals(g: GraphEdit, tensor: str) -> list[onnx.NodeProto] | None:
    """The nodes that finally consume ``tensor``'s channels, through :data:`_PASS`
    operators; None when one may not be padded (a graph output, a per-channel grid on the
    way, an operator that mixes channels...)."""
    outputs = {o.name for o in g.graph.output}
    found, todo = [], [tensor]
    while todo:
        current = todo.pop()
        if current in outputs:
            return None
        for node in g.consumers(current):
            if node.op_type in _PASS:
                if node.op_type in ("QuantizeLinear", "DequantizeLinear") and any(
                    g.array(n).size > 1 for n in node.input[1:] if n in g.inits
                ):
                    return None
                if node.op_type == "Clip" and node.input[0] != current:
                    return None
                todo.append(node.output[0])
            elif node.op_type in ("Conv", "Flatten") and node.input[0] == current:
                found.append(node)
            else:
                return None
    return found


def _pad_axis(array: np.ndarray, axis: int, new: int, fill) -> np.ndarray:
    """``array`` grown along ``axis`` to ``new`` entries; ``fill``: a scalar, or values
    broadcast along the other axes (a per-row zero point)."""
    shape = list(array.shape)
    shape[axis] = new - array.shape[axis]
    block = (
        np.broadcast_to(np.asarray(fill, dtype=array.dtype), shape)
        if np.ndim(fill) == 0
        else np.broadcast_to(np.expand_dims(np.asarray(fill, array.dtype), axis), shape)
    )
    return np.concatenate([array, block], axis=axis)


def _zero_points(g: GraphEdit, dq: onnx.NodeProto, channels: int, axis: int) -> np.ndarray:
    """Per-channel zero points of a weight DQ along its channel ``axis`` (broadcast)."""
    zp = g.array(dq.input[2]).reshape(-1)
    return np.broadcast_to(zp, (channels,)) if zp.size == 1 else zp


def _pad_consumer(g: GraphEdit, node: onnx.NodeProto, old: int, new: int, *, apply: bool) -> bool:
    """Zero weights for the new input channels of ``node`` (a Conv, or a Flatten feeding
    a Gemm/MatMul); False when it has no constant quantized weight to pad. ``apply``:
    change the weights (else only check that they can be)."""
    if node.op_type == "Conv":
        dq = g.weight_dq(node.input[1])
        if dq is None or attr(node, "group", 1) != 1:
            return False
        codes = g.array(dq.input[0])
        if codes.shape[1] != old:
            return False
        if not apply:
            return True
        zp = _zero_points(g, dq, codes.shape[0], 0)
        g.set(dq.input[0], _pad_axis(codes, 1, new, zp.reshape((-1,) + (1,) * (codes.ndim - 2))))
        return True
    # Flatten (axis 1) of (N, C, spatial...) -> one Gemm/MatMul through a Q/DQ pair
    if attr(node, "axis", 1) != 1:
        return False
    layer = g.through_qdq(node.output[0])
    if layer is None or layer.op_type not in ("Gemm", "MatMul"):
        return False
    dq = g.weight_dq(layer.input[1])
    if dq is None:
        return False
    codes = g.array(dq.input[0])
    in_axis = 1 if (layer.op_type == "Gemm" and attr(layer, "transB", 0)) else 0
    out_axis = 1 - in_axis
    if codes.ndim != 2 or codes.shape[in_axis] % old:
        return False
    if not apply:
        return True
    spatial = codes.shape[in_axis] // old
    zp = _zero_points(g, dq, codes.shape[out_axis], out_axis)
    moved = np.moveaxis(codes, in_axis, 1).reshape(codes.shape[out_axis], old, spatial)
    grown = _pad_axis(moved, 1, new, zp.reshape(-1, 1))
    g.set(dq.input[0], np.moveaxis(grown.reshape(codes.shape[out_axis], -1), 1, in_axis))
    return True


def _pad_producer(g: GraphEdit, conv: onnx.NodeProto, new: int) -> None:
    """Zero filters for ``conv``'s new output channels: codes at the zero point, scale 1
    (any positive scale dequantizes them to 0), bias code 0 at scale s_x x 1."""
    dq = g.weight_dq(conv.input[1])
    codes = g.array(dq.input[0])
    old = codes.shape[0]
    zp = _zero_points(g, dq, old, 0)
    fill = zp[0] if np.all(zp == zp[0]) else 0
    g.set(dq.input[0], _pad_axis(codes, 0, new, fill))
    for name, value in ((dq.input[1], 1.0), (dq.input[2], fill)):
        array = g.array(name)
        if _per_channel(array, old):
            g.set(name, _pad_axis(array, 0, new, value))
    if len(conv.input) > 2 and conv.input[2]:
        bias = g.weight_dq(conv.input[2])
        x_dq = g.producer(conv.input[0])
        s_x = g.array(x_dq.input[1]).reshape(-1)[0] if x_dq is not None else 1.0
        for name, value in ((bias.input[0], 0), (bias.input[1], s_x), (bias.input[2], 0)):
            array = g.array(name)
            if _per_channel(array, old):
                g.set(name, _pad_axis(array, 0, new, value))


def _per_channel(array: np.ndarray, channels: int) -> bool:
    """Whether a DQ input holds one value per output channel (1-D of that length, also when
    the conv has a single channel), rather than one for the tensor (0-D)."""
    return array.ndim == 1 and array.shape[0] == channels


def _pad_input(g: GraphEdit, conv: onnx.NodeProto, new: int) -> bool:
    """A stem: pad the graph input's channels with zeros (a Pad before its quantizer)."""
    q = g.producer(conv.input[0])
    while q is not None and q.op_type in ("DequantizeLinear", "Clip"):
        q = g.producer(q.input[0])
    inputs = {i.name: i for i in g.graph.input}
    if q is None or q.op_type != "QuantizeLinear" or q.input[0] not in inputs:
        return False
    source = q.input[0]
    rank = len(inputs[source].type.tensor_type.shape.dim)
    dq = g.weight_dq(conv.input[1])
    old = g.array(dq.input[0]).shape[1]
    if rank < 3 or len(_terminals(g, source) or []) != 1:
        return False
    if not _pad_consumer(g, conv, old, new, apply=False):
        return False
    pads = [0] * (2 * rank)
    pads[rank + 1] = new - old
    pads_name = g.add_init(f"{source}__channel_pads", np.array(pads, np.int64))
    padded = f"{source}__channel_padded"
    node = helper.make_node("Pad", [source, pads_name], [padded], name=f"{source}__pad")
    q.input[0] = padded
    g.insert_before(q.output[0], node)
    return _pad_consumer(g, conv, old, new, apply=True)


def pad_conv_channels(
    model: onnx.ModelProto,
    *,
    multiple: int = CONV_CHANNEL_MULTIPLE,
    min_out: int = CONV_MIN_OUT_CHANNELS,
) -> tuple[onnx.ModelProto, dict[str, tuple[int, int]]]:
    """A copy of ``model`` with its INT8 convolutions' channels padded (module docstring),
    and ``{conv node: (channels, padded channels)}`` for each output or input padded."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    g = GraphEdit(model)
    padded: dict[str, tuple[int, int]] = {}
    for conv in [n for n in g.graph.node if n.op_type == "Conv"]:
        dq = g.weight_dq(conv.input[1])
        if dq is None or attr(conv, "group", 1) != 1:
            continue
        readers = g.consumers(conv.output[0])
        if not readers or any(r.op_type != "QuantizeLinear" for r in readers):
            continue  # not requantized: ONNX Runtime runs it as a float Conv, no INT8 kernel
        has_bias = len(conv.input) > 2 and bool(conv.input[2])
        if has_bias and g.weight_dq(conv.input[2]) is None:
            continue  # a float bias: not the int32 bias of an INT8 kernel (lowbit never writes it)
        codes = g.array(dq.input[0])
        cin = codes.shape[1]
        target_in = aligned_channels(cin, multiple=multiple)
        if target_in != cin and _pad_input(g, conv, target_in):
            padded[f"{conv.name}:in"] = (cin, target_in)
        out = codes.shape[0]
        target = aligned_channels(out, multiple=multiple, minimum=min_out)
        if target == out:
            continue
        terminals = _terminals(g, conv.output[0])
        if not terminals:
            continue
        # every reader takes the new channels, or none is changed
        if not all(_pad_consumer(g, t, out, target, apply=False) for t in terminals):
            continue
        for t in terminals:
            _pad_consumer(g, t, out, target, apply=True)
        _pad_producer(g, conv, target)
        padded[conv.name] = (out, target)
    return g.finish(), padded
