"""Small run directories for the results tests, written by the real search driver (Ray,
Optuna, the run-directory writers) with the synthetic evaluator of
:mod:`lowbit.search.testing`, extended to report per-layer costs as the zoo evaluator does.
No model is trained."""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lowbit.hwsim.profiles import load_profile
from lowbit.search.evaluator import LayerCost, TrialOutcome, TrialRequest
from lowbit.search.run import SearchResult, SearchSetup, execute
from lowbit.search.space import LayerInfo, SearchSpace, build_space
from lowbit.search.testing import SyntheticEvaluator, SyntheticSpec

#: a small CNN-like model (conv1, conv2 and fc1 can be pruned; conv2 and fc1 factorised)
LAYERS = (
    LayerInfo("conv1", "conv", out_channels=16, reduction=9, full_rank=9, producer=True),
    LayerInfo("conv2", "conv", out_channels=32, reduction=144, full_rank=32, producer=True),
    LayerInfo("fc1", "linear", out_channels=64, reduction=128, full_rank=64, producer=True),
    LayerInfo("fc2", "linear", out_channels=10, reduction=64, full_rank=10),
)
#: MACs of each layer (dense, full rank)
MACS = {"conv1": 16 * 9 * 196, "conv2": 32 * 144 * 49, "fc1": 64 * 128, "fc2": 10 * 64}
CLOCK_HZ = 1e9


def layer_costs(settings: dict[str, dict[str, Any]]) -> tuple[LayerCost, ...]:
    """Per-layer costs consistent with the synthetic objectives: each layer's share of
    the latency, its bits, and its MACs shrunk by its keep ratio and rank fraction."""
    out = []
    for name, kw in settings.items():
        keep, rank = kw.get("keep", 1.0), kw.get("rank_fraction") or 1.0
        latency_ms = (kw["w_bits"] * kw["a_bits"] / 64) * keep * rank
        cycles = round(latency_ms * CLOCK_HZ / 1e3)
        out.append(
            LayerCost(
                name=name,
                op="linear" if name.startswith("fc") else "conv2d",
                w_bits=kw["w_bits"],
                a_bits=kw["a_bits"],
                macs=round(MACS[name] * keep * rank),
                total_cycles=cycles,
                latency_ms=cycles / CLOCK_HZ * 1e3,
                energy_mj=latency_ms * 0.5,
            )
        )
    return tuple(out)


@dataclass(frozen=True, slots=True)
class LayeredSpec(SyntheticSpec):
    """:class:`SyntheticSpec` whose evaluator also returns per-layer costs when asked."""

    def build(self) -> LayeredEvaluator:
        return LayeredEvaluator(self)


class LayeredEvaluator(SyntheticEvaluator):
    def evaluate(self, request: TrialRequest) -> TrialOutcome:
        outcome = super().evaluate(request)
        if not request.detail:
            return outcome
        return replace(outcome, layers=layer_costs(request.settings))


def space() -> SearchSpace:
    return build_space(LAYERS, load_profile("npu-bitfusion"), model="synthetic-cnn")


def make_run(
    out: Path, *, methods: tuple[str, ...] = ("joint", "uniform"), n_trials: int = 8, **spec
) -> SearchResult:
    """Search :data:`LAYERS` on npu-bitfusion with the synthetic evaluator into ``out``
    (needs the session's Ray: the ``ray_session`` fixture)."""
    import ray.cloudpickle

    # the actors get the spec's class by value: this module is not importable there
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    setup = SearchSetup(
        n_trials=n_trials,
        out_dir=out,
        study_name=out.name,
        workers=2,
        methods=methods,
        progress=False,
        seed=spec.pop("seed", 0),
    )
    return execute(space=space(), evaluator=LayeredSpec(**spec), setup=setup)
