"""The running clock: the add chain's machine code, that it runs as written, and what the
calibration records when it cannot run."""

from __future__ import annotations

import platform

import numpy as np
import pytest

from lowbit.models.hostcal import clock
from lowbit.models.hostcal.clock import (
    ADDS_PER_ITERATION,
    QUIET_SHARE,
    VECTOR_OPS_PER_ITERATION,
    ClockTrack,
    _x86_64_code,
    _x86_64_vector_code,
    add_chain,
    at_reference_clock,
    clock_track,
    measured_clock_hz,
    seconds_clock_hz,
    vector_probe,
    with_clock_track,
    with_running_clock,
)

_PROLOGUE_BYTES = 10  # mov rcx, rdi; xor eax, eax; mov edx, 1


def test_the_loop_branches_back_to_its_first_add():
    code = _x86_64_code()
    jnz = len(code) - 3  # jnz rel8; ret
    assert code[jnz] == 0x75 and code[-1] == 0xC3
    offset = int.from_bytes(code[jnz + 1 : jnz + 2], "little", signed=True)
    assert jnz + 2 + offset == _PROLOGUE_BYTES
    body = code[_PROLOGUE_BYTES : jnz - 3]
    assert body == bytes([0x48, 0x01, 0xD0]) * ADDS_PER_ITERATION  # register adds only


def test_the_vector_probe_is_independent_sse2_adds_that_loop_back():
    """Seven paddd chains (xmm0..6 += xmm7, no register read before it is written twice in
    a row) fill the loop; the jump lands on its first add; it returns its iterations."""
    code = _x86_64_vector_code()
    prologue = 6  # mov rcx, rdi; mov rax, rdi
    jnz = len(code) - 3
    assert code[jnz] == 0x75 and code[-1] == 0xC3
    assert jnz + 2 + int.from_bytes(code[jnz + 1 : jnz + 2], "little", signed=True) == prologue
    body = code[prologue : jnz - 3]
    adds = [body[i : i + 4] for i in range(0, len(body), 4)]
    assert len(adds) == VECTOR_OPS_PER_ITERATION
    assert all(a[:3] == bytes([0x66, 0x0F, 0xFE]) and a[3] >> 6 == 3 for a in adds)
    assert [(a[3] >> 3) & 7 for a in adds[:7]] == list(range(7))
    assert {a[3] & 7 for a in adds} == {7}
    probe = vector_probe()
    if probe is not None:
        assert probe(1) == 1 and probe(1000) == 1000


def test_a_track_tells_quiet_timings_from_contended_ones(monkeypatch):
    """A timing is quiet when its least probe ratio is at least QUIET_SHARE of a quiet core's
    ratio, the 95th percentile of those read (one overshooting reading does not set it), or
    when nothing was read; the summary gives the ratios. On x86-64 a real track reads the
    probe beside the clock: a core does a few vector adds per cycle, never 0 or 64."""
    monkeypatch.setattr(clock, "_REMEMBERED", {"quiet_ratio": 0.0})  # no earlier track
    track = ClockTrack(reference_hz=3e9, chain=lambda n: n)
    assert track.quiet(None) and track.quiet(0.1)  # no ratio read yet
    mark = track.mark()
    track.ratios += [4.0] * 98 + [3.0, 9.0]
    assert track.least_ratio(mark) == 3.0 and track.least_ratio(track.mark()) is None
    assert track.quiet_ratio() == 4.0
    assert track.quiet(4.0 * QUIET_SHARE) and not track.quiet(3.0) and track.quiet(None)
    summary = track.summary()
    assert summary["vector_adds_per_cycle_quiet"] == 4.0 and summary["contended"] == 0
    assert summary["vector_adds_per_cycle_median"] == 4.0
    # waiting for a quiet core: a reading at once when it is quiet, none without a probe
    readings = iter([4.0, 2.0, 2.0])
    monkeypatch.setattr(ClockTrack, "_read", lambda self: (3e9, next(readings)))
    probed = ClockTrack(reference_hz=3e9, chain=lambda n: n, vector=lambda n: n)
    probed.ratios += [4.0] * 20
    assert probed.wait_quiet(timeout_s=0.0) and not probed.wait_quiet(timeout_s=0.0)
    assert len(probed.ratios) == 20 and probed.readings_hz == []  # polls are not recorded
    assert track.wait_quiet(timeout_s=10.0)  # no probe
    monkeypatch.undo()
    with clock_track(reference_hz=3e9) as real:
        at_reference_clock(lambda: None)
    if real is None or real.vector is None:
        return
    assert len(real.ratios) == 2 and all(0.5 < r < 64 for r in real.ratios)


def test_a_long_track_leaves_its_quiet_ratio_to_the_next(monkeypatch):
    """A track of many readings passes its quiet ratio on to the later tracks of the process
    (a short one may lie in a spell of sharing from start to end); a short one does not."""
    monkeypatch.setattr(clock, "_REMEMBERED", {"quiet_ratio": 0.0})
    monkeypatch.setattr(clock, "add_chain", lambda: lambda iterations: iterations)
    monkeypatch.setattr(clock, "vector_probe", lambda: None)
    with clock_track(reference_hz=3e9) as short:
        short.ratios += [4.0] * (clock._REMEMBER_AFTER - 1)
    with clock_track(reference_hz=3e9) as long:
        assert long.quiet_ratio() == 0.0
        long.ratios += [3.9] * clock._REMEMBER_AFTER
    with clock_track(reference_hz=3e9) as shared:
        shared.ratios += [2.8] * 10  # a whole short track in a spell of sharing
        assert shared.quiet_ratio() == 3.9 and not shared.quiet(2.8)


def test_the_chain_runs_as_written_on_x86_64_and_is_absent_elsewhere():
    chain = add_chain()
    if platform.machine().lower() not in ("x86_64", "amd64"):
        assert chain is None
    elif chain is None:  # only where the kernel refuses a writable executable page
        with pytest.raises(OSError):
            import mmap

            mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    else:
        assert chain(1) == ADDS_PER_ITERATION
        assert chain(1000) == 1000 * ADDS_PER_ITERATION


def test_a_chain_that_miscounts_is_not_trusted(monkeypatch):
    monkeypatch.setattr(clock, "add_chain", lambda: lambda iterations: iterations)
    assert measured_clock_hz(runs=2, cycles_per_run=1e4) is None


def test_a_measured_clock_is_rounded_and_the_os_figure_kept(monkeypatch):
    monkeypatch.setattr(clock, "measured_clock_hz", lambda: 2_873_456_789.0)
    info = with_running_clock({"clock_hz": 2.1e9, "model": "x"})
    assert info["clock_hz"] == pytest.approx(2.87e9)
    assert info["nominal_clock_hz"] == 2.1e9
    assert "dependent integer adds" in info["clock_source"] and "2.10 GHz" in info["clock_source"]


def test_without_the_chain_the_os_clock_stays(monkeypatch):
    monkeypatch.setattr(clock, "measured_clock_hz", lambda: None)
    info = with_running_clock({"clock_hz": 2.1e9})
    assert info["clock_hz"] == 2.1e9 and info["clock_source"] == "/proc/cpuinfo cpu MHz"


@pytest.mark.parametrize("readings", [(2.51e9, 3.3e9, 2.77e9), (3.3e9, 2.77e9, 2.51e9)])
def test_measured_again_the_median_reading_stays(monkeypatch, readings):
    # the clock moves while a calibration runs: its timings are converted at the typical
    # reading, whatever the order (the fastest would inflate every constant in cycles)
    found = iter(readings)
    monkeypatch.setattr(clock, "measured_clock_hz", lambda: next(found))
    info = {"clock_hz": 2.1e9}
    for _ in readings:
        info = with_running_clock(info)
    assert info["clock_hz"] == pytest.approx(2.77e9) and info["nominal_clock_hz"] == 2.1e9
    assert info["clock_readings_hz"] == list(readings)


def test_a_kernel_that_refuses_executable_pages_leaves_the_os_clock(monkeypatch):
    """A hardened kernel (SELinux execmem, PaX) refuses a writable executable mapping: no
    chain, no measurement, the OS's figure."""

    def refuse(*args, **kwargs):
        raise PermissionError("Operation not permitted")

    monkeypatch.setattr(clock.mmap, "mmap", refuse)
    assert add_chain() is None and measured_clock_hz(runs=1) is None
    assert with_running_clock({"clock_hz": 2.1e9})["clock_hz"] == 2.1e9


def test_a_second_reading_that_fails_keeps_the_first(monkeypatch):
    readings = iter([2.1e9, None])  # measured exactly the OS's figure, then no chain
    monkeypatch.setattr(clock, "measured_clock_hz", lambda: next(readings))
    info = with_running_clock(with_running_clock({"clock_hz": 2.1e9}))
    assert info["clock_hz"] == 2.1e9 and info["clock_source"].startswith("measured")


def _fake_track(monkeypatch, readings):
    """``clock_track`` on a machine whose add chain runs and reads ``readings`` in turn."""
    found = iter(readings)
    monkeypatch.setattr(clock, "add_chain", lambda: lambda iterations: iterations)
    monkeypatch.setattr(clock.ClockTrack, "reading_hz", lambda self: self._record(next(found)))


def test_a_timing_under_a_track_comes_back_at_the_reference_clock(monkeypatch):
    """A core at f runs N cycles in N / f seconds: the same work at the reference clock takes
    seconds * f / reference, f the mean of the readings before and after."""
    _fake_track(monkeypatch, [3.3e9, 3.1e9, 2.4e9, 2.4e9])
    with clock_track(reference_hz=3.0e9) as track:
        assert at_reference_clock(lambda: "timed") == ("timed", pytest.approx(3.2 / 3.0))
        assert at_reference_clock(lambda: 7)[1] == pytest.approx(0.8)
    assert track.readings_hz == [3.3e9, 3.1e9, 2.4e9, 2.4e9]
    summary = with_clock_track({"clock_hz": 3.0e9, "model": "x"}, track)
    # the profile runs at the median reading (to 10 MHz); the seconds stay at the reference
    assert summary["clock_hz"] == pytest.approx(2.75e9)
    assert summary["clock_track"]["readings"] == 4 and summary["clock_track"]["low_hz"] == 2.4e9
    assert seconds_clock_hz(summary) == 3.0e9
    assert at_reference_clock(lambda: 1) == (1, 1.0)  # the track ended with its block


def test_without_a_track_or_a_chain_timings_stay_as_timed(monkeypatch):
    assert at_reference_clock(lambda: 5) == (5, 1.0)
    assert seconds_clock_hz({"clock_hz": 2.1e9}) == 2.1e9  # a sidecar before v21
    for broken in ("3e9", float("nan"), -1.0, True, None, [3e9]):  # a hand-edited sidecar
        info = {"clock_hz": 2.1e9, "clock_track": {"reference_hz": broken}}
        assert seconds_clock_hz(info) == 2.1e9
    monkeypatch.setattr(clock, "add_chain", lambda: None)
    with clock_track(reference_hz=3e9) as track:
        assert track is None and at_reference_clock(lambda: 5) == (5, 1.0)
    for bad in (0.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="reference_hz"):
            with clock_track(reference_hz=bad):
                pass


def test_the_real_chain_reads_the_clock_beside_a_timing():
    """On x86-64 the track's readings are real clocks, and a timing's factor is their mean
    over the reference (no machine's core runs below 0.3 GHz or above 10 GHz); elsewhere no
    track."""
    with clock_track(reference_hz=3e9) as track:
        _, factor = at_reference_clock(lambda: sum(range(1000)))
    if add_chain() is None:
        assert track is None and factor == 1.0
        return
    assert len(track.readings_hz) == 2
    assert all(3e8 < r < 1e10 for r in track.readings_hz)
    assert factor == pytest.approx(sum(track.readings_hz) / 2 / 3e9)


def test_session_timings_carry_the_factor_they_were_converted_by(monkeypatch):
    """``time_session`` under a track: the median is at the reference clock and dividing by
    ``clock_factor`` gives the time as timed (the check reports both)."""
    from lowbit.models.hostcal import timing as bench

    class Session:
        def run_with_iobinding(self, binding):
            pass

    monkeypatch.setattr(bench, "bind", lambda session, *, x: None)
    monkeypatch.setattr(bench, "_timed_runs_s", lambda s, *, binding, runs: np.full(runs, 2e-3))
    _fake_track(monkeypatch, [3.6e9, 3.6e9, 3.6e9, 3.6e9])
    with clock_track(reference_hz=3.0e9):
        timing = bench.time_session(Session(), np.zeros(1), warmup=2, repeats=5)
        runs = bench.run_times_s(Session(), binding=None, runs=3)
    assert timing.median_s == pytest.approx(2.4e-3) and timing.clock_factor == pytest.approx(1.2)
    assert timing.median_s / timing.clock_factor == pytest.approx(2e-3)
    assert runs == pytest.approx([2.4e-3] * 3)


def test_phase_clock_adds_up_phases_entered_again(monkeypatch):
    from lowbit.models.hostcal import timing

    now = iter([0.0, 1.0, 3.5, 4.0, 4.25, 5.0, 9.0, 10.04])
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(now))
    phase = timing.PhaseClock()  # made at 0
    with phase("gemm sweep"):  # 1.0 -> 3.5
        pass
    with phase("conv sweep"):  # 4.0 -> 4.25
        pass
    try:
        with phase("gemm sweep"):  # 5.0 -> 9.0, raising: the time still counts
            raise ValueError
    except ValueError:
        pass
    assert phase.summary() == {"gemm sweep": 6.5, "conv sweep": 0.2, "total": 10.0}


def test_a_reading_right_after_the_last_is_that_reading_again(monkeypatch):
    """One timing's reading after it is the next one's before it when they are back to back
    (less than _REUSE_S apart): recorded again, not read again; a reading later than that,
    counted from the last fresh one, is read afresh."""
    from types import SimpleNamespace

    now = [0.0]
    monkeypatch.setattr(clock, "time", SimpleNamespace(perf_counter=lambda: now[0]))
    reads = iter([(3.0e9, 4.0), (2.9e9, 3.5), (2.8e9, 3.9)])
    monkeypatch.setattr(ClockTrack, "_read", lambda self: next(reads))
    track = ClockTrack(reference_hz=3e9, chain=lambda n: n)
    assert track.reading_hz() == 3.0e9
    now[0] = 0.6 * clock._REUSE_S
    assert track.reading_hz() == 3.0e9  # reused
    now[0] = 1.2 * clock._REUSE_S  # within _REUSE_S of the last reading, not of the fresh one
    assert track.reading_hz() == 2.9e9
    now[0] = 5 * clock._REUSE_S
    assert track.reading_hz() == 2.8e9
    assert track.readings_hz == [3.0e9, 3.0e9, 2.9e9, 2.8e9]
    assert track.ratios == [4.0, 4.0, 3.5, 3.9]  # a timing's least ratio sees the reused one
