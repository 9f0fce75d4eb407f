"""A compressed model as QONNX: the float network with ``Quant`` nodes at each layer's bits.

QONNX (``qonnx.custom_op.general.Quant``: ``(clamp(round(x / scale + zeropt)) − zeropt) ·
scale`` on a ``bitwidth``-bit signed or unsigned range) is what FINN and hls4ml read. The
graph is ``model.fp32.onnx`` (pruned channels removed, low-rank layers as two layers,
BatchNorm folded) with a ``Quant`` on

* each integer layer's weights, per output channel, at the layer's ``w_bits``: the folded
  weights' levels divided by their largest common factor per channel (the int8 export's
  refinement ``k``, :mod:`lowbit.models.export._onnx_weights`) are the trained grid's codes,
  so the bit width is the config's; a channel whose levels sit off centre (a folded
  BatchNorm negating a −128 code) gets a zero point;
* each quantized input activation, at the layer's ``a_bits`` (the grid's own signed or
  unsigned range: lowbit's uint8 shift of signed grids is undone), and a residual add's or
  global pool's output on its grid.

Biases stay float (the int32 codes times ``s_x·s_w``: the same values). The QONNX executor
computes in float what lowbit's fake-quant model computes with integer arithmetic, so the
two agree but for requantization ties. :func:`check_qonnx` measures it on the whole test
split with qonnx's own executor (:func:`run_qonnx`: the model keeps a dynamic batch
dimension; each executor call gets a few hundred images at a fixed batch size):
accuracy, argmax agreement and per-layer agreement of the activation codes. Needs the
optional ``edge`` extra (``qonnx`` for the check).
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from lowbit.models.export._extras import require_extra
from lowbit.models.export._qdq_grids import (
    LAYER_OPS,
    ActGrid,
    ExportError,
    WeightGrid,
    scope_of,
)

__all__ = [
    "LARGE_GRAPH",
    "QONNX_BATCH",
    "QONNX_DOMAIN",
    "build_qonnx",
    "check_qonnx",
    "default_batch",
    "run_qonnx",
]

QONNX_DOMAIN = "qonnx.custom_op.general"


def _range(grid: ActGrid) -> tuple[bool, bool, int, int]:
    """(signed, narrow, bit width, zero point) of an activation grid in QONNX's terms."""
    signed = grid.qmin > 0  # a signed grid is stored shifted by 128 (plain.act_grid)
    lo, hi, zp = (
        (grid.qmin - 128, grid.qmax - 128, grid.zero_point - 128)
        if signed
        else (grid.qmin, grid.qmax, grid.zero_point)
    )
    levels = hi - lo + 1
    bits = math.ceil(math.log2(levels))
    narrow = levels == 2**bits - 1
    expect = (
        (-(2 ** (bits - 1)) + narrow, 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1 - narrow)
    )
    if (lo, hi) != expect:
        raise ExportError(f"QONNX export: activation grid [{lo}, {hi}] is not a {bits}-bit range")
    return signed, narrow, bits, zp


class _Builder:
    def __init__(self, model: onnx.ModelProto):
        self.model = model
        self.g = model.graph
        self.inits = {t.name: t for t in self.g.initializer}
        self.fresh = 0

    def const(self, base: str, array: np.ndarray) -> str:
        self.fresh += 1
        name = f"{base}__q{self.fresh}"
        self.g.initializer.append(numpy_helper.from_array(array, name))
        return name

    def quant(self, src: str, label: str, scale, zeropt, bits: int, signed, narrow) -> str:
        """Append a Quant of ``src``; returns its output name."""
        ins = [
            src,
            self.const(label + "_scale", np.asarray(scale, np.float32)),
            self.const(label + "_zeropt", np.asarray(zeropt, np.float32)),
            self.const(label + "_bitwidth", np.array(bits, np.float32)),
        ]
        out = f"{label}__quant{self.fresh}"
        self.g.node.append(
            helper.make_node(
                "Quant",
                ins,
                [out],
                domain=QONNX_DOMAIN,
                name=f"/{label}/Quant",
                signed=int(signed),
                narrow=int(narrow),
                rounding_mode="ROUND",
            )
        )
        return out

    def weight(self, node: onnx.NodeProto, grid: WeightGrid, label: str) -> None:
        """Quant the weight input on ``grid``'s levels (refinement undone) per channel."""
        bits = grid.bits
        lo_b, hi_b = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        codes = grid.codes.astype(np.int64).reshape(grid.codes.shape[0], -1)
        scale, zeropt = [], []
        for row, s in zip(codes, grid.scales.astype(np.float64), strict=True):
            g = int(np.gcd.reduce(np.abs(row))) or 1  # the int8 export's refinement k
            lo, hi = int(row.min()) // g, int(row.max()) // g
            if hi - lo > hi_b - lo_b:
                raise ExportError(f"QONNX export: {label} weights span more than {bits} bits")
            scale.append(s * g)
            zeropt.append(int(np.clip(0, lo_b - lo, hi_b - hi)))
        transposed = node.op_type == "MatMul" or (
            node.op_type == "Gemm" and not any(a.name == "transB" and a.i for a in node.attribute)
        )  # the ONNX weight is (in, out)
        rank = len(self.inits[node.input[1]].dims)
        shape = [1] * rank
        shape[1 if transposed else 0] = -1
        s = np.array(scale, np.float32).reshape(shape)
        z = np.array(zeropt, np.float32).reshape(shape)
        node.input[1] = self.quant(node.input[1], f"{label}.weight", s, z, bits, True, False)

    def activation(self, node: onnx.NodeProto, idx: int, grid: ActGrid, label: str) -> None:
        signed, narrow, bits, zp = _range(grid)
        node.input[idx] = self.quant(node.input[idx], label, grid.scale, zp, bits, signed, narrow)

    def output(self, node: onnx.NodeProto, grid: ActGrid, label: str) -> None:
        signed, narrow, bits, zp = _range(grid)
        src = node.output[0]
        readers = [(n, i) for n in self.g.node for i, x in enumerate(n.input) if x == src]
        out = self.quant(src, label, grid.scale, zp, bits, signed, narrow)
        for reader, i in readers:
            reader.input[i] = out


def build_qonnx(*, fp32: onnx.ModelProto, quants: list) -> onnx.ModelProto:
    """The QONNX model of a compressed model: its plain float ONNX ``fp32``
    (:func:`lowbit.models.export.deploy.to_onnx` of :func:`~lowbit.models.export.plain.
    deploy_copy`) with Quant nodes for ``quants`` (the same copy's
    :class:`~lowbit.models.export.onnx_quant.LayerQuant` list)."""
    model = onnx.ModelProto()
    model.CopyFrom(fp32)
    b = _Builder(model)
    for layer in quants:
        ops = LAYER_OPS[layer.kind]
        found = [n for n in model.graph.node if n.op_type in ops and scope_of(n) == layer.name]
        if len(found) != 1:
            raise ExportError(f"QONNX export: layer {layer.name!r} not found once in the graph")
        node = found[0]
        if layer.weight is not None and node.input[1] in b.inits:
            b.weight(node, layer.weight, layer.name)
        for idx, grid in enumerate(layer.inputs):
            if grid is not None:
                b.activation(node, idx, grid, f"{layer.name}.input{idx}")
        if layer.output is not None:
            b.output(node, layer.output, f"{layer.name}.output")
    nodes = list(model.graph.node)
    from lowbit.models.export.onnx_quant import topological_order

    del model.graph.node[:]
    model.graph.node.extend(topological_order(nodes, model.graph))
    model.opset_import.append(helper.make_opsetid(QONNX_DOMAIN, 1))
    return model


#: images per call of qonnx's executor. It runs the graph node by node (each Quant in
#: numpy, every other node in a one-node ONNX Runtime session made anew for each call), so
#: with one image per call its cost is per call and per node: ~55-85 ms an image on
#: fashion-resnet-demo (56 nodes), against 1.4-4.4 ms an image at 100-250 per call (a
#: shared 2-vCPU AMD EPYC VM; 15-60x). Its bookkeeping per call grows faster than the node
#: count (lookups scan the graph's lists): a graph of more than :data:`LARGE_GRAPH` nodes
#: (fashion-vit's 469: ~18 s a call) gets four times as many images per call.
QONNX_BATCH = 250
LARGE_GRAPH = 200


def default_batch(model: onnx.ModelProto) -> int:
    """Images per executor call for ``model`` (:data:`QONNX_BATCH`, ×4 for a large graph)."""
    return QONNX_BATCH * (4 if len(model.graph.node) > LARGE_GRAPH else 1)


_ACT_QUANT = re.compile(r"^/(?P<layer>.+)\.input(?P<idx>\d+)/Quant$")


def _executor() -> tuple[Any, Any]:
    """qonnx's execute_onnx and a function making a model with a static batch of ``n``
    ready for it (the executor wants static shapes), or one line naming the extra."""
    require_extra("qonnx.core.onnx_exec", package="qonnx", what="checking a QONNX model")
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes

    def static(model: onnx.ModelProto, n: int) -> Any:
        fixed = onnx.ModelProto()
        fixed.CopyFrom(model)
        del fixed.graph.value_info[:]
        for value in (*fixed.graph.input, *fixed.graph.output):
            value.type.tensor_type.shape.dim[0].dim_value = n
        return ModelWrapper(fixed).transform(InferShapes())

    return execute_onnx, static


def _code_taps(model: onnx.ModelProto) -> dict[str, tuple[str, np.ndarray, np.ndarray, int]]:
    """lowbit layer name (a second operand under ``"<name>:b"``, as
    :func:`~lowbit.models.export._codecheck.fake_quant_codes` names it) → (the output of the
    Quant of its input activation, scale, zero point, +128 for a signed grid: lowbit's
    uint8 codes)."""
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    taps = {}
    for node in model.graph.node:
        match = _ACT_QUANT.match(node.name)
        if node.op_type != "Quant" or match is None or node.input[0] in inits:
            continue
        idx = int(match["idx"])
        name = match["layer"] + ("" if idx == 0 else ":b")
        signed = any(a.name == "signed" and a.i for a in node.attribute)
        scale = inits[node.input[1]].astype(np.float32)
        taps[name] = (node.output[0], scale, inits[node.input[2]], 128 if signed else 0)
    return taps


def _batches(model: onnx.ModelProto, x: np.ndarray, *, batch_size: int | None, codes: bool):
    """(first index, logits, codes by layer when ``codes``) per ``batch_size`` images of
    ``x``, each batch one call of qonnx's executor on ``model`` with that static batch."""
    from lowbit.models.export.ort import INPUT_NAME, OUTPUT_NAME

    if batch_size is None:
        batch_size = default_batch(model)
    if batch_size < 1:
        raise ExportError(f"QONNX batch size must be a positive integer, got {batch_size}")
    execute_onnx, static = _executor()
    taps = _code_taps(model) if codes else {}
    wrappers: dict[int, Any] = {}
    for start in range(0, len(x), batch_size):
        chunk = np.ascontiguousarray(x[start : start + batch_size], dtype=np.float32)
        n = len(chunk)
        if n not in wrappers:
            wrappers[n] = static(model, n)
        ctx = execute_onnx(wrappers[n], {INPUT_NAME: chunk}, return_full_exec_context=bool(taps))
        found = {  # the codes' float values are exact integers: int16 holds them
            name: (np.rint(ctx[tensor] / scale) + (zeropt + shift)).astype(np.int16).reshape(n, -1)
            for name, (tensor, scale, zeropt, shift) in taps.items()
        }
        yield start, ctx[OUTPUT_NAME].reshape(n, -1), found


def run_qonnx(
    model: onnx.ModelProto, x: np.ndarray, *, batch_size: int | None = None, codes: bool = False
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(logits, when ``codes`` each quantized layer's input activation codes as lowbit's
    uint8 codes, by layer name) of QONNX ``model`` run by qonnx's own executor
    (``qonnx.core.onnx_exec.execute_onnx``) on float inputs ``x``, ``batch_size`` images
    per call (default :func:`default_batch`). Batching changes no quantized tensor; the
    float logits only by the last layer's float GEMM summing in another order (ONNX
    Runtime's kernel for one row differs from the one for many; a few ulp)."""
    logits_parts, found = [], {}
    for _, out, part in _batches(model, x, batch_size=batch_size, codes=codes):
        logits_parts.append(out)
        for name, c in part.items():
            found.setdefault(name, []).append(c)
    merged = {name: np.concatenate(parts) for name, parts in found.items()}
    return np.concatenate(logits_parts), merged


def check_qonnx(
    *,
    compressed: Any,
    model: onnx.ModelProto,
    samples: int | None = None,
    min_agreement: float = 0.99,
    batch_size: int | None = None,
) -> dict:
    """QONNX model run by qonnx's executor vs the fake-quant model on the test split (its
    first ``samples`` images; all by default): accuracies, argmax agreement and, per
    quantized layer, the share of equal input activation codes. Raises
    :class:`ExportError` when their argmax agree on fewer than ``min_agreement``."""
    from lowbit.models.accuracy import as_model_input
    from lowbit.models.data import load_split
    from lowbit.models.export._codecheck import fake_quant_codes

    _executor()  # one line without the extra, before any work
    batch_size = default_batch(model) if batch_size is None else batch_size
    x, y = load_split(compressed.dataset, "test")
    x = as_model_input(compressed, x[:samples])
    labels = y[:samples].numpy()
    outs, fakes = [], []
    equal: dict[str, int] = {}
    total: dict[str, int] = {}
    for start, part, codes in _batches(model, x.numpy(), batch_size=batch_size, codes=True):
        outs.append(part)
        # the fake-quant logits of the same forward pass as its codes
        hook = compressed.register_forward_hook(lambda _m, _a, o: fakes.append(o.numpy()))
        try:
            ref = fake_quant_codes(compressed, x[start : start + len(part)])
        finally:
            hook.remove()
        for name, c in codes.items():
            if name in ref:
                equal[name] = equal.get(name, 0) + int((ref[name].reshape(c.shape) == c).sum())
                total[name] = total.get(name, 0) + c.size
    out, fake = np.concatenate(outs), np.concatenate(fakes)
    agreement = float((out.argmax(1) == fake.argmax(1)).mean())
    if agreement < min_agreement:
        raise ExportError(
            f"QONNX model's argmax agrees with the fake-quant model on {agreement:.2%} of "
            f"{len(labels)} test images, below {min_agreement:.0%} (a bug in the QONNX export)"
        )
    code_agreement = {name: equal[name] / total[name] for name in equal}
    return {
        "split": "test",
        "samples": len(labels),
        "runtime": "qonnx.core.onnx_exec.execute_onnx",
        "batch_size": batch_size,
        "argmax_agreement": agreement,
        "max_abs_logit_diff": float(np.abs(out - fake).max()),
        "logit_range": float(np.abs(fake).max()),
        "accuracy_qonnx": float((out.argmax(1) == labels).mean()),
        "accuracy_fake_quant": float((fake.argmax(1) == labels).mean()),
        "min_code_agreement": min(code_agreement.values(), default=1.0),
        "code_agreement": code_agreement,
    }
