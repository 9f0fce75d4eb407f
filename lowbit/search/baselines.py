"""The methods a run compares, each its own Optuna study in the same storage.

==============  ===========  ===============================================================
method          study name   what it is
==============  ===========  ===============================================================
``joint``       NAME         the chosen sampler over bits, pruning, N:M and rank, started
                             from the uniform configurations and uniformly pruned /
                             low-ranked W4A8 (warm start, :func:`joint_warm_configs`)
``quant-only``  NAME-quant   the same sampler over bits only (no pruning / N:M / rank),
                             warm-started the same way
``random``      NAME-random  RandomSampler over the joint space
``uniform``     NAME-uniform fixed W8A8 / W4A8 / W4A4 / W2A8 (those the target offers)
``hawq``        NAME-hawq    HAWQ-style Hessian-guided bits at 3 latency budgets (hawq.py)
==============  ===========  ===============================================================

Budget parity: ``joint``, ``quant-only`` and ``random`` all get the same ``n_trials``
completed trials; the fixed methods evaluate their few configurations once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna

from .hawq import BUDGET_FRACTIONS, bit_options, hawq_assignments
from .runner import make_sampler
from .space import SearchSpace

__all__ = [
    "UNIFORM_BITS",
    "WARM_KEEPS",
    "WARM_RANK_FRACTIONS",
    "Method",
    "METHODS",
    "method",
    "uniform_configs",
    "joint_warm_configs",
    "hawq_configs",
]

#: uniform baselines, in reporting order (kept where the target's space offers them)
UNIFORM_BITS = ((8, 8), (4, 8), (4, 4), (2, 8))
#: the joint search's warm starts beyond the uniform bits: every prunable layer at each keep
#: ratio, then every factorisable layer at each rank fraction (on W4A8, or W8A8)
WARM_KEEPS = (0.875, 0.75)
WARM_RANK_FRACTIONS = (0.75,)

#: fixed-configuration generator: (space, pool, seed) -> [(label, params)]
FixedConfigs = Callable[[SearchSpace, Any, int], list[tuple[str, dict[str, Any]]]]


@dataclass(frozen=True, slots=True)
class Method:
    """How one method's study is set up.

    Attributes:
        name: method name (registry key).
        suffix: appended to the study name ("" for the joint search).
        sampler: sampler name for searched methods, or None to use the run's sampler.
        bits_only: search the quantization-only space.
        fixed: generator of fixed configurations (then the study evaluates exactly those).
        warm_start: the configurations a new study evaluates first (counted in its
            budget), so the sampler's first population holds known-good points: the
            uniform bits, and for the joint search uniformly pruned and low-ranked points
            too (:func:`joint_warm_configs`); None: the random baseline stays purely random.
    """

    name: str
    suffix: str
    sampler: str | None = None
    bits_only: bool = False
    fixed: FixedConfigs | None = None
    warm_start: FixedConfigs | None = None

    def study_name(self, base: str) -> str:
        return base + self.suffix

    def space(self, space: SearchSpace, *, screened: SearchSpace | None = None) -> SearchSpace:
        """The method's space: ``screened`` (:mod:`lowbit.search.screen`) for a searched
        method when given, the full ``space`` for the fixed baselines; bits only for
        quantization-only."""
        if screened is not None and self.fixed is None:
            space = screened
        return space.quant_only() if self.bits_only else space

    def make_sampler(
        self, default: str, *, seed: int, n_trials: int
    ) -> optuna.samplers.BaseSampler:
        if self.fixed is not None:
            return optuna.samplers.RandomSampler(seed=seed)  # only enqueued trials run
        return make_sampler(self.sampler or default, seed=seed, n_trials=n_trials)


def uniform_configs(space: SearchSpace, pool: Any, seed: int) -> list[tuple[str, dict[str, Any]]]:
    """W8A8 / W4A8 / W4A4 / W2A8 where the space offers those bits (dense, unpruned)."""
    return [
        (f"W{w}A{a}", space.uniform_params(w, a))
        for w, a in UNIFORM_BITS
        if space.supports_uniform(w, a)
    ]


def joint_warm_configs(
    space: SearchSpace, pool: Any, seed: int
) -> list[tuple[str, dict[str, Any]]]:
    """The uniform configurations, then W4A8 (W8A8 where the space has no W4A8) with every
    prunable layer at each of :data:`WARM_KEEPS`, then with every factorisable layer at each
    of :data:`WARM_RANK_FRACTIONS` (each layer's nearest choice; points the space cannot
    express, or that repeat one already listed, are left out).

    Random draws over the joint space compress every layer at once and are mostly at chance
    accuracy; evolution from these points explores the light, mixed compressions near them,
    which is where pruning and low rank pay once recovered
    (:mod:`lowbit.models.compression.reconstruct`).
    """
    out = uniform_configs(space, pool, seed)
    bits = (4, 8) if space.supports_uniform(4, 8) else (8, 8)
    base = space.uniform_params(*bits)
    choices = {name: dist.choices for name, dist in space.distributions().items()}
    for setting, values in (("keep", WARM_KEEPS), ("rank_fraction", WARM_RANK_FRACTIONS)):
        for value in values:
            params = dict(base)
            for name in params:
                if name.endswith(f".{setting}"):
                    params[name] = min(choices[name], key=lambda c: (abs(c - value), -c))
            if all(params != known for _, known in out):
                out.append((f"W{bits[0]}A{bits[1]} {setting.split('_')[0]} {value}", params))
    return out


def hawq_configs(
    space: SearchSpace, pool: Any, seed: int, *, probes: int = 32
) -> list[tuple[str, dict[str, Any]]]:
    """One configuration per latency budget (0.25 / 0.5 / 0.75), from a worker's Hessian
    traces and simulated per-layer latencies; duplicates are dropped."""
    layers = tuple(layer.name for layer in space.layers if layer.kind != "matmul")
    options = bit_options(space.w_bits, space.a_bits)
    if not layers or len(options) < 2:
        return []
    all8 = space.settings(space.uniform_params(8, 8))
    fixed = {name: kw for name, kw in all8.items() if name not in layers}
    inputs = pool.call(
        "hawq_inputs", layers=layers, options=options, fixed=fixed, probes=probes, seed=seed
    )
    params_space = set(space.distributions())
    out: list[tuple[str, dict[str, Any]]] = []
    for fraction, _budget, assignment in hawq_assignments(inputs, fractions=BUDGET_FRACTIONS):
        params = space.uniform_params(8, 8)
        for name, option in assignment.items():
            w, a = (int(v) for v in option.split("/"))
            for key, value in (("w_bits", w), ("a_bits", a)):
                if f"{name}.{key}" in params_space:
                    params[f"{name}.{key}"] = value
        if all(params != p for _, p in out):
            out.append((f"hawq@{fraction:.2f}", params))
    return out


#: what each method of :data:`lowbit.search.registry.METHOD_NAMES` does (same names, same order)
METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("joint", "", warm_start=joint_warm_configs),
        Method("uniform", "-uniform", fixed=uniform_configs),
        Method("random", "-random", sampler="random"),
        Method("quant-only", "-quant", bits_only=True, warm_start=uniform_configs),
        Method("hawq", "-hawq", fixed=hawq_configs),
    )
}


def method(name: str) -> Method:
    """The method called ``name``; an unknown name lists the valid ones."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r} (valid: {', '.join(METHODS)})")
    return METHODS[name]
