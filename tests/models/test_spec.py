"""One typed spec across the layers: a plan's LayerSpec is the simulator's Compression plus
quantizer settings; plan files of every version load; plan -> spec -> workload agree."""

from __future__ import annotations

import json

import pytest

from lowbit.hwsim.compression import KNOBS, Compression, CompressionError
from lowbit.hwsim.workload import Conv2d, Linear, MatMul, Workload
from lowbit.models.bridge import compressions, to_workload
from lowbit.models.compression.plan import CompressionPlan, LayerSpec, PlanError, rank_for
from lowbit.models.compression.spec import PLAN_KEYS
from lowbit.models.workloads import apply_plan, parse_bits
from lowbit.models.zoo import build
from lowbit.search.space_params import SETTINGS

#: a version 1 plan file as lowbit wrote it (no ``recovery``: it means "bn")
PLAN_V1 = """{
  "version": 1,
  "pin_first_last": false,
  "layers": {
    "_default": {"w_bits": 4, "a_bits": 8, "weight_granularity": "per_channel",
                 "symmetric": true, "calibration": "minmax", "keep": 1.0, "nm": null,
                 "density": 1.0, "rank": null, "rank_fraction": null},
    "conv1": {"w_bits": null, "a_bits": null, "keep": 0.5}
  }
}"""
#: a version 2 plan file, every setting written out (LayerSpec.to_dict)
PLAN_V2 = {
    "version": 2,
    "pin_first_last": True,
    "recovery": "lsq",
    "layers": {
        "re:conv.*": {
            "w_bits": 2,
            "a_bits": 6,
            "weight_granularity": "per_tensor",
            "symmetric": False,
            "calibration": "mse",
            "keep": 0.75,
            "nm": [2, 4],
            "density": 0.8,
            "rank": None,
            "rank_fraction": 0.5,
        }
    },
}


def test_a_plan_spec_is_the_simulators_spec_plus_quantizer_settings() -> None:
    spec = LayerSpec(w_bits=4, keep=0.5, calibration="mse")
    assert isinstance(spec, Compression)
    assert spec.knobs() == Compression(w_bits=4, a_bits=None, keep=0.5)
    assert LayerSpec().knobs() == Compression(w_bits=None, a_bits=None)  # a plan: float, dense
    assert set(SETTINGS) <= set(KNOBS)  # the search space's parameters are knobs, same names
    assert set(PLAN_KEYS) - set(KNOBS) == {"weight_granularity", "symmetric", "calibration"}


def test_plan_bits_are_narrower_and_in_keep_is_not_planned() -> None:
    with pytest.raises(PlanError) as info:
        LayerSpec(w_bits=12, in_keep=0.5, calibration="max")
    assert [p.split(":")[0] for p in info.value.problems] == ["w_bits", "in_keep", "calibration"]
    assert "2-8 or null (float)" in info.value.problems[0]
    assert Compression(w_bits=12).w_bits == 12  # the simulator takes 1-16
    with pytest.raises(CompressionError):
        Compression(w_bits=20)
    with pytest.raises(PlanError, match="in_keep: unknown setting"):
        LayerSpec.from_dict({"in_keep": 0.5})


def test_version_1_and_2_plan_files_load_and_write_back_unchanged(tmp_path) -> None:
    v1 = CompressionPlan.from_json(PLAN_V1)
    assert (v1.version, v1.recovery) == (1, "bn")
    assert v1.resolve("conv1") == LayerSpec(keep=0.5)
    assert v1.resolve("fc1") == LayerSpec(w_bits=4, a_bits=8)
    assert CompressionPlan.from_json(v1.to_json()) == v1
    v2 = CompressionPlan.from_dict(PLAN_V2)
    assert v2.to_dict() == PLAN_V2  # same keys, same order, same values
    assert list(v2.to_dict()["layers"]["re:conv.*"]) == list(PLAN_KEYS)
    assert PLAN_KEYS == tuple(PLAN_V2["layers"]["re:conv.*"])  # the order plan files have
    assert json.loads(v2.to_json()) == PLAN_V2


@pytest.mark.parametrize("zoo", ["digits-cnn", "fashion-mobilenet", "digits-vit"])
def test_plan_spec_workload_round_trip(zoo: str) -> None:
    """Every effective spec reaches the simulator as its knobs; the graph adds in_keep."""
    model = build(zoo)
    plan = CompressionPlan(
        layers={"_default": LayerSpec(w_bits=4, a_bits=6, keep=0.5, rank_fraction=0.5)},
        pin_first_last=True,
    )
    effective = plan.effective(model)
    by_name = compressions(model, plan)
    workload = to_workload(model, plan)
    modules = dict(model.named_modules())
    for name, spec in effective.items():
        c = by_name[name]
        assert type(c) is Compression
        assert c == spec.knobs(keep=c.keep, in_keep=c.in_keep)  # only the graph's knobs differ
        assert c.rank == rank_for(spec, modules[name]) or c.rank is None
        assert workload.layer(name).compression == c


def test_a_generic_workload_takes_the_same_spec() -> None:
    wl = Workload(
        "toy",
        (
            Conv2d(name="c0", in_h=8, in_w=8, in_c=3, out_c=16, k_h=3, k_w=3, out_h=8, out_w=8),
            Linear(name="fc1", in_features=64, out_features=64),
            MatMul(name="qk", M=4, N=4, K=8),
            Linear(name="fc2", in_features=64, out_features=10),
        ),
    )
    plan = CompressionPlan.uniform(w_bits=4, a_bits=None, rank_fraction=0.25, nm=(2, 4))
    out = apply_plan(wl, plan)
    assert out.layer("c0").compression == Compression(w_bits=8, a_bits=None)  # pinned
    assert out.layer("fc1").compression == Compression(w_bits=4, a_bits=None, nm=(2, 4), rank=16)
    assert out.layer("qk").compression == Compression(w_bits=None, a_bits=None)
    assert parse_bits("W32A4") == (None, 4)


def test_search_settings_are_spec_keywords() -> None:
    """A trial's settings are LayerSpec keywords: the plan they give is typed throughout."""
    settings = {
        "fc1": {"w_bits": 4, "a_bits": 8, "keep": 0.5, "nm": (2, 4), "rank_fraction": 0.5},
        "qk": {"w_bits": 6, "a_bits": 6},
    }
    plan = CompressionPlan(layers={k: LayerSpec(**kw) for k, kw in settings.items()})
    for name, kw in settings.items():
        spec = plan.resolve(name)
        assert {k: getattr(spec.knobs(), k) for k in kw} == kw
