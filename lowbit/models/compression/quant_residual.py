"""Fake-quantized residual adds and global average pools, computing ONNX Runtime's kernels.

The compression transforms replace the :class:`~lowbit.models.zoo.Add` modules and global
average pools that run on integer kernels once deployed
(:func:`lowbit.models.compression._residual_sites.quant_sites`) with these wrappers:

- :class:`QuantAdd` rounds both inputs to their grids (``a`` from the residual branch's
  last layer, ``b`` the shortcut) and its output to the grid the next layers read;
- :class:`QuantGlobalAvgPool` rounds its input and its output (the classifier's input).

Grids follow :mod:`lowbit.models.compression.quant` (signed symmetric grids are shifted by
128 into uint8 codes when deployed). Calibration observes the float inputs and outputs; an
add with a folded ReLU calibrates its output after the ReLU. In inference each wrapper
computes its ONNX Runtime kernel on the uint8 codes (:mod:`lowbit.models.compression.
_intadd`: ``QLinearAdd``, ``QLinearGlobalAveragePool``) and a sub-8-bit output grid clamps
to its codes (the exporter's ``Clip``), so the output is the INT8 model's to the bit. In
training (QAT) they fake-quantize with a straight-through estimator instead; in eval mode
with gradients the exact value is used with that estimator's gradient.
"""

from __future__ import annotations

import torch
from torch import nn

from lowbit.models.compression._grid import calibrate, ste_fake_quantize
from lowbit.models.compression._intadd import pool_output_scale, qlinear_add, qlinear_avgpool
from lowbit.models.zoo._base import Add

__all__ = ["QuantAdd", "QuantGlobalAvgPool"]


class _Grids:
    """Mixin: named activation grids ``<prefix>_scale``/``_zero_point``/``_qmin``/``_qmax``
    (``act`` is the first input, as on the other quantized layers)."""

    def _setup(self, prefixes: tuple[str, ...], *, a_bits, symmetric, calibration) -> None:
        self.w_bits = None
        self.a_bits, self.symmetric, self.calibration = a_bits, symmetric, calibration
        for prefix in prefixes:
            self.register_buffer(f"{prefix}_scale", None)
            self.register_buffer(f"{prefix}_zero_point", None)
            setattr(self, f"{prefix}_qmin", 0)
            setattr(self, f"{prefix}_qmax", 0)
        self.observed: list[tuple[torch.Tensor, ...]] | None = None

    def grid(self, prefix: str) -> tuple[torch.Tensor, torch.Tensor, int, int]:
        """(scale, zero_point, qmin, qmax) of grid ``prefix``."""
        return (
            getattr(self, f"{prefix}_scale"),
            getattr(self, f"{prefix}_zero_point"),
            getattr(self, f"{prefix}_qmin"),
            getattr(self, f"{prefix}_qmax"),
        )

    def _calibrate(self, prefix: str, samples: torch.Tensor, method: str) -> None:
        scale, zp, qmin, qmax = calibrate(
            samples, bits=self.a_bits, symmetric=self.symmetric, method=method
        )
        setattr(self, f"{prefix}_scale", scale)
        setattr(self, f"{prefix}_zero_point", zp)
        setattr(self, f"{prefix}_qmin", qmin)
        setattr(self, f"{prefix}_qmax", qmax)

    def _ready(self) -> bool:
        return self.a_bits is not None and self.act_scale is not None

    def _ste(self, x: torch.Tensor, prefix: str) -> torch.Tensor:
        return ste_fake_quantize(x, *self.grid(prefix))

    def _codes(self, x: torch.Tensor, prefix: str) -> torch.Tensor:
        """uint8 codes of ``x`` on grid ``prefix`` (float32)."""
        scale, zp, qmin, qmax = self.grid(prefix)
        q = torch.clamp(torch.round(x.detach() / scale) + zp, qmin, qmax)
        return (q + (128 if qmin < 0 else 0)).float()

    def _u8(self, prefix: str) -> tuple[float, int]:
        """(float32 scale, uint8 zero point) of grid ``prefix`` as the ONNX model stores it."""
        scale, zp, qmin, _ = self.grid(prefix)
        return float(scale.float()), int(zp) + (128 if qmin < 0 else 0)

    def _value(self, codes: torch.Tensor, prefix: str, like: torch.Tensor) -> torch.Tensor:
        """Dequantized output codes (clamped to a sub-8-bit grid), as DequantizeLinear."""
        scale, zp, qmin, qmax = self.grid(prefix)
        shift = 128 if qmin < 0 else 0
        codes = torch.clamp(codes, qmin + shift, qmax + shift)
        return ((codes - (int(zp) + shift)) * scale.float()).to(like.dtype)

    def _infer(self, fake, exact, *inputs: torch.Tensor) -> torch.Tensor:
        """``fake()`` in training; else ``exact()``, with ``fake``'s (straight-through)
        gradient when one is needed."""
        if self.training:
            return fake()
        if torch.is_grad_enabled() and any(x.requires_grad for x in inputs):
            value = fake()
            return value + (exact() - value).detach()
        return exact()


class QuantAdd(_Grids, Add):
    """``a + b`` with both inputs and the output fake-quantized at ``a_bits`` (per tensor).

    Grids: ``act_*`` of input ``a``, ``b_*`` of input ``b``, ``out_*`` of the output.
    ``relu``: a ReLU reading the output is folded into it (the output grid is calibrated
    after the ReLU, so its lowest code is the zero point). An add whose inputs differ in shape
    (broadcasting) stays float: ONNX Runtime's broadcast kernel rounds differently.
    """

    def __init__(self, *, a_bits: int | None, symmetric: bool, calibration: str, relu: bool):
        super().__init__()
        self._setup(
            ("act", "b", "out"), a_bits=a_bits, symmetric=symmetric, calibration=calibration
        )
        self.relu = relu

    def extra_repr(self) -> str:
        grid = "symmetric" if self.symmetric else "asymmetric"
        return f"a_bits={self.a_bits}, {grid}, relu={self.relu}"

    def set_activation_range(self, samples: tuple[torch.Tensor, ...], *, method: str) -> None:
        if self.a_bits is None:
            return
        a, b, out = samples
        self._calibrate("act", a, method)
        self._calibrate("b", b, method)
        self._calibrate("out", out.clamp_min(0) if self.relu else out, method)

    def _table(self) -> torch.Tensor:
        """The dequantized output for every pair of input codes (65,536 values, index
        a·256 + b), computed once per set of grids: cheaper than the kernel's arithmetic on
        every element of a batch."""
        key = (self._u8("act"), self._u8("b"), self._u8("out"), self.out_qmin, self.out_qmax)
        if self.__dict__.get("_table_key") != key:
            codes = torch.arange(256, dtype=torch.float32)
            a, b = torch.meshgrid(codes, codes, indexing="ij")
            c = qlinear_add(a, b, a_grid=key[0], b_grid=key[1], c_grid=key[2])
            self._lut = self._value(c, "out", c).reshape(-1)
            self._table_key = key
        return self._lut

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self.observed is not None:
            if a.shape != b.shape:
                self.a_bits = None
            self.observed.append((a.detach(), b.detach(), (a + b).detach()))
            return a + b
        if not self._ready():
            return a + b

        def fake() -> torch.Tensor:
            return self._ste(self._ste(a, "act") + self._ste(b, "b"), "out")

        def exact() -> torch.Tensor:
            index = (self._codes(a, "act") * 256 + self._codes(b, "b")).long()
            return self._table()[index].to(a.dtype)

        return self._infer(fake, exact, a, b)


class QuantGlobalAvgPool(_Grids, nn.AdaptiveAvgPool2d):
    """Global average pooling with fake-quantized input (``act_*``) and output (``out_*``)."""

    def __init__(self, output_size, *, a_bits: int | None, symmetric: bool, calibration: str):
        super().__init__(output_size)
        self._setup(("act", "out"), a_bits=a_bits, symmetric=symmetric, calibration=calibration)
        self.pixels = 0  # positions averaged, seen while calibrating

    def extra_repr(self) -> str:
        grid = "symmetric" if self.symmetric else "asymmetric"
        return f"{super().extra_repr()}, a_bits={self.a_bits}, {grid}"

    def set_activation_range(self, samples: tuple[torch.Tensor, ...], *, method: str) -> None:
        if self.a_bits is None:
            return
        x, pooled = samples
        self._calibrate("act", x, method)
        self._calibrate("out", pooled, method)
        scale = pool_output_scale(float(self.act_scale), float(self.out_scale), self.pixels)
        if scale != float(self.out_scale):
            self.out_scale = torch.tensor(scale, dtype=self.out_scale.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.observed is not None:
            pooled = super().forward(x)
            self.pixels = x[0, 0].numel()
            self.observed.append((x.detach(), pooled.detach()))
            return pooled
        if not self._ready():
            return super().forward(x)

        def fake() -> torch.Tensor:
            return self._ste(super(QuantGlobalAvgPool, self).forward(self._ste(x, "act")), "out")

        def exact() -> torch.Tensor:
            codes = qlinear_avgpool(
                self._codes(x, "act"), x_grid=self._u8("act"), y_grid=self._u8("out")
            )
            return self._value(codes, "out", x)

        return self._infer(fake, exact, x)
