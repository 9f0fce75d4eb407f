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
  k refines the weight codes, :func:`_refine`). The exporter hands over biases already on
  that grid (:mod:`lowbit.models.compression._intbias`), also those a MatMul + Add adds in float.
* Saturation without VNNI: on AVX2 without VNNI, ONNX Runtime's u8·s8 kernels multiply with
  ``vpmaddubsw``, which adds two u8·s8 products into a *saturating* int16: 2·255·127 =
  64770 > 32767, so 8-bit weights can overflow (errors of ~10% were measured on a Zen 3
  host). ONNX Runtime's usual fix, ``reduce_range`` (7-bit weights), would change the grid the
  search measured. Instead, ``weight_type="u8"`` stores 8-bit weights as uint8 with zero
  point 128, which selects the exact u8·u8 kernels (they widen to int16 before
  ``vpmaddwd``); weights of 7 bits or fewer stay s8, since 2·255·64 = 32640 cannot saturate.
  With VNNI (``vpdpbusd`` accumulates in int32) nothing can saturate and s8 is used.

Activation Q/DQ pairs are placed as early as exactness allows: a quantized input is walked
back through ops that commute with rounding to a grid containing zero (Relu, MaxPool and
pure data movement), so the producing Conv/Gemm/MatMul gets a quantized output (ONNX Runtime
then fuses it into an integer kernel with a uint8 output) and MaxPool/Reshape run on uint8.
A Relu right after a quantizer whose lowest code is the zero point is a no-op and removed.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from lowbit.hwsim.errors import LowbitError
from lowbit.models.compression._intbias import REFINE_LIMIT

__all__ = [
    "COMMUTING_OPS",
    "WEIGHT_TYPES",
    "ActGrid",
    "WeightGrid",
    "LayerQuant",
    "ExportError",
    "quantize_graph",
    "scope_of",
]

#: ops through which an activation quantizer may move (elementwise rounding commutes with
#: them; Relu and MaxPool because the grid contains zero and rounding is monotone)
COMMUTING_OPS = frozenset(
    {"Relu", "MaxPool", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Identity"}
)
#: int8 weight storage: s8 (u8·s8 kernels) or u8 with zero point 128 (exact u8·u8 kernels)
WEIGHT_TYPES = ("s8", "u8")
_COMPUTE_OPS = ("Conv", "Gemm", "MatMul")


class ExportError(LowbitError):
    """A model cannot be exported as requested (unsupported layer, grid mismatch)."""


@dataclass(frozen=True, slots=True)
class ActGrid:
    """An activation grid as uint8 codes: value = (code − zero_point) · scale.

    ``qmin``/``qmax`` are the codes the grid uses (0 and 255 for an 8-bit grid).
    """

    scale: float
    zero_point: int
    qmin: int = 0
    qmax: int = 255

    def __post_init__(self) -> None:
        if not (self.scale > 0 and np.isfinite(self.scale)):
            raise ValueError(f"activation scale must be > 0, got {self.scale!r}")
        if not 0 <= self.qmin <= self.zero_point <= self.qmax <= 255:
            raise ValueError(
                f"need 0 <= qmin <= zero_point <= qmax <= 255, got "
                f"{self.qmin}, {self.zero_point}, {self.qmax}"
            )

    @property
    def clipped(self) -> bool:
        """The grid is narrower than uint8 (a Clip between Q and DQ enforces it)."""
        return (self.qmin, self.qmax) != (0, 255)

    def key(self) -> tuple[float, int, int, int]:
        return (float(np.float32(self.scale)), self.zero_point, self.qmin, self.qmax)


@dataclass(frozen=True, slots=True)
class WeightGrid:
    """Integer weight codes (shape of the torch weight, output channels first) and one
    scale per output channel: weight = codes · scales[c]."""

    codes: np.ndarray
    scales: np.ndarray
    bits: int

    def __post_init__(self) -> None:
        if self.scales.shape != (self.codes.shape[0],):
            raise ValueError(
                f"need one scale per output channel: codes {self.codes.shape}, "
                f"scales {self.scales.shape}"
            )


@dataclass(frozen=True, slots=True)
class LayerQuant:
    """How one compute layer runs: its ONNX scope (the torch module name), its kind
    (``conv``, ``linear`` or ``matmul``: activation × activation), the grids of its
    quantized inputs (None = float input) and its weight grid (None = float weights)."""

    name: str
    kind: str
    inputs: tuple[ActGrid | None, ...]
    weight: WeightGrid | None = None

    @property
    def integer(self) -> bool:
        """Runs on integer kernels: every operand quantized."""
        if self.kind == "matmul":
            return all(g is not None for g in self.inputs)
        return self.inputs[0] is not None and self.weight is not None


def scope_of(node: onnx.NodeProto) -> str:
    """The torch module name of a node exported by the TorchScript exporter
    (``/blocks.0/attn/q/MatMul`` → ``blocks.0.attn.q``)."""
    return node.name.rsplit("/", 1)[0].lstrip("/").replace("/", ".")


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
        del self.graph.node[:]
        self.graph.node.extend(_topological(self.nodes, self.graph))
        del self.graph.initializer[:]
        self.graph.initializer.extend(t for name, t in self.inits.items() if name in used)
        return model


def _topological(nodes: list[onnx.NodeProto], graph: onnx.GraphProto) -> list[onnx.NodeProto]:
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


def _compute_node(g: _Graph, layer: LayerQuant) -> onnx.NodeProto:
    found = [n for n in g.nodes if n.op_type in _COMPUTE_OPS and scope_of(n) == layer.name]
    if len(found) != 1:
        raise ExportError(
            f"layer {layer.name!r}: expected one Conv/Gemm/MatMul node in its ONNX scope, "
            f"found {[n.name for n in found]}"
        )
    return found[0]


def _weight_layout(node: onnx.NodeProto, codes: np.ndarray) -> tuple[np.ndarray, int]:
    """(codes laid out like the ONNX weight input, the output-channel axis)."""
    if node.op_type == "Conv":
        return codes, 0
    trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
    if node.op_type == "Gemm" and trans_b:
        return codes, 0
    return codes.T, 1  # Gemm without transB and MatMul hold W^T: (in, out)


def _quantize_weight(g: _Graph, node: onnx.NodeProto, layer: LayerQuant, weight_type: str):
    """Replace the float weight input by int8/uint8 codes + DequantizeLinear (per channel).

    Returns the per-channel weight scales (for the bias) and the storage type (s8/u8).
    """
    w = layer.weight
    name = node.input[1]
    if name not in g.inits:
        raise ExportError(f"layer {layer.name!r}: weight {name!r} is not an initializer")
    float_w = numpy_helper.to_array(g.inits[name])
    codes, axis = _weight_layout(node, w.codes)
    scales = w.scales.astype(np.float32)
    if float_w.shape != codes.shape:
        raise ExportError(
            f"layer {layer.name!r}: ONNX weight shape {float_w.shape} != grid {codes.shape}"
        )
    expected = codes.astype(np.float64) * scales.reshape(_axis_shape(codes.ndim, axis))
    tol = 1e-4 * float(np.abs(expected).max() + 1e-12)
    if float(np.abs(float_w - expected).max()) > tol:
        raise ExportError(f"layer {layer.name!r}: ONNX weights are not on the layer's grid")
    codes, scales = _refine(codes.astype(np.int64), scales, axis)
    stored, zero_points, dtype = _store(codes, axis, weight_type, layer.name)
    base = f"{layer.name}.weight"
    q = g.add_init(g.name(base + "_quantized"), stored)
    s = g.add_init(g.name(base + "_scale"), scales)
    z = g.add_init(g.name(base + "_zero_point"), zero_points)
    out = g.name(base + "_dequantized")
    g.nodes.append(helper.make_node("DequantizeLinear", [q, s, z], [out], axis=axis))
    node.input[1] = out
    return scales, dtype


def _refine(codes: np.ndarray, scales: np.ndarray, axis: int):
    """(codes · k, scales / k) per channel with the largest integer k keeping |codes · k| <=
    :data:`lowbit.models.compression._intbias.REFINE_LIMIT`: the same weight values on a finer
    integer
    scale, so
    a k-times finer int32 bias grid (s_x · s_w / k). The rule is the fake-quant model's
    (:func:`lowbit.models.compression._intbias.integer_layer`, whose codes arrive here refined
    already:
    k = 1)."""
    other = tuple(i for i in range(codes.ndim) if i != axis)
    peak = np.maximum(np.abs(codes).max(axis=other), 1)
    k = np.maximum(REFINE_LIMIT // peak, 1)
    shape = _axis_shape(codes.ndim, axis)
    return codes * k.reshape(shape), (scales / k).astype(np.float32)


def _store(codes: np.ndarray, axis: int, weight_type: str, name: str):
    """(stored codes, per-channel zero points, storage type name) with stored − zero point =
    codes. The zero point is 0 (s8) or 128 (u8) unless a channel's codes need a shift to fit
    (8-bit asymmetric grids, or a −128 code negated by a folded BatchNorm): ONNX Runtime's
    integer kernels take per-channel weight zero points. ``u8`` is used only where s8 codes
    could saturate u8·s8 arithmetic without VNNI (some |code| > 64, module docstring)."""
    other = tuple(i for i in range(codes.ndim) if i != axis)
    lo, hi = codes.min(axis=other), codes.max(axis=other)
    if int((hi - lo).max()) > 255:
        raise ExportError(f"layer {name!r}: weight codes span more than 8 bits")
    kind = "s8"
    if weight_type == "u8":
        s8_zp = np.clip(0, -128 - lo, 127 - hi)
        if int(np.abs(codes + s8_zp.reshape(_axis_shape(codes.ndim, axis))).max()) > 64:
            kind = "u8"
    if kind == "s8":
        dtype, default, qmin, qmax = np.int8, 0, -128, 127
    else:
        dtype, default, qmin, qmax = np.uint8, 128, 0, 255
    zp = np.clip(default, qmin - lo, qmax - hi)
    stored = codes + zp.reshape(_axis_shape(codes.ndim, axis))
    return stored.astype(dtype), zp.astype(dtype), kind


def _axis_shape(ndim: int, axis: int) -> tuple[int, ...]:
    shape = [1] * ndim
    shape[axis] = -1
    return tuple(shape)


def _quantize_bias(g: _Graph, node: onnx.NodeProto, layer: LayerQuant, w_scales: np.ndarray):
    """Conv/Gemm bias as int32 on the accumulator scale s_x · s_w[c] (+ DequantizeLinear)."""
    if node.op_type not in ("Conv", "Gemm") or len(node.input) < 3 or not node.input[2]:
        return
    name = node.input[2]
    if name not in g.inits:
        return
    bias = numpy_helper.to_array(g.inits[name]).astype(np.float64)
    if bias.shape != w_scales.shape:
        return  # a broadcast Gemm bias: leave it float
    scale = (np.float64(np.float32(layer.inputs[0].scale)) * w_scales.astype(np.float64)).astype(
        np.float32
    )
    limit = np.iinfo(np.int32)
    codes = np.clip(np.round(bias / scale.astype(np.float64)), limit.min, limit.max)
    base = f"{layer.name}.bias"
    q = g.add_init(g.name(base + "_quantized"), codes.astype(np.int32))
    s = g.add_init(g.name(base + "_scale"), scale)
    z = g.add_init(g.name(base + "_zero_point"), np.zeros(scale.shape, dtype=np.int32))
    out = g.name(base + "_dequantized")
    g.nodes.append(helper.make_node("DequantizeLinear", [q, s, z], [out], axis=0))
    node.input[2] = out


def _qdq(g: _Graph, tensor: str, grid: ActGrid, label: str, *, clip: bool = True) -> str:
    """Append Q → (Clip) → DQ of ``tensor`` on ``grid``; returns the dequantized name.

    ``clip=False`` after an op that keeps values on the grid (no Clip needed again)."""
    s = g.add_init(g.name(f"{label}_scale"), np.array(grid.scale, dtype=np.float32))
    z = g.add_init(g.name(f"{label}_zero_point"), np.array(grid.zero_point, dtype=np.uint8))
    q = g.name(f"{label}_quantized")
    g.nodes.append(helper.make_node("QuantizeLinear", [tensor, s, z], [q]))
    if clip and grid.clipped:
        lo = g.add_init(g.name(f"{label}_qmin"), np.array(grid.qmin, dtype=np.uint8))
        hi = g.add_init(g.name(f"{label}_qmax"), np.array(grid.qmax, dtype=np.uint8))
        clipped = g.name(f"{label}_clipped")
        g.nodes.append(helper.make_node("Clip", [q, lo, hi], [clipped]))
        q = clipped
    out = g.name(f"{label}_dequantized")
    g.nodes.append(helper.make_node("DequantizeLinear", [q, s, z], [out]))
    return out


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
        if node is None or node.op_type not in COMMUTING_OPS or not node.input:
            break
        src = node.input[0]
        if src in g.inits or len(g.consumers(src)) != 1 or src in g.outputs:
            break
        path.append(node)
        cur = src
    head_edges = g.consumers(cur)
    out = _qdq(g, cur, grid, label)
    for node, idx in head_edges:
        node.input[idx] = out
    for node in reversed(path):  # head first: node's input is now dequantized
        result = node.output[0]
        readers = g.consumers(result)
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
    for layer in layers:
        node = _compute_node(g, layer)
        if layer.weight is not None and layer.integer:
            scales, storage[layer.name] = _quantize_weight(g, node, layer, weight_type)
            _quantize_bias(g, node, layer, scales)
        for idx, grid in enumerate(layer.inputs):
            if grid is not None:
                requests.setdefault(node.input[idx], []).append((node, idx, grid))
    for tensor, reqs in requests.items():
        grids = {grid.key() for _, _, grid in reqs}
        if len(grids) == 1:
            _place(g, tensor, reqs[0][2], [(n, i) for n, i, _ in reqs])
        else:  # consumers want different grids: one quantizer per edge
            for node, idx, grid in reqs:
                _place(g, tensor, grid, [(node, idx)])
    result = g.finish(out)
    onnx.checker.check_model(result)
    return result, storage
