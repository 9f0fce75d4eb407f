"""Operators a CPU runtime adds to an ONNX graph, as memory-only layers of their kind
(:data:`lowbit.hwsim.workload.MOVEMENT_KINDS`; free on targets that do not price them).

ONNX Runtime runs a quantized graph's integer convolutions channels-last and the rest of the
graph as written, so it executes data movement the graph does not show:

* the float input (padded or not: lowbit's export widens a stem's channels with a Pad) is
  quantized and the float output dequantized by operators of their own,
  and around convolutions each of those 4-D tensors is also transposed between NCHW and
  channels-last;
* a Reshape or Flatten of a 4-D activation needs NCHW: its input is transposed back, and a
  4-D or 5-D output (a channel shuffle) forward again -- unless the Reshape only splits the
  channels of a channels-last tensor for a Transpose (a channel shuffle after convs): then
  ONNX Runtime pushes the layout transpose through the Reshape into that Transpose, one
  copy that moves the innermost axis, element by element (:func:`strided_transpose`);
* a DequantizeLinear feeding an operator with no integer kernel (LayerNorm, Erf, Div...)
  runs on its own, and so does the QuantizeLinear after it;
* a QDQ conv whose bias DequantizeLinear is not on its input scale x weight scale (an
  exporter's Identity of a bias shared with another conv, quantized by ONNX Runtime's
  quantizer for that conv) cannot become a QLinearConv and runs in float
  (:func:`float_fallback`): its input goes back to NCHW and is dequantized, its weights
  are dequantized at every run, its output quantized and, for a channels-last reader,
  transposed again; so does a QDQ conv whose output (through its ReLU) is quantized onto
  two grids (a float FusedConv), and a ReLU out of a DequantizeLinear whose output is
  quantized onto two grids runs as a DequantizeLinear, a float ReLU and one QuantizeLinear
  per grid (:func:`runs_float`: a residual output read at two widths);
* in a float graph, a ReLU6 (Clip) or LeakyReLU fused into the conv before it is applied
  in a second pass over the conv's output (MLAS applies only ReLU in the kernel's
  registers): ~0.33 cycles per element on an Intel Xeon (AVX-512), a sixth of a small
  MobileNet's float time beside its ReLU twin (:func:`activation_pass`);
* in a float graph on x86, the reorders into and out of the blocked conv layout
  (:mod:`lowbit.hwsim._onnx_nchwc`).

:func:`runtime_layers` returns these layers keyed between node indices (graph order).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from lowbit.hwsim._onnx_graph import dtype_bits
from lowbit.hwsim._onnx_nchwc import reorders
from lowbit.hwsim._onnx_ops import CONV_OPS, QUANT_OPS
from lowbit.hwsim.workload import Compression, Elementwise, Layer

__all__ = [
    "QDQ_FUSABLE",
    "activation_pass",
    "float_fallback",
    "float_reason",
    "runs_float",
    "split_grid",
    "folded_transpose",
    "runtime_layers",
    "strided_transpose",
]

#: operators ONNX Runtime fuses with the DequantizeLinear before them and the
#: QuantizeLinear after them into an integer kernel (QLinear*, or run on the codes)
QDQ_FUSABLE = frozenset(
    {
        "Conv",
        "MatMul",
        "Gemm",
        "Add",
        "Mul",
        "Concat",
        "AveragePool",
        "GlobalAveragePool",
        "MaxPool",
        "Softmax",
        "Sigmoid",
        "LeakyRelu",
        "Relu",
        "Clip",
        "Transpose",
        "Reshape",
        "Flatten",
        "Split",
        "Gather",
        "Squeeze",
        "Unsqueeze",
        "Resize",
        "Slice",
        "Pad",
        "ArgMax",
        "Where",
        "DequantizeLinear",
        "QuantizeLinear",
    }
)


def runtime_layers(importer: Any) -> dict[float, Layer]:
    """The runtime's extra operators of ``importer``'s graph (module docstring)."""
    g = importer.g
    convs = any(n.op_type in CONV_OPS for n in g.nodes)
    inputs = {i.name for i in g.model.graph.input} - set(g.initializers)
    out: dict[float, Layer] = {}

    def add(key: float, tensor: str, kind: str, bits: int, label: str) -> bool:
        shape = g.shapes.get(tensor)
        if not shape or not all(d > 0 for d in shape):
            return False  # no shape: stays free
        while key in out:  # two rules at one place: keep both, in order
            key += 1e-3
        out[key] = Elementwise(
            name=importer.unique(f"{label}:{tensor}"),
            kind=kind,
            compression=Compression(w_bits=bits, a_bits=bits),
            elements=math.prod(shape),
            # the layout change back to NCHW costs more the more channels it writes
            channels=shape[1] if kind == "transpose_inward" and len(shape) == 4 else 0,
        )
        return len(shape) == 4

    if not importer.quantized:  # at the float graph's default bits: free unless run float
        for key, tensor, kind in reorders(g):
            add(key, tensor, kind, 8, "reorder")
    for index, node in enumerate(g.nodes):
        op = node.op_type
        if not importer.quantized and activation_pass(g, node):
            # at the float graph's default bits (W8A8): free unless its conv runs float
            add(index, node.output[0], "activation_pass", 8, "activation")
        elif importer.quantized and op in CONV_OPS and runs_float(g, node):
            x, weight = node.input[0], node.input[1]
            if _channels_last(g, x):
                add(index - 0.4, x, "transpose_inward", importer.bits(x), "layout")
            codes = g.producer[weight].input[0] if weight in g.producer else weight
            wbits = dtype_bits(g.dtypes.get(codes, 0)) or 8
            add(index - 0.3, weight, "dequantize", wbits, "dequantize")
            # each grid's codes go back channels-last for a conv that reads them
            y = _through_activations(g, node.output[0])
            quantizers = [q for q in g.consumers.get(y, ()) if q.op_type == "QuantizeLinear"]
            for i, q in enumerate(quantizers):
                if _integer_conv_reads(g, q.output[0]):
                    bits = dtype_bits(g.dtypes.get(q.output[0], 0)) or 8
                    add(index + 0.3 + i / 64, y, "transpose", bits, "layout")
        elif importer.quantized and op in ("QuantizeLinear", "DequantizeLinear"):
            codes = node.output[0] if op == "QuantizeLinear" else node.input[0]
            bits = dtype_bits(g.dtypes.get(codes, 0)) or 8
            if op == "QuantizeLinear" and _graph_input(g, node.input[0], inputs):
                integer_conv = _integer_conv_reads(g, node.output[0])
                if add(index, node.input[0], "quantize", bits, "quantize") and integer_conv:
                    add(index + 0.5, node.input[0], "transpose", bits, "layout")
            elif op == "DequantizeLinear" and node.output[0] in g.outputs:
                if add(index, node.output[0], "dequantize", bits, "dequantize") and convs:
                    add(index - 0.5, node.output[0], "transpose_inward", bits, "layout")
            elif (
                op == "DequantizeLinear"
                and node.input[0] not in g.static
                and any(
                    c.op_type not in QDQ_FUSABLE or runs_float(g, c)
                    for c in g.consumers.get(node.output[0], ())
                )
            ):
                add(index, node.output[0], "dequantize", bits, "dequantize")
            elif (
                op == "QuantizeLinear"
                and (src := g.producer.get(node.input[0])) is not None
                and (
                    src.op_type not in QDQ_FUSABLE
                    or runs_float(g, src)
                    or runs_float(g, _activation_source(g, node.input[0]))
                )
            ):
                add(index, node.input[0], "quantize", bits, "quantize")
        elif op in ("Reshape", "Flatten") and convs and importer.quantized:
            shape = g.shapes.get(node.input[0]) or ()
            if len(shape) == 4 and node.input[0] not in g.static and not _merged_layout(g, node):
                bits = importer.bits(node.input[0])
                add(index - 0.5, node.input[0], "transpose_inward", bits, "layout")
                if len(g.shapes.get(node.output[0]) or ()) > 3:  # back to channels-last
                    add(index + 0.5, node.output[0], "transpose", bits, "layout")
    return out


#: operators ONNX Runtime runs in the layout of their inputs (channels-last after convs)
_LAYOUT_KEEPING = frozenset(
    {"Concat", "Add", "Mul", "Relu", "Clip", "MaxPool", "AveragePool", "LeakyRelu", "Sigmoid"}
)


#: activations ONNX Runtime fuses into a float conv and applies in a pass of their own
_PASS_ACTIVATIONS = frozenset({"Clip", "LeakyRelu"})


def activation_pass(g: Any, node: Any) -> bool:
    """A float graph's ReLU6 (Clip) or LeakyReLU that ONNX Runtime fuses into the conv
    before it (through a BatchNormalization it folds; the conv's output read by nothing
    else): the fused conv applies it in a second pass over its output."""
    if node.op_type not in _PASS_ACTIVATIONS:
        return False
    tensor = node.input[0]
    src = g.producer.get(tensor)
    while src is not None and src.op_type == "BatchNormalization":
        if len(g.consumers.get(tensor, ())) != 1:
            return False
        tensor = src.input[0]
        src = g.producer.get(tensor)
    bounds = [t for t in node.input[1:] if t]
    return (
        src is not None
        and src.op_type == "Conv"
        and len(g.consumers.get(src.output[0], ())) == 1
        and src.output[0] not in g.outputs
        and all(t in g.static for t in bounds)
    )


#: activations a QuantizeLinear absorbs (its grid clamps them)
_CLAMPS = frozenset({"Relu", "Clip"})


def _activation_source(g: Any, tensor: str) -> Any:
    """The operator that computes ``tensor`` through the ReLU / Clip a quantizer absorbs."""
    node = g.producer.get(tensor)
    while node is not None and node.op_type in _CLAMPS:
        node = g.producer.get(node.input[0])
    return node


def _through_activations(g: Any, tensor: str) -> str:
    """``tensor``, or the output of the ReLU / Clip chain that reads it alone."""
    while True:
        readers = g.consumers.get(tensor, ())
        if len(readers) != 1 or readers[0].op_type not in _CLAMPS:
            return tensor
        tensor = readers[0].output[0]


def _readers(g: Any, tensor: str) -> list[Any]:
    """The operators that read ``tensor``, through Q/DQ pairs and the Clip of a
    sub-8-bit grid's codes between them."""
    todo, readers = [tensor], []
    while todo:
        current = todo.pop()
        codes = (src := g.producer.get(current)) is not None and src.op_type in QUANT_OPS
        for reader in g.consumers.get(current, ()):
            if reader.op_type in QUANT_OPS or (reader.op_type == "Clip" and codes):
                todo.append(reader.output[0])
            else:
                readers.append(reader)
    return readers


def _graph_input(g: Any, tensor: str, inputs: set[str]) -> bool:
    """Is ``tensor`` the graph's input, or its input padded (lowbit's export widens a stem's
    input channels with a Pad before quantizing it)?"""
    if tensor in inputs:
        return True
    pad = g.producer.get(tensor)
    return pad is not None and pad.op_type == "Pad" and pad.input[0] in inputs


def _integer_conv_reads(g: Any, tensor: str) -> bool:
    """Does a conv that ONNX Runtime runs on integers (channels-last) read ``tensor``?"""
    return any(r.op_type in CONV_OPS and not runs_float(g, r) for r in _readers(g, tensor))


def _qdq_inputs(g: Any, node: Any) -> bool:
    """Are the node's input and weight both out of DequantizeLinears (a QDQ conv)?"""
    sources = [g.producer.get(t) for t in node.input[:2]]
    return len(sources) == 2 and all(
        s is not None and s.op_type == "DequantizeLinear" for s in sources
    )


def float_fallback(g: Any, node: Any) -> bool:
    """A QDQ Conv (input and weight out of DequantizeLinears) whose bias DequantizeLinear
    (reached directly or through Identities) is not on the grid its input's scale times its
    weight's scale gives -- an exporter's Identity of a bias shared with another conv, which
    ONNX Runtime's quantizer quantized for that other conv: ONNX Runtime cannot fuse it into
    a QLinearConv and runs it in float (measured: a 96-channel 1x1 conv of a MobileNet took
    2.2x its INT8 time). A float bias (an initializer, or an Identity of one, as lowbit's
    export writes a shared bias) does not stop the fusion."""
    if node is None or node.op_type != "Conv" or len(node.input) < 3 or not node.input[2]:
        return False
    if not _qdq_inputs(g, node):
        return False
    sources = [g.producer[t] for t in node.input[:2]]
    bias, seen = g.producer.get(node.input[2]), 0
    while bias is not None and bias.op_type == "Identity" and seen < 64:
        bias, seen = g.producer.get(bias.input[0]), seen + 1
    if bias is None or bias.op_type != "DequantizeLinear" or len(bias.input) < 2:
        return False
    scales = [g.array(s.input[1]) if len(s.input) > 1 else None for s in (*sources, bias)]
    if any(scale is None for scale in scales):
        return False  # computed scales: no telling
    x_scale, w_scale, b_scale = (np.asarray(v, np.float64).ravel() for v in scales)
    expected = x_scale * w_scale
    if b_scale.size not in (1, expected.size):
        return True
    return not np.allclose(b_scale, expected, rtol=1e-5, atol=0.0)


def _grid(g: Any, quantizer: Any) -> tuple:
    """A QuantizeLinear's grid: its scale and zero point (values, or names when computed)
    and its output type."""
    parts = []
    for name in quantizer.input[1:3]:
        value = g.array(name) if name else None
        parts.append(name if value is None else tuple(np.asarray(value).ravel().tolist()))
    return (*parts, g.dtypes.get(quantizer.output[0], 0))


def split_grid(g: Any, tensor: str) -> bool:
    """Is ``tensor`` quantized onto more than one grid (a residual output read at two
    activation widths: ONNX Runtime cannot keep it integer)?"""
    grids = {_grid(g, q) for q in g.consumers.get(tensor, ()) if q.op_type == "QuantizeLinear"}
    return len(grids) > 1


def runs_float(g: Any, node: Any) -> bool:
    """An operator of a QDQ graph that ONNX Runtime runs in float (:func:`float_reason`)."""
    return float_reason(g, node) is not None


def float_reason(g: Any, node: Any) -> str | None:
    """Why ONNX Runtime runs this operator of a QDQ graph in float (None: it does not): a
    conv it cannot fuse (:func:`float_fallback`), or one whose output (through its ReLU) is
    quantized onto more than one grid (:func:`split_grid`: a FusedConv, its input and
    weights dequantized at every run), or a ReLU / Clip out of a Q/DQ operator whose
    output is (dequantized, a float ReLU, one QuantizeLinear per grid). Measured on lowbit's
    mixed-precision exports: a residual block's output read at 4 and 8 bits costs 1.2 ms at
    batch 64."""
    if node is None:
        return None
    split = "its output is quantized onto more than one grid (read at two activation widths)"
    if node.op_type in CONV_OPS:
        if float_fallback(g, node):
            return "its bias is not on its input scale x weight scale (quantized for another conv)"
        split_output = split_grid(g, _through_activations(g, node.output[0]))
        return split if _qdq_inputs(g, node) and split_output else None
    if node.op_type in _CLAMPS:
        src = g.producer.get(node.input[0])
        quantized = src is not None and src.op_type in QUANT_OPS
        return split if quantized and split_grid(g, node.output[0]) else None
    return None


def _producer(g: Any, tensor: str) -> Any:
    """The operator that computes ``tensor``, through Q/DQ pairs (None: an input)."""
    node = g.producer.get(tensor)
    while node is not None and node.op_type in QUANT_OPS:
        node = g.producer.get(node.input[0])
    return node


def _channels_last(g: Any, tensor: str, depth: int = 0) -> bool:
    """Does ONNX Runtime hold ``tensor`` channels-last in a quantized conv graph: a conv's
    output, or the output of a layout-keeping operator whose 4-D activation inputs all are
    (a Concat of two conv branches; not one fed by a Split of an NCHW tensor)."""
    node = _producer(g, tensor)
    if node is None or depth > 64:
        return False
    if node.op_type in CONV_OPS:
        return True
    if node.op_type not in _LAYOUT_KEEPING:
        return False
    acts = [t for t in node.input if t and t not in g.static and len(g.shapes.get(t) or ()) == 4]
    return bool(acts) and all(_channels_last(g, t, depth + 1) for t in acts)


def _merged_layout(g: Any, reshape: Any) -> bool:
    """A Reshape of a channels-last tensor read only by a Transpose (through Q/DQ): ONNX
    Runtime's transpose optimizer moves the layout transpose through it into the
    Transpose (no layout copies of its own)."""
    if reshape.op_type != "Reshape" or not _channels_last(g, reshape.input[0]):
        return False
    todo, readers = [reshape.output[0]], []
    while todo:
        for reader in g.consumers.get(todo.pop(), ()):
            if reader.op_type in QUANT_OPS:
                todo.append(reader.output[0])
            else:
                readers.append(reader)
    return bool(readers) and all(r.op_type == "Transpose" for r in readers)


def strided_transpose(g: Any, node: Any, *, quantized: bool) -> bool:
    """A Transpose that moves the innermost axis as ONNX Runtime runs it -- one with a layout
    transpose merged in (:func:`_merged_layout`; a ``quantized`` graph's convs run
    channels-last, a float graph's in blocked NCHW), or a permutation that both changes the
    last axis and moves more than one axis -- copied element by element, where a layout
    change (one axis moved) or a permutation keeping the innermost axes copies runs."""
    if node.op_type != "Transpose":
        return False
    src = _producer(g, node.input[0])
    # (a merged layout needs a conv upstream: _channels_last finds it, or there is none)
    if quantized and src is not None and _merged_layout(g, src):
        return True
    perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), [])
    n = len(perm)
    if n < 3 or perm[-1] == n - 1:
        return False
    # one axis moved (NCHW <-> NHWC): the others keep their order
    return not any([b for b in perm if b != a] == sorted(set(perm) - {a}) for a in perm)


def folded_transpose(g: Any, node: Any) -> bool:
    """A Transpose of the last two axes read only as a MatMul's second operand (through
    Q/DQ): runtimes fold it into the product (ONNX Runtime's transB), no copy."""
    if node.op_type != "Transpose":
        return False
    perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), [])
    n = len(perm)
    if n < 2 or perm != [*range(n - 2), n - 1, n - 2]:
        return False
    #: the input index of each product's second operand
    second = {"MatMul": 1, "MatMulInteger": 1, "QLinearMatMul": 3}
    todo, readers = [node.output[0]], []
    while todo:
        tensor = todo.pop()
        for reader in g.consumers.get(tensor, ()):
            if reader.op_type in QUANT_OPS:
                todo.append(reader.output[0])
            else:
                readers.append((reader, tensor))
    return bool(readers) and all(
        r.op_type in second and len(r.input) > second[r.op_type] and r.input[second[r.op_type]] == t
        for r, t in readers
    )
