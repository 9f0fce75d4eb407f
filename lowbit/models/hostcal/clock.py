"""The core's running clock, measured rather than read.

Every fitted constant of the host profile is in cycles, and the physical-peak bounds
(:data:`lowbit.models.hostcal.isa.PEAK_MACS_PER_CYCLE`) are in MACs per cycle, so the clock
that turns seconds into cycles must be the one the core runs at. ``/proc/cpuinfo``'s
``cpu MHz`` often is not: a virtual machine reports the nominal (TSC) frequency, and a bare
core turbo-boosts above it. On an Intel Xeon (AMX-INT8) under KVM it read 2.10 GHz while the
core ran one thread at ~2.87 GHz, so the FP32 peak bound at the nominal clock was 27 % too
low, clamped the fitted FP32 rate at it and left FP32 convs predicted 20-50 % slow.

The measurement: a chain of dependent register-to-register integer adds (``add rax, rdx``),
one cycle of latency each on every x86-64 core of the last two decades, none removable by
the renamer (unlike ``add reg, imm``, which Golden Cove folds: such a chain ran at "16 GHz").
Its machine code is placed in an executable page and called through :mod:`ctypes`; cycles
per second = adds / seconds, the least disturbed of several runs kept (a shared machine only
ever makes a run slower). Where an executable page cannot be mapped (a hardened kernel) or
the machine is not x86-64, :func:`measured_clock_hz` returns ``None`` and the caller keeps
the OS's figure, saying so.

The clock also moves *while* a calibration runs: on the Intel Xeon above, one busy core read
3.09-3.83 GHz within two minutes, a conv took 392-490 us with it, and the conv's cycles
(its time times the clock read beside it) stayed within 1468-1522 thousand in 10-second
windows. So every timing is taken inside :func:`at_reference_clock`: under a
:func:`clock_track` (a calibration's, a check's), the clock is read just before and after
(three chains of 300,000 adds, a third of a millisecond) and the seconds come back as seconds
at the track's reference clock -- the same cycles at one clock -- and every reading is kept.

A clock does not see a virtual core that shares its physical core with another tenant's
thread: the add chain's latency stays, while the vector units' throughput -- what the INT8
and float kernels live on -- is split. So each reading also times a vector-throughput probe
(:func:`vector_probe`: independent SSE2 adds) and records its adds per cycle; a timing whose
readings fell well below a quiet core's ratio ran on a shared core (:meth:`ClockTrack.quiet`), and
the calibration's passes (:func:`lowbit.models.hostcal.quiet.least_disturbed`) choose among
the quiet ones and measure the others again. Converting a shared core's timing by the probe
instead does not work: a conv network ran 1.64x slower where the probe read 1.55x, and
single convs so converted came out 10-25 % fast.
"""

from __future__ import annotations

import ctypes
import math
import mmap
import platform
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

__all__ = [
    "ADDS_PER_ITERATION",
    "QUIET_SHARE",
    "VECTOR_OPS_PER_ITERATION",
    "ClockTrack",
    "active_track",
    "add_chain",
    "at_reference_clock",
    "clock_track",
    "measured_clock_hz",
    "vector_probe",
    "seconds_clock_hz",
    "with_clock_track",
    "with_running_clock",
]

T = TypeVar("T")

#: dependent adds in one loop iteration (the loop's own decrement and branch run beside them)
ADDS_PER_ITERATION = 32
#: independent vector adds in one iteration of the throughput probe (:func:`vector_probe`)
VECTOR_OPS_PER_ITERATION = 28

_X86_64 = ("x86_64", "amd64")


def _x86_64_code() -> bytes:
    """``uint64 f(uint64 n)``: ``n`` iterations of :data:`ADDS_PER_ITERATION` dependent
    ``add rax, rdx`` (rdx = 1); returns rax = the number of adds done (System V ABI)."""
    prologue = bytes(
        [0x48, 0x89, 0xF9]  # mov rcx, rdi
        + [0x31, 0xC0]  # xor eax, eax
        + [0xBA, 0x01, 0x00, 0x00, 0x00]  # mov edx, 1
    )
    body = bytes([0x48, 0x01, 0xD0]) * ADDS_PER_ITERATION  # add rax, rdx
    loop_end = bytes([0x48, 0xFF, 0xC9])  # dec rcx
    back = -(len(body) + len(loop_end) + 2)  # jnz: to the loop's first add
    return prologue + body + loop_end + bytes([0x75, back & 0xFF, 0xC3])  # jnz; ret


def _x86_64_vector_code() -> bytes:
    """``uint64 f(uint64 n)``: ``n`` iterations of :data:`VECTOR_OPS_PER_ITERATION`
    independent SSE2 ``paddd xmm0..6, xmm7`` (seven chains: the vector ALUs' throughput, not
    their latency, bounds it); returns ``n`` (System V ABI: every xmm register is the
    caller's to lose)."""
    prologue = bytes([0x48, 0x89, 0xF9, 0x48, 0x89, 0xF8])  # mov rcx, rdi; mov rax, rdi
    adds = [bytes([0x66, 0x0F, 0xFE, 0xC0 | (reg << 3) | 7]) for reg in range(7)]
    body = b"".join(adds) * (VECTOR_OPS_PER_ITERATION // 7)  # paddd xmm{reg}, xmm7
    loop_end = bytes([0x48, 0xFF, 0xC9])  # dec rcx
    back = -(len(body) + len(loop_end) + 2)
    return prologue + body + loop_end + bytes([0x75, back & 0xFF, 0xC3])  # jnz; ret


class _AddChain:
    """Machine code in an executable page (the add chain unless ``code`` says otherwise);
    callable as ``chain(iterations) -> what the code returns``."""

    def __init__(self, code: bytes | None = None) -> None:
        code = _x86_64_code() if code is None else code
        self._page = mmap.mmap(
            -1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC
        )
        self._page.write(code)
        address = ctypes.addressof(ctypes.c_char.from_buffer(self._page))
        self._call = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_uint64)(address)

    def __call__(self, iterations: int) -> int:
        return int(self._call(max(int(iterations), 1)))


def add_chain():
    """The compiled add chain, or ``None`` where it cannot run here (not x86-64, or no
    executable page allowed)."""
    if platform.machine().lower() not in _X86_64 or not hasattr(mmap, "PROT_EXEC"):
        return None
    try:
        return _AddChain()
    except (OSError, ValueError, TypeError):
        return None


def vector_probe():
    """The compiled vector-throughput probe (:func:`_x86_64_vector_code`), or ``None`` where
    it cannot run. Where a virtual core shares its physical core with another tenant's
    thread, the vector units' throughput drops while the add chain's latency-bound clock
    does not move: on an AMD EPYC Zen 3 (AVX2) under KVM, a 8 -> 32 INT8 conv network ran
    455-910 us in one minute with the clock steady at 2.8-3.1 GHz; its time followed this
    probe's rate (correlation -0.78, -0.43 with the clock), 540-565 us when the probe ran at
    its best (3.9 vector adds per cycle), ~900 us at 2.5 per cycle."""
    if add_chain() is None:
        return None
    try:
        return _AddChain(_x86_64_vector_code())
    except (OSError, ValueError, TypeError):
        return None


def measured_clock_hz(*, runs: int = 9, cycles_per_run: float = 3e7) -> float | None:
    """The core's clock while it runs one busy thread, in Hz: the fastest of ``runs`` add
    chains of about ``cycles_per_run`` cycles each (10 ms at 3 GHz), after one to wake the
    core from idle. ``None`` where the chain cannot run (module docstring)."""
    chain = add_chain()
    if chain is None:
        return None
    iterations = int(cycles_per_run // ADDS_PER_ITERATION)
    chain(iterations)  # turbo ramps up
    timed = _timed_chains(chain, iterations=iterations, runs=max(runs, 1))
    if any(adds != iterations * ADDS_PER_ITERATION or s <= 0 for adds, s in timed):
        return None  # the chain did not run as written: trust the OS instead
    return max(adds / s for adds, s in timed)


def _timed_chains(chain, *, iterations: int, runs: int) -> list[tuple[int, float]]:
    """(adds done, seconds) of ``runs`` calls of ``chain(iterations)``."""
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        adds = chain(iterations)
        out.append((adds, time.perf_counter() - start))
    return out


def with_running_clock(info: dict) -> dict:
    """``info`` (:func:`lowbit.models.hostcal.isa.cpu_info`) with ``clock_hz`` measured
    (to 10 MHz) where the add chain runs; ``nominal_clock_hz`` keeps the OS's figure and
    ``clock_source`` says which one ``clock_hz`` is. Called again on its own result, the
    reading joins the earlier ones (``clock_readings_hz``) and ``clock_hz`` is their median.
    A calibration reads it once, at its start: the reference of its :func:`clock_track`,
    which reads the clock beside every timing (with the faster of two readings between
    phases, two calibrations in a row had measured 2.88 and 3.24 GHz and every constant in
    cycles moved with it)."""
    measured = measured_clock_hz()
    nominal = float(info.get("nominal_clock_hz", info["clock_hz"]))
    readings = [float(r) for r in info.get("clock_readings_hz", ())]
    if measured is not None:
        readings.append(measured)
    out = {**info, "nominal_clock_hz": nominal, "clock_source": "/proc/cpuinfo cpu MHz"}
    if readings:
        out["clock_readings_hz"] = readings
        out["clock_hz"] = round(float(np.median(readings)) / 1e7) * 1e7
        out["clock_source"] = (
            f"measured: a chain of dependent integer adds (the OS says {nominal / 1e9:.2f} GHz)"
        )
    return out


#: adds of one run of a reading beside a timing (~0.1 ms at 3 GHz) and runs per reading (the
#: fastest kept): consecutive readings on the Xeon agreed within 0.3 % (1 sd)
_TRACK_ADDS = 300_000
_TRACK_RUNS = 3


#: a reading that ended less than this long ago (seconds) stands for a new one: half of a
#: calibration's 21,000 readings were taken back to back, one after a timing and one before
#: the next (~5 s of its measuring on an AMD Zen 3, ~0.4 ms a reading)
_REUSE_S = 0.001

#: vector adds of one probe run beside a timing (~0.03 ms at 3 GHz: a run of a quarter of
#: that paid a tenth of it in the call; the fastest of :data:`_TRACK_RUNS` kept), the
#: percentile of the ratios read (vector adds per cycle) that stands for a quiet core (not
#: the best: a reading whose clock was read low overshot to 4.3 on a core that does 4), and
#: the share of it below which a timing counts as contended: on the Zen 3 above, single convs
#: timed at 1.8-1.9x their quiet time read 0.72-0.88 of the quiet ratio, the quiet timings
#: 0.95-1.0 (at 0.85, convs at 1.9x passed for quiet)
_PROBE_OPS = 280_000
#: how often :meth:`ClockTrack.wait_quiet` reads the probe (seconds)
_QUIET_POLL_S = 0.05
QUIET_PERCENTILE = 95.0
QUIET_SHARE = 0.92


@dataclass(slots=True)
class ClockTrack:
    """The clock read beside every timing under :func:`clock_track`: ``reference_hz`` is the
    clock the timings are converted to, ``readings_hz`` every reading taken. With a
    ``vector`` probe (:func:`vector_probe`), each reading also records the probe's vector adds
    per cycle (``ratios``): a timing whose readings fell below :data:`QUIET_SHARE` of a quiet
    core's ratio ran while another thread shared the core (:meth:`quiet`)."""

    reference_hz: float
    chain: Callable[[int], int]
    readings_hz: list[float] = field(default_factory=list)
    vector: Callable[[int], int] | None = None
    ratios: list[float] = field(default_factory=list)
    contended: int = 0
    # (when it ended, clock, ratio): the last reading reading_hz() took
    _last: tuple[float, float, float | None] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    # (readings it was taken over, the ratio): the cache of quiet_ratio()
    _quiet_ratio: tuple[int, float] = field(default=(0, 0.0), init=False, repr=False, compare=False)

    def reading_hz(self) -> float:
        """The clock now: the fastest of :data:`_TRACK_RUNS` short chains (recorded, with the
        probe's ratio beside it) -- or the last reading again, recorded again, when it ended
        less than :data:`_REUSE_S` ago (one timing's reading after it is the next one's
        before it: the rounds of a layer chain time its two depths back to back)."""
        now = time.perf_counter()
        if self._last is not None and now - self._last[0] < _REUSE_S:
            hz, ratio = self._last[1:]
        else:
            hz, ratio = self._read()
            self._last = (time.perf_counter(), hz, ratio)
        self._record(hz)
        if ratio is not None:
            self.ratios.append(ratio)
        return hz

    def _read(self) -> tuple[float, float | None]:
        """(the clock, the probe's vector adds per cycle or None), recorded nowhere."""
        timed = _timed_chains(
            self.chain, iterations=_TRACK_ADDS // ADDS_PER_ITERATION, runs=_TRACK_RUNS
        )
        hz = max((adds / s for adds, s in timed if s > 0), default=0.0) or self.reference_hz
        if self.vector is None:
            return hz, None
        iterations = _PROBE_OPS // VECTOR_OPS_PER_ITERATION
        runs = _timed_chains(self.vector, iterations=iterations, runs=_TRACK_RUNS)
        fastest = min((s for _, s in runs if s > 0), default=0.0)
        if fastest <= 0:
            return hz, None
        return hz, iterations * VECTOR_OPS_PER_ITERATION / fastest / hz

    def _record(self, hz: float) -> float:
        self.readings_hz.append(hz)
        return hz

    def mark(self) -> int:
        """Where the readings stand now (for :meth:`least_ratio`)."""
        return len(self.ratios)

    def least_ratio(self, since: int) -> float | None:
        """The least vector ratio read after :meth:`mark` ``since`` (None: none read)."""
        return min(self.ratios[since:], default=None)

    def quiet_ratio(self) -> float:
        """The ratio of a quiet core: the :data:`QUIET_PERCENTILE` of those read so far, or
        the one the last long track of this process found (:func:`clock_track` remembers
        it), whichever is higher (0 before any)."""
        if self._quiet_ratio[0] != len(self.ratios):
            value = float(np.percentile(self.ratios, QUIET_PERCENTILE)) if self.ratios else 0.0
            self._quiet_ratio = (len(self.ratios), value)
        return max(self._quiet_ratio[1], _REMEMBERED["quiet_ratio"])

    def quiet(self, ratio: float | None) -> bool:
        """Whether a timing whose least ratio was ``ratio`` ran on an uncontended core: at
        least :data:`QUIET_SHARE` of :meth:`quiet_ratio` (True without a probe)."""
        return ratio is None or ratio >= QUIET_SHARE * self.quiet_ratio()

    def wait_quiet(self, *, timeout_s: float) -> bool:
        """Read the probe every :data:`_QUIET_POLL_S` until a reading is quiet (True) or
        ``timeout_s`` has passed (False); True at once without a probe. The polls are not
        recorded (neither the clock's readings nor the ratios)."""
        if self.vector is None:
            return True
        deadline = time.perf_counter() + timeout_s
        while True:
            # not recorded: a poll in a spell of sharing is no reading beside a timing
            if self.quiet(self._read()[1]):
                return True
            if time.perf_counter() >= deadline:
                return False
            time.sleep(_QUIET_POLL_S)

    def summary(self) -> dict[str, Any]:
        """The readings in a few numbers (a sidecar's ``clock_track``); with the probe, its
        quiet and median ratio and the timings no pass caught quiet (``contended``)."""
        r = np.asarray(self.readings_hz or [self.reference_hz], dtype=float)
        out = {
            "reference_hz": self.reference_hz,
            "readings": len(self.readings_hz),
            "median_hz": round(float(np.median(r)) / 1e7) * 1e7,
            "low_hz": float(r.min()),
            "high_hz": float(r.max()),
        }
        if self.ratios:
            out |= {
                "vector_adds_per_cycle_quiet": round(self.quiet_ratio(), 3),
                "vector_adds_per_cycle_median": round(float(np.median(self.ratios)), 3),
                "contended": self.contended,
            }
        return out


_TRACK: ContextVar[ClockTrack | None] = ContextVar("lowbit_clock_track", default=None)


@contextmanager
def clock_track(*, reference_hz: float) -> Iterator[ClockTrack | None]:
    """Within the block, :func:`at_reference_clock` converts timings to ``reference_hz``;
    yields the track (its readings), or ``None`` where the add chain cannot run (timings then
    stay as measured)."""
    if not (math.isfinite(reference_hz) and reference_hz > 0):
        raise ValueError(f"reference_hz must be a positive finite number, got {reference_hz!r}")
    chain = add_chain()
    if chain is None:
        yield None
        return
    track = ClockTrack(reference_hz=float(reference_hz), chain=chain, vector=vector_probe())
    token = _TRACK.set(track)
    try:
        yield track
    finally:
        _TRACK.reset(token)
        if len(track.ratios) >= _REMEMBER_AFTER:
            _REMEMBERED["quiet_ratio"] = track.quiet_ratio()


#: a track of at least this many probe readings (a calibration reads ~20,000) leaves its
#: quiet ratio to the later tracks of the process (the last such track's, not the highest:
#: one that ran high would brand every later timing contended): a short one (a check timing a zoo of
#: networks for a minute) can fall in a spell of sharing from start to end and would take
#: the shared core's ratio for a quiet one -- in one bench run the zoo's nine networks came
#: out 1.25-1.5x their time of the run before, and none was re-measured
_REMEMBER_AFTER = 1000
_REMEMBERED = {"quiet_ratio": 0.0}


def active_track() -> ClockTrack | None:
    """The :func:`clock_track` timings are converted under now (None: none)."""
    return _TRACK.get()


def at_reference_clock(measure: Callable[[], T]) -> tuple[T, float]:
    """``(measure(), factor)``: seconds ``measure`` timed times ``factor`` are seconds at the
    active track's reference clock (the clock read before and after, averaged, over the
    reference: a core at clock f runs N cycles in N / f seconds). Without a track, factor 1
    and no reading."""
    track = _TRACK.get()
    if track is None:
        return measure(), 1.0
    before = track.reading_hz()
    result = measure()
    after = track.reading_hz()
    return result, (before + after) / 2 / track.reference_hz


def with_clock_track(info: dict, track: ClockTrack) -> dict:
    """``info`` after a calibration's timings under ``track``: ``clock_track`` its readings
    (``reference_hz``: the clock the sidecar's seconds are at) and ``clock_hz`` their median,
    the clock the profile turns simulated cycles into seconds at."""
    summary = track.summary()
    return {**info, "clock_track": summary, "clock_hz": summary["median_hz"]}


def seconds_clock_hz(info: dict) -> float:
    """The clock a sidecar's seconds are at (:func:`with_clock_track`): its track's reference,
    else (calibrations before v21: no track; a hand-edited sidecar whose reference is not a
    positive number) its ``clock_hz``."""
    track = info.get("clock_track")
    reference = track.get("reference_hz") if isinstance(track, dict) else None
    if (
        isinstance(reference, (int, float))
        and not isinstance(reference, bool)
        and math.isfinite(reference)
        and reference > 0
    ):
        return float(reference)
    return float(info["clock_hz"])
