"""Hardware co-design: the accelerator's tunable parameters as part of the search space.

A profile may declare ``[[tunables]]`` (a key path and its values) and an ``[area]`` model
(lowbit/hardware_profiles/README.md). :class:`CoDesign` turns them into categorical parameters named
``"hw:<key path>"`` beside the per-layer ones, so one study picks the accelerator and the
compression together. Each choice list also holds the profile's own value (the hardware "as
given", which the uniform baselines and the W8A8 reference use).

The area budget is a constraint, not an objective: the area of a trial's hardware depends on
its ``hw:`` parameters only, so it is known when the trial is asked. :meth:`CoDesign.mark`
records it on the trial (user attribute ``area_mm2``) and sets the Optuna constraint
``max_area_mm2 = area - budget`` (feasible when <= 0) right then, before the trial is
evaluated; ``Trial.set_constraint`` is the mechanism the search uses for its latency limit.

Variant profiles are rebuilt from the base profile's raw data with the chosen values as
overrides, so each variant is validated exactly like a ``--set`` on the command line.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lowbit.hwsim.area import area_breakdown
from lowbit.hwsim.errors import LowbitError
from lowbit.hwsim.profile import HardwareProfile

if TYPE_CHECKING:
    import optuna

__all__ = [
    "HW_PREFIX",
    "HARDWARE_KEY",
    "AREA_CONSTRAINT",
    "HardwareChoice",
    "CoDesign",
    "HardwareVariant",
    "build_codesign",
    "hardware_variant",
]

#: Optuna parameter name prefix of a hardware parameter ("hw:compute.rows")
HW_PREFIX = "hw:"
#: reserved entry of a trial's per-layer settings holding the hardware overrides
HARDWARE_KEY = "@hardware"
#: name of the area constraint (Trial.set_constraint) and of its user attribute
AREA_CONSTRAINT = "max_area_mm2"
#: hardware combinations :meth:`CoDesign.warm_start_overrides` examines at most
MAX_ENUMERATED = 4096


@dataclass(frozen=True, slots=True)
class HardwareChoice:
    """One tunable profile key: its choices and the base profile's own value."""

    key: str
    values: tuple[int | float, ...]
    base: int | float

    @property
    def param(self) -> str:
        return HW_PREFIX + self.key


@dataclass(frozen=True, slots=True)
class CoDesign:
    """The hardware part of a search space (frozen, JSON round-trippable).

    Attributes:
        profile_data: the base profile's raw (TOML) data as canonical JSON.
        source: where it came from (a built-in name or a file), for error messages.
        choices: the tunable keys and their choices.
        area_budget_mm2: the area constraint, or None to only record the area.
    """

    profile_data: str
    source: str
    choices: tuple[HardwareChoice, ...]
    area_budget_mm2: float | None = None

    def __post_init__(self) -> None:
        if self.area_budget_mm2 is not None and not self.area_budget_mm2 > 0:
            raise ValueError(f"area_budget_mm2 must be > 0, got {self.area_budget_mm2!r}")

    # --- parameters ----------------------------------------------------------------------
    def base_params(self) -> dict[str, int | float]:
        """Every ``hw:`` parameter at the base profile's value."""
        return {c.param: c.base for c in self.choices if len(c.values) > 1}

    def overrides(self, params: Mapping[str, Any]) -> dict[str, int | float]:
        """Profile overrides ``{key path: value}`` of ``params`` (missing ones: base value)."""
        return {c.key: params.get(c.param, c.base) for c in self.choices}

    # --- profiles and area ---------------------------------------------------------------
    def profile(self, overrides: Mapping[str, Any]) -> HardwareProfile:
        """The validated variant profile (cached per process; equal overrides give the same
        object, so the simulator's per-profile caches stay warm)."""
        key = tuple(sorted((k, overrides[k]) for k in overrides))
        return _variant(self.profile_data, self.source, key)

    def area_mm2(self, overrides: Mapping[str, Any]) -> float:
        """Silicon area of the variant (``hwsim.area``); NaN if the profile has no [area]."""
        profile = self.profile(overrides)
        return area_breakdown(profile).total_mm2 if profile.area is not None else float("nan")

    def mark(self, trial: optuna.Trial, params: Mapping[str, Any]) -> None:
        """Record the area of ``trial``'s hardware and set its area constraint (docstring).

        A hardware combination that is not a valid profile raises its ProfileError; the
        driver fails the trial with that reason.
        """
        area = self.area_mm2(self.overrides(params))
        if area == area:  # not NaN: the profile has an [area] model
            trial.set_user_attr("area_mm2", area)
        if self.area_budget_mm2 is not None:
            violation = area - self.area_budget_mm2
            trial.set_constraint(AREA_CONSTRAINT, violation)
            trial.set_user_attr(f"constraint.{AREA_CONSTRAINT}", violation)

    def warm_start_overrides(self) -> dict[str, int | float] | None:
        """The hardware the search's warm start (uniform W8A8, W4A8, ...) runs on: the
        profile as given if it fits the budget, else the valid combination of choices with
        the largest area that fits (the most hardware the budget buys; ties: fewest changed
        keys), or None when no combination fits. At most :data:`MAX_ENUMERATED` combinations
        are examined (a seeded random sample beyond that)."""
        base = self.overrides({})
        budget = self.area_budget_mm2
        if budget is None or self.area_mm2(base) <= budget:
            return base
        from lowbit.hwsim.errors import ProfileError
        from lowbit.hwsim.profiles import profile_from_dict

        data = json.loads(self.profile_data)
        data.pop("tunables", None)  # area only: skip re-validating every tunable per variant
        keys = [c.key for c in self.choices]
        values = [c.values for c in self.choices]
        if math.prod(len(v) for v in values) <= MAX_ENUMERATED:
            combos = list(itertools.product(*values))
        else:  # too many to try: a seeded random sample
            rng = random.Random(0)
            combos = [tuple(rng.choice(v) for v in values) for _ in range(MAX_ENUMERATED)]
        best, best_key = None, None
        for combo in combos:
            overrides = dict(zip(keys, combo, strict=True))
            try:
                profile = profile_from_dict(data, source=self.source, overrides=overrides)
            except ProfileError:
                continue
            area = area_breakdown(profile).total_mm2
            changed = sum(overrides[k] != base[k] for k in keys)
            if area <= budget and (best_key is None or (area, -changed) > best_key):
                best, best_key = overrides, (area, -changed)
        return best

    def describe(self) -> dict[str, Any]:
        """What summary.json says about the co-design (no raw profile data)."""
        base = self.overrides({})
        return {
            "tunables": {c.key: list(c.values) for c in self.choices},
            "base": base,
            "base_area_mm2": self.area_mm2(base),
            "area_budget_mm2": self.area_budget_mm2,
        }

    # --- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CoDesign:
        choices = tuple(
            HardwareChoice(key=c["key"], values=tuple(c["values"]), base=c["base"])
            for c in data["choices"]
        )
        return cls(
            profile_data=data["profile_data"],
            source=data["source"],
            choices=choices,
            area_budget_mm2=data.get("area_budget_mm2"),
        )


@functools.lru_cache(maxsize=256)
def _variant(
    profile_data: str, source: str, overrides: tuple[tuple[str, Any], ...]
) -> HardwareProfile:
    from lowbit.hwsim.profiles import profile_from_dict

    return profile_from_dict(json.loads(profile_data), source=source, overrides=dict(overrides))


def _lookup(node: Any, key: str) -> Any:
    """The value at key path ``key`` in nested dicts/lists (entries by name or index)."""
    for part in key.split("."):
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list):
            named = [e for e in node if isinstance(e, dict) and e.get("name") == part]
            if named:
                node = named[0]
            elif part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return None
        else:
            return None
        if node is None:
            return None
    return node


def build_codesign(
    hardware: str | Path, *, area_budget_mm2: float | None = None
) -> tuple[CoDesign, HardwareProfile]:
    """The co-design space of profile ``hardware`` (a built-in name or a ``.toml`` file)
    and its base profile.

    Raises:
        LowbitError: the profile declares no ``[[tunables]]``, or a budget is given and it
            has no ``[area]`` model.
    """
    from lowbit.hwsim.profiles import load_profile_data, profile_from_dict

    data = load_profile_data(hardware)
    source = str(hardware)
    profile = profile_from_dict(data, source=source)
    if not profile.tunables:
        raise LowbitError(
            f"{source}: co-design needs [[tunables]] in the profile (key paths and values "
            "to choose from; see lowbit/hardware_profiles/README.md)"
        )
    if area_budget_mm2 is not None and profile.area is None:
        raise LowbitError(
            f"{source}: an area budget needs an [area] model in the profile "
            "(see lowbit/hardware_profiles/README.md)"
        )
    built = asdict(profile)
    choices = []
    for tunable in profile.tunables:
        base = _lookup(data, tunable.key)
        if base is None:
            base = _lookup(built, tunable.key)  # a default the file leaves out
        if not isinstance(base, (int, float)) or isinstance(base, bool):
            raise LowbitError(f"{source}: tunable {tunable.key}: no numeric base value")
        values = tuple(sorted(set(tunable.values) | {base}))
        choices.append(HardwareChoice(key=tunable.key, values=values, base=base))
    codesign = CoDesign(
        profile_data=json.dumps(data, sort_keys=True),
        source=source,
        choices=tuple(choices),
        area_budget_mm2=area_budget_mm2,
    )
    return codesign, profile


@dataclass(frozen=True, slots=True)
class HardwareVariant:
    """The hardware a co-design trial chose, as its deployment config records it under
    ``hardware`` (beside the variant's ``content_hash``).

    Attributes:
        base_content_hash: the base profile's content hash.
        overrides: the chosen values ``{key path: value}``.
        area_mm2: the variant's silicon area (None: the profile has no ``[area]`` model).
        area: its area breakdown (``hwsim.area``), or None likewise.
    """

    base_content_hash: str
    overrides: dict[str, int | float]
    area_mm2: float | None
    area: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "base_content_hash": self.base_content_hash,
            "overrides": self.overrides,
            "area_mm2": self.area_mm2,
            "area": self.area,
        }


def hardware_variant(codesign: CoDesign, params: Mapping[str, Any]) -> tuple[str, HardwareVariant]:
    """The content hash and :class:`HardwareVariant` of the hardware a trial with ``params``
    chose (what its deployment config records)."""
    overrides = codesign.overrides(params)
    variant = codesign.profile(overrides)
    area = area_breakdown(variant) if variant.area else None
    record = HardwareVariant(
        base_content_hash=codesign.profile({}).content_hash(),
        overrides=overrides,
        area_mm2=area.total_mm2 if area is not None else None,
        area=area.to_dict() if area is not None else None,
    )
    return variant.content_hash(), record
