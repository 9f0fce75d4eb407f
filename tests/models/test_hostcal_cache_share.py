"""The share of the last-level cache that keeps this core's weights (hostcal.cache_share)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from lowbit.hwsim._warm_cache import WARM_SHARE
from lowbit.models.hostcal import cache_share

MB = 2**20

#: FP32 GEMM chains timed on an AMD EPYC Zen 3 under KVM (32 MB L3 reported; copy bandwidth
#: to DRAM 14.4 GB/s): 4 MB of weights a layer, 1, 2, 4 and 6 layers
ZEN3_KVM = [
    {"layers": 1, "weight_bytes": 4 * MB, "run_s": 94.4e-6},
    {"layers": 2, "weight_bytes": 8 * MB, "run_s": 242.1e-6},
    {"layers": 4, "weight_bytes": 16 * MB, "run_s": 950.8e-6},
    {"layers": 6, "weight_bytes": 24 * MB, "run_s": 2004.9e-6},
]
DRAM = 14.36e9


def test_the_share_is_the_most_bytes_any_footprint_kept_in_the_cache():
    # golden: per footprint, the fraction h served at the 4 MB chain's rate rather than at
    # DRAM's, h = (1/r_dram - 1/r) / (1/r_dram - 1/r_cache): 8 MiB -> h 0.865, 6.9 MiB kept;
    # 16 MiB -> 0.27, 4.4 MiB; 24 MiB reads slower than a DRAM copy -> 0
    share = cache_share.weight_share_bytes(ZEN3_KVM, dram_bytes_per_s=DRAM)
    cached, dram = 94.4e-6 / (4 * MB), 1 / DRAM
    expected = (dram - 242.1e-6 / (8 * MB)) / (dram - cached) * 8 * MB
    assert share == pytest.approx(expected) and 6.9 * MB < share < 7.0 * MB
    # a dedicated L3: every footprint at the cache's rate -> the largest is all kept
    quiet = [{**r, "run_s": 94.4e-6 * r["layers"]} for r in ZEN3_KVM]
    assert cache_share.weight_share_bytes(quiet, dram_bytes_per_s=DRAM) == 24 * MB
    # the order of the rows does not matter
    assert cache_share.weight_share_bytes(ZEN3_KVM[::-1], dram_bytes_per_s=DRAM) == share


def test_no_share_where_the_timings_cannot_tell_one():
    slow = [{**r, "run_s": 2 * r["weight_bytes"] / DRAM} for r in ZEN3_KVM]  # all DRAM-bound
    broken = [{**ZEN3_KVM[0], "run_s": 0.0}, *ZEN3_KVM[1:]]
    hostile = [{**ZEN3_KVM[0], "weight_bytes": "4 MB"}, *ZEN3_KVM[1:]]
    nan = [{**ZEN3_KVM[0], "run_s": float("nan")}, *ZEN3_KVM[1:]]
    for rows in ([], slow, broken, hostile, nan, [None], [{}]):
        assert cache_share.weight_share_bytes(rows, dram_bytes_per_s=DRAM) is None
    for dram in (0.0, float("inf"), True):
        assert cache_share.weight_share_bytes(ZEN3_KVM, dram_bytes_per_s=dram) is None


def test_the_l3_level_is_sized_so_the_warm_rule_keeps_the_share():
    def data(l3: int = 32 * MB):
        return {
            "memory": [
                {"name": "dram", "size_bytes": 2**34},
                {"name": "l3", "size_bytes": l3},
                {"name": "l2", "size_bytes": 512 * 1024},
            ]
        }

    d = data()
    assert cache_share.with_weight_share(d, 7 * MB)
    l3 = d["memory"][1]["size_bytes"]
    assert WARM_SHARE * l3 == pytest.approx(7 * MB, abs=1)
    # never above what the CPU reports, never down to the next cache: unchanged
    for share in (31 * MB, 0.4 * MB):
        d = data()
        assert not cache_share.with_weight_share(d, share)
        assert d["memory"][1]["size_bytes"] == 32 * MB
    assert not cache_share.with_weight_share({"memory": [{"name": "dram", "size_bytes": 1}]}, MB)


def test_a_footprint_chain_holds_its_layers_own_weights():
    features = cache_share._features(32 * MB)
    assert features == 1024 and cache_share._features(2 * MB) == 256
    assert cache_share._features(1024) == 64  # never below one block
    model = cache_share.footprint_model(64, 3)
    onnx.checker.check_model(model)
    weights = [onnx.numpy_helper.to_array(t) for t in model.graph.initializer]
    assert [w.shape for w in weights] == [(64, 64)] * 3
    assert [n.op_type for n in model.graph.node] == ["Gemm"] * 3
    # distinct weights: the footprint is every layer's, not one matrix read three times
    assert not np.array_equal(weights[0], weights[1])


def test_footprints_are_timed_per_chain_in_passes(monkeypatch):
    """Each chain is timed once per pass (the least kept), its bytes the layers' weights."""
    from lowbit.models.hostcal import quiet, timing

    monkeypatch.setattr(quiet, "active_track", lambda: None)
    timed = []

    class Timed:
        def __init__(self, s: float) -> None:
            self.median_s, self.clock_factor = s, 1.0

    def fake(session, x, *, warmup, repeats):
        timed.append(int(session.get_outputs()[0].name[1:]) + 1)  # "y{n - 1}": n layers
        return Timed(1e-4 * len(timed))

    monkeypatch.setattr(timing, "time_session", fake)
    rows = cache_share.footprint_timings(cache_bytes=2 * MB, repeats=5)
    assert [r["layers"] for r in rows] == list(cache_share.FOOTPRINT_LAYERS)
    assert [r["weight_bytes"] for r in rows] == [4 * 256**2 * n for n in (1, 2, 4, 6)]
    assert timed == list(cache_share.FOOTPRINT_LAYERS) * cache_share.FOOTPRINT_PASSES
    # the least of each chain's passes: its first
    assert [r["run_s"] for r in rows] == pytest.approx([1e-4, 2e-4, 3e-4, 4e-4])


def test_a_footprint_keeps_its_least_time_as_timed_not_after_the_clock_conversion(monkeypatch):
    """Three passes of a chain, one converted by a clock reading that erred low: the least as
    timed is kept, at the reference clock by its own reading (the held-out check's rule)."""
    from lowbit.models.hostcal import quiet, timing

    monkeypatch.setattr(quiet, "active_track", lambda: None)
    passes = [(1.00e-4, 0.90), (0.98e-4, 1.0), (1.01e-4, 1.0)]  # (as timed, clock factor)
    calls = []

    class Timed:
        def __init__(self, timed: float, factor: float) -> None:
            self.median_s, self.clock_factor = timed * factor, factor

    def fake(session, x, *, warmup, repeats):
        calls.append(session)
        return Timed(*passes[(len(calls) - 1) // len(cache_share.FOOTPRINT_LAYERS)])

    monkeypatch.setattr(timing, "time_session", fake)
    rows = cache_share.footprint_timings(cache_bytes=2 * MB, repeats=5)
    assert [r["run_s"] for r in rows] == pytest.approx([0.98e-4] * len(rows))
