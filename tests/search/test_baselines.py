"""Warm starts: what the joint and quant-only studies evaluate first."""

from __future__ import annotations

import pytest

from lowbit.search.baselines import (
    METHODS,
    WARM_KEEPS,
    WARM_RANK_FRACTIONS,
    joint_warm_configs,
    uniform_configs,
)


def test_joint_warm_starts_add_uniform_pruning_and_rank_on_w4a8(synthetic_space) -> None:
    uniform = uniform_configs(synthetic_space, None, 0)
    joint = joint_warm_configs(synthetic_space, None, 0)
    assert joint[: len(uniform)] == uniform  # the uniform bits first, as quant-only has them
    extra = joint[len(uniform) :]
    assert [label for label, _ in extra] == [
        *(f"W4A8 keep {k}" for k in WARM_KEEPS),
        *(f"W4A8 rank {r}" for r in WARM_RANK_FRACTIONS),
    ]
    dists = synthetic_space.distributions()
    w4a8 = synthetic_space.uniform_params(4, 8)
    for (label, params), value in zip(extra, (*WARM_KEEPS, *WARM_RANK_FRACTIONS), strict=True):
        setting = "keep" if "keep" in label else "rank_fraction"
        assert set(params) == set(dists)  # a point of the space
        for name, choices in ((n, d.choices) for n, d in dists.items()):
            if not name.endswith(f".{setting}"):
                assert params[name] == w4a8[name]
                continue
            # each layer's nearest choice (the larger on a tie)
            nearest = min(abs(c - value) for c in choices)
            assert abs(params[name] - value) == nearest
            assert params[name] == max(c for c in choices if abs(c - value) == nearest)
        assert params != w4a8
    # every warm start is a distinct configuration
    assert len({repr(sorted(p.items())) for _, p in joint}) == len(joint)


def test_quant_only_space_gets_only_the_uniform_bits(synthetic_space) -> None:
    quant = synthetic_space.quant_only()
    assert joint_warm_configs(quant, None, 0) == uniform_configs(quant, None, 0)


@pytest.mark.parametrize(
    ("name", "warm"),
    [("joint", joint_warm_configs), ("quant-only", uniform_configs), ("random", None)],
)
def test_methods_warm_start(name, warm) -> None:
    assert METHODS[name].warm_start is warm
