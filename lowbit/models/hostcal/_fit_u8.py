"""The u8·u8 conv path's rate, fitted after the rest (split from :mod:`._fit`).

Where ONNX Runtime's u8·s8 kernels add pairs of products into a saturating int16 (AVX2
without VNNI), lowbit's export stores 8-bit weights as uint8, and a QLinearConv with uint8
weights never takes the direct (symmetric, int8-weight) kernel: it runs im2col and the u8·u8
GEMM library, which widens both operands to int16 first. On an AMD Zen 3, timed side by
side at batch 64, such a 3x3 conv took 1.4-1.8x the int8-weight one, a 1x1 1.5-2.2x.
Calibration times a few such convs there (:data:`lowbit.models.hostcal.conv.U8_CONV_SWEEP`);
with every other constant fixed, their GEMM's cycles per MAC are fitted alone -- as the FP32
rate is -- so they cannot move what the int8 kernels were fitted to.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lowbit.models.hostcal._fit_sim import sweep_kernel_s
from lowbit.models.hostcal._gauss_newton import _gauss_newton

__all__ = ["fit_u8"]


def fit_u8(
    rows, data: dict[str, Any], theta: dict[str, float], *, with_params, glue: float, min_mac: float
) -> dict[str, float]:
    """``{"u8mac": cycles per MAC per lane}`` of the u8·u8 GEMM under the conv-sweep rows
    ``rows`` (``"weights": "u8"``; their ``kernel_s`` already less the profiler's time),
    ``theta``'s other parameters fixed (``with_params`` turns them into profile data); empty
    without rows."""
    if not rows:
        return {}
    measured = np.array([r["kernel_s"] for r in rows])

    def simulate(th: dict[str, float]) -> np.ndarray:
        return sweep_kernel_s(rows, with_params(data, {**theta, **th}, glue))

    start = {"u8mac": theta.get("lib", theta["mac"])}
    return _gauss_newton(simulate, measured, 1.0 / measured, start, lower={"u8mac": min_mac})
