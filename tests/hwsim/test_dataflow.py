"""Compute mappings: the SCALE-Sim fold model (os / ws / is) and the vector lane model.

Golden values are computed by hand from the SCALE-Sim v3.0.0 fold formula (as its
``scalesim/compute/`` operand-matrix code counts cycles; restated in
lowbit/hwsim/engines/dataflows.py):

    os: S_r = M, S_c = N, T = K, cycles per fold = R + C + T - 2
    ws: S_r = K, S_c = N, T = M, cycles per fold = 2R + C + T - 2
    is: S_r = K, S_c = M, T = N, cycles per fold = 2R + C + T - 2
    cycles = ceil(S_r / R) * ceil(S_c / C) * cycles_per_fold - 1
"""

from __future__ import annotations

import pytest

from lowbit import hwsim
from lowbit.hwsim.engines.dataflows import (
    MAPPINGS,
    InputStationary,
    OutputStationary,
    VectorMapping,
    WeightStationary,
    mapping_for,
)
from lowbit.hwsim.profile import Precision
from lowbit.hwsim.workload import Compression, Conv2d, Linear


def _unit(make_target, **kw):
    return make_target(**kw).compute


# M=64, N=48, K=40 on an 8x8 array:
#   os: ceil(64/8)*ceil(48/8) = 48 folds * (8+8+40-2 = 54) - 1 = 2591
#   ws: ceil(40/8)*ceil(48/8) = 30 folds * (16+8+64-2 = 86) - 1 = 2579
#   is: ceil(40/8)*ceil(64/8) = 40 folds * (16+8+48-2 = 70) - 1 = 2799
# on a 32x32 array:
#   os: 2*2 = 4 folds * (32+32+40-2 = 102) - 1 = 407
#   ws: 2*2 = 4 folds * (64+32+64-2 = 158) - 1 = 631
#   is: 2*2 = 4 folds * (64+32+48-2 = 142) - 1 = 567
# (SCALE-Sim 3.0.0 reports the same six numbers for this GEMM: tests/hwsim/data.)
@pytest.mark.parametrize(
    ("size", "dataflow", "expected"),
    [
        (8, "os", 2591),
        (8, "ws", 2579),
        (8, "is", 2799),
        (32, "os", 407),
        (32, "ws", 631),
        (32, "is", 567),
    ],
)
def test_fold_formula_golden(make_target, size, dataflow, expected):
    unit = _unit(make_target, rows=size, cols=size, dataflow=dataflow)
    assert mapping_for(unit).cycles(64, 48, 40, 1.0) == expected


@pytest.mark.parametrize("dataflow", ["os", "ws", "is"])
def test_engine_reports_fold_cycles_exactly(make_target, dataflow):
    """W8A8 on an INT8 array: compute_cycles is the fold formula, exactly (both engines)."""
    profile = make_target(rows=8, cols=8, dataflow=dataflow)
    layer = Linear(name="fc", in_features=40, out_features=48, tokens=64)
    expected = {"os": 2591, "ws": 2579, "is": 2799}[dataflow]
    for engine in ("analytic", "event"):
        assert hwsim.simulate_layer(layer, profile, engine=engine).compute_cycles == expected


def test_depthwise_sums_per_channel_layers(make_target):
    """SCALE-Sim runs a depthwise layer as one layer per channel and sums them, the -1
    included per channel: 12x12 input, 3x3 filter, 6 channels, no padding -> 10x10
    outputs: per channel M=100, N=1, K=9 on 8x8 os: ceil(100/8)=13 folds * (8+8+9-2 = 23)
    - 1 = 298 cycles; 6 channels -> 1788 (SCALE-Sim 3.0.0 reports 1788 for it)."""
    profile = make_target(rows=8, cols=8)
    layer = Conv2d(
        name="dw", in_h=12, in_w=12, in_c=6, out_c=6, k_h=3, k_w=3, out_h=10, out_w=10, groups=6
    )
    assert hwsim.simulate_layer(layer, profile).compute_cycles == 6 * 298 == 1788


def test_fused_pe_shortens_the_reduction(make_target):
    """A PE running m operand pairs per cycle computes an m-long dot product (BitFusion's
    fused multipliers feed one adder tree): the reduction becomes K' = ceil(K/m) wherever
    the dataflow maps K, fill and drain stay. 8x8 array, M=64 N=48 K=40."""
    unit = _unit(make_target, rows=8, cols=8)
    os = OutputStationary(unit)  # os streams K: 48 folds of 8+8+10-2
    assert os.cycles(64, 48, 40, 4.0) == 48 * (8 + 8 + 10 - 2) - 1
    # half-rate 16-bit activations (m = 0.5): the reduction takes twice as long
    assert os.cycles(64, 48, 40, 0.5) == 48 * (8 + 8 + 80 - 2) - 1
    ws = WeightStationary(unit)  # ws maps K on rows: ceil(ceil(40/4)/8) * ceil(48/8) folds
    assert ws.cycles(64, 48, 40, 1.0) == 5 * 6 * (16 + 8 + 64 - 2) - 1  # SCALE-Sim's 2579
    assert ws.cycles(64, 48, 40, 4.0) == 2 * 6 * (16 + 8 + 64 - 2) - 1
    assert ws.cycles(64, 48, 40, 0.5) == 10 * 6 * (16 + 8 + 64 - 2) - 1
    assert ws.cycles(1, 48, 40, 4.0) < ws.cycles(1, 48, 40, 1.0)  # one streamed row gains
    iss = InputStationary(unit)  # is maps K on rows too: ceil(ceil(40/3)/8) * ceil(64/8)
    assert iss.cycles(64, 48, 40, 3.0) == 2 * 8 * (16 + 8 + 48 - 2) - 1


def test_vector_lane_model(make_target):
    """rows reduce over K, cols produce N, cores split M (hwsim/profile.py convention):
    cycles = ceil(M/cores) * ceil(N/cols) * ceil(K/(rows*m)), or ceil(ceil(K/rows)/m)
    for m < 1. 4 cores of 8x16 lanes, M=10 N=40 K=100: 3 * 3 * ceil(100/8) = 117."""
    unit = _unit(make_target, kind="vector", rows=8, cols=16, cores=4, dataflow="vector")
    vec = VectorMapping(unit)
    assert vec.cycles(10, 40, 100, 1.0) == 3 * 3 * 13
    assert vec.cycles(10, 40, 100, 2.0) == 3 * 3 * 7  # ceil(100 / 16)
    assert vec.cycles(10, 40, 100, 0.25) == 3 * 3 * 13 * 4  # bit-serial: 1/(w*a)
    # multiples of the lanes run at peak: MACs / (rows*cols*cores*m)
    assert vec.cycles(8, 64, 128, 2.0) == 8 * 64 * 128 // (8 * 16 * 4 * 2)


def test_cores_share_systolic_folds(make_target):
    unit = _unit(make_target, rows=8, cols=8, cores=2)
    # 48 folds over 2 arrays: 24 * 54 - 1
    assert OutputStationary(unit).cycles(64, 48, 40, 1.0) == 24 * 54 - 1


def test_fold_cycles_never_beat_peak(make_target):
    """cycles >= MACs / (PEs * m) for every dataflow: the fold model only adds padding,
    fill and drain."""
    for name, cls in MAPPINGS.items():
        kind = "vector" if name == "vector" else "systolic"
        unit = _unit(make_target, kind=kind, rows=8, cols=4, cores=2, dataflow=name)
        for M, N, K in ((1, 1, 1), (7, 9, 11), (64, 48, 40), (100, 3, 300)):
            for m in (0.25, 0.5, 1.0, 4.0):
                assert cls(unit).cycles(M, N, K, m) >= M * N * K / (8 * 4 * 2 * m) - 1


def test_granularity_and_onchip_reads(make_target):
    unit = _unit(make_target, rows=8, cols=4)
    assert OutputStationary(unit).granularity() == (8, 4)
    assert WeightStationary(unit).granularity() == (1, 4)  # M is streamed
    assert InputStationary(unit).granularity() == (4, 1)  # N is streamed
    # weight stationary reads each weight once; output stationary once per row fold
    assert WeightStationary(unit).onchip_reads(16, 8, 8)[0] == 8 * 8
    assert OutputStationary(unit).onchip_reads(16, 8, 8)[0] == 8 * 8 * 2


def test_datasheet_peak_32x32(npu32):
    """A 32x32 INT8 array peaks at 1024 MACs/cycle (32*32 PEs). On a 1024^3 GEMM the fold
    model gives 1024 folds * (32+32+1024-2) - 1 cycles, i.e. 94.3% of peak; memory must
    not take much more than that."""
    layer = Linear(name="gemm", in_features=1024, out_features=1024, tokens=1024)
    r = hwsim.simulate_layer(layer, npu32)
    assert r.peak_macs_per_cycle == 1024
    assert r.compute_cycles == 1024 * (32 + 32 + 1024 - 2) - 1
    assert r.macs / (1024 * r.compute_cycles) == pytest.approx(0.9429, abs=1e-4)
    assert 0.85 < r.utilization <= r.macs / (1024 * r.compute_cycles)


def test_mapping_for_rejects_bad_dataflows(make_target):
    unit = _unit(make_target)
    with pytest.raises(ValueError, match="valid: os, ws, is, vector"):
        mapping_for(unit, dataflow="xs")
    with pytest.raises(ValueError, match="does not run"):
        mapping_for(unit, dataflow="vector")
    vector = _unit(make_target, kind="vector", dataflow="vector")
    with pytest.raises(ValueError, match="does not run"):
        mapping_for(vector, dataflow="os")


def test_bitflexible_precision_scales_compute(make_target):
    """BitFusion-style modes: m = (8/w)(8/a). W2A2 streams 16x faster than W8A8."""
    modes = tuple(
        Precision(w, a, (8 / w) * (8 / a), 0.1 * w * a / 64) for w in (2, 4, 8) for a in (2, 4, 8)
    )
    profile = make_target(rows=8, cols=8, precisions=modes)
    layer = Linear(name="fc", in_features=512, out_features=64, tokens=64)
    cyc = {
        bits: hwsim.simulate_layer(
            layer.with_compression(Compression(w_bits=bits, a_bits=bits)), profile
        ).compute_cycles
        for bits in (8, 4, 2)
    }
    # os: 8*8 = 64 folds * (8 + 8 + ceil(512/m) - 2) - 1
    assert cyc[8] == 64 * (14 + 512) - 1
    assert cyc[4] == 64 * (14 + 128) - 1
    assert cyc[2] == 64 * (14 + 32) - 1
