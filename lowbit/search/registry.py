"""The names a search offers — methods, samplers, objectives — in one place every front-end
reads (the CLI's choices, the service's request schema, the report's colours).

Importing this module needs neither Optuna nor Ray, so the CLI can build its parser from it
and ``lowbit --help`` stays instant:

- :data:`METHODS_SHOWN`: method name -> :class:`MethodInfo` (how the report draws it); its
  keys, :data:`METHOD_NAMES`, are the joint search, then the baselines, in the order
  ``--baselines all`` runs them; what each does is :data:`lowbit.search.baselines.METHODS`
  (keyed by these names, in this order; ``tests/lowbit/test_frontends.py`` checks it).
- :data:`SAMPLERS`: sampler name -> factory ``(seed, n_trials) -> optuna sampler``.
- :data:`OBJECTIVES`: objective name -> (``TrialOutcome`` field, direction).
- :data:`SCREEN_MODES`, :data:`FIDELITY_MODES`: when the sensitivity screen runs, how many
  rungs a trial's accuracy is measured on; each with its default.

The simulator's engines are hwsim's (:func:`lowbit.hwsim.engine_names`).

Example:
    >>> BASELINE_NAMES
    ('uniform', 'random', 'quant-only', 'hawq')
    >>> OBJECTIVES["latency"]
    ('latency_ms', 'minimize')
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna

__all__ = [
    "BASELINE_NAMES",
    "DEFAULT_FIDELITY",
    "DEFAULT_OBJECTIVES",
    "DEFAULT_SAMPLER",
    "DEFAULT_SCREEN",
    "FIDELITY_MODES",
    "FIXED_METHOD_NAMES",
    "METHODS_SHOWN",
    "METHOD_NAMES",
    "MethodInfo",
    "OBJECTIVES",
    "OBJECTIVE_NAMES",
    "SAMPLERS",
    "SAMPLER_NAMES",
    "SCREEN_MODES",
]


@dataclass(frozen=True, slots=True)
class MethodInfo:
    """What the front-ends show of one search method (its behaviour is
    :class:`lowbit.search.baselines.Method`).

    Attributes:
        name: the method's name, as the CLI, the service and the run's files spell it.
        color: its colour in every figure of the report.
        fixed: it evaluates a few fixed configurations (no sampler): drawn as points, not
            as a front.
        marker: the marker of a fixed method's points.
        legend: the legend entry of a fixed method's points.
        bits_labels: each of its points is annotated with its uniform bits ("W4A8").
    """

    name: str
    color: str
    fixed: bool = False
    marker: str = "o"
    legend: str = ""
    bits_labels: bool = False


#: every search method, the joint search first, then the baselines
METHODS_SHOWN: dict[str, MethodInfo] = {
    m.name: m
    for m in (
        MethodInfo("joint", color="#1f5fbf"),
        MethodInfo(
            "uniform",
            color="#222222",
            fixed=True,
            marker="D",
            legend="uniform precision",
            bits_labels=True,
        ),
        MethodInfo("random", color="#8a8a8a"),
        MethodInfo("quant-only", color="#e07b00"),
        MethodInfo("hawq", color="#7b3fa8", fixed=True, marker="s", legend="HAWQ"),
    )
}
#: every search method: the joint search first, then the baselines
METHOD_NAMES = tuple(METHODS_SHOWN)
#: the methods run beside the joint search on the same budget
BASELINE_NAMES = METHOD_NAMES[1:]
#: the methods that evaluate fixed configurations (no sampler): points, not fronts, in plots
FIXED_METHOD_NAMES = tuple(name for name, m in METHODS_SHOWN.items() if m.fixed)
#: when the sensitivity screen runs (:mod:`lowbit.search.screen`); "auto": with an
#: accuracy constraint
SCREEN_MODES = ("auto", "on", "off")
DEFAULT_SCREEN = "auto"
#: how a trial's accuracy is measured (:mod:`lowbit.search.fidelity`): "multi" on a cheap
#: val subset first, "full" on all of val, "auto" multi when val is large
FIDELITY_MODES = ("auto", "multi", "full")
DEFAULT_FIDELITY = "auto"


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
