"""Analytic engine: the model of :mod:`lowbit.hwsim.engines._base` in closed form, memoised.

Every tile schedule is summed block by block (:func:`~lowbit.hwsim.engines._schedule.closed_form`),
so a layer costs the same whatever its number of tiles. Results are memoised per profile
object (by identity, see :meth:`Engine.target`) and per (layer, input on chip): search
loops that re-simulate the same layers under many plans pay once per distinct layer.
"""

from __future__ import annotations

from ..profile import HardwareProfile
from ..result import LayerResult
from ..workload import Layer
from ._base import Engine
from ._layer import evaluate
from ._target import Target

__all__ = ["AnalyticEngine"]

#: results kept per profile before the cache starts over (a long search meets millions
#: of distinct layers; a LayerResult is a few hundred bytes)
MEMO_LIMIT = 200_000


class AnalyticEngine(Engine):
    """Closed-form timing of the shared tile schedule (fast; the default engine)."""

    name = "analytic"

    def _layer(self, layer: Layer, t: Target, input_on_chip: bool) -> LayerResult:
        key = (layer, input_on_chip)
        memo = t.memo
        result = memo.get(key)
        if result is None:
            if len(memo) >= MEMO_LIMIT:
                memo.clear()
            result = memo[key] = evaluate(layer, t, input_on_chip=input_on_chip, timer=None)
        return result

    def evaluate_uncached(
        self, layer: Layer, profile: HardwareProfile, *, input_on_chip: bool = False
    ) -> LayerResult:
        """One layer, computed afresh: the results cache is neither read nor filled
        (cold-cache benchmarks; the per-profile data is still cached)."""
        return evaluate(layer, self.target(profile), input_on_chip=input_on_chip, timer=None)
