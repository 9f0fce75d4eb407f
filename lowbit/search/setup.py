"""What a search run is given: one frozen :class:`SearchSetup` for zoo and user models.

A setup names the model (:class:`ZooModel`: a zoo name and how it is trained and measured;
:class:`UserModel`: your own module and metric), the hardware, and how the studies run
(trials, workers, sampler, methods, objectives, constraints). :func:`lowbit.search.run_search`
takes it whole; :func:`lowbit.search.execute` (a prepared space and evaluator spec, e.g. the
synthetic one of the tests) reads only the run part and needs no model.

Example::

    setup = SearchSetup(model=ZooModel(name="digits-cnn"), hardware="npu-bitfusion",
                        n_trials=60, out_dir="runs/cnn-bitfusion", methods=("joint", "uniform"))
    result = run_search(setup)
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lowbit.hwsim.errors import LowbitError
from lowbit.hwsim.profile import HardwareProfile

from .baselines import method as get_method
from .fidelity import DEFAULT_CALIB_SAMPLES, DEFAULT_CHEAP_VAL, DEFAULT_MARGIN_SE
from .registry import (
    DEFAULT_FIDELITY,
    DEFAULT_OBJECTIVES,
    DEFAULT_SAMPLER,
    DEFAULT_SCREEN,
    FIDELITY_MODES,
    SCREEN_MODES,
)
from .runner import OBJECTIVES, SAMPLERS
from .space import SearchSpace
from .summary import MethodSummary

__all__ = [
    "PreparedSearch",
    "SearchResult",
    "SearchSetup",
    "UserModel",
    "ZooModel",
    "resolve_profile",
]

#: methods a user model cannot run, and why
USER_UNSUPPORTED_METHODS = {"hawq": "needs per-layer Hessians of a labelled loss"}


@dataclass(frozen=True, slots=True, kw_only=True)
class ZooModel:
    """A zoo model (trained once on the driver, cached) and how trials measure it.

    Rungs (:mod:`lowbit.search.fidelity`): ``fidelity`` ``auto`` (two rungs when val has more
    than 2,000 images), ``multi`` or ``full``; ``cheap_val_samples`` val images at the cheap
    rung, ``calib_samples`` calibration images (every rung), ``promote_margin_se`` the
    promotion margin in standard errors. ``finetune_steps``: QAT steps per trial.
    """

    name: str
    finetune_steps: int = 0
    fidelity: str = DEFAULT_FIDELITY
    cheap_val_samples: int = DEFAULT_CHEAP_VAL
    calib_samples: int = DEFAULT_CALIB_SAMPLES
    promote_margin_se: float = DEFAULT_MARGIN_SE

    def __post_init__(self) -> None:
        steps = self.finetune_steps
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
            raise LowbitError(f"finetune_steps must be a non-negative integer, got {steps!r}")
        if self.fidelity not in FIDELITY_MODES:
            raise LowbitError(
                f"fidelity: unknown {self.fidelity!r} (valid: {', '.join(FIDELITY_MODES)})"
            )


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class UserModel:
    """Your own trained ``torch.nn.Module`` (copied, never modified) and your metric.

    Attributes:
        module: the model.
        example_input: a batch ``(n, *sample_shape)`` the model accepts.
        evaluate: ``evaluate(model) -> float``, higher is better; called on compressed copies.
        calib: inputs for activation-range calibration: a tensor or a DataLoader (the first
            ``calib_samples`` samples are used).
        evaluate_test: optional held-out metric for the final Pareto set.
        name: model name in the run files (default: the class name, lower case).
    """

    module: Any
    example_input: Any
    evaluate: Callable[[Any], float]
    calib: Any
    evaluate_test: Callable[[Any], float] | None = None
    name: str | None = None
    calib_samples: int = DEFAULT_CALIB_SAMPLES

    def __post_init__(self) -> None:
        problems = []
        if not callable(self.evaluate):
            problems.append(f"evaluate must be callable, got {type(self.evaluate).__name__}")
        if self.evaluate_test is not None and not callable(self.evaluate_test):
            problems.append(
                f"evaluate_test must be callable, got {type(self.evaluate_test).__name__}"
            )
        if problems:
            raise LowbitError("user model: " + "; ".join(problems))


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchSetup:
    """One search run: the model and hardware (for :func:`lowbit.search.run_search`; unused
    by :func:`lowbit.search.execute`, whose space and evaluator spec carry them) and how the
    studies run.

    ``study_name`` defaults (in ``run_search``) to ``MODEL-PROFILE-sSEED``. With
    ``co_design`` (zoo models) the profile's ``[[tunables]]`` are searched too, under the
    area budget ``area_budget_mm2`` (mm², the profile's ``[area]`` model); ``hardware`` must
    then be a built-in name or a ``.toml`` file (its raw data is varied).
    """

    n_trials: int
    out_dir: Path
    model: ZooModel | UserModel | None = None
    hardware: str | Path | HardwareProfile | None = None
    study_name: str | None = None
    workers: int = 1
    storage: str | None = None
    sampler: str = DEFAULT_SAMPLER
    seed: int = 0
    ray_address: str | None = None
    max_latency_ms: float | None = None
    min_accuracy: float | None = None
    methods: tuple[str, ...] = ("joint",)
    objectives: tuple[str, ...] = DEFAULT_OBJECTIVES
    pin_first_last: bool = False
    trial_timeout_s: float | None = None
    co_design: bool = False
    area_budget_mm2: float | None = None
    progress: bool = True
    #: sensitivity screen before the searched methods (:mod:`lowbit.search.screen`):
    #: "auto" (when there is an accuracy constraint), "on" or "off"
    screen: str = DEFAULT_SCREEN

    def __post_init__(self) -> None:
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        object.__setattr__(self, "methods", tuple(self.methods))
        object.__setattr__(self, "objectives", tuple(self.objectives))
        if self.area_budget_mm2 is not None and not self.co_design:
            raise LowbitError("an area budget needs co-design (co_design=True / --co-design)")
        problems = []
        if not isinstance(self.n_trials, int) or self.n_trials < 1:
            problems.append(f"n_trials: must be a positive integer, got {self.n_trials!r}")
        if not isinstance(self.workers, int) or self.workers < 1:
            problems.append(f"workers: must be a positive integer, got {self.workers!r}")
        if self.sampler not in SAMPLERS:
            problems.append(f"sampler: unknown {self.sampler!r} (valid: {', '.join(SAMPLERS)})")
        for name in self.methods:
            try:
                get_method(name)
            except ValueError as exc:
                problems.append(f"methods: {exc}")
            if isinstance(self.model, UserModel) and name in USER_UNSUPPORTED_METHODS:
                problems.append(
                    f"methods: {name!r} is not available for user models "
                    f"({USER_UNSUPPORTED_METHODS[name]})"
                )
        unknown = [o for o in self.objectives if o not in OBJECTIVES]
        if unknown:
            problems.append(f"objectives: unknown {unknown} (valid: {', '.join(OBJECTIVES)})")
        if self.objectives[:2] != DEFAULT_OBJECTIVES:
            problems.append(f"objectives: must start with {', '.join(DEFAULT_OBJECTIVES)}")
        if len(set(self.objectives)) != len(self.objectives):
            problems.append(f"objectives: repeated names in {list(self.objectives)}")
        for key in ("max_latency_ms", "trial_timeout_s"):
            value = getattr(self, key)
            if value is not None and not value > 0:
                problems.append(f"{key}: must be > 0, got {value!r}")
        if self.min_accuracy is not None and not 0 <= self.min_accuracy <= 1:
            problems.append(f"min_accuracy: must be a fraction in [0, 1], got {self.min_accuracy}")
        if self.screen not in SCREEN_MODES:
            problems.append(f"screen: unknown {self.screen!r} (valid: {', '.join(SCREEN_MODES)})")
        if self.co_design and isinstance(self.model, UserModel):
            problems.append("co_design: available for zoo models only")
        if self.co_design and isinstance(self.hardware, HardwareProfile):
            problems.append(
                "co_design: needs the profile as a built-in name or a .toml file, "
                "not a built HardwareProfile"
            )
        if problems:
            raise LowbitError("invalid search settings: " + "; ".join(problems))

    @property
    def screens(self) -> bool:
        """Whether the searched methods run on a screened space."""
        return self.screen == "on" or (self.screen == "auto" and self.min_accuracy is not None)

    @property
    def constraints(self) -> dict[str, float]:
        out = {}
        if self.max_latency_ms is not None:
            out["max_latency_ms"] = float(self.max_latency_ms)
        if self.min_accuracy is not None:
            out["min_accuracy"] = float(self.min_accuracy)
        return out


@dataclass(frozen=True, slots=True)
class SearchResult:
    run_dir: Path
    summary: dict[str, Any]
    methods: dict[str, MethodSummary] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PreparedSearch:
    """A setup's model made ready for the driver, before Ray starts
    (:func:`lowbit.search.zoo.prepare_zoo`, :func:`lowbit.search.user.prepare_user`).

    Attributes:
        space: the search space.
        study_name: the default study name (``MODEL-PROFILE-sSEED``).
        evaluator: ``with evaluator() as spec:`` ships the model and data to Ray's object
            store (Ray running) and gives the evaluator spec for the run.
    """

    space: SearchSpace
    study_name: str
    evaluator: Callable[[], AbstractContextManager[Any]]


def resolve_profile(hardware: str | Path | HardwareProfile) -> HardwareProfile:
    """``hardware`` as a profile: a built one as is, else loaded (a built-in name or a file)."""
    if isinstance(hardware, HardwareProfile):
        return hardware
    from lowbit.hwsim.profiles import load_profile

    return load_profile(hardware)
