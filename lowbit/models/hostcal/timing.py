"""The timing harness every host measurement goes through (split from
:mod:`lowbit.models.hostcal.bench`): an ONNX Runtime session's Run calls on an IOBinding
(the input bound once, the outputs left for ONNX Runtime to allocate, so a timed run is the
Run call alone), converted to a clock track's reference clock when one is active
(:mod:`lowbit.models.hostcal.clock`); :func:`time_session` gives the median and quartiles.
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from lowbit.models.hostcal.clock import at_reference_clock

__all__ = [
    "PhaseClock",
    "Timing",
    "bind",
    "budgeted_runs",
    "kernel_events",
    "run_times_s",
    "serialized",
    "time_session",
    "timing_of",
    "warm_runs_s",
    "warm_up",
]


@dataclass(frozen=True, slots=True)
class Timing:
    """Latency statistics of repeated runs (seconds)."""

    median_s: float
    q1_s: float
    q3_s: float
    runs: int
    #: the times are at a clock track's reference clock: as timed = these / clock_factor
    #: (1: no track, or the core ran at the reference; :mod:`lowbit.models.hostcal.clock`)
    clock_factor: float = 1.0

    @property
    def iqr_s(self) -> float:
        return self.q3_s - self.q1_s


def bind(session: Any, *, x: np.ndarray) -> Any:
    """An IOBinding of ``session`` with ``x`` bound once as its input and the outputs left
    for ONNX Runtime to allocate (so a timed run is the Run call alone)."""
    binding = session.io_binding()
    binding.bind_cpu_input(session.get_inputs()[0].name, np.ascontiguousarray(x))
    for out in session.get_outputs():
        binding.bind_output(out.name)
    return binding


def _timed_runs_s(session: Any, *, binding: Any, runs: int) -> np.ndarray:
    times = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter_ns()
        session.run_with_iobinding(binding)
        times[i] = time.perf_counter_ns() - start
    return times * 1e-9


def warm_up(
    session: Any, *, binding: Any, runs: int, budget_s: float = math.inf, least: int = 3
) -> float:
    """``runs`` Run calls, not kept (no clock reading beside them) -- fewer once they took
    ``budget_s``, never fewer than ``least`` (nor more than ``runs``); returns the median
    seconds of one, as timed (0 without runs), for :func:`budgeted_runs`."""
    times = warm_runs_s(
        lambda: float(_timed_runs_s(session, binding=binding, runs=1)[0]),
        runs=runs,
        budget_s=budget_s,
        least=least,
    )
    return float(np.median(times)) if times else 0.0


def warm_runs_s(
    timed_run: Callable[[], float], *, runs: int, budget_s: float = math.inf, least: int = 0
) -> list[float]:
    """The seconds of each ``timed_run()`` (one run, timed; no measurement keeps it): up to
    ``runs`` of them, fewer once they took ``budget_s``, never fewer than ``least`` (nor
    more than ``runs``) -- the warm-up of :func:`warm_up` and of a profiled kernel."""
    times: list[float] = []
    while len(times) < runs and (len(times) < least or sum(times) < budget_s):
        times.append(timed_run())
    return times


def budgeted_runs(runs: int, *, per_run_s: float, budget_s: float, least: int) -> int:
    """``runs``, or fewer -- as many as fit ``budget_s`` at ``per_run_s`` each, rounded up,
    never fewer than ``least`` -- for a run long enough that a dozen add little: on an AMD Zen 3 the
    calibration's eight longest layer chains (2.5-8 ms a run) and its large single convs took
    most of its three minutes, and a run of milliseconds varies by a few percent at most.
    Unknown ``per_run_s`` (0, NaN): ``runs``."""
    if not per_run_s > 0 or not math.isfinite(per_run_s):
        return runs
    return min(runs, max(least, math.ceil(budget_s / per_run_s)))


def kernel_events(path: str) -> list[tuple[str, str, float]]:
    """(node, operator, seconds) of every kernel event of ONNX Runtime's per-node profile
    file at ``path``, in the file's order. ONNX Runtime writes one event a line, its
    arguments last: only each kernel event's head (category, duration, name) is decoded,
    and a node's arguments once, for its operator -- decoding the whole file took 7 ms of
    each of a calibration's ~1,000 profiled single kernels on an AMD Zen 3 (the arguments,
    never used, are most of it), the heads about half that. A file in another layout (an
    event's line without its head first, or holding more than one event) goes through the
    JSON decoder whole."""
    with open(path) as f:
        text = f.read()
    try:
        return _kernel_event_lines(text)
    except (ValueError, KeyError, TypeError):  # another layout: decoded whole
        return [
            (e["name"].removesuffix("_kernel_time"), e["args"]["op_name"], e["dur"] * 1e-6)
            for e in json.loads(text)
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")
        ]


def _kernel_event_lines(text: str) -> list[tuple[str, str, float]]:
    """:func:`kernel_events` off the lines of ``text``; ValueError (or KeyError, TypeError)
    where a kernel event's line is not one event with its head before its arguments."""
    ops: dict[str, str] = {}
    out = []
    for line in text.splitlines():
        if '_kernel_time"' not in line:
            continue
        event = line.rstrip().rstrip(",")
        cut = event.find('"args"')
        if event.count('"cat"') != 1 or cut < 0:
            raise ValueError("not one event a line")
        head = json.loads(event[:cut].rstrip().rstrip(",") + "}")
        if head["cat"] != "Node" or not head["name"].endswith("_kernel_time"):
            continue
        node = head["name"].removesuffix("_kernel_time")
        if node not in ops:
            ops[node] = json.loads(event)["args"]["op_name"]
        out.append((node, ops[node], head["dur"] * 1e-6))
    return out


@functools.lru_cache(maxsize=256)
def serialized(build: Callable[..., Any], *args: Any, **kwargs: Any) -> bytes:
    """``build(*args, **kwargs)`` (an ONNX model) serialized, kept for the next call with
    the same arguments: a calibration times each single layer of its sweeps in several
    passes and rounds, and building the model again took a fifth of the GEMM sweep's time
    on an AMD Zen 3 (the sweeps' models are small: 10 MB for all of them)."""
    return build(*args, **kwargs).SerializeToString()


def _run_times_and_factor(session: Any, *, binding: Any, runs: int) -> tuple[np.ndarray, float]:
    times, factor = at_reference_clock(lambda: _timed_runs_s(session, binding=binding, runs=runs))
    return times * factor, factor


def run_times_s(session: Any, *, binding: Any, runs: int) -> np.ndarray:
    """Seconds of each of ``runs`` consecutive Run calls on ``binding`` (at the reference
    clock under a :func:`~lowbit.models.hostcal.clock.clock_track`)."""
    return _run_times_and_factor(session, binding=binding, runs=runs)[0]


def timing_of(times_s: np.ndarray, *, clock_factor: float = 1.0) -> Timing:
    """Median and quartiles of run times (seconds)."""
    q1, med, q3 = np.percentile(times_s, (25, 50, 75))
    return Timing(float(med), float(q1), float(q3), len(times_s), clock_factor)


def time_session(session: Any, x: np.ndarray, *, warmup: int = 10, repeats: int = 50) -> Timing:
    """Median and quartiles of ``repeats`` timed runs after ``warmup`` (IOBinding: input
    bound once, outputs allocated by ONNX Runtime, so the time is the Run call)."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
    binding = bind(session, x=x)
    if warmup:
        warm_up(session, binding=binding, runs=warmup)
    times, factor = _run_times_and_factor(session, binding=binding, runs=repeats)
    return timing_of(times, clock_factor=factor)


class PhaseClock:
    """Wall-clock seconds per phase of a calibration (its sidecar's ``phase_seconds``, which
    ``lowbit calibrate-host`` prints): ``with clock("conv sweep"): ...``; a phase entered
    again (the GEMM rounds, the data movement's) adds up. ``on_phase(name, seconds)`` is
    called as a phase starts, with the seconds since the clock was made."""

    def __init__(self, *, on_phase: Callable[[str, float], None] | None = None) -> None:
        self._start = time.perf_counter()
        self._on_phase = on_phase
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        begin = time.perf_counter()
        if self._on_phase is not None:
            self._on_phase(name, begin - self._start)
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - begin

    def summary(self) -> dict[str, float]:
        """Seconds per phase, and ``total``: since the clock was made (phases and what ran
        between them), rounded to 0.1 s."""
        out = {name: round(s, 1) for name, s in self.seconds.items()}
        out["total"] = round(time.perf_counter() - self._start, 1)
        return out
