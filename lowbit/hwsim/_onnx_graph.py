"""Reading an ONNX graph for :mod:`lowbit.hwsim.onnx_workload`: load, fix the input dimensions,
infer shapes, find constant tensors, read bit-widths and name layers.

Kept apart from the op mapping so each module has one job. Nothing here knows hwsim.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from lowbit.hwsim._onnx_ops import GRID_PATH_OPS, SHAPE_OPS, WEIGHT_PATH_OPS, WEIGHT_SOURCE_OPS
from lowbit.hwsim.errors import WorkloadError

__all__ = ["OnnxGraph", "load_graph", "dtype_bits", "span_bits"]

#: integer / 8-bit float element types and their widths (anything else: not quantized)
_DTYPE_BITS = {
    TensorProto.INT8: 8,
    TensorProto.UINT8: 8,
    TensorProto.INT16: 16,
    TensorProto.UINT16: 16,
    TensorProto.INT32: 32,
    TensorProto.UINT32: 32,
    TensorProto.INT4: 4,
    TensorProto.UINT4: 4,
    TensorProto.INT2: 2,
    TensorProto.UINT2: 2,
    TensorProto.FLOAT8E4M3FN: 8,
    TensorProto.FLOAT8E4M3FNUZ: 8,
    TensorProto.FLOAT8E5M2: 8,
    TensorProto.FLOAT8E5M2FNUZ: 8,
}
_WEIGHT_NAME = re.compile(r"^(.+)\.weight(?:_quantized)?(?:__\w+)?$")


#: integer weight types by the name a conv's ``weight_storage`` gives them
_STORAGES = {TensorProto.INT8: "s8", TensorProto.UINT8: "u8"}


def dtype_bits(elem_type: int) -> int | None:
    """Bit-width of an integer (or 8-bit float) ONNX element type; None for float types."""
    return _DTYPE_BITS.get(elem_type)


def _levels_bits(values: np.ndarray) -> int:
    """Bits of one channel's codes: ⌈log2 L⌉ for the L levels of the grid they lie on,
    L = (max − min) / g + 1 with g the gcd of their distances to the smallest code."""
    low = int(values.min())
    distances = values - low
    step = int(np.gcd.reduce(distances)) if distances.any() else 1
    levels = int(distances.max()) // step + 1
    return math.ceil(math.log2(levels)) if levels > 1 else 0


def span_bits(codes: np.ndarray, *, axis: int | None, limit: int) -> int:
    """Bits a grid of integer ``codes`` really uses, per channel along ``axis`` (all codes
    together if None): the largest ⌈log2 L⌉ over channels, within [1, limit], where L is the
    number of levels of the evenly spaced grid the channel's codes lie on.

    A b-bit grid stored as int8 uses at most 2^b levels: codes within [-8, 7] (step 1), or
    the same grid on a finer int8 scale (codes -120, -105, …, 105: step 15), are 4-bit.
    """
    if codes.size == 0:
        return limit
    values = codes.astype(np.int64)
    if axis is not None and values.ndim > 0:
        rows = np.moveaxis(values, axis, 0).reshape(values.shape[axis], -1)
    else:
        rows = values.reshape(1, -1)
    bits = max(_levels_bits(row) for row in rows)
    return max(1, min(limit, bits))


class OnnxGraph:
    """A loaded, shape-inferred graph with lookups by tensor name.

    Attributes:
        source: the file (for messages).
        nodes: nodes in topological order (ONNX requires it).
        shapes: tensor name -> concrete shape (where inference found one).
        dtypes: tensor name -> ONNX element type.
        static: tensors computable without the model input (weights, constants, shapes).
        producer / consumers: tensor name -> the node writing it / the nodes reading it.
        outputs: the graph's output tensor names.
    """

    def __init__(self, model: onnx.ModelProto, source: str) -> None:
        graph = model.graph
        self.source = source
        self.model = model
        self.nodes = list(graph.node)
        self.initializers = {t.name: t for t in graph.initializer}
        self.outputs = {o.name for o in graph.output}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.dtypes: dict[str, int] = {}
        for info in (*graph.input, *graph.value_info, *graph.output):
            tensor = info.type.tensor_type
            if info.type.HasField("tensor_type"):
                self.dtypes[info.name] = tensor.elem_type
                dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
                if tensor.HasField("shape") and all(d >= 0 for d in dims):
                    self.shapes[info.name] = tuple(dims)
        for init in graph.initializer:
            self.shapes[init.name] = tuple(init.dims)
            self.dtypes[init.name] = init.data_type
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in self.nodes:
            for name in node.output:
                self.producer[name] = node
            for name in node.input:
                if name:
                    self.consumers.setdefault(name, []).append(node)
        self.static = self._static_tensors()
        self._arrays: dict[str, np.ndarray] = {}
        self._scopes = Counter(self.scope(node) for node in self.nodes)

    def _static_tensors(self) -> set[str]:
        static = set(self.initializers)
        for node in self.nodes:
            inputs = [name for name in node.input if name]
            if node.op_type in SHAPE_OPS or (node.op_type == "Constant" and not inputs):
                static.update(node.output)
            elif inputs and all(name in static for name in inputs):
                static.update(node.output)
        return static

    # --- values ------------------------------------------------------------------------
    def array(self, name: str) -> np.ndarray | None:
        """The value of an initializer or Constant output, else None."""
        if name in self._arrays:
            return self._arrays[name]
        value = None
        if name in self.initializers:
            value = numpy_helper.to_array(self.initializers[name])
        else:
            node = self.producer.get(name)
            if node is not None and node.op_type == "Constant":
                for attr in node.attribute:
                    if attr.name == "value":
                        value = numpy_helper.to_array(attr.t)
        if value is not None:
            self._arrays[name] = value
        return value

    def activation_inputs(self, node: onnx.NodeProto) -> list[str]:
        """The node's inputs that depend on the model input (not weights or constants)."""
        return [name for name in node.input if name and name not in self.static]

    # --- bit-widths --------------------------------------------------------------------
    def _weight_codes(self, name: str) -> tuple[str, onnx.NodeProto | None] | None:
        """(the tensor holding a weight's codes, the DequantizeLinear it comes out of or
        None) of weight tensor ``name``, back through data movement; None when another
        operator computes it."""
        for _ in range(8):
            node = self.producer.get(name)
            if node is None:
                break
            if node.op_type == "DequantizeLinear":
                return node.input[0], node
            if node.op_type not in WEIGHT_PATH_OPS:
                return None
            name = node.input[0]
        return name, None

    def weight_bits(self, name: str) -> int | None:
        """Bits of a weight tensor: from the DequantizeLinear it comes out of (the codes'
        span, capped by their type), from its own integer type, or None (float)."""
        found = self._weight_codes(name)
        if found is None:
            return None
        codes, dq = found
        if dq is not None:
            return self._codes_bits(codes, _axis(dq, default=1))
        limit = dtype_bits(self.dtypes.get(codes, TensorProto.FLOAT))
        return None if limit is None else self._codes_bits(codes, None)

    def weight_storage(self, name: str) -> str:
        """``"s8"`` or ``"u8"``: the integer type a weight tensor's codes are stored in (the
        DequantizeLinear's input it comes out of, or its own); ``""`` for float weights."""
        found = self._weight_codes(name)
        if found is None:
            return ""
        return _STORAGES.get(self.dtypes.get(found[0], TensorProto.FLOAT), "")

    def codes_bits(self, name: str, axis: int | None) -> int | None:
        """Bits of integer codes ``name`` (a QLinear op's weight), None if not integer."""
        if dtype_bits(self.dtypes.get(name, TensorProto.FLOAT)) is None:
            return None
        return self._codes_bits(name, axis)

    def _codes_bits(self, name: str, axis: int | None) -> int | None:
        limit = dtype_bits(self.dtypes.get(name, TensorProto.FLOAT))
        codes = self.array(name)
        if limit is None or codes is None:
            return limit
        if axis is not None and (codes.ndim == 0 or not -codes.ndim <= axis < codes.ndim):
            axis = None
        return span_bits(codes, axis=axis, limit=limit)

    def activation_bits(self, name: str) -> int | None:
        """Bits of an activation: walk back through grid-preserving ops to the
        DequantizeLinear it comes out of; the QuantizeLinear type gives the width, a Clip
        between Q and DQ narrows it to the codes it allows, and a re-quantization onto the
        same grid (Q/DQ again after a MaxPool) keeps the narrower width of the first.
        None = float."""
        found = self._grid(name, depth=0)
        return None if found is None else found[0]

    def _grid(self, name: str, *, depth: int) -> tuple[int | None, object, object] | None:
        """(bits, scale, zero point) of the DequantizeLinear behind ``name``, or None."""
        for _ in range(32):
            node = self.producer.get(name)
            if node is None or depth > 16:
                return None
            if node.op_type == "DequantizeLinear":
                break
            if node.op_type not in GRID_PATH_OPS or not self.activation_inputs(node):
                return None
            name = self.activation_inputs(node)[0]
        else:
            return None
        scale = self.array(node.input[1]) if len(node.input) > 1 else None
        zero = self.array(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        bits = self._quantized_bits(node.input[0])
        quant = self.producer.get(node.input[0])
        if bits is not None and quant is not None and quant.op_type == "QuantizeLinear":
            upstream = self._grid(quant.input[0], depth=depth + 1)
            if upstream is not None and upstream[0] is not None:
                same = _same(upstream[1], scale) and _same(upstream[2], zero)
                bits = min(bits, upstream[0]) if same else bits
        return bits, scale, zero

    def _quantized_bits(self, codes: str) -> int | None:
        limit = dtype_bits(self.dtypes.get(codes, TensorProto.FLOAT))
        node = self.producer.get(codes)
        if node is not None and node.op_type == "Clip" and len(node.input) >= 3:
            lo, hi = self.array(node.input[1]), self.array(node.input[2])
            if lo is not None and hi is not None and limit is not None:
                span = int(hi) - int(lo) + 1
                return max(1, min(limit, math.ceil(math.log2(span)) if span > 1 else 1))
        if limit is None and node is not None and node.op_type == "QuantizeLinear":
            zero_point = node.input[2] if len(node.input) > 2 else ""
            limit = dtype_bits(self.dtypes.get(zero_point, TensorProto.UINT8))
        return limit

    # --- names -------------------------------------------------------------------------
    def scope(self, node: onnx.NodeProto) -> tuple[str, str]:
        """(torch module path, op label) from the exporter's metadata, or ("", node name).

        The dynamo exporter records ``pkg.torch.onnx.name_scopes`` (qualified names per
        level); the TorchScript exporter names nodes ``/layer1/layer1.0/conv1/Conv``.
        """
        for prop in node.metadata_props:
            if prop.key == "pkg.torch.onnx.name_scopes":
                scopes = [s for s in re.findall(r"'([^']*)'", prop.value) if s]
                if scopes:
                    return (scopes[-2] if len(scopes) > 1 else ""), scopes[-1]
        if node.name.startswith("/"):
            *parts, label = node.name[1:].split("/")
            path: list[str] = []
            for part in parts:
                if path and part.startswith(path[-1] + "."):
                    path[-1] = part  # "layer1" then "layer1.0": Sequential child, qualified
                else:
                    path.append(part)
            return ".".join(path), label
        return "", node.name

    def layer_name(self, node: onnx.NodeProto, index: int, *, weight: str | None) -> str:
        """A readable layer name: the torch module of the weight (``conv1.weight`` →
        ``conv1``), else the scope path + op label, else the node name or ``Op_<index>``."""
        if weight:
            source = weight
            for _ in range(8):
                producer = self.producer.get(source)
                if producer is None or producer.op_type not in WEIGHT_SOURCE_OPS:
                    break
                source = producer.input[0]
            match = _WEIGHT_NAME.match(source)
            if match:
                return match[1]
        path, label = self.scope(node)
        if path and weight:
            return path
        if label and self._scopes[(path, label)] > 1:  # a torch op decomposed into nodes
            label = f"{label}.{node.op_type}"
        if path:
            return f"{path}.{label}"
        return label or node.name or f"{node.op_type}_{index}"


def _same(a: object, b: object) -> bool:
    """Equal quantization parameters (both missing counts as equal: the defaults)."""
    if a is None or b is None:
        return a is None and b is None
    return np.shape(a) == np.shape(b) and bool(np.allclose(a, b))


def _axis(node: onnx.NodeProto, *, default: int) -> int:
    for attr in node.attribute:
        if attr.name == "axis":
            return attr.i
    return default


def _fix_inputs(model: onnx.ModelProto, *, batch: int, dims: Mapping[str, int], source: str):
    """Give every symbolic input dimension a value: ``dims[name]``, else ``batch`` on axis 0."""
    problems = []
    inits = {t.name for t in model.graph.initializer}
    for info in model.graph.input:
        if info.name in inits or not info.type.HasField("tensor_type"):
            continue
        for axis, dim in enumerate(info.type.tensor_type.shape.dim):
            if dim.HasField("dim_value") and dim.dim_value > 0:
                continue
            label = dim.dim_param
            if label in dims:
                dim.dim_value = int(dims[label])
            elif axis == 0:
                dim.dim_value = batch
            else:
                problems.append(f"input {info.name!r} axis {axis} ({label or 'unnamed'})")
    if problems:
        raise WorkloadError(
            f"{source}: symbolic input dimensions need a value: {', '.join(problems)}; "
            "pass dims={'<name>': size} (the first axis defaults to the batch size)"
        )


def load_graph(path: str | Path, *, batch: int = 1, dims: Mapping[str, int] | None = None):
    """Load ``path``, give symbolic input dims values and infer every tensor's shape.

    Raises:
        WorkloadError: the file cannot be read, is not an ONNX model, or shape inference
            fails (the message names the file).
    """
    source = str(path)
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise ValueError(f"batch must be a positive integer, got {batch!r}")
    try:
        model = onnx.load(source)
    except FileNotFoundError:
        raise WorkloadError(f"{source}: no such file") from None
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types on garbage
        raise WorkloadError(f"{source}: not a readable ONNX model ({type(exc).__name__})") from None
    if model.ir_version < 1 or not model.graph.node:
        raise WorkloadError(f"{source}: not an ONNX model (no graph nodes found)")
    _fix_inputs(model, batch=batch, dims=dict(dims or {}), source=source)
    for _ in range(4):  # inference, then fold shape arithmetic it could not follow, again
        try:
            model = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
        except Exception as exc:  # noqa: BLE001 - onnx raises InferenceError and C++ errors
            raise WorkloadError(f"{source}: ONNX shape inference failed: {exc}") from None
        graph = OnnxGraph(model, source)
        if not _fold_shape_values(graph):
            return graph
        model = graph.model
    return graph


def _fold_shape_values(graph: OnnxGraph) -> bool:
    """Evaluate the integer constants (shapes, axes, indices) that activation nodes read but
    shape inference left unknown (it cannot follow ``Cast``/``Div`` of shape values) with the
    ONNX reference evaluator, and feed them in as initializers. True if anything changed."""
    from onnx.reference import ReferenceEvaluator

    unknown = [
        t for n in graph.nodes for t in n.output if t not in graph.static and t not in graph.shapes
    ]
    if not unknown:
        return False
    readers = {i for i, n in enumerate(graph.nodes) if graph.activation_inputs(n)}
    needed = {
        t
        for n in (graph.nodes[i] for i in readers)
        for t in n.input
        if t in graph.static
        and t not in graph.initializers
        and graph.dtypes.get(t) in (TensorProto.INT64, TensorProto.INT32)
    }
    values: dict[str, np.ndarray] = {}
    for node in graph.nodes:  # topological: every static input is computed before use
        if not node.output or not all(o in graph.static for o in node.output):
            continue
        if node.op_type in SHAPE_OPS:
            shape = graph.shapes.get(node.input[0])
            if shape is None:
                continue
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            array = np.array(shape, dtype=np.int64)[attrs.get("start", 0) : attrs.get("end")]
            values[node.output[0]] = array if node.op_type == "Shape" else np.prod(array)
            continue
        inputs = {}
        for name in (n for n in node.input if n):
            value = values.get(name)
            inputs[name] = graph.array(name) if value is None else value
        if any(v is None for v in inputs.values()) or any(v.size > 4096 for v in inputs.values()):
            continue  # not a small shape computation (e.g. a weight)
        try:
            outputs = ReferenceEvaluator(node).run(None, inputs)
        except Exception:  # noqa: BLE001 - leave this value to shape inference
            continue
        values.update(zip(node.output, (np.asarray(v) for v in outputs), strict=False))
    folded = {t: values[t] for t in needed if t in values}
    if not folded:
        return False
    renamed = {t: f"{t}__folded" for t in folded}
    for index, node in enumerate(graph.model.graph.node):
        if index in readers and any(t in renamed for t in node.input):
            for i, name in enumerate(node.input):
                node.input[i] = renamed.get(name, name)
    graph.model.graph.initializer.extend(
        numpy_helper.from_array(value, renamed[t]) for t, value in folded.items()
    )
    return True
