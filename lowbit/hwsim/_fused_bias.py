"""What a Gemm node costs over a bare matrix product on a CPU runtime: the
:class:`FusedBiasGemm` cost rule (``[overheads] fused_bias_cycles_per_column``,
``fused_bias_cycles_per_output``)."""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil

from ._cost_rule_base import CostRule, GemmCall, RunShape, cycles_key

__all__ = ["FusedBiasGemm"]


@dataclass(frozen=True, slots=True)
class FusedBiasGemm(CostRule):
    """An integer linear layer whose GEMM applies its bias and per-column output scales
    itself (:attr:`Linear.fused_bias`: an ONNX Gemm, ONNX Runtime's QGemm) costs
    ``fused_bias_cycles_per_column`` per output column, once per call, and
    ``fused_bias_cycles_per_output`` per output more than a bare product (an ONNX MatMul:
    QLinearMatMul, its bias an Add of its own). On an Intel Xeon with AMX-INT8 a QGemm took
    ~15 cycles a column and ~0.2 an output more than a QLinearMatMul of the same shape
    (1 row of 512->1000: 52 k cycles against 38 k). Float GEMMs, convolutions and
    products of two activations pay neither."""

    keys = {
        "fused_bias_cycles_per_column": cycles_key(),
        "fused_bias_cycles_per_output": cycles_key(),
    }
    fused_bias_cycles_per_column: float = 0.0
    fused_bias_cycles_per_output: float = 0.0

    def adjust_cycles(self, call: GemmCall, *, shape: RunShape, cycles: int) -> int:
        if not (call.integer and getattr(call.layer, "fused_bias", False)):
            return cycles
        per_column = self.fused_bias_cycles_per_column
        extra = shape.n * (per_column + self.fused_bias_cycles_per_output * call.gemm.M)
        return cycles + ceil(extra - 1e-9) if extra > 0 else cycles
