"""CompressionPlan: validation, JSON round trip, resolution, checks against a model, pinning."""

from __future__ import annotations

import json

import pytest
from tiny_nets import TinyAttention, TinyCNN, TinyMLP, seeded

from lowbit.hwsim.errors import LowbitError
from lowbit.models.compression.plan import (
    CompressionPlan,
    LayerSpec,
    PlanError,
    full_rank,
    rank_for,
)

# one spec per option value, so the round trip covers every field and every choice
SPECS = [
    LayerSpec(),
    LayerSpec(w_bits=2, a_bits=8),
    LayerSpec(w_bits=8, a_bits=None, weight_granularity="per_tensor"),
    LayerSpec(w_bits=4, a_bits=4, symmetric=False, calibration="percentile"),
    LayerSpec(w_bits=3, a_bits=6, calibration="mse"),
    LayerSpec(keep=0.5),
    LayerSpec(nm=(2, 4), density=0.7),
    LayerSpec(rank=3),
    LayerSpec(rank_fraction=0.25),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: json.dumps(s.to_dict(), sort_keys=True))
@pytest.mark.parametrize("pin", [True, False])
def test_json_round_trip_every_option(spec: LayerSpec, pin: bool) -> None:
    plan = CompressionPlan(
        layers={"_default": LayerSpec(w_bits=8), "re:fc.*": spec, "conv1": spec},
        pin_first_last=pin,
    )
    back = CompressionPlan.from_json(plan.to_json())
    assert back == plan
    assert list(back.layers) == list(plan.layers)  # insertion order matters for re: keys
    assert back.to_json() == plan.to_json()


def test_from_bits_string() -> None:
    plan = CompressionPlan.from_bits_string("W4A8")
    assert plan.resolve("anything") == LayerSpec(w_bits=4, a_bits=8)
    assert CompressionPlan.from_bits_string("wfpa8").resolve("x").w_bits is None
    assert CompressionPlan.from_bits_string("W2A2", pin_first_last=False).pin_first_last is False
    for bad in ("W4", "W9A8", "W1A8", "8bit"):
        with pytest.raises(PlanError):
            CompressionPlan.from_bits_string(bad)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"w_bits": 1}, "w_bits"),
        ({"w_bits": 9}, "w_bits"),
        ({"a_bits": 9}, "a_bits"),
        ({"a_bits": 1}, "a_bits"),
        ({"w_bits": True}, "w_bits"),
        ({"keep": 0}, "keep"),
        ({"keep": 1.5}, "keep"),
        ({"density": 0.0}, "density"),
        ({"nm": (4, 2)}, "nm"),
        ({"nm": (0, 4)}, "nm"),
        ({"rank": 0}, "rank"),
        ({"rank_fraction": 0.0}, "rank_fraction"),
        ({"rank": 2, "rank_fraction": 0.5}, "rank_fraction"),
        ({"weight_granularity": "per_row"}, "weight_granularity"),
        ({"calibration": "kl"}, "calibration"),
    ],
)
def test_bad_spec_names_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(PlanError, match=rf"\b{field}:"):
        LayerSpec(**kwargs)


def test_plan_error_is_a_lowbit_and_value_error() -> None:
    with pytest.raises(LowbitError):
        LayerSpec(keep=0)
    with pytest.raises(ValueError):
        LayerSpec(keep=0)


def test_from_json_collects_every_problem_with_its_path() -> None:
    text = json.dumps(
        {
            "version": 3,
            "extra": 1,
            "layers": {"conv1": {"w_bits": 9, "keep": 0, "colour": "red"}, "fc1": 3},
        }
    )
    with pytest.raises(PlanError) as info:
        CompressionPlan.from_json(text)
    message = str(info.value)
    for path in (
        "version:",
        "extra:",
        'layers["conv1"].w_bits:',
        'layers["conv1"].keep:',
        'layers["conv1"].colour:',
        'layers["fc1"]:',
    ):
        assert path in message
    assert len(info.value.problems) == 6
    with pytest.raises(PlanError, match="not valid JSON"):
        CompressionPlan.from_json("{nope")


def test_resolve_precedence() -> None:
    exact, first, second, default = (LayerSpec(w_bits=b) for b in (2, 3, 4, 5))
    plan = CompressionPlan(
        layers={"_default": default, "re:fc\\d": first, "re:fc.*": second, "fc1": exact}
    )
    assert plan.resolve("fc1") is exact  # exact beats patterns
    assert plan.resolve("fc2") is first  # first matching pattern in insertion order
    assert plan.resolve("fcx") is second
    assert plan.resolve("conv") is default
    assert plan.resolve("xfc1") is default  # patterns are full matches
    assert CompressionPlan().resolve("conv") == LayerSpec()  # float and dense


def test_check_reports_every_problem_naming_fields() -> None:
    model = seeded(TinyCNN)
    plan = CompressionPlan(
        layers={
            "conv3": LayerSpec(w_bits=4),  # unknown layer
            "bn1": LayerSpec(w_bits=4),  # not a compute layer
            "re:lstm.*": LayerSpec(w_bits=4),  # pattern matching nothing
            "fc2": LayerSpec(keep=0.5),  # classifier is no producer
            "conv2": LayerSpec(rank=40),  # full rank of conv2 is min(12, 8·3·3) = 12
            "fc1": LayerSpec(rank=16),  # full rank min(16, 192) = 16: not below
        }
    )
    with pytest.raises(PlanError) as info:
        plan.check(model)
    problems = info.value.problems
    assert len(problems) == 6
    message = str(info.value)
    assert 'layers["conv3"]: no Conv/Linear/MatMulSite named' in message
    assert 'layers["bn1"]:' in message
    assert 'layers["re:lstm.*"]: pattern matches no layer' in message
    assert 'layers["fc2"].keep:' in message
    assert 'layers["conv2"].rank: 40 is not below full rank 12' in message
    assert 'layers["fc1"].rank: 16 is not below full rank 16' in message


def test_check_accepts_valid_plans() -> None:
    model = seeded(TinyCNN)
    CompressionPlan(
        layers={
            "_default": LayerSpec(w_bits=4, a_bits=8, keep=0.5, rank_fraction=0.5),
            "re:conv.*": LayerSpec(w_bits=8, nm=(2, 4)),
            "conv2": LayerSpec(keep=0.25, rank=11),
        }
    ).check(model)


def test_check_rejects_weight_settings_on_matmul_sites() -> None:
    model = seeded(TinyAttention)
    with pytest.raises(PlanError) as info:
        CompressionPlan(layers={"qk": LayerSpec(a_bits=8, keep=0.5, rank=2)}).check(model)
    assert {p.split(":")[0] for p in info.value.problems} == {
        'layers["qk"].keep',
        'layers["qk"].rank',
    }


def test_effective_pins_first_and_last() -> None:
    model = seeded(TinyMLP)
    spec = LayerSpec(w_bits=2, a_bits=4, keep=0.5, nm=(1, 4), density=0.5, rank_fraction=0.5)
    effective = CompressionPlan(layers={"_default": spec}).effective(model)
    assert list(effective) == ["fc1", "fc2", "fc3"]
    for name in ("fc1", "fc3"):
        assert effective[name] == LayerSpec(w_bits=8, a_bits=8)
    # fc2 is a producer (keeps its keep); rank 0.5 of min(24, 32) = 12
    assert effective["fc2"] == LayerSpec(
        w_bits=2, a_bits=4, keep=0.5, nm=(1, 4), density=0.5, rank=12
    )
    unpinned = CompressionPlan(layers={"_default": spec}, pin_first_last=False).effective(model)
    assert unpinned["fc1"].w_bits == 2 and unpinned["fc1"].keep == 0.5
    assert unpinned["fc3"].keep == 1.0  # a pattern/default keep applies to producers only
    float_plan = CompressionPlan(layers={"_default": LayerSpec(keep=0.5)}).effective(model)
    assert float_plan["fc1"].w_bits is None  # pinning never turns float into int8


def test_effective_matmul_sites_use_a_bits_for_both_operands() -> None:
    model = seeded(TinyAttention)
    effective = CompressionPlan.uniform(w_bits=4, a_bits=6, rank=2, keep=0.5).effective(model)
    assert effective["qk"] == LayerSpec(w_bits=6, a_bits=6)
    assert effective["av"] == LayerSpec(w_bits=6, a_bits=6)
    assert effective["fc1"].keep == 0.5 and effective["fc2"].keep == 1.0
    assert effective["q"].rank is None  # q is the first layer: pinned
    assert effective["k"].rank == 2


def test_rank_for() -> None:
    model = seeded(TinyCNN)
    conv2 = model.conv2  # weight 12 × (8·3·3): full rank 12
    assert full_rank(conv2) == 12
    # max(1, round(f · 12)): golden values by hand
    assert rank_for(LayerSpec(rank_fraction=0.5), conv2) == 6
    assert rank_for(LayerSpec(rank_fraction=0.01), conv2) == 1
    assert rank_for(LayerSpec(rank_fraction=0.99), conv2) is None  # round(11.88) = 12 = full
    assert rank_for(LayerSpec(rank=5), conv2) == 5
    assert rank_for(LayerSpec(rank=12), conv2) is None
    assert rank_for(LayerSpec(), conv2) is None
