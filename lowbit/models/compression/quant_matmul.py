"""Fake-quantized attention products: ``a @ b`` with both operands (activations) on grids.

:class:`QuantMatMul` replaces a :class:`~lowbit.models.graph.MatMulSite` when a plan gives it
``a_bits``: each operand gets its own per-tensor activation grid, calibrated like a layer
input (:mod:`lowbit.models.compression.quant`), and is fake-quantized with a straight-through
estimator. There are no weights: ``w_bits`` equals ``a_bits``.
"""

from __future__ import annotations

import torch

from lowbit.models.compression._grid import calibrate, ste_fake_quantize
from lowbit.models.graph import MatMulSite

__all__ = ["QuantMatMul"]


class QuantMatMul(MatMulSite):
    """``a @ b`` with both operands fake-quantized at ``a_bits`` (per tensor each).

    ``act_scale``/``act_zero_point`` belong to operand ``a``, ``b_scale``/``b_zero_point``
    to operand ``b``; ``w_bits`` equals ``a_bits`` (both operands are activations).
    """

    def __init__(self, *, a_bits: int | None, symmetric: bool):
        super().__init__()
        self.w_bits = self.a_bits = a_bits
        self.symmetric = symmetric
        self.act_qmin = self.act_qmax = self.b_qmin = self.b_qmax = 0
        for name in ("act_scale", "act_zero_point", "b_scale", "b_zero_point"):
            self.register_buffer(name, None)
        self.observed: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    def extra_repr(self) -> str:
        return f"a_bits={self.a_bits}, {'symmetric' if self.symmetric else 'asymmetric'}"

    def set_activation_range(
        self, samples: tuple[torch.Tensor, torch.Tensor], *, method: str
    ) -> None:
        if self.a_bits is None:
            return
        a, b = samples
        kw = dict(bits=self.a_bits, symmetric=self.symmetric, method=method)
        self.act_scale, self.act_zero_point, self.act_qmin, self.act_qmax = calibrate(a, **kw)
        self.b_scale, self.b_zero_point, self.b_qmin, self.b_qmax = calibrate(b, **kw)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self.observed is not None:
            self.observed.append((a.detach(), b.detach()))
        elif self.a_bits is not None and self.act_scale is not None:
            a = ste_fake_quantize(
                a, self.act_scale, self.act_zero_point, self.act_qmin, self.act_qmax
            )
            b = ste_fake_quantize(b, self.b_scale, self.b_zero_point, self.b_qmin, self.b_qmax)
        return a @ b
