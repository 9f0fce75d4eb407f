"""ONNX models as hwsim workloads (``lowbit simulate --workload model.onnx``).

:func:`import_onnx` loads the file, gives symbolic input dimensions values (the first axis is
the batch, 1 by default; others come from ``dims``), runs ``onnx.shape_inference`` (with data
propagation, so ``Shape → Gather → Reshape`` chains resolve) and maps every node that depends
on the model input, in graph order:

- **Conv** / ConvInteger / QLinearConv → ``Conv2d`` (``group`` kept: depthwise is
  ``groups == in_c``); a 1-D conv is a 2-D conv of height 1. 3-D convs are unmapped.
- **Gemm** / **MatMul** (MatMulInteger, QLinearMatMul, QGemm) with a constant operand →
  ``Linear`` (``tokens`` = every row of the activation: batch × sequence); of two
  activations (attention QKᵀ and AV) → ``MatMul`` with ``heads`` = the product of the
  output's leading dimensions (batch included).
- Pooling and reductions (MaxPool, AveragePool, Global*Pool, Reduce*) → ``Pool``.
- Element-wise ops: a chain of them is one memory pass, ``Elementwise`` with ``inputs`` = the
  elements it reads over the elements it writes, rounded (a residual add + ReLU reads 2;
  an exported GELU's Div/Erf/Add/Mul chain reads 1); a bias add, BatchNormalization, ReLU,
  ReLU6 (Clip) or LeakyReLU with one activation input right after a compute layer runs in
  that layer's output stage and adds nothing — the fusion convention of ``hwsim.workloads``.
  Softmax and the normalisations (LayerNormalization, …) are passes of their own.
- Data movement and metadata (Reshape, Transpose, Concat, Slice, Gather, Cast, Q/DQ, …) and
  anything computed from constants only are free: an accelerator addresses them in place.

**Unmapped ops are never dropped silently.** By default an op outside these tables (LSTM,
ConvTranspose, Resize, Einsum, If/Loop, custom domains …) or a mapped op without the shapes
it needs raises :class:`UnmappedOpsError` listing every such node by name and op type;
with ``allow_unmapped=True`` the workload is built without them and
:attr:`OnnxImport.unmapped` lists them (``lowbit.commands._resolve.resolve_workload`` then
prints them on one warning line).

Bit-widths: a graph without quantization ops describes shapes only and gets hwsim's default
compression (W8A8), like the built-in workloads, so ``--bits`` chooses them (``lowbit
simulate`` on a CPU target takes it as the float model ONNX Runtime runs:
``models.workloads.runs_unquantized_as_float``). In a quantized
graph (QDQ or QLinear/Integer ops) each compute layer takes them from the graph: a weight out
of a DequantizeLinear (or an integer weight of a QLinear op) has the bits of the grid its
codes use per channel (``models._onnx_graph.span_bits``: int8 codes within [-8, 7], or on a
16-level grid of a coarser step, are 4-bit) and an
activation the width of its QuantizeLinear type, narrowed by a Clip between Q and DQ; layers
left in float there have ``w_bits``/``a_bits`` None (float: 32 bits wide, ``hwsim.FLOAT_BITS``).

Example:
    >>> from lowbit.hwsim.onnx_workload import load_onnx_workload
    >>> workload = load_onnx_workload("resnet18.onnx")          # doctest: +SKIP
    >>> round(workload.macs / 1e9, 2)                           # doctest: +SKIP
    1.81
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from lowbit.hwsim._onnx_graph import load_graph
from lowbit.hwsim._onnx_mapper import GraphMapper
from lowbit.hwsim.errors import WorkloadError
from lowbit.hwsim.workload import Workload

__all__ = ["OnnxImport", "UnmappedOpsError", "import_onnx", "load_onnx_workload"]


class UnmappedOpsError(WorkloadError):
    """The graph has ops that cannot be mapped to hwsim layers (all listed by name)."""

    def __init__(self, source: str, unmapped: tuple[tuple[str, str, str], ...]):
        self.source = source
        self.unmapped = unmapped
        listed = "; ".join(f"{name} ({op}): {why}" for name, op, why in unmapped)
        super().__init__(
            f"{source}: {len(unmapped)} op(s) cannot be mapped to hwsim layers: {listed} "
            "(allow_unmapped=True simulates the rest)"
        )


@dataclass(frozen=True, slots=True)
class OnnxImport:
    """What :func:`import_onnx` found.

    Attributes:
        workload: the mapped layers.
        unmapped: ``(node name, op type, reason)`` of every node left out.
        quantized: the graph carries bit-widths (Q/DQ, QLinear or Integer ops).
        float_ops: ``(node name, op type, reason)`` of the operators of a quantized graph
            that ONNX Runtime cannot run on integers (simulated in float, with the
            dequantization and quantization around them).
    """

    workload: Workload
    unmapped: tuple[tuple[str, str, str], ...] = ()
    quantized: bool = False
    float_ops: tuple[tuple[str, str, str], ...] = ()


def import_onnx(
    path: str | Path,
    *,
    batch: int = 1,
    dims: Mapping[str, int] | None = None,
    allow_unmapped: bool = False,
    name: str | None = None,
) -> OnnxImport:
    """Map the ONNX model at ``path`` to an hwsim workload (rules in the module docstring).

    Args:
        path: the .onnx file.
        batch: value of a symbolic first input axis.
        dims: values of other symbolic input dimensions, by their names.
        allow_unmapped: leave unmappable nodes out (listed in the result) instead of raising.
        name: workload name; defaults to the file's stem.

    Raises:
        WorkloadError: the file is not a readable ONNX model, a node's attributes make no
            valid layer (the message names it), or it has no mappable layer;
            :class:`UnmappedOpsError` when nodes cannot be mapped and ``allow_unmapped``
            is false.
    """
    graph = load_graph(path, batch=batch, dims=dims)
    importer = GraphMapper(graph)
    try:
        importer.run()
    except ValueError as exc:  # a node whose attributes make no layer (a Conv of group 0)
        raise WorkloadError(f"{path}: {exc}") from None
    unmapped = tuple(importer.unmapped)
    if unmapped and not allow_unmapped:
        raise UnmappedOpsError(str(path), unmapped)
    layers = tuple(importer.layers[i] for i in sorted(importer.layers))
    if not layers:
        raise WorkloadError(f"{path}: no layers hwsim can simulate were found")
    workload = Workload(name or Path(path).stem, layers)
    return OnnxImport(
        workload=workload,
        unmapped=unmapped,
        quantized=importer.quantized,
        float_ops=tuple(importer.float_ops()),
    )


def load_onnx_workload(
    path: str | Path,
    *,
    batch: int = 1,
    dims: Mapping[str, int] | None = None,
    allow_unmapped: bool = False,
    name: str | None = None,
) -> Workload:
    """The workload of :func:`import_onnx` (same arguments)."""
    return import_onnx(
        path, batch=batch, dims=dims, allow_unmapped=allow_unmapped, name=name
    ).workload
