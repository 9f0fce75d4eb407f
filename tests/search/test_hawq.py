"""HAWQ baseline pieces: Hutchinson traces, perturbations, knapsack allocation."""

from __future__ import annotations

import itertools
import random

import pytest
import torch
from torch import nn

from lowbit.search.hawq import (
    HawqInputs,
    allocate,
    bit_options,
    hawq_assignments,
    hutchinson_traces,
    sensitivities,
    weight_perturbations,
)


def test_bit_options_tie_activation_bits_to_weight_bits():
    assert bit_options((2, 4, 8), (8,)) == ((2, 8), (4, 8), (8, 8))  # INT8-only activations
    assert bit_options((2, 4, 8), (2, 4, 8)) == ((2, 2), (4, 4), (8, 8))  # BitFusion
    assert bit_options((3, 8), (4, 8)) == ((3, 4), (8, 8))  # smallest activation >= weight


COST = {"A": {"8": 0.0, "4": 1.0, "2": 10.0}, "B": {"8": 0.0, "4": 3.5, "2": 4.0}}
LAT = {"A": {"8": 4.0, "4": 2.0, "2": 1.0}, "B": {"8": 6.0, "4": 3.0, "2": 1.0}}


@pytest.mark.parametrize(
    ("budget", "expected"),
    [
        (10.0, {"A": "8", "B": "8"}),  # everything fits: zero cost
        (7.0, {"A": "8", "B": "4"}),  # 4 + 3 = 7, cost 3.5 (A4+B8 = 8 does not fit)
        (5.0, {"A": "8", "B": "2"}),  # cost 4 beats A4+B4 (4.5) and A4+B2 (5)
        (2.0, {"A": "2", "B": "2"}),  # the only fit
        (1.0, None),  # nothing fits
    ],
)
def test_allocate_hand_checked(budget, expected):
    # excess over the fastest options (1 + 1 ms) on a 0.25 ms grid: integer latencies fit it
    resolution = max(1, int((budget - 2.0) * 4))
    assert allocate(COST, LAT, budget, resolution=resolution) == expected


def test_allocate_matches_brute_force():
    rng = random.Random(1)
    for _ in range(30):
        layers = [f"l{i}" for i in range(4)]
        cost = {n: {o: rng.random() for o in "abc"} for n in layers}
        lat = {n: {o: float(rng.randint(1, 6)) for o in "abc"} for n in layers}
        budget = float(rng.randint(4, 20))
        best = None
        for combo in itertools.product("abc", repeat=len(layers)):
            if sum(lat[n][o] for n, o in zip(layers, combo, strict=True)) <= budget:
                c = sum(cost[n][o] for n, o in zip(layers, combo, strict=True))
                if best is None or c < best[0]:
                    best = (c, dict(zip(layers, combo, strict=True)))
        spare = budget - sum(min(lat[n].values()) for n in layers)
        # integer latencies on a 1 ms grid of excess latency: the DP is exact
        got = allocate(cost, lat, budget, resolution=max(1, int(spare)))
        if best is None:
            assert got is None
        else:
            assert sum(cost[n][o] for n, o in got.items()) == pytest.approx(best[0])
            assert sum(lat[n][o] for n, o in got.items()) <= budget


def test_hutchinson_matches_exact_hessian_trace():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3))
    x, y = torch.randn(64, 3), torch.randint(0, 3, (64,))
    traces, counts = hutchinson_traces(model, x, y, layers=["0", "2"], probes=400, seed=0)
    assert counts == {"0": 12, "2": 12}
    for name in ("0", "2"):
        weight = dict(model.named_modules())[name].weight

        def loss_of(w, name=name, weight=weight):
            out = torch.func.functional_call(model, {f"{name}.weight": w}, (x,))
            return nn.functional.cross_entropy(out, y)

        hessian = torch.autograd.functional.hessian(loss_of, weight.detach().clone())
        exact = float(hessian.reshape(weight.numel(), weight.numel()).diagonal().sum())
        assert traces[name] == pytest.approx(exact, rel=0.15)


def test_perturbation_shrinks_with_bits():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 8))
    p = weight_perturbations(model, layers=["0"], bits=[2, 4, 8])["0"]
    assert p[2] > p[4] > p[8] > 0


def test_sensitivity_formula_and_assignments():
    inputs = HawqInputs(
        layers=("a", "b"),
        options=((2, 2), (4, 4), (8, 8)),
        traces={"a": 10.0, "b": -1.0},  # a negative estimate is clipped to 0
        params={"a": 5, "b": 5},
        perturbation={"a": {2: 1.0, 4: 0.1, 8: 0.001}, "b": {2: 2.0, 4: 0.2, 8: 0.002}},
        latency_ms={
            "a": {"2/2": 1.0, "4/4": 2.0, "8/8": 4.0},
            "b": {"2/2": 1.0, "4/4": 2.0, "8/8": 4.0},
        },
        total_latency_ms={"2/2": 2.5, "4/4": 4.5, "8/8": 8.5},
    )
    sens = sensitivities(inputs)
    assert sens["a"]["2/2"] == pytest.approx(10.0 / 5 * 1.0)
    assert sens["b"] == {"2/2": 0.0, "4/4": 0.0, "8/8": 0.0}
    plans = hawq_assignments(inputs)
    assert [f for f, _, _ in plans] == [0.25, 0.5, 0.75]
    for f, budget, assignment in plans:
        assert budget == pytest.approx(2.0 + f * 6.0)  # L_low = 2, L_8 = 8
        assert assignment["b"] == "2/2"  # insensitive layer takes the fewest bits
    assert plans[-1][2]["a"] == "8/8"  # 1 + 4 = 5 <= 6.5
