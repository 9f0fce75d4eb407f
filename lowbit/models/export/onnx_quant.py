"""Static INT8 quantization of an exported float ONNX graph in QDQ format, with given grids.

The search measured accuracy with fake quantization (:mod:`lowbit.models.compression.quant`):
weights on a
per-channel low-bit grid, each quantized layer's input rounded to a calibrated grid. This
pass writes exactly those grids into the graph as QuantizeLinear / DequantizeLinear pairs
(the QDQ format of ONNX Runtime's static quantization), so ONNX Runtime fuses them into its
integer kernels (QLinearConv, QGemm, QLinearMatMul, MatMulIntegerToFloat) and computes what
the search measured. Scales are forced, not calibrated again (what ``quantize_static`` with
``TensorQuantOverrides`` for every tensor would do; inserting the nodes directly also lets
us clip sub-8-bit grids and keep float layers untouched).

Representation:

* A b-bit grid with scale s is a subset of the 8-bit grid with the same scale, so sub-8-bit
  layers run as INT8 with their codes already on the low-bit grid. Weights are int8 codes
  (``s8``) with one scale per output channel (a per-tensor grid is the same scale repeated;
  a folded BatchNorm multiplies each channel's scale) and zero point 0.
* Activations are uint8: an unsigned grid keeps its zero point, a signed (symmetric) grid is
  shifted by 128 (zero point 128). A grid narrower than 0…255 (sub-8-bit activations) gets
  a ``Clip`` on the uint8 codes between Q and DQ, because QuantizeLinear saturates at the
  type's limits, not at the grid's.
* Bias of Conv/Gemm: int32 on the scale s_x·s_w/k (what QLinearConv/QGemm accumulate in;
  k refines the weight codes, :mod:`lowbit.models.export._onnx_weights`). The exporter hands
  over biases already on that grid (:mod:`lowbit.models.compression._intbias`), also those a
  MatMul + Add adds in float.
* Saturation without VNNI: on AVX2 without VNNI, ONNX Runtime's u8·s8 kernels multiply with
  ``vpmaddubsw``, which adds two u8·s8 products into a *saturating* int16: 2·255·127 =
  64770 > 32767, so 8-bit weights can overflow (errors of ~10% were measured on a Zen 3
  host). ONNX Runtime's usual fix, ``reduce_range`` (7-bit weights), would change the grid the
  search measured. Instead, ``weight_type="u8"`` stores 8-bit weights as uint8 with zero
  point 128, which selects the exact u8·u8 kernels (they widen to int16 before
  ``vpmaddwd``); weights of 7 bits or fewer stay s8, since 2·255·64 = 32640 cannot saturate.
  With VNNI (``vpdpbusd`` accumulates in int32) nothing can saturate and s8 is used.

Activation Q/DQ pairs are placed as early as exactness allows: a quantized input is walked
back through ops that commute with rounding to a grid containing zero (Relu, MaxPool, a Clip
with constant bounds such as ReLU6, and pure data movement), so the producing
Conv/Gemm/MatMul gets a quantized output (ONNX Runtime then fuses it into an integer kernel
with a uint8 output) and MaxPool/Reshape run on uint8. A Relu right after a quantizer whose
lowest code is the zero point is a no-op and removed; a Clip becomes a Clip of the codes
(rounding is monotone: round(clip(x, lo, hi)) = clip(round(x), round(lo), round(hi))), and
disappears when it spans the whole grid.

Residual adds and global average pools (``add`` / ``pool`` layers,
:mod:`lowbit.models.compression.quant_residual`) get their inputs quantized like a compute
layer's and their output quantized on its own grid, DQ ×2 → Add → Q and DQ →
GlobalAveragePool → Q, which ONNX Runtime fuses into ``QLinearAdd`` and
``QLinearGlobalAveragePool``. Their readers normally quantize on that very grid, and their
quantizer then is the output's; a reader on another grid requantizes after it.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from lowbit.models.export._onnx_weights import quantize_bias, quantize_weight
from lowbit.models.export._qdq_grids import (
    LAYER_OPS,
    ActGrid,
    ExportError,
    LayerQuant,
    WeightGrid,
    scope_of,
)

__all__ = [
    "COMMUTING_OPS",
    "WEIGHT_TYPES",
    "ActGrid",
    "WeightGrid",
    "LayerQuant",
    "ExportError",
    "quantize_graph",
    "scope_of",
    "topological_order",
]

#: ops through which an activation quantizer may move (elementwise rounding commutes with
#: them; Relu and MaxPool because the grid contains zero and rounding is monotone)
COMMUTING_OPS = frozenset(
    {"Relu", "MaxPool", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Identity"}
)
#: int8 weight storage: s8 (u8·s8 kernels) or u8 with zero point 128 (exact u8·u8 kernels)
WEIGHT_TYPES = ("s8", "u8")


@dataclass
class _Graph:
    """Mutable view of a graph: nodes, initializers, and tensor → producer / consumers."""

    graph: onnx.GraphProto
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    inits: dict[str, onnx.TensorProto] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.nodes = list(self.graph.node)
        self.inits = {t.name: t for t in self.graph.initializer}
        self.outputs = {o.name for o in self.graph.output}
        self.fresh = 0
        #: tensor -> grid key of the quantizer that all its consumers read
        self.quantized: dict[str, tuple] = {}

    def producer(self, tensor: str) -> onnx.NodeProto | None:
        for node in self.nodes:
            if tensor in node.output:
                return node
        return None

    def consumers(self, tensor: str) -> list[tuple[onnx.NodeProto, int]]:
        return [(n, i) for n in self.nodes for i, name in enumerate(n.input) if name == tensor]

    def name(self, base: str) -> str:
        self.fresh += 1
        return f"{base}__lowbit{self.fresh}"

    def add_init(self, name: str, array: np.ndarray) -> str:
        self.inits[name] = numpy_helper.from_array(array, name)
        return name

    def finish(self, model: onnx.ModelProto) -> onnx.ModelProto:
        used = {name for n in self.nodes for name in n.input}
        # the bounds of a Clip the pass removed (ReLU6) are read by nobody now
        self.nodes = [
            n
            for n in self.nodes
            if n.op_type != "Constant" or any(o in used or o in self.outputs for o in n.output)
        ]
        del self.graph.node[:]
        self.graph.node.extend(topological_order(self.nodes, self.graph))
        del self.graph.initializer[:]
        self.graph.initializer.extend(t for name, t in self.inits.items() if name in used)
        return model


def topological_order(nodes: list[onnx.NodeProto], graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """Nodes in a stable topological order (Kahn's algorithm, earliest listed first)."""
    made = {name: i for i, n in enumerate(nodes) for name in n.output}
    deps = [{made[name] for name in n.input if name in made} for n in nodes]
    users: list[list[int]] = [[] for _ in nodes]
    for i, d in enumerate(deps):
        for j in d:
            users[j].append(i)
    waiting = [len(d) for d in deps]
    ready = [i for i, w in enumerate(waiting) if w == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(nodes[i])
        for j in users[i]:
            waiting[j] -= 1
            if waiting[j] == 0:
                heapq.heappush(ready, j)
    if len(order) != len(nodes):
        raise ExportError("quantized graph has a cycle (a bug in the QDQ pass)")
    return order


def _layer_node(g: _Graph, layer: LayerQuant) -> onnx.NodeProto:
    ops = LAYER_OPS[layer.kind]
    found = [n for n in g.nodes if n.op_type in ops and scope_of(n) == layer.name]
    if len(found) != 1:
        raise ExportError(
            f"layer {layer.name!r}: expected one {'/'.join(ops)} node in its ONNX scope, "
            f"found {[n.name for n in found]}"
        )
    return found[0]


def _qdq(g: _Graph, tensor: str, grid: ActGrid, label: str, *, clip: bool = True) -> str:
    """Append Q → (Clip) → DQ of ``tensor`` on ``grid``; returns the dequantized name.

    ``clip=False`` after an op that keeps values on the grid (no Clip needed again)."""
    s = g.add_init(g.name(f"{label}_scale"), np.array(grid.scale, dtype=np.float32))
    z = g.add_init(g.name(f"{label}_zero_point"), np.array(grid.zero_point, dtype=np.uint8))
    q = g.name(f"{label}_quantized")
    g.nodes.append(helper.make_node("QuantizeLinear", [tensor, s, z], [q]))
    if clip and grid.clipped:
        q = _clip_codes(g, q, grid.qmin, grid.qmax, label)
    out = g.name(f"{label}_dequantized")
    g.nodes.append(helper.make_node("DequantizeLinear", [q, s, z], [out]))
    return out


def _clip_codes(g: _Graph, codes: str, lo: int, hi: int, label: str) -> str:
    """Append a Clip of uint8 ``codes`` to [lo, hi]; returns the clipped name."""
    low = g.add_init(g.name(f"{label}_qmin"), np.array(lo, dtype=np.uint8))
    high = g.add_init(g.name(f"{label}_qmax"), np.array(hi, dtype=np.uint8))
    clipped = g.name(f"{label}_clipped")
    g.nodes.append(helper.make_node("Clip", [codes, low, high], [clipped]))
    return clipped


def _constant(g: _Graph, tensor: str) -> float | None:
    """The scalar value of an initializer or Constant node output, else None."""
    if tensor in g.inits:
        array = numpy_helper.to_array(g.inits[tensor])
    else:
        node = g.producer(tensor)
        if node is None or node.op_type != "Constant" or not node.attribute:
            return None
        array = numpy_helper.to_array(node.attribute[0].t) if node.attribute[0].t else None
    return float(array.reshape(-1)[0]) if array is not None and array.size == 1 else None


def _clip_bounds(g: _Graph, node: onnx.NodeProto) -> tuple[float, float] | None:
    """(min, max) of a Clip with constant bounds (a ReLU6), else None."""
    if node.op_type != "Clip":
        return None
    bounds = []
    for idx, default in ((1, -np.inf), (2, np.inf)):
        if len(node.input) <= idx or not node.input[idx]:
            bounds.append(default)
            continue
        value = _constant(g, node.input[idx])
        if value is None:
            return None
        bounds.append(value)
    return bounds[0], bounds[1]


def _code(value: float, grid: ActGrid) -> int:
    """The code QuantizeLinear (and the fake-quant model) rounds ``value`` to on ``grid``."""
    if not np.isfinite(value):
        return grid.qmin if value < 0 else grid.qmax
    q = np.round(np.float32(value) / np.float32(grid.scale)) + grid.zero_point
    return int(np.clip(q, grid.qmin, grid.qmax))


def _place(g: _Graph, tensor: str, grid: ActGrid, edges: list[tuple[onnx.NodeProto, int]]):
    """Quantize ``tensor`` for ``edges`` (all its consumers, or the given edges only)."""
    everyone = len(edges) == len(g.consumers(tensor)) and tensor not in g.outputs
    label = tensor.strip("/").replace("/", ".")
    if not everyone:  # other consumers read the float tensor: quantize these edges only
        out = _qdq(g, tensor, grid, label)
        for node, idx in edges:
            node.input[idx] = out
        return
    path = []  # commuting ops between the quantizer and ``tensor``, nearest first
    cur = tensor
    while True:
        node = g.producer(cur)
        commutes = node is not None and (
            node.op_type in COMMUTING_OPS or _clip_bounds(g, node) is not None
        )
        if not commutes or not node.input:
            break
        src = node.input[0]
        if src in g.inits or len(g.consumers(src)) != 1 or src in g.outputs:
            break
        path.append(node)
        cur = src
    head_edges = g.consumers(cur)
    out = _qdq(g, cur, grid, label)
    g.quantized[cur] = grid.key()
    for node, idx in head_edges:
        node.input[idx] = out
    for node in reversed(path):  # head first: node's input is now dequantized
        result = node.output[0]
        readers = g.consumers(result)
        bounds = _clip_bounds(g, node)
        if bounds is not None:  # clamping commutes with monotone rounding: clamp the codes
            lo, hi = _code(bounds[0], grid), _code(bounds[1], grid)
            g.nodes.remove(node)
            if lo > grid.qmin or hi < grid.qmax:
                dq = g.producer(node.input[0])
                label = result.strip("/").replace("/", ".")
                dq.input[0] = _clip_codes(g, dq.input[0], lo, hi, label)
            for reader, idx in readers:
                reader.input[idx] = node.input[0]
            continue
        if node.op_type == "Relu" and grid.qmin == grid.zero_point:
            # Q already maps every negative value to the zero point: Relu is a no-op
            g.nodes.remove(node)
            for reader, idx in readers:
                reader.input[idx] = node.input[0]
            continue
        label = result.strip("/").replace("/", ".")
        requantized = _qdq(g, result, grid, label, clip=False)
        for reader, idx in readers:
            reader.input[idx] = requantized


def _place_output(g: _Graph, layer: LayerQuant, tensor: str) -> None:
    """Quantize the output of an add or pool on its grid for every reader (QLinearAdd and
    QLinearGlobalAveragePool write it so), unless its readers' quantizer placed there is
    that grid already; readers wanting another grid requantize after it."""
    grid = layer.output
    readers = g.consumers(tensor)
    if g.quantized.get(tensor) == grid.key() and len(readers) == 1:
        return
    if tensor in g.outputs:
        raise ExportError(
            f"layer {layer.name!r}: a quantized add or pool cannot write the model's output"
        )
    out = _qdq(g, tensor, grid, tensor.strip("/").replace("/", "."))
    g.quantized[tensor] = grid.key()
    for node, idx in readers:
        node.input[idx] = out


def quantize_graph(
    model: onnx.ModelProto, layers: Sequence[LayerQuant], *, weight_type: str = "s8"
) -> tuple[onnx.ModelProto, dict[str, str]]:
    """A QDQ copy of float ``model`` where ``layers`` run on their grids.

    Args:
        model: the float graph exported by the TorchScript exporter (node names carry the
            module scope); its weights must already be on the layers' grids.
        layers: one entry per quantized layer (float layers need none).
        weight_type: ``s8`` or ``u8`` for 8-bit weights (module docstring; lower bit widths
            are always stored as s8).
    Returns:
        (the quantized model, weight storage per integer layer name: ``s8`` or ``u8``).
    Raises:
        ExportError: a layer is missing from the graph or its weights are off its grid.
    """
    if weight_type not in WEIGHT_TYPES:
        raise ValueError(f"unknown weight_type {weight_type!r} (valid: {', '.join(WEIGHT_TYPES)})")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = _Graph(out.graph)
    storage: dict[str, str] = {}
    requests: dict[str, list[tuple[onnx.NodeProto, int, ActGrid]]] = {}
    outputs: list[tuple[LayerQuant, str]] = []
    for layer in layers:
        node = _layer_node(g, layer)
        if layer.weight is not None and layer.integer:
            scales, storage[layer.name] = quantize_weight(g, node, layer, weight_type)
            quantize_bias(g, node, layer, scales)
        for idx, grid in enumerate(layer.inputs):
            if grid is not None:
                requests.setdefault(node.input[idx], []).append((node, idx, grid))
        if layer.output is not None:
            outputs.append((layer, node.output[0]))
    for tensor, reqs in requests.items():
        grids = {grid.key() for _, _, grid in reqs}
        if len(grids) == 1:
            _place(g, tensor, reqs[0][2], [(n, i) for n, i, _ in reqs])
        else:  # consumers want different grids: one quantizer per edge
            for node, idx, grid in reqs:
                _place(g, tensor, grid, [(node, idx)])
    for layer, tensor in outputs:  # after the readers' quantizers, which may be the same
        _place_output(g, layer, tensor)
    result = g.finish(out)
    onnx.checker.check_model(result)
    return result, storage
