"""The host profile's FP32 MAC rates (split from :mod:`lowbit.models.hostcal._fit`), fitted
on the FP32 layer chains with every INT8 parameter fixed: the deployed graphs are INT8, so
FP32 layers must not pull the INT8 fit. Which chains the float conv rate is fitted on is
:func:`full_pass_chains`'s rule; :func:`fit_fp32` is the fit."""

from __future__ import annotations

from typing import Any

import numpy as np

from lowbit.models.hostcal._fit_sim import chain_layer_s
from lowbit.models.hostcal._gauss_newton import _gauss_newton, log_error

__all__ = ["FP32_FULL_PASS_BLOCKS", "fit_fp32", "full_pass_chains"]

#: ONNX Runtime's blocked float conv kernel (NCHWc) computes up to this many blocks of
#: output channels per pass over its input, each input value broadcast once to all of them;
#: a conv of fewer channels runs narrower passes at a lower rate
FP32_FULL_PASS_BLOCKS = 4


def full_pass_chains(fp32: list[dict[str, Any]], *, lanes: int) -> list[dict[str, Any]]:
    """The FP32 chains the float rates are fitted on (all of them where none qualifies):
    every GEMM and matmul chain, and the conv chains of whole SIMD blocks of ``lanes``
    channels, at least :data:`FP32_FULL_PASS_BLOCKS` of them. ONNX Runtime runs a float conv
    off the block with a kernel that reads NCHW and reorders each output back from its
    blocked layout (on an Intel Xeon, 8-12 channel chains took 2-3x what the blocked rate
    gives them), which would drag the rate of every other float conv down by ~20 %; on an
    AMD Zen 3 (AVX2) the 8- and 16-channel chains ran at 0.5-0.9 of the wider ones' rate
    and pulled it so that held-out float convs of 64-512 channels came out 1.03-1.25 slow.
    The others are reported at their error, not fitted."""
    return [
        r
        for r in fp32
        if r["kind"] != "conv"
        or (r["size"] % lanes == 0 and r["size"] >= FP32_FULL_PASS_BLOCKS * lanes)
    ] or fp32


def fit_fp32(
    fp32, data, theta: dict[str, float], *, with_params, glue: float, depths, min_mac: float
) -> tuple[float, dict[str, float]]:
    """(mean squared log error, parameters) of the FP32 MAC rates fitted on the FP32 chains
    with the INT8 parameters ``theta`` fixed (``with_params`` turns them into profile data):
    ``m32``, the conv kernel's rate, and ``lib32``, the float GEMM library's speedup over it
    (its cycles per MAC fitted on the linear and matmul chains; 1 without them); ``m32`` 1
    without FP32 chains."""
    if not fp32:
        return 0.0, {"m32": 1.0, "lib32": 1.0}
    measured = np.array([r["layer_s"] for r in fp32])

    def params(th: dict[str, float]) -> dict[str, float]:
        return {"m32": 1.0 / th["mac32"], "lib32": th["mac32"] / th.get("gemm32", th["mac32"])}

    def simulate32(th: dict[str, float]) -> np.ndarray:
        return chain_layer_s(fp32, with_params(data, {**theta, **params(th)}, glue), depths)

    start = {"mac32": 0.5}
    if any(r["kind"] != "conv" for r in fp32) and any(r["kind"] == "conv" for r in fp32):
        start["gemm32"] = 0.5
    fitted = _gauss_newton(
        simulate32,
        measured,
        1.0 / measured,
        start,
        lower=dict.fromkeys(start, min_mac),
    )
    return float(np.mean(log_error(simulate32(fitted), measured))), params(fitted)
