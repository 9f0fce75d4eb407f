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


def _contended_track(monkeypatch):
    """A track whose every timing reads a shared core (the probe at half the quiet ratio),
    made the active one, its wait for a quiet core instant."""
    from lowbit.models.hostcal import clock, quiet
    from lowbit.models.hostcal.clock import ClockTrack

    monkeypatch.setattr(clock, "_REMEMBERED", {"quiet_ratio": 0.0})
    track = ClockTrack(reference_hz=3e9, chain=lambda n: n)
    track.ratios += [4.0] * 20
    monkeypatch.setattr(quiet, "active_track", lambda: track)
    monkeypatch.setattr(ClockTrack, "wait_quiet", lambda self, timeout_s: False)
    return track


def _fake_clock(monkeypatch):
    """quiet's perf_counter made a counter the test advances (no wall clock)."""
    from lowbit.models.hostcal import quiet

    now = [100.0]
    monkeypatch.setattr(quiet.time, "perf_counter", lambda: now[0])
    return now


def test_extra_passes_keep_to_the_retry_budget(monkeypatch):
    """Each re-timing takes one (fake) second: with a floor of 2.5 s and no share, the first
    three run (the third starts with 0.5 s left) and the rest are cut; the share adds its
    part of the time spent on everything else; outside a budget, every extra pass runs."""
    from lowbit.models.hostcal import quiet

    track = _contended_track(monkeypatch)
    now = _fake_clock(monkeypatch)
    ran = []

    def run(index):
        now[0] += 1.0
        track.ratios.append(2.0)  # still contended
        ran.append(index)

    results = [[(1.0, 2.0)], [(1.0, 2.0)]]
    with quiet.retry_budget(share=0.0, floor_s=2.5) as budget:
        quiet.again_until_quiet(results, run=run)
        # the third re-timing started with 0.5 s left and ran past it; both items still
        # contended when the budget stopped them: counted
        assert ran == [0, 1, 0] and budget.spent_s == 3.0 and budget.cut == 2
        quiet.again_until_quiet(results, run=run)  # nothing left: no pass at all
        assert len(ran) == 3 and budget.cut == 4
    assert budget.summary() == {"share": 0.0, "spent_s": 3.0, "cut": 4}

    ran.clear()
    with quiet.retry_budget(share=0.2, floor_s=0.0) as budget:
        now[0] += 10.0  # ten seconds of first passes: two seconds of extra ones
        quiet.again_until_quiet([*results, [(1.0, 4.0)]], run=run)  # a third, quiet item
        assert ran == [0, 1] and budget.spent_s == 2.0 and budget.cut == 2

    ran.clear()
    quiet.again_until_quiet(results, run=run)  # no budget: EXTRA_PASSES passes over both
    assert ran == [0, 1] * quiet.EXTRA_PASSES


def test_a_retry_budget_refuses_a_negative_or_infinite_share():
    import math

    import pytest

    from lowbit.models.hostcal import quiet

    for share, floor_s in ((-0.1, 0.0), (math.inf, 0.0), (0.1, math.nan), (0.1, -1.0)):
        with (
            pytest.raises(ValueError, match="share"),
            quiet.retry_budget(share=share, floor_s=floor_s),
        ):
            pass
