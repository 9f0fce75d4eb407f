"""Uniform affine grids: their parameters, rounding, and activation range calibration.

The grid rules (symmetric/asymmetric, signed/unsigned, the three calibration methods) are
described in :mod:`lowbit.models.compression.quant`, which re-exports everything here; the layer
wrappers live
there too. Rounding is ``torch.round``: half to even, as ONNX Runtime's QuantizeLinear and
its integer kernels' requantization round.
"""

from __future__ import annotations

import torch

__all__ = [
    "PERCENTILE",
    "MSE_RATIOS",
    "qparams",
    "fake_quantize",
    "ste_fake_quantize",
    "calibrate",
]

#: percentile used by the ``percentile`` calibration (of |x| for a symmetric grid).
PERCENTILE = 99.9
#: clipping ratios (of the min/max range) tried by the ``mse`` calibration.
MSE_RATIOS = torch.linspace(1.0 / 64, 1.0, 64)
#: at most this many elements are used to estimate percentiles and MSE (strided subsample).
_MAX_SAMPLES = 1 << 16
_TINY = 1e-12


def qparams(
    lo: torch.Tensor, hi: torch.Tensor, *, bits: int, symmetric: bool, signed: bool = True
) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """(scale, zero_point, qmin, qmax) for ranges [lo, hi] (scalars or per-channel vectors).

    ``signed`` only matters for a symmetric grid (see the module docstring).
    """
    lo = torch.minimum(lo, torch.zeros_like(lo))
    hi = torch.maximum(hi, torch.zeros_like(hi))
    if symmetric:
        if signed:
            qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
            scale = torch.maximum(-lo, hi) / (2 ** (bits - 1) - 0.5)
        else:
            qmin, qmax = 0, 2**bits - 1
            scale = hi / qmax
        scale = scale.clamp_min(_TINY)
        return scale, torch.zeros_like(scale, dtype=torch.int64), qmin, qmax
    qmin, qmax = 0, 2**bits - 1
    scale = ((hi - lo) / qmax).clamp_min(_TINY)
    zero_point = torch.round(-lo / scale).clamp(qmin, qmax).to(torch.int64)
    return scale, zero_point, qmin, qmax


def fake_quantize(
    x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, qmin: int, qmax: int
) -> torch.Tensor:
    """Round to the grid and map back to floats; scale/zero_point broadcast against ``x``."""
    q = torch.clamp(torch.round(x / scale) + zero_point, qmin, qmax)
    return (q - zero_point) * scale


def ste_fake_quantize(
    x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, qmin: int, qmax: int
) -> torch.Tensor:
    """Fake quantization with a clipped straight-through estimator.

    The gradient is the identity where ``x`` lies inside the grid's range and zero where it is
    clipped (as PyTorch's FakeQuantize does): without the clip, training cannot see that
    values beyond a fixed range saturate, and QAT with fixed activation ranges diverges.
    """
    if not (torch.is_grad_enabled() and x.requires_grad):
        return fake_quantize(x, scale, zero_point, qmin, qmax)
    with torch.no_grad():
        code = torch.round(x / scale) + zero_point
        inside = (code >= qmin) & (code <= qmax)
        fq = (code.clamp(qmin, qmax) - zero_point) * scale
    return torch.where(inside, x + (fq - x).detach(), fq)


def _subsample(x: torch.Tensor) -> torch.Tensor:
    flat = x.detach().reshape(-1).float()
    if flat.numel() > _MAX_SAMPLES:
        flat = flat[:: -(-flat.numel() // _MAX_SAMPLES)]  # deterministic stride
    return flat


def calibrate(
    samples: torch.Tensor, *, bits: int, symmetric: bool, method: str
) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """Per-tensor (scale, zero_point, qmin, qmax) for activations ``samples``.

    A symmetric grid is signed only if the samples have negative values.
    """
    x = samples.detach().float()
    lo, hi = x.min(), x.max()
    signed = bool(lo < 0)
    if method == "minmax":
        pass
    elif method == "percentile":
        flat = _subsample(x)
        if symmetric:
            bound = torch.quantile(flat.abs(), PERCENTILE / 100)
            lo, hi = (-bound if signed else lo.new_zeros(())), bound
        else:
            lo = torch.quantile(flat, 1 - PERCENTILE / 100)
            hi = torch.quantile(flat, PERCENTILE / 100)
    elif method == "mse":
        flat = _subsample(x)
        best = None
        for ratio in MSE_RATIOS:
            params = qparams(lo * ratio, hi * ratio, bits=bits, symmetric=symmetric, signed=signed)
            err = torch.mean((fake_quantize(flat, *params) - flat) ** 2).item()
            if best is None or err < best[0]:
                best = (err, params)
        return best[1]
    else:
        raise ValueError(f"unknown calibration {method!r} (valid: minmax, percentile, mse)")
    return qparams(lo, hi, bits=bits, symmetric=symmetric, signed=signed)
