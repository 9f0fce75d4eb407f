"""Choosing a GEMM's tiling: the fewest cycles among the candidates of
:mod:`lowbit.hwsim.engines._tiling` (every family's shapes, batched instances), exactly.

The search is best-first branch and bound over a small tree: a family, its K slices, a
slice's inner tile sizes (rows), a row's outer tile sizes (candidates). Each node has a
lower bound (:mod:`lowbit.hwsim.engines._bounds`) on the cycles of every candidate below it;
nodes are expanded, and candidates built, in increasing order of bound until the bound
reaches the best plan built so far. Every candidate is either built or has a bound at
least the best plan's cycles, so the result is the minimum over the whole (fixed,
fit-filtered) candidate set -- which is why more capacity or fewer bits never pick a
slower plan (:mod:`lowbit.hwsim.engines._tiling`).
"""

from __future__ import annotations

from collections import OrderedDict
from heapq import heappop, heappush

from ._bounds import bounder, floorer
from ._gemm_plan import GemmPlan, build
from ._target import GemmWork, Target
from ._tiling import FAMILIES, Family, batches, inner_resident

__all__ = ["PLAN_CACHE_SIZE", "clear_plans", "plan_gemm", "search_plan", "bounder", "floorer"]

#: node kinds of the search in :func:`plan_gemm`
_FAMILY, _SLICE, _ROW, _CANDIDATE = range(4)


#: plans kept across targets (least recently used dropped): a GemmPlan is never changed
#: once built, and a fit that simulates the same measurements under hundreds of profiles
#: differing in a few costs (``lowbit calibrate-host``) plans most GEMMs again unchanged
PLAN_CACHE_SIZE = 4096
_PLANS: OrderedDict[tuple, GemmPlan] = OrderedDict()


def plan_gemm(t: Target, w: GemmWork) -> GemmPlan:
    """The plan with the fewest cycles among the candidates (:func:`search_plan`), cached
    by what it depends on: the target's :attr:`~._target.Target.plan_key` and the work's
    shape, compute cycles, bytes per element, operand role and on-chip flags."""
    key = (
        t.plan_key,
        w.G,
        w.M,
        w.N,
        w.K,
        w.cycles,
        w.wb,
        w.ib,
        w.ob,
        w.w_role,
        w.in_chip,
        w.out_chip,
    )
    plan = _PLANS.get(key)
    if plan is not None:
        try:
            _PLANS.move_to_end(key)
        except KeyError:  # dropped by another thread meanwhile (the HTTP service's)
            pass
        return plan
    plan = _PLANS[key] = search_plan(t, w)
    while len(_PLANS) > PLAN_CACHE_SIZE:
        try:
            _PLANS.popitem(last=False)
        except KeyError:
            break
    return plan


def clear_plans() -> None:
    """Forget every cached plan (a cold-start benchmark; ``Engine.clear_cache``)."""
    _PLANS.clear()


def search_plan(t: Target, w: GemmWork) -> GemmPlan:
    """The plan with the fewest cycles among the candidates, by best-first branch and
    bound (module docstring). Among plans with equal cycles, the fewer bytes win if both
    were built."""
    levels = t.holds(w.w_role)
    bound = bounder(t, w)
    floor = floorer(t, w)
    M, N, K, G = w.M, w.N, w.K, w.G
    # heap entries: (key, order, kind, family, kt, isz, i, more); ``order`` keeps ties
    # deterministic. A family yields its K slices one at a time (largest first, keyed by
    # a floor that only grows along them; ``kt`` is then the index), a K slice its rows
    # (inner sizes, likewise), a row its candidates (outer sizes, likewise; ``i`` indexes
    # ``family.o_sizes``), and a candidate keyed by its bound is built.
    heap: list = []
    order = 0
    for split_k, weights_outer in FAMILIES:
        fam = Family(t, w, weights_outer, split_k)
        if fam.k_sizes:
            heap.append((floor(fam, fam.k_sizes[0]), order, _FAMILY, fam, 0, 0, 0, None))
            order += 1
    for gt in batches(t, w):
        shape = (M, N, K, gt)
        lb = bound(shape, True, True, -(-G // gt))
        heap.append((lb, order, _CANDIDATE, None, 0, 0, 0, (shape, True, True)))
        order += 1
    heap.sort()
    best: GemmPlan | None = None
    best_cycles, best_bytes = float("inf"), 0.0

    def push(key: float, kind: int, fam, kt: int, isz: int, i: int, more) -> None:
        nonlocal order
        if key < best_cycles:
            heappush(heap, (key, order, kind, fam, kt, isz, i, more))
            order += 1

    while heap:
        key, _, kind, fam, kt, isz, i, more = heappop(heap)
        if key >= best_cycles:
            break
        if kind == _CANDIDATE:
            plan = build(t, w, *more)
            moved = plan.w_bytes + plan.i_bytes
            if (plan.cycles, moved) < (best_cycles, best_bytes):
                best, best_cycles, best_bytes = plan, plan.cycles, moved
        elif kind == _FAMILY:  # its kt-th K slice, then itself again at the next
            push(key, _SLICE, fam, fam.k_sizes[kt], 0, 0, None)
            if kt + 1 < len(fam.k_sizes):
                push(floor(fam, fam.k_sizes[kt + 1]), _FAMILY, fam, kt + 1, 0, 0, None)
        elif kind == _SLICE:  # its i-th row, then itself again at the next
            sizes = fam.inners(kt)
            if not sizes:
                continue
            push(floor(fam, kt, sizes[i]), _ROW, fam, kt, sizes[i], 0, None)
            if i + 1 < len(sizes):
                push(floor(fam, kt, sizes[i + 1], edges=False), _SLICE, fam, kt, 0, i + 1, None)
        else:  # a row: its candidate at outer size o_sizes[i], then itself at the next
            if more is None:  # first visit: the outer sizes that fit are a suffix
                first = len(fam.o_sizes) - len(fam.outers(kt, isz))
                if first < len(fam.o_sizes):
                    push(floor(fam, kt, isz, first), _ROW, fam, kt, isz, first, True)
                continue
            wo = fam.weights_outer
            osz = fam.o_sizes[i]
            shape = fam.shape(kt, isz, osz)
            tiles = -(-M // shape[0]) * -(-N // shape[1]) * -(-K // kt) * G
            resident = kt == K and inner_resident(levels, w, shape[0], shape[1], wo)
            push(
                bound(shape, wo, resident, tiles), _CANDIDATE, None, 0, 0, 0, (shape, wo, resident)
            )
            if i + 1 < len(fam.o_sizes):
                push(floor(fam, kt, isz, i + 1), _ROW, fam, kt, isz, i + 1, True)
    if best is None:  # nothing fits: fold-sized tiles, every operand at every use
        gm, gn = t.mapping.granularity()
        shape = (min(gm, M), min(gn, N), min(t.gk, K), 1)
        return build(t, w, shape, True, False, reuse=False)
    return best
