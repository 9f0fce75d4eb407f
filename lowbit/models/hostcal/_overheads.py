"""What a host calibration writes under ``[overheads]`` from its measurements (split from
:mod:`lowbit.models.hostcal.calibration`): the Run call's cost from the chains' intercepts
(:func:`run_call_s`), and :func:`overheads`, the measured seconds as cycles at the profile's clock
with the fitted costs beside them."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["ORT_KINDS", "RUN_CHAIN_LAYER_S", "overheads", "run_call_rows", "run_call_s"]

#: overhead keys :func:`overheads` computes from measurements (the fit's others are copied)
_RECOMPUTED = (
    "layer_cycles",
    "gemm_cycles",
    "narrow_activation_cycles",
    "run_cycles",
    "float_run_cycles",
    "elementwise_cycles_per_element",
    "elementwise_cycles_per_row",
)

#: ONNX operator timed by :func:`lowbit.models.hostcal.elementwise.elementwise_costs` -> the
#: hwsim kinds (:data:`lowbit.hwsim.workload.ELEMENTWISE_KINDS`) that take its per-element
#: cost
ORT_KINDS = {
    "Add": ("add", "embedding"),
    "Relu": ("relu",),
    "LayerNormalization": ("layernorm",),
    "Softmax": ("softmax",),
    "Gelu": ("gelu",),
    "MaxPool": ("maxpool",),
    "Transpose": ("transpose",),
    "TransposeInward": ("transpose_inward",),
    "TransposeInwardNarrow": ("transpose_inward_narrow",),
    "TransposeStrided": ("transpose_strided",),
    "ActivationPass": ("activation_pass",),
    "QuantizeLinear": ("quantize",),
    "DequantizeLinear": ("dequantize",),
    "Concat": ("concat",),
    "Split": ("split",),
    "QLinearSoftmax": ("softmax_int8",),
    "QLinearAdd": ("add_int8",),
    "QLinearConcat": ("concat_int8",),
    "QLinearMul": ("mul_int8",),
    "ReorderInput": ("reorder_input",),
    "ReorderOutput": ("reorder_output",),
}


def overheads(
    *,
    gemm_op_cycles: float,
    run_s: float,
    float_run_s: float = 0.0,
    op_s: float,
    elementwise: dict[str, float],
    clock_hz: float,
    fitted: dict[str, Any] | None = None,
    per_row: dict[str, float] | None = None,
) -> dict[str, Any]:
    """The ``[overheads]`` table from the measurements: ``gemm_op_cycles`` (the fitted fixed
    cost of one GEMM operator) splits into ``layer_cycles`` = the dispatch cost every
    operator pays (``op_s``, at most the whole) and ``gemm_cycles`` = the rest; the Run
    call's (``run_s``; a float graph's, ``float_run_s``) and the per-element costs (seconds)
    become cycles at ``clock_hz``, as do the per-row costs (``per_row``, seconds, by
    operator); ``fitted``: the other fitted keys (per-pixel, per-image and requantization
    costs), copied."""
    layer = min(int(round(op_s * clock_hz)), int(round(gemm_op_cycles)))
    fitted = fitted or {}
    per_element = {}
    for op, seconds in sorted(elementwise.items()):
        for kind in ORT_KINDS.get(op, ()):
            per_element[kind] = float(f"{seconds * clock_hz:.4g}")
    return {
        "layer_cycles": layer,
        "gemm_cycles": int(round(gemm_op_cycles)) - layer,
        "narrow_activation_cycles": layer,
        "run_cycles": int(round(run_s * clock_hz)),
        "float_run_cycles": int(round(float_run_s * clock_hz)),
        **fitted,
        "elementwise_cycles_per_element": dict(sorted(per_element.items())),
        "elementwise_cycles_per_row": {
            kind: float(f"{seconds * clock_hz:.4g}")
            for op, seconds in sorted((per_row or {}).items())
            for kind in ORT_KINDS.get(op, ())
        },
    }


#: chains whose layers take at most this long give the Run call's cost (their intercept)
RUN_CHAIN_LAYER_S = 5e-6


def run_call_s(rows: list[dict[str, Any]], *, int8: bool) -> float:
    """The fixed cost of a Run call: the median intercept of the batch-1 chains of small
    layers (:data:`RUN_CHAIN_LAYER_S`). A chain of 200 us layers gives its intercept as a
    small difference of large timings (2 % of one layer is the whole Run cost: 0-1.4 us
    where small chains give 3.2-4.2), and one on a 56-pixel map adds its input's quantize
    and layout changes: among all batch-1 chains the median moved 22 % between two
    calibrations, from one cluster to the other. 0 without a batch-1 chain of that
    precision (INT8: any chain)."""
    chosen = [r["run_s"] for r in run_call_rows(rows, int8=int8)]
    return float(np.median(chosen)) if chosen else 0.0


def run_call_rows(rows: list[dict[str, Any]], *, int8: bool) -> list[dict[str, Any]]:
    """The chains whose intercepts give the Run call's cost (:func:`run_call_s`)."""
    precision = [r for r in rows if (r["precision"] == "int8") == int8]
    batch1 = [r for r in precision if r["batch"] == 1]
    small = [r for r in batch1 if r["layer_s"] <= RUN_CHAIN_LAYER_S]
    return small or batch1 or (rows if int8 else [])
