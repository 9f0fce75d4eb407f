"""The ONNX operator tables of :mod:`lowbit.hwsim.onnx_workload`: which ops compute, pool,
run element-wise (fusable or not), stand alone, or move data for free, and the operator
kind of a memory-only layer."""

from __future__ import annotations

#: compute op -> (activation input index, weight input index, weight zero-point index or -1)
_COMPUTE = {
    "Conv": (0, 1, -1), "ConvInteger": (0, 1, 3), "QLinearConv": (0, 3, 5),
    "Gemm": (0, 1, -1), "QGemm": (0, 3, 5),
    "MatMul": (0, 1, -1), "MatMulInteger": (0, 1, 3), "QLinearMatMul": (0, 3, 5),
}  # fmt: skip
_CONVS = {"Conv", "ConvInteger", "QLinearConv"}
_POOLS = {
    "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool", "GlobalLpPool",
    "QLinearAveragePool", "QLinearGlobalAveragePool", "ReduceMean", "ReduceMax", "ReduceMin",
    "ReduceSum", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSumExp", "ReduceSumSquare",
    "ArgMax", "ArgMin",
}  # fmt: skip
#: element-wise ops of one activation (fusable into a compute layer's output stage)
_UNARY = {
    "Relu", "LeakyRelu", "PRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh",
    "Gelu", "Elu", "Selu", "Celu", "Softplus", "Softsign", "Mish", "Erf", "Exp", "Log",
    "Sqrt", "Neg", "Abs", "Reciprocal", "Floor", "Ceil", "Round", "Sign", "Sin", "Cos",
    "Not", "IsNaN", "IsInf", "BatchNormalization", "ThresholdedRelu", "Shrink",
    "QLinearSigmoid", "QLinearLeakyRelu",
}  # fmt: skip
#: element-wise ops of several tensors (broadcasting)
_BINARY = {
    "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "Mod", "Where", "Equal",
    "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "And", "Or", "Xor", "BitShift",
    "QLinearAdd", "QLinearMul",
}  # fmt: skip
#: what a compute layer's output stage applies for free (with one activation input: bias,
#: BatchNorm scale/shift, ReLU/ReLU6/LeakyReLU); other element-wise ops need a pass
_EPILOGUE = {
    "Relu", "LeakyRelu", "PRelu", "Clip", "BatchNormalization", "Add", "Sub", "Mul", "Div",
    "QLinearLeakyRelu",
}  # fmt: skip
#: passes of their own (a reduction then an element-wise step over the same tensor)
_STANDALONE = {
    "Softmax", "LogSoftmax", "LayerNormalization", "InstanceNormalization",
    "GroupNormalization", "LpNormalization", "MeanVarianceNormalization",
    "SkipLayerNormalization",
}  # fmt: skip
#: data movement / metadata ops: free (the output aliases an input)
_FREE = {
    "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Cast",
    "CastLike", "Gather", "GatherElements", "Slice", "Expand", "Tile", "Pad",
    "Shape", "Size", "Constant", "ConstantOfShape", "Range", "QuantizeLinear",
    "DequantizeLinear", "DynamicQuantizeLinear",
}  # fmt: skip
#: free ops of several activations: their output is a new tensor (no view of one input)
_JOINS = {"Concat", "QLinearConcat"}
#: data movement a CPU runtime runs as an operator (a copy): a memory-only layer of its
#: kind (hwsim.workload.MOVEMENT_KINDS), free on targets that address it in place
_MOVEMENT = {"Transpose": "transpose", "Concat": "concat", "QLinearConcat": "concat",
             "Split": "split"}  # fmt: skip
#: the operator kind (hwsim.workload.ELEMENTWISE_KINDS) of a memory-only layer, by the ops
#: it contains, first match: a profile may charge it per element (a CPU's LayerNorm, GELU)
_KINDS = (
    ({"Gelu", "Erf", "FastGelu", "BiasGelu"}, "gelu"),
    ({"LayerNormalization", "SkipLayerNormalization"}, "layernorm"),
    ({"Softmax", "LogSoftmax"}, "softmax"),
    ({"MaxPool", "GlobalMaxPool"}, "maxpool"),
    ({"AveragePool", "GlobalAveragePool", "QLinearAveragePool", "QLinearGlobalAveragePool",
      "ReduceMean"}, "avgpool"),
    ({"Add", "Sub", "Sum", "QLinearAdd"}, "add"),
    ({"Mul", "Div", "QLinearMul"}, "mul"),
    ({"Relu", "Clip", "LeakyRelu"}, "relu"),
)  # fmt: skip


def _kind(ops: set[str]) -> str:
    """The kind of a memory-only layer made of ``ops`` ("" when none is known)."""
    return next((kind for names, kind in _KINDS if ops & names), "")


_QUANT_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}
