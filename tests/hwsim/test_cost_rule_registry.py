"""The cost-rule registry: a rule registered beside lowbit's own is in the ``[overheads]``
schema, read from profiles and applied by every engine, with no other change; registration
refuses a rule that breaks the contract; at its defaults a rule changes nothing (results,
the built profile's JSON and its hash)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import pytest

from lowbit import hwsim
from lowbit.hwsim._cost_rule_base import count_key
from lowbit.hwsim._cost_rules import (
    COST_RULES,
    GENERAL_OVERHEAD_KEYS,
    CostRule,
    GemmLaunch,
    LayerCall,
    Requantization,
    register_cost_rule,
)
from lowbit.hwsim._profile_schema import OVERHEADS
from lowbit.hwsim.profile import Overheads
from lowbit.hwsim.profiles import load_profile_data, profile_from_dict, validate_profile_data


@dataclass(frozen=True, slots=True)
class LayerFence(CostRule):
    """A toy runtime that fences every layer with weights: ``fence_cycles`` once per layer
    that runs GEMMs."""

    keys = {"fence_cycles": count_key(0, 0, 10**9)}
    fence_cycles: int = 0

    def fixed_cycles(self, call: LayerCall) -> int:
        return self.fence_cycles if call.gemms else 0


@pytest.fixture
def fence():
    """The toy rule, registered for one test only (the README documents the real ones)."""
    rule = register_cost_rule(LayerFence)
    try:
        yield rule
    finally:
        COST_RULES.remove(rule)


def _profile(**overheads):
    data = load_profile_data("npu-systolic-32")
    data.setdefault("overheads", {}).update(overheads)
    return profile_from_dict(data, source="toy")


def test_a_registered_rule_is_read_and_applied_by_every_engine(fence):
    assert "fence_cycles" in OVERHEADS.keys and COST_RULES[-1] is LayerFence
    base, fenced = _profile(), _profile(fence_cycles=1000)
    assert fenced.overheads.registered == (("fence_cycles", 1000),)
    assert base.overheads.registered == ()  # at its default: left out
    workload = hwsim.builtin_workload("resnet18")
    gemm_layers = sum(1 for layer in workload.layers if layer.gemms())
    for engine in hwsim.engine_names():
        before = hwsim.simulate(workload, base, engine=engine)
        after = hwsim.simulate(workload, fenced, engine=engine)
        assert after.total_cycles == before.total_cycles + 1000 * gemm_layers
    # the generic schema walk checks its key like any other
    problems = validate_profile_data(
        {**load_profile_data("npu-systolic-32"), "overheads": {"fence_cycles": -1}}
    )
    assert problems == ["overheads.fence_cycles: must be >= 0, got -1"]


def test_an_unregistered_rule_is_unknown_and_the_record_unchanged():
    assert "fence_cycles" not in OVERHEADS.keys
    problems = validate_profile_data(
        {**load_profile_data("npu-systolic-32"), "overheads": {"fence_cycles": 10}}
    )
    assert len(problems) == 1 and problems[0].startswith("overheads.fence_cycles: unknown key")
    profile = _profile()
    assert profile.overheads.registered == ()
    assert "registered" not in profile.to_dict()["overheads"]  # the JSON lowbit printed before


def test_a_rule_at_its_defaults_changes_nothing(fence):
    """Registering a rule changes no result, and no hash, of a profile that leaves it out."""
    plain = _profile()
    COST_RULES.remove(fence)
    try:
        before = _profile()
    finally:
        COST_RULES.append(fence)
    assert plain.content_hash() == before.content_hash()
    workload = hwsim.builtin_workload("mobilenetv2")
    for engine in hwsim.engine_names():
        got = hwsim.simulate(workload, plain, engine=engine).to_dict()
        assert got == hwsim.simulate(workload, before, engine=engine).to_dict()


def test_order_of_registration_is_the_order_of_application(fence):
    COST_RULES.remove(fence)
    register_cost_rule(fence, before=Requantization)
    assert COST_RULES.index(fence) == COST_RULES.index(Requantization) - 1


@dataclass(frozen=True, slots=True)
class TakesAKey(CostRule):
    keys = {"gemm_cycles": count_key(0, 0, 10**9)}
    gemm_cycles: int = 0


@dataclass(frozen=True, slots=True)
class Mismatched(CostRule):
    keys = {"a_cycles": count_key(0, 0, 10**9), "run_cycles": count_key(0, 0, 10**9)}
    b_cycles: int = 0
    run_cycles: int = 3


class Undeclared(CostRule):
    """Not a dataclass of its own: its keys have no fields."""

    keys = {"undeclared_cycles": count_key(0, 0, 10**9)}


def test_registration_names_every_broken_rule_of_the_contract(fence):
    with pytest.raises(ValueError, match="already registered"):
        register_cost_rule(LayerFence)
    with pytest.raises(ValueError, match="gemm_cycles: already a key of GemmLaunch"):
        register_cost_rule(TakesAKey)
    with pytest.raises(ValueError) as info:
        register_cost_rule(Mismatched)
    assert str(info.value) == (
        "cost rule Mismatched: a_cycles: no field; b_cycles: a field without a key; "
        "run_cycles: already a key of every target; "
        "run_cycles: must be optional with the field's default"
    )
    with pytest.raises(ValueError, match="undeclared_cycles: no field"):
        register_cost_rule(Undeclared)
    with pytest.raises(ValueError, match="must be a dataclass subclass of CostRule"):
        register_cost_rule(Overheads)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="before=TakesAKey is not registered"):
        register_cost_rule(Undeclared, before=TakesAKey)
    assert COST_RULES.count(LayerFence) == 1 and TakesAKey not in COST_RULES


def test_the_record_holds_every_built_in_key_and_the_general_ones():
    record = {f.name for f in fields(Overheads)} - {"registered"}
    assert record == set(OVERHEADS.keys) and set(GENERAL_OVERHEAD_KEYS) <= record
    assert tuple(OVERHEADS.keys)[: len(GENERAL_OVERHEAD_KEYS)] == GENERAL_OVERHEAD_KEYS
    launch = replace(Overheads(), gemm_cycles=5)
    assert GemmLaunch.of(launch) == GemmLaunch(gemm_cycles=5)
