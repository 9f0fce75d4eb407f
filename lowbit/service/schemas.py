"""Request bodies of the HTTP API: pydantic models with bounds, unknown fields rejected.

A body that does not fit is answered with 422 and FastAPI's list of problems, each with the
field's location (``["body", "trials"]``). Names (profiles, models, workloads, methods) are
checked against lowbit's registries here, so a typo is a 422 naming the field and the valid
choices, never a path handed to the file system.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lowbit.hwsim import DEFAULT_ENGINE, engine_names
from lowbit.search.registry import (
    BASELINE_NAMES,
    DEFAULT_OBJECTIVES,
    DEFAULT_SAMPLER,
    DEFAULT_SCREEN,
    OBJECTIVE_NAMES,
    SAMPLER_NAMES,
    SCREEN_MODES,
)

__all__ = [
    "MAX_TRIALS",
    "MAX_WORKERS",
    "SimulateRequest",
    "SearchRequest",
    "profile_names",
    "model_names",
    "workload_names",
]

#: budget bounds of one search started through the API
MAX_TRIALS = 2000
MAX_WORKERS = 8
_BITS = re.compile(r"^[Ww](\d{1,2})[Aa](\d{1,2})$")
_NAME = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$"


@functools.cache
def profile_names() -> tuple[str, ...]:
    from lowbit.hwsim.profiles import builtin_profile_names

    return tuple(builtin_profile_names())


@functools.cache
def model_names() -> tuple[str, ...]:
    from lowbit.models.zoo import ZOO

    return tuple(ZOO)


@functools.cache
def workload_names() -> tuple[str, ...]:
    """Built-in workloads and the zoo models (registered as workloads)."""
    from lowbit.hwsim.workloads import workload_names as names
    from lowbit.models.bridge import register_zoo_workloads

    register_zoo_workloads()
    return tuple(names())


def _one_of(value: str, valid: tuple[str, ...], what: str) -> str:
    if value not in valid:
        raise ValueError(f"unknown {what} {value!r} (valid: {', '.join(valid)})")
    return value


class _Body(BaseModel):
    # strict: "5" is not a number and "true" not a boolean (an integer is still a float)
    model_config = ConfigDict(extra="forbid", strict=True)


class SimulateRequest(_Body):
    """``POST /v1/simulate``: what ``lowbit simulate`` takes, as JSON."""

    profile: str | dict[str, Any] = Field(
        description="a built-in profile name, or an inline profile (the TOML schema as JSON)"
    )
    overrides: dict[str, int | float | bool | str] = Field(
        default_factory=dict,
        max_length=64,
        description='profile key overrides, as --set (e.g. {"compute.rows": 64})',
    )
    workload: str = Field(pattern=_NAME, description="built-in workload or zoo model name")
    bits: str | None = Field(default=None, description="uniform bits for every layer, e.g. W4A8")
    plan: dict[str, Any] | None = Field(
        default=None, description="per-layer compression plan (models.plan JSON)"
    )
    engine: Literal[tuple(engine_names())] = DEFAULT_ENGINE  # type: ignore[valid-type]

    @field_validator("profile")
    @classmethod
    def _profile(cls, value: str | dict[str, Any]) -> str | dict[str, Any]:
        return _one_of(value, profile_names(), "profile") if isinstance(value, str) else value

    @field_validator("workload")
    @classmethod
    def _workload(cls, value: str) -> str:
        return _one_of(value, workload_names(), "workload")

    @field_validator("bits")
    @classmethod
    def _bits(cls, value: str | None) -> str | None:
        if value is None:
            return value
        match = _BITS.match(value)
        ok = match and all(1 <= int(b) <= 16 or int(b) == 32 for b in match.groups())
        if not ok:
            raise ValueError(f"expected WxAy with bits 1-16 or 32, like W4A8; got {value!r}")
        return value

    @model_validator(mode="after")
    def _bits_or_plan(self) -> SimulateRequest:
        if self.bits is not None and self.plan is not None:
            raise ValueError("give bits or plan, not both")
        return self


class SearchRequest(_Body):
    """``POST /v1/searches``: a search of ``model`` on built-in ``profile``."""

    model: str = Field(pattern=_NAME, description="zoo model name")
    profile: str = Field(pattern=_NAME, description="built-in hardware profile name")
    trials: int = Field(ge=1, le=MAX_TRIALS, description="completed trials per searched method")
    workers: int = Field(default=1, ge=1, le=MAX_WORKERS, description="Ray workers")
    baselines: list[Literal[BASELINE_NAMES]] = Field(  # type: ignore[valid-type]
        default_factory=list, max_length=len(BASELINE_NAMES)
    )
    sampler: Literal[SAMPLER_NAMES] = DEFAULT_SAMPLER  # type: ignore[valid-type]
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    objectives: list[Literal[OBJECTIVE_NAMES]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: list(DEFAULT_OBJECTIVES),
        min_length=2,
        max_length=len(OBJECTIVE_NAMES),
    )
    max_latency_ms: float | None = Field(default=None, gt=0, le=1e6)
    min_accuracy: float | None = Field(default=None, ge=0, le=1)
    screen: Literal[SCREEN_MODES] = DEFAULT_SCREEN  # type: ignore[valid-type]
    pin_first_last: bool = False
    finetune_steps: int = Field(default=0, ge=0, le=1000)
    trial_timeout_s: float | None = Field(default=None, gt=0, le=86400)
    co_design: bool = False
    area_budget_mm2: float | None = Field(default=None, gt=0, le=1e6)

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        return _one_of(value, model_names(), "model")

    @field_validator("profile")
    @classmethod
    def _profile(cls, value: str) -> str:
        return _one_of(value, profile_names(), "profile")

    @field_validator("baselines", "objectives")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"repeated names in {value}")
        return value

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, value: list[str]) -> list[str]:
        if tuple(value[:2]) != DEFAULT_OBJECTIVES:
            raise ValueError(f"must start with {', '.join(DEFAULT_OBJECTIVES)}")
        return value

    @model_validator(mode="after")
    def _area(self) -> SearchRequest:
        if self.area_budget_mm2 is not None and not self.co_design:
            raise ValueError("area_budget_mm2 needs co_design: true")
        return self
