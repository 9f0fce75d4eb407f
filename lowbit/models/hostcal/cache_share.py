"""How much of the last-level cache keeps this core's weights between inferences.

The L3 a CPU reports is shared: with the other cores of its die and, on a virtual machine,
with other tenants. hwsim's warm rule (:mod:`lowbit.hwsim._warm_cache`) keeps a model's
weights in the largest cache they fit 90 % of; with the size the CPU reports, a network
whose weights fit that on paper but not the share it really gets is simulated with its
weights in L3 while they stream from DRAM at every inference. Measured on an AMD EPYC Zen 3
under KVM (32 MB L3 reported): chains of float 1 x 1024 -> 1024 GEMMs, 4 MB of weights a
layer, read them at 44 GB/s with 4 MB in all, 35 with 8, 18 with 16 and 12.5 (DRAM's rate)
with 24 and 32 -- about 7 MB of that L3 held this core's weights.

:func:`footprint_timings` times such chains at fractions of the reported L3
(:data:`FOOTPRINT_LAYERS` layers of an eighth of it each); :func:`weight_share_bytes` reads
the share off them: per footprint, the fraction of its bytes served at the smallest
footprint's rate rather than at DRAM's (the two rates' harmonic mix that gives its time),
times the footprint -- the most bytes any footprint kept in the cache.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "FOOTPRINT_LAYERS",
    "footprint_model",
    "footprint_timings",
    "weight_share_bytes",
    "with_weight_share",
]

#: layers of the timed chains, each holding an eighth of the reported L3 in float weights:
#: footprints of 1/8, 1/4, 1/2 and 3/4 of it
FOOTPRINT_LAYERS = (1, 2, 4, 6)
#: passes over the chains (the least disturbed kept per chain, quiet-gated)
FOOTPRINT_PASSES = 3


def _features(cache_bytes: int) -> int:
    """The side of a square float GEMM holding an eighth of ``cache_bytes`` (a multiple of
    64, at least 64)."""
    side = math.sqrt(cache_bytes / 8 / 4)
    return max(64, int(side // 64) * 64)


def footprint_model(features: int, layers: int):
    """ONNX model: ``layers`` float Gemms of 1 x ``features`` -> ``features``, each with its
    own weights (``4 * features**2`` bytes a layer), one after another."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(features + layers)
    scale = 1.0 / math.sqrt(features)
    inits, nodes, x = [], [], "x"
    for i in range(layers):
        w = (rng.standard_normal((features, features)) * scale).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("Gemm", [x, f"w{i}"], [f"y{i}"], transB=1))
        x = f"y{i}"
    graph = helper.make_graph(
        nodes,
        "footprint",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, features])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, features])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def footprint_timings(*, cache_bytes: int, repeats: int) -> list[dict[str, Any]]:
    """Seconds of a Run of each :func:`footprint_model` chain sized to ``cache_bytes`` (the
    reported L3), as rows ``{"layers", "weight_bytes", "run_s"}``: the least of
    :data:`FOOTPRINT_PASSES` passes over all chains, quiet-gated
    (:func:`~lowbit.models.hostcal.quiet.least_disturbed`), each the median of ``repeats``
    runs at the reference clock of an active clock track (the least chosen as timed)."""
    from lowbit.models.export.ort import ort_session
    from lowbit.models.hostcal.quiet import least_disturbed
    from lowbit.models.hostcal.timing import time_session

    features = _features(cache_bytes)
    x = np.random.default_rng(0).standard_normal((1, features)).astype(np.float32)
    sessions = {n: ort_session(footprint_model(features, n)) for n in FOOTPRINT_LAYERS}
    # the least as timed, then at the reference clock by its own reading (as the held-out
    # check keeps it: the least of converted times is the one whose reading erred lowest)
    timings = least_disturbed(
        lambda n: time_session(sessions[n], x, warmup=3, repeats=repeats),
        list(FOOTPRINT_LAYERS),
        key=lambda t: t.median_s / t.clock_factor,
        passes=FOOTPRINT_PASSES,
    )
    return [
        {"layers": n, "weight_bytes": 4 * features**2 * n, "run_s": float(t.median_s)}
        for n, t in zip(FOOTPRINT_LAYERS, timings, strict=True)
    ]


def weight_share_bytes(rows: list[dict[str, Any]], *, dram_bytes_per_s: float) -> float | None:
    """The bytes of weights the cache kept for this core (module docstring), from
    :func:`footprint_timings` rows and DRAM's copy bandwidth; ``None`` where the smallest
    footprint read no faster than DRAM (nothing to tell) or a row is unusable."""

    def positive(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0

    usable = all(
        isinstance(r, dict) and positive(r.get("run_s")) and positive(r.get("weight_bytes"))
        for r in rows
    )
    if not rows or not usable or not positive(dram_bytes_per_s) or math.isinf(dram_bytes_per_s):
        return None
    ordered = sorted(rows, key=lambda r: r["weight_bytes"])
    per_byte = [r["run_s"] / r["weight_bytes"] for r in ordered]  # seconds a byte
    if not all(math.isfinite(s) for s in per_byte):
        return None
    cached, dram = per_byte[0], 1.0 / dram_bytes_per_s
    if cached >= dram:
        return None
    kept = [
        min(1.0, max(0.0, (dram - s) / (dram - cached))) * r["weight_bytes"]
        for r, s in zip(ordered, per_byte, strict=True)
    ]
    return float(max(kept))


def with_weight_share(data: dict[str, Any], share: float) -> bool:
    """Size the profile data's ``l3`` level so that the warm rule keeps ``share`` bytes of
    weights there (:data:`~lowbit.hwsim._warm_cache.WARM_SHARE` of its size), never above
    the size the CPU reports nor below the next cache's; False (unchanged) where the data
    has no such level or the share falls outside those bounds."""
    from lowbit.hwsim._warm_cache import WARM_SHARE

    levels = {m["name"]: m for m in data["memory"]}
    l3, l2 = levels.get("l3"), levels.get("l2")
    if l3 is None:
        return False
    size = math.ceil(share / WARM_SHARE)
    if size >= l3["size_bytes"] or (l2 is not None and size <= l2["size_bytes"]):
        return False
    l3["size_bytes"] = int(size)
    return True
