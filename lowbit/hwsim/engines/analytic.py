"""Analytic engine: the model of :mod:`lowbit.hwsim.engines._base` in closed form, memoised.

Every tile schedule is summed block by block (:func:`~lowbit.hwsim.engines._schedule.closed_form`),
so a layer costs the same whatever its number of tiles. Results are memoised per profile
object (by identity, see :meth:`Engine.target`) and per (layer, input on chip) -- a
layer by everything but its name: search loops that re-simulate the same layers under many
plans, and a network's repeated blocks, pay once per distinct layer.
"""

from __future__ import annotations

from dataclasses import fields, replace

from ..profile import HardwareProfile
from ..result import LayerResult
from ..workload import Layer
from ._base import Engine
from ._layer import evaluate
from ._plan import clear_plans
from ._target import Target

__all__ = ["AnalyticEngine"]

#: results kept per profile before the cache starts over (a long search meets millions
#: of distinct layers; a LayerResult is a few hundred bytes)
MEMO_LIMIT = 200_000


#: per layer class, its fields but the name (what a layer's cost depends on)
_COST_FIELDS: dict[type, tuple[str, ...]] = {}


def _unnamed(layer: Layer) -> tuple:
    """``layer`` as the memo knows it: its class and every field but its name, so identical
    layers under different names (a network's repeated blocks, a chain's layers) are costed
    once; nothing of a layer's cost reads its name (the result carries it)."""
    cls = type(layer)
    names = _COST_FIELDS.get(cls)
    if names is None:
        names = _COST_FIELDS[cls] = tuple(f.name for f in fields(layer) if f.name != "name")
    return (cls, *(getattr(layer, n) for n in names))


class AnalyticEngine(Engine):
    """Closed-form timing of the shared tile schedule (fast; the default engine)."""

    name = "analytic"

    def _layer(self, layer: Layer, t: Target, input_on_chip: bool) -> LayerResult:
        key = (_unnamed(layer), input_on_chip)
        memo = t.memo
        result = memo.get(key)
        if result is None:
            if len(memo) >= MEMO_LIMIT:
                memo.clear()
            result = memo[key] = evaluate(layer, t, input_on_chip=input_on_chip, timer=None)
        elif result.name != layer.name:  # the same layer under another name
            result = replace(result, name=layer.name)
        return result

    def evaluate_uncached(
        self, layer: Layer, profile: HardwareProfile, *, input_on_chip: bool = False
    ) -> LayerResult:
        """One layer, computed afresh: the results cache is neither read nor filled and the
        GEMM plans are searched again (cold-cache benchmarks; the per-profile data is still
        cached)."""
        clear_plans()
        return evaluate(layer, self.target(profile), input_on_chip=input_on_chip, timer=None)
