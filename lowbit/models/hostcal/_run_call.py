"""The Run call's own cost, without the operators at a graph's border.

A chain of ``d`` identical layers times ``run + d * layer``; its intercept ``run`` is not the
Run call alone: it also runs the chain's input QuantizeLinear and output DequantizeLinear
(INT8), the layout changes into and out of channels-last around integer convs, and the
float graph's reorders into and out of the blocked layout -- the operators hwsim's ONNX
importer charges as layers of their own (:mod:`lowbit.hwsim._onnx_runtime`). Taken as the
Run call's cost, they were charged twice on every imported graph: on an Intel Xeon the
small chains' intercepts were 11.0 (GEMM) and 13.7-14.5 (conv) thousand cycles, and less
what the importer charges for their borders 8.1-8.7 thousand, whatever the chain
(a 16-row GEMM had been predicted 1.2x its time). :func:`run_call_cycles` gives that
remainder: each chain's intercept less its border operators as simulated on the fitted
profile, the median of them.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from lowbit.models.hostcal._overheads import run_call_rows

__all__ = ["border_cycles", "run_call_cycles"]


def border_cycles(row: dict[str, Any], profile) -> float:
    """Cycles hwsim's importer charges for the border operators of ``row``'s chain (one
    layer deep: every memory-only layer of it is at its border) on ``profile``."""
    import onnx

    from lowbit import hwsim
    from lowbit.hwsim.onnx_workload import import_onnx
    from lowbit.hwsim.workload import Elementwise
    from lowbit.models.hostcal.bench import chain_model

    model = chain_model(row["kind"], row["size"], row["spatial"], 1, row["precision"] == "int8")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "chain.onnx"
        onnx.save(model, str(path))
        # the chain's symbolic axis is "b": the batch of a conv or GEMM chain, a matmul's heads
        workload = import_onnx(path, batch=row["batch"], dims={"b": row["batch"]}).workload
    if row["precision"] != "int8":
        from lowbit.models.workloads import apply_bits

        workload = apply_bits(workload, w_bits=None, a_bits=None)
    return float(
        sum(
            hwsim.simulate_layer(layer, profile).total_cycles
            for layer in workload.layers
            if isinstance(layer, Elementwise)
        )
    )


def run_call_cycles(rows: list[dict[str, Any]], profile, *, int8: bool, clock_hz: float) -> int:
    """The Run call's cost in cycles: over the chains :func:`run_call_rows` picks, the median
    of each intercept (seconds at ``clock_hz``) less its :func:`border_cycles`; 0 without
    such a chain, else at least 1 (0 means "as run_cycles" for ``float_run_cycles``)."""
    chosen = run_call_rows(rows, int8=int8)
    if not chosen:
        return 0
    values = [r["run_s"] * clock_hz - border_cycles(r, profile) for r in chosen]
    return max(int(round(float(np.median(values)))), 1)
