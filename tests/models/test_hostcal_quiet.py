"""Timings kept from an undisturbed machine: which layer chains stream their weights from the
shared last-level cache, and how a second timing of them is merged."""

from __future__ import annotations

from lowbit.models.hostcal.bench import DEPTHS, FULL_SHAPES, streaming_shapes
from lowbit.models.hostcal.quiet import faster_rows


def test_streaming_shapes_are_the_chains_whose_weights_overflow_l2():
    # int8 weights of a 5-deep chain: conv C*C*9 per layer, GEMM F*F; 512 KiB of L2
    shapes = (("conv", 96, 14, 1), ("conv", 160, 14, 1), ("gemm", 256, 1, 64), ("gemm", 384, 1, 1))
    # 96: 414,720 bytes (fits); 160: 1,152,000; 256: 327,680 (fits); 384: 737,280
    assert streaming_shapes(shapes, cache_bytes=512 * 1024, depth=5) == (
        ("conv", 160, 14, 1),
        ("gemm", 384, 1, 1),
    )
    # products of two activations hold no weights; a larger L2 holds more of them
    assert streaming_shapes((("matmul", 4096, 1, 4),), cache_bytes=1, depth=5) == ()
    wide = streaming_shapes(FULL_SHAPES, cache_bytes=2 * 1024**2, depth=max(DEPTHS))
    assert set(wide) < set(streaming_shapes(FULL_SHAPES, cache_bytes=512 * 1024, depth=5))
    assert ("gemm", 1536, 1, 1) in wide


def _row(size: int, precision: str, layer_s: float) -> dict:
    return dict(kind="gemm", size=size, spatial=1, batch=1, precision=precision, layer_s=layer_s)


def test_faster_rows_keeps_the_faster_timing_of_the_same_chain():
    rows = [_row(384, "int8", 10e-6), _row(384, "fp32", 30e-6), _row(768, "int8", 20e-6)]
    again = [_row(384, "int8", 8e-6), _row(768, "int8", 25e-6)]
    merged = faster_rows(rows, again)
    # same order; 384's INT8 re-timed faster (taken whole), 768's slower (kept), FP32 untouched
    assert [r["layer_s"] for r in merged] == [8e-6, 30e-6, 20e-6]
    assert merged[0] is again[0] and merged[1] is rows[1] and merged[2] is rows[2]
    # a re-timing replaces only its own precision's row; one of another shape, nothing
    fp32 = _row(384, "fp32", 1e-6)
    assert faster_rows(rows, [fp32]) == [rows[0], fp32, rows[2]]
    assert faster_rows(rows, [_row(512, "int8", 1e-9)]) == rows
