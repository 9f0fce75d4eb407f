"""Timings kept only from a quiet core (split from :mod:`lowbit.models.hostcal.bench`): the
passes of a measurement over its shapes, the result chosen per shape among those timed while
no other thread shared the core (:class:`~lowbit.models.hostcal.clock.ClockTrack`'s vector
probe), the contended ones measured again."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

from lowbit.models.hostcal.clock import ClockTrack, active_track

__all__ = [
    "EXTRA_PASSES",
    "QUIET_WAIT_S",
    "RetryBudget",
    "again_until_quiet",
    "faster_rows",
    "least_disturbed",
    "least_quiet",
    "lower_median",
    "quiet_only",
    "retry_budget",
    "timed_quiet",
]

T = TypeVar("T")

#: further passes over the shapes no pass measured on a quiet core (:func:`least_disturbed`),
#: each after waiting up to this long for the core to be quiet (a spell of sharing lasted
#: seconds on an AMD Zen 3 under KVM: passes straight after one another all fell in it)
EXTRA_PASSES = 3
QUIET_WAIT_S = 2.0


@dataclass(slots=True)
class RetryBudget:
    """How long the extra passes of :func:`again_until_quiet` (and their waits for a quiet
    core) may take under :func:`retry_budget`: ``floor_s`` plus ``share`` of the time spent
    on everything else since the budget began, checked before each re-timing (one may run
    past it; the next then waits until the rest of the calibration has earned the excess
    back) -- what is not spent carries over to later measurements. On a busy AMD EPYC Zen 3
    under KVM (another tenant on the core most of the hour) the extra passes of one
    calibration took 54-75 s (16-22 s of them waiting) on top of 115 s of first passes: it
    measured for three minutes where it announced two. Once the budget is spent, the items
    still contended keep their least timing and stay counted
    (:attr:`~lowbit.models.hostcal.clock.ClockTrack.contended`; and in :attr:`cut`)."""

    share: float
    floor_s: float = 0.0
    spent_s: float = 0.0
    #: the measurements left contended when their extra passes stopped at the budget
    cut: int = 0
    started_s: float = field(default_factory=lambda: time.perf_counter())

    def left_s(self) -> float:
        """Seconds the extra passes may still take now (<= 0: none)."""
        others = time.perf_counter() - self.started_s - self.spent_s
        return self.floor_s + self.share * others - self.spent_s

    def spend(self, work: Callable[[], Any]) -> None:
        """``work()``, its seconds counted as spent."""
        begin = time.perf_counter()
        try:
            work()
        finally:
            self.spent_s += time.perf_counter() - begin

    def summary(self) -> dict[str, Any]:
        """The budget in a few numbers (a sidecar's ``clock_track["retries"]``)."""
        return {"share": self.share, "spent_s": round(self.spent_s, 1), "cut": self.cut}


_BUDGET: ContextVar[RetryBudget | None] = ContextVar("lowbit_retry_budget", default=None)


@contextmanager
def retry_budget(*, share: float, floor_s: float = 0.0) -> Iterator[RetryBudget]:
    """Within the block, :func:`again_until_quiet`'s extra passes keep to a
    :class:`RetryBudget` of ``share`` and ``floor_s`` (outside any: as many as it takes)."""
    if not (0.0 <= share < math.inf) or not (0.0 <= floor_s < math.inf):
        raise ValueError(f"need a finite share and floor_s >= 0, got {share!r}, {floor_s!r}")
    budget = RetryBudget(share=float(share), floor_s=float(floor_s))
    token = _BUDGET.set(budget)
    try:
        yield budget
    finally:
        _BUDGET.reset(token)


def least_disturbed(
    measure: Callable[[Any], T],
    items: Sequence[Any],
    *,
    key: Callable[[T], float],
    passes: int,
    median: bool = False,
) -> list[T]:
    """``measure(item)`` for every item, once in each of ``passes`` passes over all of them;
    per item, the result with the least ``key`` (its time), or with ``median`` the median
    one (the lower middle of an even count). On a shared virtual machine a
    slow spell -- another tenant on the core -- lasts up to seconds: it slowed every shape
    measured in it by 30-80 %, so one calibration's fit moved 10-70 % from the next's
    (an AMD EPYC Zen 4 under KVM). A pass over all shapes takes seconds, so one spell
    disturbs a shape in one pass, not in all. The median takes several passes and leaves
    out the disturbed ones without picking, among timings converted to a reference clock,
    the one whose conversion erred lowest.

    Under a clock track with a vector probe (:class:`~lowbit.models.hostcal.clock.ClockTrack`)
    each result also knows whether the core was shared while it was timed: only the quiet
    ones are chosen from, and an item no pass caught quiet is measured again, up to
    :data:`EXTRA_PASSES` more times, each once the core reads quiet or :data:`QUIET_WAIT_S`
    has passed (then, still contended, from all its results; the track counts it). On an AMD
    EPYC Zen 3 (AVX2) under KVM the 15 depthwise chains of one calibration all came out
    1.6-1.9x the next one's; ten single convs timed four times over a minute spread 55 % (the
    least of three passes each time), 2.5 % with this."""
    if passes < 1:
        raise ValueError(f"need passes >= 1, got {passes}")
    track = active_track()
    results: list[list[tuple[T, float | None]]] = [[] for _ in items]

    def run(index: int) -> None:
        results[index].append(timed_quiet(lambda: measure(items[index])))

    for _ in range(passes):
        for index in range(len(items)):
            run(index)
    again_until_quiet(results, run=run)
    chosen = []
    for timed in results:
        if track is not None and not _caught_quiet(timed, track):
            track.contended += 1
        kept = quiet_only(timed, track=track)
        chosen.append(lower_median(kept, key=key) if median else min(kept, key=key))
    return chosen


def _caught_quiet(timed: Sequence[tuple[Any, float | None]], track: ClockTrack) -> bool:
    return any(track.quiet(ratio) for _, ratio in timed)


def again_until_quiet(
    results: Sequence[Sequence[tuple[Any, float | None]]], *, run: Callable[[int], None]
) -> None:
    """``run(index)`` -- which adds a :func:`timed_quiet` result to ``results[index]`` -- for
    every index none of whose results was timed on a quiet core, up to :data:`EXTRA_PASSES`
    times, each once the core reads quiet or :data:`QUIET_WAIT_S` has passed (nothing without
    a track); under a :func:`retry_budget`, only while it has time left (the wait too)."""
    track = active_track()
    if track is None:
        return
    # outside a retry_budget: one that never runs out
    budget = _BUDGET.get() or RetryBudget(share=0.0, floor_s=math.inf)
    for _ in range(EXTRA_PASSES):
        again = [i for i, timed in enumerate(results) if not _caught_quiet(timed, track)]
        if not again:
            return
        for index in [None, *again]:  # None: the wait for a quiet core
            if budget.left_s() <= 0:
                budget.cut += sum(not _caught_quiet(timed, track) for timed in results)
                return
            if index is None:
                budget.spend(lambda: track.wait_quiet(timeout_s=min(QUIET_WAIT_S, budget.left_s())))
            else:
                budget.spend(lambda index=index: run(index))


def quiet_only(results: Sequence[tuple[T, float | None]], *, track: ClockTrack | None) -> list[T]:
    """Of ``(result, the probe's least ratio beside it)`` pairs, the results timed on a quiet
    core (:meth:`~lowbit.models.hostcal.clock.ClockTrack.quiet`) -- all of them where none
    was, or without a track."""
    quiet = [r for r, ratio in results if track is None or track.quiet(ratio)]
    return quiet or [r for r, _ in results]


def lower_median(values: Sequence[T], *, key: Callable[[T], float]) -> T:
    """The median of ``values`` by ``key`` -- one of them, the lower middle of an even
    count (never a mean of two: a disturbed timing must not pull the kept one)."""
    return sorted(values, key=key)[(len(values) - 1) // 2]


def timed_quiet(measure: Callable[[], T]) -> tuple[T, float | None]:
    """``(measure(), the probe's least ratio while it ran)`` (None: no track or no probe
    reading beside it)."""
    track = active_track()
    mark = track.mark() if track is not None else 0
    result = measure()
    return result, track.least_ratio(mark) if track is not None else None


def least_quiet(
    timed: list[tuple[T, float | None]], *, key: Callable[[T], float], again: Callable[[], T]
) -> T:
    """The least by ``key`` of :func:`timed_quiet` results taken on a quiet core; where none
    was, ``again`` is timed up to :data:`EXTRA_PASSES` more times, each once the core reads
    quiet or :data:`QUIET_WAIT_S` has passed (still none: the least of all; the track counts
    it). ``timed`` gains the new results."""
    track = active_track()
    again_until_quiet([timed], run=lambda _: timed.append(timed_quiet(again)))
    if track is not None and not _caught_quiet(timed, track):
        track.contended += 1
    return min(quiet_only(timed, track=track), key=key)


def faster_rows(rows: list[dict[str, Any]], again: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` with each chain timed ``again`` (same kind, size, map, batch and precision)
    replaced by the new timing where that one's layer is faster. The last-level cache is
    shared with other tenants: on an AMD Zen 3 under KVM a chain streaming its weights from
    it ran 1.7x slower in one calibration than in the next, minutes apart, its five passes
    within 6 % of each other each time -- a busy neighbour lasts longer than one measurement,
    and it only ever slows the stream."""

    def key(row):
        return tuple(row[k] for k in ("kind", "size", "spatial", "batch", "precision"))

    newer = {key(row): row for row in again}
    out = []
    for row in rows:
        other = newer.get(key(row))
        out.append(other if other is not None and other["layer_s"] < row["layer_s"] else row)
    return out
