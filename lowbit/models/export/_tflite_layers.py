"""The layers of the TFLite graph (:mod:`lowbit.models.export._tflite_graph`): a Conv, Gemm,
MatMul (constant weights), Add or GlobalAveragePool of the QDQ graph, emitted once the
quantizer of its output gives the int8 output grid."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from lowbit.models.export._qdq_grids import ExportError, scope_of
from lowbit.models.export._tflite_ir import GraphBuilder, attrs, same_or_valid, spatial

__all__ = ["LayerEmitter", "Pending"]


@dataclass
class Pending:
    """A Conv/Gemm/Add/GlobalAveragePool waiting for the quantizer that gives its output."""

    node: onnx.NodeProto
    inputs: list[int]
    relu: bool = False


class LayerEmitter(GraphBuilder):
    """Emits deferred layers; the converter provides ``pending``, ``consts``, ``emitted``,
    ``done`` (emitted layer output → its :class:`Pending`), ``copies`` (layer output → grid
    → tensor, for :meth:`emit_again`), ``fusable`` and ``readers``."""

    def emit(self, name: str, grid: tuple[float, int], out_name: str) -> int:
        pend = self.pending.pop(name)
        self.done[name] = pend
        kind = pend.node.op_type
        out_name = scope_of(pend.node) or out_name  # Vela's per-layer report shows this name
        idx, op = getattr(self, "emit_" + kind)(pend, grid, out_name)
        if pend.relu:
            op.options[1]["fusedActivationFunction"] = "RELU"
        elif self.readers.get(name) == 1 and "fusedActivationFunction" in op.options[1]:
            self.fusable[idx] = op  # a Clip of this output alone may become a fused RELU
        self.emitted[name] = idx
        return idx

    def emit_again(self, name: str, grid: tuple[float, int], out_name: str) -> int:
        """Layer output ``name``, already emitted, quantized onto another ``grid`` too. Where
        a conv or linear layer's readers quantize its output onto different grids, lowbit
        (and ONNX Runtime) round its float output onto each grid directly: the layer is
        computed again, once per grid (requantizing the first grid's codes would round
        twice). An add's or pool's output has a grid of its own: requantized from it."""
        first = self.emitted[name]
        copies = self.copies.setdefault(name, {self.grid_of(first): first})
        if grid in copies:
            return copies[grid]
        pend = self.done[name]
        if pend.node.op_type not in ("Conv", "Gemm", "MatMul"):
            return self.requantize(first, grid, out_name)
        self.pending[name] = pend
        copies[grid] = self.emit(name, grid, out_name)
        self.emitted[name] = first
        return copies[grid]

    def weights(self, node: onnx.NodeProto, name: str) -> tuple[np.ndarray, np.ndarray, int]:
        """(levels as int8, per-channel scale, ONNX channel axis) of a weight input."""
        if name not in self.consts:
            raise ExportError(
                f"TFLite export: layer {scope_of(node)!r} has float weights: a "
                "fully-integer TFLite model needs every layer int8"
            )
        codes, scale, zp, axis = self.consts[name]
        shape = [1] * codes.ndim
        shape[axis] = -1
        levels = codes.astype(np.int64) - np.asarray(zp, np.int64).reshape(shape)
        if levels.min() < -128 or levels.max() > 127:
            raise ExportError(
                f"TFLite export: layer {scope_of(node)!r}: weight levels span "
                "beyond int8 with zero point 0 (asymmetric 8-bit weights)"
            )
        return levels.astype(np.int8), np.asarray(scale, np.float32).reshape(-1), axis

    def bias(self, node: onnx.NodeProto, x: int, w_scale: np.ndarray, label: str) -> int:
        s_x = self.grid_of(x)[0]
        scale = (np.float64(np.float32(s_x)) * w_scale.astype(np.float64)).astype(np.float32)
        codes = np.zeros(w_scale.shape, np.int32)
        if len(node.input) > 2 and node.input[2]:
            if node.input[2] not in self.consts:
                raise ExportError(f"TFLite export: layer {scope_of(node)!r} has a float bias")
            codes = np.asarray(self.consts[node.input[2]][0], np.int32).reshape(-1)
        return self.const(
            label + ".bias", codes, scale=scale, zero_point=np.zeros(codes.shape, np.int64)
        )

    def emit_Conv(self, pend: Pending, grid, out_name: str):
        node, (x,) = pend.node, pend.inputs
        a = attrs(node)
        levels, w_scale, _ = self.weights(node, node.input[1])
        rank = levels.ndim
        if rank == 3:
            levels = levels[:, :, None, :]
        strides, dil, pads = spatial(a, rank + 0)
        t = self.g.tensors[x]
        c_in, c_out, kernel = t.shape[3], levels.shape[0], list(levels.shape[2:])
        name = scope_of(node)
        self.g.probes[name] = x
        pad_mode, out_hw, explicit = same_or_valid(t.shape[1:3], kernel, strides, dil, pads)
        if explicit:
            paddings = np.array([[0, 0], [pads[0], pads[2]], [pads[1], pads[3]], [0, 0]], np.int32)
            shape = [1, t.shape[1] + pads[0] + pads[2], t.shape[2] + pads[1] + pads[3], c_in]
            padded = self.tensor(f"{name}.padded", shape, like=x)
            self.op("PAD", [x, self.const(f"{name}.paddings", paddings)], [padded])
            x = padded
        group = a.get("group", 1)
        zeros = np.zeros(c_out, np.int64)
        opts = {
            "padding": pad_mode,
            "strideH": strides[0],
            "strideW": strides[1],
            "dilationHFactor": dil[0],
            "dilationWFactor": dil[1],
            "fusedActivationFunction": "NONE",
        }
        if group == 1:
            w = self.const(
                f"{name}.weight",
                np.ascontiguousarray(levels.transpose(0, 2, 3, 1)),
                scale=w_scale,
                zero_point=zeros,
                axis=0,
            )
            code, options = "CONV_2D", ("Conv2DOptions", opts)
        elif group == c_in and levels.shape[1] == 1:
            w = self.const(
                f"{name}.weight",
                np.ascontiguousarray(levels.transpose(1, 2, 3, 0)),
                scale=w_scale,
                zero_point=zeros,
                axis=3,
            )
            opts["depthMultiplier"] = c_out // c_in
            code, options = "DEPTHWISE_CONV_2D", ("DepthwiseConv2DOptions", opts)
        else:
            raise ExportError(f"TFLite export: grouped convolution {name!r} (groups={group})")
        b = self.bias(node, x, w_scale, name)
        dims = (c_out, out_hw[1]) if rank == 3 else (c_out, *out_hw)
        out = self.act(out_name, [1, *out_hw, c_out], grid, ("nhwc", dims))
        return out, self.op(code, [x, w, b], [out], options)

    def emit_Gemm(self, pend: Pending, grid, out_name: str):
        node, (x,) = pend.node, pend.inputs
        levels, w_scale, axis = self.weights(node, node.input[1])
        if axis == 1:  # (in, out)
            levels = levels.T
        t = self.g.tensors[x]
        if t.layout[0] != "flat":
            raise ExportError(f"TFLite export: linear layer {scope_of(node)!r} on a 4-D input")
        perm = t.layout[1]
        if perm is not None:
            levels = levels[:, perm]
        name = scope_of(node)
        self.g.probes[name] = x
        w = self.const(
            f"{name}.weight",
            np.ascontiguousarray(levels),
            scale=w_scale,
            zero_point=np.zeros(levels.shape[0], np.int64),
            axis=0,
        )
        b = self.bias(node, x, w_scale, name)
        wide = len(grid) == 3  # the logits: 16x8 (int16 input and output, int64 bias)
        if wide:
            s_x = np.array([self.grid_of(x)[0]], np.float32)
            x16 = self.tensor(
                f"{name}.input16",
                t.shape,
                "int16",
                scale=s_x,
                zero_point=np.zeros(1, np.int64),
                layout=t.layout,
            )
            self.op("QUANTIZE", [x], [x16])  # exact: (code - zp) on the same scale
            x = x16
            bias = self.g.tensors[b]
            bias.data, bias.dtype = bias.data.astype(np.int64), "int64"
        out = self.act(out_name, [1, levels.shape[0]], grid[:2], ("flat", None))
        if wide:
            self.g.tensors[out].dtype = "int16"
        opts = {"fusedActivationFunction": "NONE"}
        return out, self.op("FULLY_CONNECTED", [x, w, b], [out], ("FullyConnectedOptions", opts))

    emit_MatMul = emit_Gemm

    def emit_Add(self, pend: Pending, grid, out_name: str):
        a, b = pend.inputs
        ta, tb = self.g.tensors[a], self.g.tensors[b]
        if ta.shape != tb.shape or str(ta.layout) != str(tb.layout):
            raise ExportError(f"TFLite export: add {scope_of(pend.node)!r} of unlike tensors")
        name = scope_of(pend.node)
        self.g.probes[name], self.g.probes[name + ":b"] = a, b
        out = self.act(out_name, ta.shape, grid, ta.layout)
        opts = {"fusedActivationFunction": "NONE"}
        return out, self.op("ADD", [a, b], [out], ("AddOptions", opts))

    def emit_GlobalAveragePool(self, pend: Pending, grid, out_name: str):
        (x,) = pend.inputs
        t = self.g.tensors[x]
        self.g.probes[scope_of(pend.node)] = x
        axes = self.const(f"{out_name}_axes", np.array([1, 2], np.int32))
        c = t.shape[3]
        out = self.act(out_name, [1, 1, 1, c], grid, ("nhwc", (c, 1, 1)))
        return out, self.op("MEAN", [x, axes], [out], ("ReducerOptions", {"keepDims": True}))
