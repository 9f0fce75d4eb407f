"""The ONNX operator tables of :mod:`lowbit.hwsim.onnx_workload`: which ops compute, pool,
run element-wise (fusable or not), stand alone, or move data for free, and the operator
kind of a memory-only layer (:func:`kind_of`).

This is the interface the node mapper (:mod:`lowbit.hwsim._onnx_mapper`) and the runtime
layers (:mod:`lowbit.hwsim._onnx_runtime`) read, and the graph reader
(:mod:`lowbit.hwsim._onnx_graph`) the ops it looks through (shape, weight and grid paths):
teaching the import a new ONNX op is one entry in one of these tables.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "BINARY_OPS",
    "COMPUTE_OPS",
    "CONV_OPS",
    "EPILOGUE_OPS",
    "FREE_OPS",
    "GRID_PATH_OPS",
    "MOVEMENT_OPS",
    "POOL_OPS",
    "QUANT_OPS",
    "SHAPE_OPS",
    "STANDALONE_OPS",
    "UNARY_OPS",
    "WEIGHT_PATH_OPS",
    "WEIGHT_SOURCE_OPS",
    "ROW_OPS",
    "default_opset",
    "kind_of",
    "reduced_rows",
    "transpose_runs",
]

#: compute op -> (activation input index, weight input index, weight zero-point index or -1)
COMPUTE_OPS = {
    "Conv": (0, 1, -1),
    "ConvInteger": (0, 1, 3),
    "QLinearConv": (0, 3, 5),
    "Gemm": (0, 1, -1),
    "QGemm": (0, 3, 5),
    "MatMul": (0, 1, -1),
    "MatMulInteger": (0, 1, 3),
    "QLinearMatMul": (0, 3, 5),
}
#: the convolution ops among COMPUTE_OPS
CONV_OPS = {"Conv", "ConvInteger", "QLinearConv"}
#: pooling and reductions: memory-only layers (Pool)
POOL_OPS = {
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "LpPool",
    "GlobalLpPool",
    "QLinearAveragePool",
    "QLinearGlobalAveragePool",
    "ReduceMean",
    "ReduceMax",
    "ReduceMin",
    "ReduceSum",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSumExp",
    "ReduceSumSquare",
    "ArgMax",
    "ArgMin",
}
#: element-wise ops of one activation (fusable into a compute layer's output stage)
UNARY_OPS = {
    "Relu",
    "LeakyRelu",
    "PRelu",
    "Clip",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Tanh",
    "Gelu",
    "Elu",
    "Selu",
    "Celu",
    "Softplus",
    "Softsign",
    "Mish",
    "Erf",
    "Exp",
    "Log",
    "Sqrt",
    "Neg",
    "Abs",
    "Reciprocal",
    "Floor",
    "Ceil",
    "Round",
    "Sign",
    "Sin",
    "Cos",
    "Not",
    "IsNaN",
    "IsInf",
    "BatchNormalization",
    "ThresholdedRelu",
    "Shrink",
    "QLinearSigmoid",
    "QLinearLeakyRelu",
}
#: element-wise ops of several tensors (broadcasting)
BINARY_OPS = {
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Max",
    "Min",
    "Sum",
    "Mean",
    "Mod",
    "Where",
    "Equal",
    "Less",
    "LessOrEqual",
    "Greater",
    "GreaterOrEqual",
    "And",
    "Or",
    "Xor",
    "BitShift",
    "QLinearAdd",
    "QLinearMul",
}
#: what a compute layer's output stage applies for free (with one activation input: bias,
#: BatchNorm scale/shift, ReLU/ReLU6/LeakyReLU); other element-wise ops need a pass
EPILOGUE_OPS = {
    "Relu",
    "LeakyRelu",
    "PRelu",
    "Clip",
    "BatchNormalization",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "QLinearLeakyRelu",
}
#: passes of their own (a reduction then an element-wise step over the same tensor)
STANDALONE_OPS = {
    "Softmax",
    "LogSoftmax",
    "LayerNormalization",
    "InstanceNormalization",
    "GroupNormalization",
    "LpNormalization",
    "MeanVarianceNormalization",
    "SkipLayerNormalization",
}
#: data movement / metadata ops: free (the output aliases an input)
FREE_OPS = {
    "Reshape",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "Identity",
    "Dropout",
    "Cast",
    "CastLike",
    "Gather",
    "GatherElements",
    "Slice",
    "Expand",
    "Tile",
    "Pad",
    "Shape",
    "Size",
    "Constant",
    "ConstantOfShape",
    "Range",
    "QuantizeLinear",
    "DequantizeLinear",
    "DynamicQuantizeLinear",
}
#: data movement a CPU runtime runs as an operator (a copy): a memory-only layer of its
#: kind (hwsim.workload.MOVEMENT_KINDS), free on targets that address it in place
MOVEMENT_OPS = {
    "Transpose": "transpose",
    "Concat": "concat",
    "QLinearConcat": "concat",
    "Split": "split",
}
#: the operator kind (hwsim.workload.ELEMENTWISE_KINDS) of a memory-only layer, by the ops
#: it contains, first match: a profile may charge it per element (a CPU's LayerNorm, GELU)
_KINDS = (
    ({"Gelu", "Erf", "FastGelu", "BiasGelu"}, "gelu"),
    ({"LayerNormalization", "SkipLayerNormalization"}, "layernorm"),
    ({"Softmax", "LogSoftmax"}, "softmax"),
    ({"MaxPool", "GlobalMaxPool"}, "maxpool"),
    (
        {
            "AveragePool",
            "GlobalAveragePool",
            "QLinearAveragePool",
            "QLinearGlobalAveragePool",
            "ReduceMean",
        },
        "avgpool",
    ),
    ({"Add", "Sub", "Sum", "QLinearAdd"}, "add"),
    ({"Mul", "Div", "QLinearMul"}, "mul"),
    ({"Relu", "Clip", "LeakyRelu"}, "relu"),
)


def kind_of(ops: set[str]) -> str:
    """The kind of a memory-only layer made of ``ops`` ("" when none is known)."""
    return next((kind for names, kind in _KINDS if ops & names), "")


#: the quantize / dequantize ops: a graph that has one (or an integer compute op) is quantized
QUANT_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}
#: ops whose outputs are known once the input shapes are (shape metadata, not data)
SHAPE_OPS = {"Shape", "Size"}
#: static ops a weight may pass through between its initializer and the layer
WEIGHT_PATH_OPS = {"Transpose", "Reshape", "Identity", "Cast", "Squeeze", "Unsqueeze", "Flatten"}
#: activation ops that do not change a tensor's grid (the walk back to its DequantizeLinear)
GRID_PATH_OPS = {
    "Reshape",
    "Flatten",
    "Transpose",
    "Squeeze",
    "Unsqueeze",
    "Identity",
    "MaxPool",
    "Relu",
    "Gather",
    "Slice",
    "Split",
    "Dropout",
    "Pad",
}
#: the way back from a layer to its weight's initializer (a QDQ weight's DequantizeLinear too)
WEIGHT_SOURCE_OPS = WEIGHT_PATH_OPS | {"DequantizeLinear"}


def transpose_runs(node: Any, shape: tuple[int, ...]) -> int:
    """The contiguous runs a Transpose that keeps its innermost axis copies (one copy each:
    the trailing axes it leaves in place are a run); 0 for any other op or permutation."""
    if node.op_type != "Transpose":
        return 0
    perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), [])
    if len(perm) != len(shape) or not perm or perm[-1] != len(perm) - 1:
        return 0
    kept = len(perm)
    while kept > 0 and perm[kept - 1] == kept - 1:
        kept -= 1
    return math.prod(shape[:kept])


#: the ops that normalize row by row (:func:`reduced_rows`)
ROW_OPS = ("LayerNormalization", "SkipLayerNormalization", "Softmax", "LogSoftmax")


def default_opset(model: Any) -> int:
    """The model's version of the default ONNX domain (13 when it does not say)."""
    versions = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    return int(versions[0]) if versions else 13


def reduced_rows(node: Any, shape: tuple[int, ...], *, opset: int = 13) -> int:
    """The rows a normalization or softmax reduces one at a time (0 for other ops): a
    LayerNorm normalizes the axes from ``axis`` on (-1 by default); a softmax the one axis
    ``axis`` from opset 13 on (default -1), and before it the input flattened to 2-D at
    ``axis`` (default 1: the axes from it on, together); a SkipLayerNorm the last axis.
    An axis out of range (the runtime refuses the model) gives 0: rows not known."""
    if node.op_type not in ROW_OPS:
        return 0
    attrs = {a.name: _attribute(a) for a in node.attribute}
    softmax = node.op_type in ("Softmax", "LogSoftmax")
    default = 1 if softmax and opset < 13 else -1
    axis = attrs.get("axis", default) if node.op_type != "SkipLayerNormalization" else -1
    if not isinstance(axis, int) or not -len(shape) <= axis < len(shape):
        return 0
    axis %= len(shape)
    whole = not softmax or opset < 13  # the axes from ``axis`` on, together
    reduced = math.prod(shape[axis:]) if whole else shape[axis]
    return math.prod(shape) // reduced


def _attribute(attribute: Any) -> Any:
    """An ONNX attribute's value (onnx imported here only: the op tables need no onnx)."""
    import onnx

    return onnx.helper.get_attribute_value(attribute)
