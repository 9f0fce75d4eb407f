"""What the QDQ pass (:mod:`lowbit.models.export.onnx_quant`) is given: activation and weight
grids, one entry per quantized layer, and its error."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from lowbit.hwsim.errors import LowbitError

__all__ = ["LAYER_OPS", "ActGrid", "ExportError", "LayerQuant", "WeightGrid", "scope_of"]


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


#: ONNX operators of each layer kind
LAYER_OPS = {
    "conv": ("Conv",),
    "linear": ("Gemm", "MatMul"),
    "matmul": ("MatMul",),
    "add": ("Add",),
    "pool": ("GlobalAveragePool",),
}


@dataclass(frozen=True, slots=True)
class LayerQuant:
    """How one layer runs: its ONNX scope (the torch module name), its kind (``conv``,
    ``linear``, ``matmul``: activation × activation, ``add``: a residual add of two
    activations, ``pool``: a global average pool), the grids of its quantized inputs (None =
    float input), its weight grid (None = float weights) and, for an add or pool, the grid
    of its output (QLinearAdd / QLinearGlobalAveragePool write their output quantized)."""

    name: str
    kind: str
    inputs: tuple[ActGrid | None, ...]
    weight: WeightGrid | None = None
    output: ActGrid | None = None

    def __post_init__(self) -> None:
        if self.kind not in LAYER_OPS:
            raise ValueError(f"unknown layer kind {self.kind!r} (valid: {', '.join(LAYER_OPS)})")

    @property
    def integer(self) -> bool:
        """Runs on integer kernels: every operand (and an add's or pool's output) quantized."""
        if self.kind in ("add", "pool"):
            return self.output is not None and all(g is not None for g in self.inputs)
        if self.kind == "matmul":
            return all(g is not None for g in self.inputs)
        return self.inputs[0] is not None and self.weight is not None


def scope_of(node: onnx.NodeProto) -> str:
    """The torch module name of a node exported by the TorchScript exporter
    (``/blocks.0/attn/q/MatMul`` → ``blocks.0.attn.q``)."""
    return node.name.rsplit("/", 1)[0].lstrip("/").replace("/", ".")
