"""Serialize a :class:`lowbit.models.export._tflite_graph.Graph` as a TFLite flatbuffer.

Uses the TFLite schema's generated Python module shipped with LiteRT
(``ai_edge_litert.schema_py_generated``, the ``edge`` extra) and the ``flatbuffers``
builder. Activation tensors have batch 1 (what TFLite Micro and Vela need); the flatten's
RESHAPE takes ``[-1, features]``, so an interpreter may still resize the input for batches.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lowbit.models.export._extras import litert_schema
from lowbit.models.export._tflite_ir import Graph

__all__ = ["INT16_VERSIONS", "OP_VERSIONS", "serialize"]

#: builtin operator versions written (the int8 kernels' versions in TFLite's op registry)
OP_VERSIONS = {
    "CONV_2D": 3, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 4, "ADD": 2, "MEAN": 2,
    "MAX_POOL_2D": 2, "RESHAPE": 1, "QUANTIZE": 2, "DEQUANTIZE": 2, "PAD": 2, "MAXIMUM": 2,
    "MINIMUM": 2,
    # the attention model's ops (lowbit.models.export._tflite_vit), int16 kernels where
    # they have one (ADD/SUB with general int16 scales, MUL, MEAN, RSQRT, SOFTMAX, ...)
    "SUB": 5, "MUL": 4, "RSQRT": 3, "SOFTMAX": 3, "GELU": 2, "BATCH_MATMUL": 3,
    "TRANSPOSE": 2, "STRIDED_SLICE": 4,
}  # fmt: skip
#: versions of ops whose int16 kernels are a later version than their int8 ones
INT16_VERSIONS = {"ADD": 3, "MEAN": 3, "PAD": 4}
_TYPES = {
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float32": "FLOAT32",
}


def _options(schema: Any, name: str, fields: dict[str, Any]) -> Any:
    opts = getattr(schema, name + "T")()
    for key, value in fields.items():
        if key == "padding":
            value = getattr(schema.Padding, value)
        elif key == "fusedActivationFunction":
            value = getattr(schema.ActivationFunctionType, value)
        setattr(opts, key, value)
    return opts


def serialize(graph: Graph, *, description: str = "lowbit") -> bytes:
    """The TFLite flatbuffer (schema version 3) of ``graph``."""
    import flatbuffers

    schema = litert_schema()
    buffers = [schema.BufferT()]  # buffer 0: the empty sentinel
    tensors = []
    for t in graph.tensors:
        tt = schema.TensorT()
        tt.name = t.name
        tt.shape = np.array(t.shape, np.int32)
        tt.type = getattr(schema.TensorType, _TYPES[t.dtype])
        if t.data is not None:
            buf = schema.BufferT()
            buf.data = np.frombuffer(np.ascontiguousarray(t.data).tobytes(), np.uint8)
            buffers.append(buf)
            tt.buffer = len(buffers) - 1
        else:
            tt.buffer = 0
        if t.scale is not None:
            q = schema.QuantizationParametersT()
            q.scale = np.asarray(t.scale, np.float32).reshape(-1)
            q.zeroPoint = np.asarray(t.zero_point, np.int64).reshape(-1)
            q.quantizedDimension = t.axis
            tt.quantization = q
        tensors.append(tt)
    codes: list[str] = []
    operators = []
    versions: dict[str, int] = {}
    for op in graph.ops:
        if op.code not in codes:
            codes.append(op.code)
        wide = any(graph.tensors[i].dtype == "int16" for i in (*op.inputs, *op.outputs))
        version = OP_VERSIONS[op.code]
        if wide:
            version = INT16_VERSIONS.get(op.code, version)
        versions[op.code] = max(versions.get(op.code, 0), version)
        o = schema.OperatorT()
        o.opcodeIndex = codes.index(op.code)
        o.inputs = np.array(op.inputs, np.int32)
        o.outputs = np.array(op.outputs, np.int32)
        if op.options is not None:
            name, fields = op.options
            o.builtinOptionsType = getattr(schema.BuiltinOptions, name)
            o.builtinOptions = _options(schema, name, fields)
        operators.append(o)
    opcodes = []
    for code in codes:
        oc = schema.OperatorCodeT()
        oc.builtinCode = getattr(schema.BuiltinOperator, code)
        oc.deprecatedBuiltinCode = min(oc.builtinCode, 127)
        oc.version = versions[code]
        opcodes.append(oc)
    sub = schema.SubGraphT()
    sub.tensors, sub.operators, sub.name = tensors, operators, "main"
    sub.inputs = np.array(graph.inputs, np.int32)
    sub.outputs = np.array(graph.outputs, np.int32)
    model = schema.ModelT()
    model.version, model.description = 3, description
    model.operatorCodes, model.subgraphs, model.buffers = opcodes, [sub], buffers
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
