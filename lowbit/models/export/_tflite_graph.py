"""The QDQ INT8 ONNX graph as a fully-integer TFLite graph (:mod:`lowbit.models.export.tflite`).

The QDQ graph of :func:`lowbit.models.export.onnx_quant.quantize_graph` (before the ONNX
Runtime kernel passes) already is the integer model: every integer layer reads
DequantizeLinear(int8 codes) weights, an int32 bias and a dequantized activation, and its
output is read by one QuantizeLinear (and a Clip of the codes for a sub-8-bit grid). This
pass reads those patterns into TFLite operators without any recalibration:

* DQ → Conv/Gemm/Add/GlobalAveragePool → Q becomes one CONV_2D, DEPTHWISE_CONV_2D,
  FULLY_CONNECTED, ADD or MEAN with the Q's grid as its int8 output (uint8 codes shift by
  −128: the same values); a Clip of the codes becomes the fused RELU when its lower bound
  is the zero point, else MAXIMUM / MINIMUM with a constant on the same grid;
* MaxPool / Flatten between a DQ and a Q with the same grid run on int8 (MAX_POOL_2D,
  RESHAPE); a Q onto a different grid is a QUANTIZE (int8 → int8 requantization);
* a conv/linear layer whose output two readers quantize onto different grids is emitted
  once per grid (lowbit and ONNX Runtime round its float output onto each directly);
* a ReLU after a DQ (a residual add's output read on two grids keeps its ReLU in the QDQ
  graph) is the identity on a grid starting at zero, else a MAXIMUM with its zero point;
* NCHW becomes NHWC; the flatten before a classifier keeps NHWC order and the classifier's
  weight columns are permuted instead; padding that is not TFLite's SAME is a PAD (with the
  zero point, i.e. real zero) before a VALID convolution;
* weights keep their stored codes (per output channel, zero point 0); the bias keeps its
  int32 codes on s_x·s_w[c];
* the layer writing the logits (float in lowbit) runs 16x8 when given an int16 grid: its
  int8 input widened exactly to int16, the bias as int64, int16 output.

This pass covers CNN/MLP graphs. An attention model's graph (LayerNorm, softmax and GELU
in float between its integer layers) is refused here in one line (:class:`ExportError`):
:func:`lowbit.models.export.tflite.build_tflite` converts the zoo's ViT from its structure
instead (:mod:`lowbit.models.export._tflite_vit`), with int16 grids calibrated for those
float tensors.
"""

import math
from dataclasses import replace

import numpy as np
import onnx
from onnx import numpy_helper

from lowbit.models.export._qdq_grids import ExportError, scope_of
from lowbit.models.export._tflite_ir import Graph, Op, Tensor, attrs, same_or_valid, spatial
from lowbit.models.export._tflite_layers import LayerEmitter, Pending

__all__ = ["Graph", "Op", "Tensor", "convert", "has_float_blocks"]

#: operators lowbit's attention models compute in float between their integer layers
_FLOAT_BLOCKS = {"LayerNormalization": "LayerNorm", "Softmax": "softmax", "Erf": "GELU"}
_UNSUPPORTED = (
    "the TFLite export supports CNN/MLP models (conv, depthwise conv, linear, max and global "
    "average pooling, residual add)"
)


def has_float_blocks(model: onnx.ModelProto) -> bool:
    """The QDQ graph computes LayerNorm, softmax or GELU in float (an attention model)."""
    return any(n.op_type in _FLOAT_BLOCKS for n in model.graph.node)


class _Converter(LayerEmitter):
    def __init__(self, model: onnx.ModelProto, input_shape: tuple[int, ...], io: str):
        self.g = Graph()
        self.io = io
        self.input_shape = tuple(input_shape)
        self.inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        self.readers: dict[str, int] = {}
        for node in model.graph.node:
            for name in node.input:
                self.readers[name] = self.readers.get(name, 0) + 1
        self.graph_input = model.graph.input[0].name
        self.codes: dict[str, int] = {}  # ONNX uint8 codes tensor -> TFLite int8 tensor
        self.values: dict[str, int] = {}  # ONNX float tensor holding grid values -> tensor
        self.consts: dict[str, tuple] = {}  # DQ of an initializer -> (codes, scale, zp, axis)
        self.pending: dict[str, Pending] = {}
        self.emitted: dict[str, int] = {}  # pending tensor -> the op output made for it
        self.done: dict[str, Pending] = {}  # emitted tensor -> its layer
        self.copies: dict[str, dict[tuple, int]] = {}  # emitted tensor -> grid -> op output
        self.fusable: dict[int, Op] = {}  # output tensor -> op whose activation may fuse
        self.float_input: int | None = None

    def run(self, model: onnx.ModelProto, logits_grid: tuple) -> Graph:
        floats = sorted(
            {_FLOAT_BLOCKS[n.op_type] for n in model.graph.node if n.op_type in _FLOAT_BLOCKS}
        )
        if floats:
            raise ExportError(
                f"TFLite export: the graph computes {', '.join(floats)} in float between its "
                "integer layers (an attention model): convert it with "
                "lowbit.models.export.tflite.build_tflite, which calibrates int16 grids there"
            )
        missing = sorted(
            {n.op_type for n in model.graph.node if not hasattr(self, "on_" + n.op_type)}
        )
        if missing:
            raise ExportError(
                f"TFLite export: operators {', '.join(missing)} have no integer "
                f"TFLite mapping: {_UNSUPPORTED}"
            )
        for node in model.graph.node:
            getattr(self, "on_" + node.op_type)(node)
        for output in model.graph.output:
            if output.name in self.pending:
                idx = self.emit(output.name, logits_grid, output.name)
            elif output.name in self.values:
                idx = self.values[output.name]
            else:
                raise ExportError(
                    f"TFLite export: output {output.name!r} is not computed in "
                    "integer (a float layer): every layer must run as int8"
                )
            if self.io == "float":
                t = self.g.tensors[idx]
                out = self.tensor(output.name, t.shape, "float32", layout=t.layout)
                self.op("DEQUANTIZE", [idx], [out])
                idx = out
            self.g.outputs.append(idx)
        return self.g

    def input_layout(self) -> tuple[list[int], tuple]:
        shape = self.input_shape
        if len(shape) == 3:
            return [1, shape[1], shape[2], shape[0]], ("nhwc", shape)
        if len(shape) == 2:
            return [1, 1, shape[1], shape[0]], ("nhwc", (shape[0], 1, shape[1]))
        return [1, *shape], ("flat", None)

    def on_QuantizeLinear(self, node: onnx.NodeProto) -> None:
        src, out = node.input[0], node.output[0]
        grid = (float(self.inits[node.input[1]]), int(self.inits[node.input[2]]) - 128)
        if src == self.graph_input:
            shape, layout = self.input_layout()
            if self.io == "int8":
                if not self.g.inputs:
                    self.g.inputs.append(self.act(src, shape, grid, layout))
                self.codes[out] = self.requantize(self.g.inputs[0], grid, out)
                return
            if self.float_input is None:
                self.float_input = self.tensor(src, shape, "float32", layout=layout)
                self.g.inputs.append(self.float_input)
            self.codes[out] = self.act(out, shape, grid, layout)
            self.op("QUANTIZE", [self.float_input], [self.codes[out]])
        elif src in self.emitted:  # a second quantizer of a layer's output
            self.codes[out] = self.emit_again(src, grid, out)
        elif src in self.pending:
            self.codes[out] = self.emit(src, grid, out)
        elif src in self.values:
            self.codes[out] = self.requantize(self.values[src], grid, out)
        else:
            raise ExportError(
                f"TFLite export: {src!r} is quantized but computed in float: "
                "every layer must run as int8"
            )

    def on_Clip(self, node: onnx.NodeProto) -> None:
        src = self.codes.get(node.input[0])
        if src is None:
            raise ExportError(f"TFLite export: a float Clip ({scope_of(node)}): {_UNSUPPORTED}")
        lo = int(self.inits[node.input[1]]) - 128 if len(node.input) > 1 else -128
        hi = int(self.inits[node.input[2]]) - 128 if len(node.input) > 2 else 127
        _, zp = self.grid_of(src)
        cur = src
        op = self.fusable.get(src)
        if lo > -128 and op is not None and lo == zp and self.readers.get(node.input[0]) == 1:
            op.options[1]["fusedActivationFunction"] = "RELU"
            lo = -128
        for bound, code, keep in ((lo, "MAXIMUM", lo > -128), (hi, "MINIMUM", hi < 127)):
            if keep:
                t = self.g.tensors[cur]
                label = f"{self.g.tensors[src].name}.clip_{'min' if code == 'MAXIMUM' else 'max'}"
                bound_t = np.array([bound], np.int8)
                c = self.const(label + "_bound", bound_t, scale=t.scale, zero_point=t.zero_point)
                out = self.tensor(label, t.shape, like=cur)
                self.op(code, [cur, c], [out])
                cur = out
        self.codes[node.output[0]] = cur

    def on_DequantizeLinear(self, node: onnx.NodeProto) -> None:
        src, out = node.input[0], node.output[0]
        if src in self.inits:
            axis = attrs(node).get("axis", 1)
            scale, zp = self.inits[node.input[1]], self.inits[node.input[2]]
            self.consts[out] = (self.inits[src], scale, zp, axis)
        elif src in self.codes:
            self.values[out] = self.codes[src]
        else:
            raise ExportError(f"TFLite export: unexpected DequantizeLinear input {src!r}")

    def quantized_inputs(self, node: onnx.NodeProto, count: int) -> list[int]:
        found = [self.values.get(name) for name in node.input[:count]]
        if any(idx is None for idx in found):
            raise ExportError(
                f"TFLite export: layer {scope_of(node)!r} runs in float (its input or weights "
                "are not quantized): a fully-integer TFLite model needs every layer int8"
            )
        return found

    def defer(self, node: onnx.NodeProto, count: int) -> None:
        self.pending[node.output[0]] = Pending(node, self.quantized_inputs(node, count))

    def on_Conv(self, node: onnx.NodeProto) -> None:
        self.defer(node, 1)

    def on_Gemm(self, node: onnx.NodeProto) -> None:
        a = attrs(node)
        if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
            raise ExportError(f"TFLite export: Gemm {scope_of(node)!r} with transA/alpha/beta")
        self.defer(node, 1)

    def on_MatMul(self, node: onnx.NodeProto) -> None:
        if node.input[1] not in self.consts:  # activation x activation (attention)
            raise ExportError(
                f"TFLite export: MatMul of two activations ({scope_of(node)}): {_UNSUPPORTED}"
            )
        self.defer(node, 1)

    def on_Add(self, node: onnx.NodeProto) -> None:
        self.defer(node, 2)

    def on_GlobalAveragePool(self, node: onnx.NodeProto) -> None:
        self.defer(node, 1)

    def on_Relu(self, node: onnx.NodeProto) -> None:
        src = node.input[0]
        if src in self.values:  # on a stored int8 tensor (e.g. a residual add's output)
            idx = self.values[src]
            zp = self.grid_of(idx)[1]
            if zp > -128:  # its grid holds negative values: clamp them at the zero point
                t = self.g.tensors[idx]
                label = scope_of(node) or node.output[0]
                bound = self.const(
                    f"{label}.relu_bound",
                    np.array([zp], np.int8),
                    scale=t.scale,
                    zero_point=t.zero_point,
                )
                out = self.tensor(label, t.shape, like=idx)
                self.op("MAXIMUM", [idx, bound], [out])
                idx = out
            self.values[node.output[0]] = idx  # on a grid from zero up it is the identity
            return
        if src not in self.pending or self.readers.get(src) != 1:
            raise ExportError(f"TFLite export: a ReLU of a float tensor ({scope_of(node)})")
        self.pending[node.output[0]] = replace(self.pending.pop(src), relu=True)

    def on_Identity(self, node: onnx.NodeProto) -> None:
        for table in (self.values, self.pending):
            if node.input[0] in table:
                table[node.output[0]] = table[node.input[0]]

    def on_MaxPool(self, node: onnx.NodeProto) -> None:
        (src,) = self.quantized_inputs(node, 1)
        t = self.g.tensors[src]
        a = attrs(node)
        kernel = list(a["kernel_shape"])
        rank = len(kernel) + 2
        strides, dil, pads = spatial(a, rank)
        kernel = [1, *kernel] if rank == 3 else kernel
        pad_mode, out_hw, explicit = same_or_valid(t.shape[1:3], kernel, strides, dil, pads)
        if explicit or a.get("ceil_mode", 0) or dil != [1, 1]:
            raise ExportError(f"TFLite export: MaxPool {scope_of(node)!r} padding/ceil/dilation")
        c = t.shape[3]
        layout = ("nhwc", (c, out_hw[1]) if rank == 3 else (c, *out_hw))
        out = self.tensor(
            scope_of(node) or node.output[0], [1, *out_hw, c], like=src, layout=layout
        )
        opts = {
            "padding": pad_mode,
            "strideH": strides[0],
            "strideW": strides[1],
            "filterHeight": kernel[0],
            "filterWidth": kernel[1],
        }
        self.op("MAX_POOL_2D", [src], [out], ("Pool2DOptions", opts))
        self.values[node.output[0]] = out

    def on_Flatten(self, node: onnx.NodeProto) -> None:
        (src,) = self.quantized_inputs(node, 1)
        t = self.g.tensors[src]
        if attrs(node).get("axis", 1) != 1:
            raise ExportError(f"TFLite export: Flatten {scope_of(node)!r} with axis != 1")
        if t.layout[0] == "flat":
            self.values[node.output[0]] = src
            return
        dims = t.layout[1]
        chw = np.arange(math.prod(dims)).reshape(dims)  # ONNX flat index of (c, h, w)
        perm = chw.reshape(dims[0], -1).T.reshape(-1)  # in NHWC order
        features = int(perm.size)
        new_shape = self.const(f"{node.output[0]}_shape", np.array([-1, features], np.int32))
        out = self.tensor(node.output[0], [1, features], like=src, layout=("flat", perm))
        self.op(
            "RESHAPE", [src, new_shape], [out], ("ReshapeOptions", {"newShape": [-1, features]})
        )
        self.values[node.output[0]] = out

    on_Reshape = on_Flatten


def convert(
    model: onnx.ModelProto,
    *,
    input_shape: tuple[int, ...],
    logits_grid: tuple,
    io: str = "int8",
) -> Graph:
    """The TFLite graph of QDQ ``model`` (module docstring); ``logits_grid`` is the
    (scale, zero point) of the model's int8 output, or (scale, 0, ``"int16"``) for a 16x8
    classifier with an int16 output; ``io`` ``int8`` or ``float``."""
    if io not in ("int8", "float"):
        raise ExportError(f"unknown TFLite io {io!r} (valid: int8, float)")
    return _Converter(model, input_shape, io).run(model, logits_grid)
