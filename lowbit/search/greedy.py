"""Greedy warm starts from a sensitivity screen (:mod:`lowbit.search.screen`), calibrated by
measurement.

The screen measures every choice one at a time. :func:`warm_configs` turns those
measurements into one configuration per budget: each kept choice is an item that saves
latency (base − its latency) for accuracy (base − its accuracy, at least :data:`MIN_LOSS`),
and items are taken by latency saved per accuracy lost while the summed losses stay within
the budget, a knapsack under an additive model of the losses (HAWQ-V3 allocates bits the
same way from Hessian estimates; here pruning and rank join, measured).

Losses do not add, and not in one direction. Measured on fashion-resnet (npu-bitfusion, 3
seeds, floor 0.88, the cheap rung): the bits-only points lost from 0.1× to 3.5× what the
additive model predicted (by seed and budget), the points mixing pruning, rank and bits
0.4-3× (two of three seeds put the 0.75 point below the floor). So
:func:`calibrated_warm_configs` measures each point at the screen's rung and solves again
with the budget scaled by target / measured loss (a secant step on the budget; once one
budget under and one over the target are known, interpolation between them; at most
:data:`CALIBRATION_ROUNDS` rounds, every budget's point of a round in one parallel batch),
then keeps, per budget, the fastest measured point within its target loss, whichever
budget's solve measured it (the knapsack's choices are not monotone in the budget: on
fashion-resnet seed 0 the bits-only 0.75 and 0.9 budgets' own points ended at 0.60× and 0.57×
W8A8, slower than the 0.5 budget's 0.45× point, which was within their targets too).
Last, the fastest point within the near-floor target is extended a choice at a time,
measured (:func:`_refine`): a re-solve adds several choices at once and overshoots where
losses compound, one choice at a time does not. The
measurements are few (at most 3 per round) and cached per run, so the quantization-only
search reuses the joint search's bits-only ones.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from .evaluator import TrialRequest
from .screen import base_params
from .space import SearchSpace

__all__ = [
    "CALIBRATION_ROUNDS",
    "MIN_LOSS",
    "NEAR_FLOOR",
    "NEAR_FLOOR_UNDERSHOOT",
    "WARM_BUDGETS",
    "calibrated_warm_configs",
    "warm_configs",
]

#: the screen's warm starts: greedy configurations whose accuracy losses use these fractions
#: of the room between the base's accuracy and the floor
WARM_BUDGETS = (0.25, 0.5, 0.75)
#: accuracy loss (fraction) a choice is charged at least: measured losses below the noise
#: would otherwise make every choice look free
MIN_LOSS = 0.002
#: the calibrated greedy's extra budget, close to the floor: the fastest feasible point
#: counts most (it bounds the front; hypervolume grows with it), and measured points can
#: aim there without the additive model's overshoot
NEAR_FLOOR = 0.9
#: measure-and-resolve rounds of :func:`calibrated_warm_configs`
CALIBRATION_ROUNDS = 3
#: then the near-floor point is extended one choice at a time (:func:`_refine`): rounds, and
#: extensions measured per round (in one parallel batch)
REFINE_ROUNDS = 2
REFINE_WIDTH = 2
#: a measured point this far under its target loss (a fraction of it) is pushed further
UNDERSHOOT = 0.6
#: the same for the :data:`NEAR_FLOOR` budget, whose point is worth the most where it ends
#: closest to its target (fashion-resnet × npu-bitfusion, 3 seeds, with 0.6: the joint
#: search's fastest points stayed 1.6-2.4 points above the floor on val, at 0.35-0.37×
#: W8A8, barely faster than the quantization-only search's)
NEAR_FLOOR_UNDERSHOOT = 0.85
#: the largest budget a calibration step asks, in units of the room (sub-additive losses)
MAX_BUDGET_ROOMS = 3.0


def _items(result: Any, space: SearchSpace, bits_only: bool) -> list[Any]:
    params = (space.quant_only() if bits_only else space).distributions()
    return [
        e
        for e in result.entries
        if e.kept
        and e.accuracy is not None
        and e.latency_ms is not None
        and e.param in params
        and e.latency_ms < result.base_latency_ms
    ]


def _gain(result: Any, e: Any, now: Any | None) -> tuple[float, float]:
    """Latency saved and one-at-a-time accuracy loss added by taking choice ``e`` where its
    layer holds ``now`` (a milder choice, or None: the base's): the differences count."""
    saved = result.base_latency_ms - e.latency_ms
    cost = max(MIN_LOSS, result.base_accuracy - e.accuracy)
    if now is not None:
        saved -= result.base_latency_ms - now.latency_ms
        cost -= max(MIN_LOSS, result.base_accuracy - now.accuracy)
    return saved, cost


def _solve(result: Any, items: list[Any], budget: float) -> tuple[dict[str, Any], float]:
    """The knapsack's choices within ``budget`` (predicted loss) and their predicted loss."""
    chosen: dict[str, Any] = {}
    spent = 0.0
    while True:
        best, best_rate, best_cost = None, 0.0, 0.0
        for e in items:
            saved, cost = _gain(result, e, chosen.get(e.param))
            if saved <= 0 or spent + cost > budget:
                continue
            rate = saved / max(cost, MIN_LOSS)
            if rate > best_rate:
                best, best_rate, best_cost = e, rate, cost
        if best is None:
            return {name: e.value for name, e in chosen.items()}, spent
        chosen[best.param] = best
        spent += best_cost


def _label(fraction: float, bits_only: bool) -> str:
    return f"screen greedy{' bits' if bits_only else ''} {fraction:g}"


def warm_configs(
    result: Any, space: SearchSpace, *, bits_only: bool = False
) -> list[tuple[str, dict[str, Any]]]:
    """Greedy configurations from the screen's measurements, one per :data:`WARM_BUDGETS`
    (``bits_only``: from the bit-width choices alone, as points of ``space``), under the
    additive loss model (module docstring); no measurement."""
    items = _items(result, space, bits_only)
    base = base_params(space)
    room = result.base_accuracy - result.floor
    out: list[tuple[str, dict[str, Any]]] = []
    for fraction in WARM_BUDGETS:
        chosen, _ = _solve(result, items, fraction * room)
        config = {**base, **chosen}
        if chosen and all(config != known for _, known in out):
            out.append((_label(fraction, bits_only), config))
    return out


#: measures configurations of a space at the screen's rung: [params] -> [(accuracy,
#: latency_ms) or None for a failed evaluation]
Measure = Callable[[list[dict[str, Any]]], list[tuple[float, float] | None]]


def pool_measure(
    *, pool: Any, space: SearchSpace, rung: int, cache: dict[str, Any] | None = None
) -> Measure:
    """A :data:`Measure` on ``pool``'s workers at ``rung``; ``cache`` (settings → result)
    is shared by the searches of one run, so a point is measured once. A failed or
    non-finite outcome is None (not measurable)."""
    cache = {} if cache is None else cache

    def measure(configs: list[dict[str, Any]]) -> list[tuple[float, float] | None]:
        settings = [space.settings(c) for c in configs]
        keys = [json.dumps(s, sort_keys=True, default=list) for s in settings]
        todo = {k: s for k, s in zip(keys, settings, strict=True) if k not in cache}
        if todo:
            requests = [TrialRequest(-1, s, rung=rung) for s in todo.values()]
            for key, out in zip(todo, pool.map(requests), strict=True):
                usable = not out.failed and math.isfinite(out.accuracy * out.latency_ms)
                cache[key] = (float(out.accuracy), float(out.latency_ms)) if usable else None
        return [cache[k] for k in keys]

    return measure


def _next_budget(
    budget: float,
    predicted: float,
    loss: float,
    target: float,
    bracket: list[Any],
    undershoot: float = UNDERSHOOT,
) -> float | None:
    """The budget to solve next for ``target`` after ``budget`` (predicted ``predicted``)
    measured ``loss``; ``bracket`` = [largest budget within the target and its loss, smallest
    budget over it and its loss] (None: not found yet), updated here. None: done (the loss
    is within the target and at least ``undershoot`` of it)."""
    if loss <= target:
        if bracket[0] is None or budget > bracket[0][0]:
            bracket[0] = (budget, loss)
        if loss >= undershoot * target:
            return None  # close enough under the target
    elif bracket[1] is None or budget < bracket[1][0]:
        bracket[1] = (budget, loss)
    lo, hi = bracket
    if lo is not None and hi is not None:  # interpolate inside the bracket
        (b0, l0), (b1, l1) = lo, hi
        step = (target - l0) / max(l1 - l0, 1e-12)
        return b0 + min(max(step, 0.25), 0.75) * (b1 - b0)
    # a secant step from the base through this point (budgets are in predicted loss)
    return max(predicted, MIN_LOSS) * target / loss


def calibrated_warm_configs(
    result: Any,
    space: SearchSpace,
    *,
    measure: Measure,
    bits_only: bool = False,
    rounds: int = CALIBRATION_ROUNDS,
    base_full_accuracy: float | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """:func:`warm_configs` with each budget's point measured and solved again (module
    docstring), plus one budget at :data:`NEAR_FLOOR` of the room (``base_full_accuracy``:
    the base's accuracy at the full rung, where the floor holds; None: the screen's). Per
    budget, the fastest measured point (any budget's) within its target; else the last
    re-solved one (predicted to be, unmeasured); else its most accurate measured point above
    the floor. A point whose measurement failed stays, for the search to record."""
    items = _items(result, space, bits_only)
    base = base_params(space)
    # the floor holds at the full rung; the screen measures at the cheap one, whose subset
    # can be easier or harder: the base's accuracy at both rungs gives the room in losses
    full = result.base_accuracy if base_full_accuracy is None else base_full_accuracy
    room = full - result.floor
    if not items or room <= 0:
        return []
    budgets_of = (*WARM_BUDGETS, NEAR_FLOOR)
    targets = {f: f * room for f in budgets_of}
    budgets: dict[float, float] = dict(targets)
    brackets: dict[float, list[Any]] = {f: [None, None] for f in budgets_of}
    tried: dict[float, list[tuple[dict[str, Any], tuple[float, float] | None]]] = {
        f: [] for f in budgets_of
    }
    pending: dict[float, tuple[dict[str, Any], float, float]] = {}
    for round_ in range(rounds + 1):
        pending = {}
        for f, budget in budgets.items():
            chosen, predicted = _solve(result, items, min(budget, MAX_BUDGET_ROOMS * room))
            config = {**base, **chosen}
            if chosen and all(config != c for c, _ in tried[f]):
                pending[f] = (config, predicted, budget)
        if not pending or round_ == rounds:
            break
        measured = measure([c for c, _, _ in pending.values()])
        budgets = {}
        for (f, (config, predicted, budget)), got in zip(pending.items(), measured, strict=True):
            tried[f].append((config, got))
            if got is not None:
                loss = max(MIN_LOSS, result.base_accuracy - got[0])
                under = NEAR_FLOOR_UNDERSHOOT if f == NEAR_FLOOR else UNDERSHOOT
                step = _next_budget(budget, predicted, loss, targets[f], brackets[f], under)
                if step is not None:
                    budgets[f] = step
    everything = [(got, c) for f in budgets_of for c, got in tried[f] if got is not None]
    near = [
        (got, c) for got, c in everything if result.base_accuracy - got[0] <= targets[NEAR_FLOOR]
    ]
    if near:  # the fastest point counts most: extended while it keeps its target
        start = min(near, key=lambda p: p[0][1])
        everything += _refine(result, items, start, targets[NEAR_FLOOR], measure)
    out: list[tuple[str, dict[str, Any]]] = []
    for f in budgets_of:
        own = [(got, c) for c, got in tried[f] if got is not None]
        config = (
            _fastest_within(everything, result.base_accuracy - targets[f])
            or (pending[f][0] if f in pending else None)
            or _fastest_within(own, result.base_accuracy - room, most_accurate=True)
            or (tried[f][0][0] if tried[f] and tried[f][0][1] is None else None)
        )
        if config is not None and all(config != known for _, known in out):
            out.append((_label(f, bits_only), config))
    return out


def _refine(
    result: Any,
    items: list[Any],
    start: tuple[tuple[float, float], dict[str, Any]],
    target: float,
    measure: Measure,
) -> list[tuple[tuple[float, float], dict[str, Any]]]:
    """Measured ascent from ``start`` (measured, within ``target`` loss): per round, the
    :data:`REFINE_WIDTH` choices (or harsher replacements of a layer's choice) that save the
    most latency per one-at-a-time loss within the measured slack, each added alone and
    measured; the fastest within the target is the next start. One choice per step, so the
    compounding the knapsack's re-solves overshoot with (several choices at once) is
    measured a step at a time. Returns every point it measured."""
    by_choice = {(e.param, e.value): e for e in items}
    out: list[tuple[tuple[float, float], dict[str, Any]]] = []
    (accuracy, latency), config = start
    for _ in range(REFINE_ROUNDS):
        slack = target - max(MIN_LOSS, result.base_accuracy - accuracy)
        ranked = []
        for e in items:  # the layer's present choice: an item, or None (the base's)
            saved, cost = _gain(result, e, by_choice.get((e.param, config.get(e.param))))
            if saved > 0 and cost <= slack:
                ranked.append((saved / max(cost, MIN_LOSS), e))
        ranked.sort(key=lambda r: -r[0])
        steps = [{**config, e.param: e.value} for _, e in ranked[:REFINE_WIDTH]]
        if not steps:
            break
        got = measure(steps)
        measured = [(g, c) for g, c in zip(got, steps, strict=True) if g is not None]
        out += measured
        ok = [(g, c) for g, c in measured if result.base_accuracy - g[0] <= target]
        if not ok or min(g[1] for g, _ in ok) >= latency:
            break
        (accuracy, latency), config = min(ok, key=lambda p: p[0][1])
    return out


def _fastest_within(
    points: list[tuple[tuple[float, float], dict[str, Any]]],
    accuracy: float,
    *,
    most_accurate: bool = False,
) -> dict[str, Any] | None:
    """Of the measured ``points`` at or above ``accuracy``, the fastest (or the most
    accurate); None if there is none."""
    ok = [(got, c) for got, c in points if got[0] >= accuracy]
    if not ok:
        return None
    key = (lambda p: -p[0][0]) if most_accurate else (lambda p: p[0][1])
    return min(ok, key=key)[1]
