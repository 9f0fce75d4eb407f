"""The strategy classes: precision models (one registry) and CPU cost rules (one list).

Each owns its keys, its checks and its behaviour; the schema, the validation, the builder
and the engines ask them and never name one. Results before and after the move are pinned
in test_golden_equivalence.py.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import fields, replace
from pathlib import Path

import pytest

from lowbit import hwsim
from lowbit.hwsim import _cost_rules, _precision_models
from lowbit.hwsim._cost_rule_base import CostRule, GemmCall, LayerCall, RunShape
from lowbit.hwsim._cost_rules import COST_RULES, GENERAL_OVERHEAD_KEYS, RuleSet
from lowbit.hwsim._precision_models import (
    PRECISION_MODELS,
    PrecisionModel,
    expand_precisions,
    register_precision_model,
)
from lowbit.hwsim._profile_schema import OVERHEADS, SCHEMA, Key, Table
from lowbit.hwsim.errors import ProfileError
from lowbit.hwsim.profile import DEPTHWISE_KEYS, Overheads, Precision
from lowbit.hwsim.profiles import (
    builtin_profile_names,
    load_profile,
    load_profile_data,
    profile_from_dict,
    validate_profile_data,
)
from lowbit.hwsim.workload import Compression, Conv2d, Elementwise, Linear, MatMul, Pool

COMPUTE = SCHEMA.keys["compute"]
#: [overheads] keys every target has (not a cost rule's)
GENERAL = set(GENERAL_OVERHEAD_KEYS)


# --- precision models ------------------------------------------------------------------


def test_the_registry_is_the_schemas_only_list_of_models():
    choices = COMPUTE.keys["precision_model"].choices
    assert choices == tuple(PRECISION_MODELS)
    assert {"table", "bitfusion", "bitserial"} <= set(choices)
    for name in choices:
        model = PRECISION_MODELS[name]
        assert isinstance(model, PrecisionModel) and model.name == name
        # its sub-table is the schema's, or it has none
        assert COMPUTE.keys.get(name) is model.table
    # the modules that used to branch on names ask the registry instead
    for module in ("_profile_rules", "_profile_schema", "profiles"):
        text = (Path(hwsim.__file__).parent / f"{module}.py").read_text(encoding="utf-8")
        assert '"bitfusion"' not in text and '"bitserial"' not in text, module


@pytest.mark.parametrize("name", builtin_profile_names())
def test_every_builtin_names_a_registered_model_and_builds_its_modes(name):
    data = load_profile_data(name)
    model = data["compute"].get("precision_model", "table")
    assert model in PRECISION_MODELS
    profile = load_profile(name)
    modes = {(p.w_bits, p.a_bits) for p in profile.compute.precisions}
    explicit = {(p["w_bits"], p["a_bits"]) for p in data["compute"].get("precision", [])}
    assert explicit <= modes and (model == "table") == (modes == explicit)


class Nibble(PrecisionModel):
    """A toy datapath: W8A8 at the base rate, and W4A4 at ``w4a4_speedup`` times it, at a
    quarter of the energy per MAC."""

    name = "nibble"
    table = Table(
        {
            "w8a8_macs_per_pe_per_cycle": Key("number", low=1e-3, high=4096),
            "w4a4_speedup": Key("number", required=False, default=4.0, low=1, high=16),
            "energy_pj_per_mac": Key("number", low=0, high=1e4),
        },
        required=False,
    )

    def check(self, compute: Mapping, out: list[str]) -> list[tuple[int, int]]:
        params = compute.get(self.name)
        if params is None:
            out.append('compute.nibble: missing (precision_model = "nibble" needs it)')
        elif isinstance(params, dict) and params.get("w4a4_speedup") == 3:
            out.append("compute.nibble.w4a4_speedup: must be a power of two, got 3")
        return [(8, 8), (4, 4)]

    def derive(self, compute: Mapping) -> list[Precision]:
        p = compute[self.name]
        rate, energy = p["w8a8_macs_per_pe_per_cycle"], p["energy_pj_per_mac"]
        return [
            Precision(8, 8, rate, energy),
            Precision(4, 4, rate * p["w4a4_speedup"], energy / 4),
        ]


@pytest.fixture
def nibble():
    """The toy model, registered for one test only (the README documents the real ones)."""
    model = register_precision_model(Nibble())
    try:
        yield model
    finally:
        del PRECISION_MODELS[model.name]


def _on(compute_base: str, **compute) -> dict:
    data = load_profile_data(compute_base)
    for key in ("precision_model", "precision", "bitfusion", "bitserial"):
        data["compute"].pop(key, None)
    data["compute"].update(copy.deepcopy(compute))
    return data


def test_a_registered_model_is_validated_and_simulated_without_other_changes(nibble):
    params = {"w8a8_macs_per_pe_per_cycle": 1.0, "energy_pj_per_mac": 0.2}
    data = _on("npu-systolic-32", precision_model="nibble", nibble=params)
    assert validate_profile_data(data) == []
    profile = profile_from_dict(data, source="toy")
    modes = {(p.w_bits, p.a_bits): p for p in profile.compute.precisions}
    assert modes[(4, 4)].macs_per_pe_per_cycle == 4.0 and modes[(4, 4)].energy_pj_per_mac == 0.05
    # simulated exactly as the explicit table it derives
    table = [
        {
            "w_bits": w,
            "a_bits": a,
            "macs_per_pe_per_cycle": p.macs_per_pe_per_cycle,
            "energy_pj_per_mac": p.energy_pj_per_mac,
        }
        for (w, a), p in modes.items()
    ]
    explicit = profile_from_dict(_on("npu-systolic-32", precision=table), source="toy")
    workload = hwsim.builtin_workload("resnet18")
    w4a4 = workload.with_compression(
        {layer.name: Compression(w_bits=4, a_bits=4) for layer in workload.layers}
    )
    for engine in hwsim.engine_names():
        toy = hwsim.simulate(w4a4, profile, engine=engine)
        assert toy.to_dict() == hwsim.simulate(w4a4, explicit, engine=engine).to_dict()
        assert toy.total_cycles < hwsim.simulate(workload, profile, engine=engine).total_cycles
    # its rules, the generic ones, overrides and defaults all reach it
    problems = validate_profile_data(_on("npu-systolic-32", precision_model="nibble"))
    assert problems == ['compute.nibble: missing (precision_model = "nibble" needs it)']
    bad = _on("npu-systolic-32", precision_model="nibble", nibble={**params, "w4a4_speedup": 3})
    assert validate_profile_data(bad) == [
        "compute.nibble.w4a4_speedup: must be a power of two, got 3"
    ]
    w8a8 = [{"w_bits": 8, "a_bits": 8, "macs_per_pe_per_cycle": 2, "energy_pj_per_mac": 1}]
    twice = _on("npu-systolic-32", precision_model="nibble", nibble=params, precision=w8a8)
    assert validate_profile_data(twice) == [
        'compute.precision[0]: W8A8 is already defined by precision_model = "nibble"'
    ]
    stray = _on("npu-systolic-32", precision=table, nibble=params)
    assert validate_profile_data(stray) == [
        'compute.nibble: only read when precision_model = "nibble" (it is "table")'
    ]
    faster = profile_from_dict(data, source="toy", overrides={"compute.nibble.w4a4_speedup": 8})
    assert faster.compute.peak_macs_per_cycle(4, 4) == 8 * profile.compute.pes
    with pytest.raises(ProfileError, match=r"compute\.nibble\.w4a4_speedup: must be <= 16"):
        profile_from_dict(data, source="toy", overrides={"compute.nibble.w4a4_speedup": 32})


def test_registration_refuses_a_taken_or_empty_name(nibble):
    with pytest.raises(ValueError, match="already registered"):
        register_precision_model(Nibble())
    with pytest.raises(ValueError, match="has no name"):
        register_precision_model(PrecisionModel())
    assert "nibble" in COMPUTE.keys["precision_model"].choices


def test_an_unregistered_model_is_unknown_again():
    assert "nibble" not in PRECISION_MODELS
    problems = validate_profile_data(_on("npu-systolic-32", precision_model="nibble"))
    assert problems == [
        "compute.precision_model: unknown 'nibble' (valid: table, bitfusion, bitserial)"
    ]


def test_expand_precisions_adds_explicit_entries_to_any_model():
    compute = {
        "precision_model": "bitserial",
        "bitserial": {
            "bits": [1, 2],
            "w1a1_macs_per_pe_per_cycle": 4.0,
            "w1a1_energy_pj_per_mac": 0.1,
        },
        "precision": [
            {"w_bits": 32, "a_bits": 32, "macs_per_pe_per_cycle": 0.5, "energy_pj_per_mac": 3.0}
        ],
    }
    modes = expand_precisions(compute)
    assert [(p.w_bits, p.a_bits, p.macs_per_pe_per_cycle) for p in modes] == [
        (1, 1, 4.0), (1, 2, 2.0), (2, 1, 2.0), (2, 2, 1.0), (32, 32, 0.5)
    ]  # fmt: skip


# --- cost rules --------------------------------------------------------------------------


def test_each_overheads_key_is_owned_once_and_matches_its_field():
    owners: dict[str, str] = {}
    # every field but the registered (non-built-in) rules' values
    record = {f.name: f for f in fields(Overheads) if f.name != "registered"}
    for rule in COST_RULES:
        names = {f.name for f in fields(rule)}
        assert names == set(rule.keys), rule.__name__  # its fields are its keys
        for name in names:
            assert name not in owners, f"{name}: {owners.get(name)} and {rule.__name__}"
            owners[name] = rule.__name__
            rule_field = next(f for f in fields(rule) if f.name == name)
            assert rule_field.default == record[name].default, name
            spec = rule.keys[name]
            if isinstance(spec, Key):  # the TOML default builds the field's default
                assert spec.default == record[name].default and not spec.required, name
    assert set(owners) | GENERAL == set(record) and not set(owners) & GENERAL
    assert set(OVERHEADS.keys) == set(record)
    assert {owners[key] for key in DEPTHWISE_KEYS} == {"DepthwiseKernel"}


def test_every_rule_at_its_defaults_costs_nothing(make_target):
    """A rule left out of a profile (all defaults) and the rule at its defaults agree."""
    modes = (Precision(8, 8, 1.0, 0.2), Precision(32, 32, 0.5, 1.0))
    conv = Conv2d(name="c", in_h=8, in_w=8, in_c=3, out_c=6, k_h=3, k_w=3, out_h=8, out_w=8)
    fc = Linear(name="fc", in_features=12, out_features=10, tokens=4)
    layers = (
        conv,
        replace(conv, in_c=8, out_c=8, groups=2),
        replace(conv, in_c=8, out_c=8, groups=8),
        fc.with_compression(Compression(rank=3, a_bits=4)),
        MatMul(name="qk", M=4, N=4, K=8, heads=2, compression=Compression(a_bits=2)),
    )
    # a profile whose caches are warm: a rule at its defaults still leaves it as it is
    warm = make_target()
    warm = replace(warm, overheads=replace(warm.overheads, warm_cache=True))
    for cls in COST_RULES:
        rule = cls()
        assert not rule.active()
        assert rule.steady_state(warm, layers) is warm
        for mode in modes:
            for layer in layers:
                gemms = layer.gemms()
                call = LayerCall(layer, gemms, (mode,) * len(gemms), 100)
                assert rule.fixed_cycles(call) == 0
                for i, g in enumerate(gemms):
                    call = GemmCall(layer, g, mode, i == 0, g.K, 1.0)
                    shape = RunShape(g.N, g.K, call.in_channels)
                    assert rule.run_shape(call) is None and rule.own_kernel(call) is None
                    assert rule.adjust_cycles(call, shape=shape, cycles=77) == 77
                    if call.conv:  # the only GEMMs the engines ask for conv rates
                        assert rule.conv_rates(call, shape=shape) == (0.0, 0.0)
        pool = Pool(name="p", in_elements=64, out_elements=16, kind="maxpool", channels=4)
        assert rule.element_count(pool, 64) == 64
        assert rule.element_rate("softmax", integer=True) == 0.0


def test_a_profile_applies_only_the_rules_it_sets():
    assert all(not hooks for hooks in _hooks(RuleSet(Overheads())))
    host = RuleSet(Overheads(conv_cycles_per_pixel=20.0, requant_cycles_per_output=0.5))
    assert [type(r).__name__ for r in host.conv] == ["WindowGather"]
    assert [type(r).__name__ for r in host.adjust] == ["Requantization"]
    assert not host.shape and not host.kernel and not host.fixed and not host.steady
    warm = RuleSet(Overheads(warm_cache=True))
    assert [type(r).__name__ for r in warm.steady] == ["WarmCache"]


def _hooks(rules: RuleSet) -> list[tuple]:
    return [getattr(rules, slot) for slot in RuleSet.__slots__]


def test_rule_order_is_the_order_the_costs_compose(make_target):
    """The output stage bounds the MAC cycles before requantization adds to them: swapping
    the two rules would change a GEMM whose output stage dominates."""
    names = [rule.__name__ for rule in COST_RULES]
    assert names.index("OutputStage") < names.index("Requantization")
    assert names.index("DirectConvKernel") < names.index("ConvReductionBlocking")
    base = make_target()
    fc = Linear(name="fc", in_features=16, out_features=64, tokens=64)
    both = replace(
        base,
        overheads=replace(
            base.overheads, output_stage_cycles_per_output=4.0, requant_cycles_per_output=0.5
        ),
    )
    r = hwsim.simulate_layer(fc, both)
    assert r.compute_cycles == 4 * 64 * 64 + 0.5 * 64 * 64  # max(MACs, stage) + requant


def test_rules_are_listed_once_and_documented():
    assert len(set(COST_RULES)) == len(COST_RULES)
    assert all(issubclass(rule, CostRule) and rule.__doc__ for rule in COST_RULES)
    assert set(_cost_rules.__all__) >= {rule.__name__ for rule in COST_RULES}
    assert _precision_models.PRECISION_MODELS is PRECISION_MODELS


def test_memory_only_costs_come_from_the_rules(make_target):
    base = make_target(layer_cycles=10, tile_cycles=0)
    costs = (("maxpool", 0.5), ("transpose", 0.25))
    overheads = replace(base.overheads, pool_channel_block=64, elementwise_cycles_per_element=costs)
    priced = replace(base, overheads=overheads)
    pool = Pool(name="p", in_elements=16 * 8, out_elements=4 * 8, kind="maxpool", channels=8)
    assert hwsim.simulate_layer(pool, priced).compute_cycles == 0.5 * 16 * 64
    move = Elementwise(name="t", elements=1000, kind="transpose")
    assert hwsim.simulate_layer(move, base).total_cycles == 0  # free: addressed in place
    assert hwsim.simulate_layer(move, priced).compute_cycles == 250
    # the layout change back to NCHW takes the layout change's cost on a profile without
    # its own, and its own where the profile prices it
    back = Elementwise(name="b", elements=1000, kind="transpose_inward")
    assert hwsim.simulate_layer(back, priced).compute_cycles == 250
    own = replace(overheads, elementwise_cycles_per_element=(*costs, ("transpose_inward", 0.5)))
    assert hwsim.simulate_layer(back, replace(base, overheads=own)).compute_cycles == 500


def test_the_layout_change_back_is_priced_by_its_channels(make_target):
    """With the narrow price beside the wide one, a layout change back to NCHW of known
    channels takes the price between them by log2 of its channels (each channel one output
    stream): the narrow one at 32 channels or fewer, the wide one at 256 or more, halfway
    at 90.5 (2^6.5); unknown channels, or a profile without the narrow price, the wide one."""
    base = make_target(layer_cycles=10, tile_cycles=0)
    prices = (("transpose_inward", 0.4), ("transpose_inward_narrow", 0.2))
    priced = replace(base, overheads=replace(base.overheads, elementwise_cycles_per_element=prices))
    wide_only = replace(
        base, overheads=replace(base.overheads, elementwise_cycles_per_element=prices[:1])
    )

    def cycles(channels: int, target=priced) -> int:
        layer = Elementwise(
            name="b", elements=32000, kind="transpose_inward", channels=channels,
            compression=Compression(w_bits=8, a_bits=8),
        )  # fmt: skip
        return hwsim.simulate_layer(layer, target).compute_cycles

    assert cycles(3) == cycles(32) == 0.2 * 32000
    assert cycles(256) == cycles(2048) == cycles(0) == 0.4 * 32000
    assert cycles(64) < cycles(90) < cycles(91) < cycles(128)
    assert abs(cycles(90) - 0.3 * 32000) < 0.01 * 32000  # log2(90) = 6.49
    assert cycles(64, wide_only) == cycles(0, wide_only) == 0.4 * 32000
    # the narrow price alone prices nothing of its own: a plain transpose is untouched
    plain = Elementwise(
        name="t", elements=1000, kind="transpose", channels=32,
        compression=Compression(w_bits=8, a_bits=8),
    )  # fmt: skip
    assert hwsim.simulate_layer(plain, priced).total_cycles == 0
    with pytest.raises(ValueError, match="channels"):
        Elementwise(name="x", elements=10, kind="transpose_inward", channels=-1)
