"""The running clock: the add chain's machine code, that it runs as written, and what the
calibration records when it cannot run."""

from __future__ import annotations

import platform

import pytest

from lowbit.models.hostcal import clock
from lowbit.models.hostcal.clock import (
    ADDS_PER_ITERATION,
    _x86_64_code,
    add_chain,
    measured_clock_hz,
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
