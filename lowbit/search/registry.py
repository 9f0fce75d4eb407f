"""The names a search offers — methods, samplers, objectives — in one place every front-end
reads (the CLI's choices, the service's request schema, the report's colours).

Importing this module needs neither Optuna nor Ray, so the CLI can build its parser from it
and ``lowbit --help`` stays instant:

- :data:`METHOD_NAMES`: the joint search, then the baselines, in the order ``--baselines
  all`` runs them; what each does is :data:`lowbit.search.baselines.METHODS` (keyed by
  these names, in this order; ``tests/lowbit/test_frontends.py`` checks it).
- :data:`SAMPLERS`: sampler name -> factory ``(seed, n_trials) -> optuna sampler``.
- :data:`OBJECTIVES`: objective name -> (``TrialOutcome`` field, direction).

The simulator's engines are hwsim's (:func:`lowbit.hwsim.engine_names`).

Example:
    >>> BASELINE_NAMES
    ('uniform', 'random', 'quant-only', 'hawq')
    >>> OBJECTIVES["latency"]
    ('latency_ms', 'minimize')
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna

__all__ = [
    "BASELINE_NAMES",
    "DEFAULT_OBJECTIVES",
    "DEFAULT_SAMPLER",
    "FIXED_METHOD_NAMES",
    "METHOD_NAMES",
    "OBJECTIVES",
    "OBJECTIVE_NAMES",
    "SAMPLERS",
    "SAMPLER_NAMES",
    "SCREEN_MODES",
]

#: every search method: the joint search first, then the baselines
METHOD_NAMES = ("joint", "uniform", "random", "quant-only", "hawq")
#: the methods run beside the joint search on the same budget
BASELINE_NAMES = METHOD_NAMES[1:]
#: the methods that evaluate fixed configurations (no sampler): points, not fronts, in plots
FIXED_METHOD_NAMES = ("uniform", "hawq")
#: when the sensitivity screen runs (:mod:`lowbit.search.screen`); "auto": with an
#: accuracy constraint
SCREEN_MODES = ("auto", "on", "off")


def _nsga2(seed: int, n_trials: int) -> optuna.samplers.BaseSampler:
    import optuna

    # population: ~1/5 of the budget (at least 8, at most Optuna's default 50), so even a
    # small budget runs several generations after the random first one.
    population = int(min(50, max(8, n_trials // 5)))
    return optuna.samplers.NSGAIISampler(population_size=population, seed=seed)


def _tpe(seed: int, n_trials: int) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.TPESampler(seed=seed, multivariate=True)


def _random(seed: int, n_trials: int) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


def _gp(seed: int, n_trials: int) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.GPSampler(seed=seed)


#: sampler name -> factory ``(seed, n_trials)``
SAMPLERS: dict[str, Callable[[int, int], optuna.samplers.BaseSampler]] = {
    "nsga2": _nsga2,
    "tpe": _tpe,
    "random": _random,
    "gp": _gp,
}
SAMPLER_NAMES = tuple(SAMPLERS)
DEFAULT_SAMPLER = "nsga2"

#: objective name -> (TrialOutcome field, direction)
OBJECTIVES: dict[str, tuple[str, str]] = {
    "accuracy": ("accuracy", "maximize"),
    "latency": ("latency_ms", "minimize"),
    "energy": ("energy_mj", "minimize"),
    "size": ("size_kib", "minimize"),
}
OBJECTIVE_NAMES = tuple(OBJECTIVES)
DEFAULT_OBJECTIVES = ("accuracy", "latency")
