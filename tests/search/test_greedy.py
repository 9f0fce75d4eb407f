"""Greedy warm starts from the screen (lowbit.search.greedy): the additive knapsack keeps its
budgets when losses add, and the calibrated points keep their targets when losses compound.

The synthetic evaluator's losses add exactly (lowbit.search.testing); the compounding pool
below turns a configuration's additive loss L into L + 20·L², so single choices lose about
what they lose alone (0.0125 → 0.0156) while a mix spending 0.0375 loses 0.066, well past
the 0.05 room to the floor (0.95 base, 0.90 floor): the shape measured on fashion-resnet,
where mixes of pruning, rank and bits lost 1.2-3× their summed one-at-a-time losses.
"""

from __future__ import annotations

import dataclasses

import pytest

from lowbit.search import greedy
from lowbit.search.fidelity import Fidelity
from lowbit.search.greedy import (
    CALIBRATION_ROUNDS,
    NEAR_FLOOR,
    NEAR_FLOOR_UNDERSHOOT,
    REFINE_ROUNDS,
    REFINE_WIDTH,
    WARM_BUDGETS,
    calibrated_warm_configs,
    pool_measure,
    warm_configs,
)
from lowbit.search.screen import screen
from lowbit.search.testing import SyntheticSpec, synthetic_objectives

BASE, FLOOR = 0.95, 0.90


class _Pool:
    """The pool interface (``map``), in-process; ``compound``: the loss's quadratic term."""

    def __init__(
        self,
        *,
        compound: float = 0.0,
        shrink_mixes: bool = False,
        fail: bool = False,
        nan: bool = False,
    ) -> None:
        self.evaluator = SyntheticSpec().build()
        self.compound = compound
        self.shrink_mixes = shrink_mixes
        self.fail = fail
        self.nan = nan
        self.requests = 0

    def map(self, requests):
        self.requests += len(requests)
        out = []
        for request in requests:
            got = self.evaluator.evaluate(request)
            got = dataclasses.replace(got, accuracy=self.accuracy(request.settings))
            if self.fail:
                got = dataclasses.replace(got, error="synthetic failure")
            if self.nan:
                got = dataclasses.replace(got, accuracy=float("nan"))
            out.append(got)
        return out

    def accuracy(self, settings) -> float:
        loss = BASE - synthetic_objectives(settings)[0]
        if self.shrink_mixes:  # a mix of n changed layers loses its summed losses / √n
            changed = sum(kw != _BASE_LAYER for kw in settings.values())
            loss /= max(1, changed) ** 0.5
        return BASE - loss - self.compound * loss**2


_BASE_LAYER = {"w_bits": 8, "a_bits": 8, "keep": 1.0, "nm": None, "rank_fraction": None}


def _screened(space, pool):
    result = screen(space=space, pool=pool, floor=FLOOR, fidelity=Fidelity())
    return result, result.apply(space)


def test_greedy_warm_starts_spend_their_budget_and_get_faster(synthetic_space):
    result, narrowed = _screened(synthetic_space, _Pool())
    configs = warm_configs(result, narrowed)
    assert [label for label, _ in configs] == [f"screen greedy {f:g}" for f in WARM_BUDGETS]
    latencies = []
    for (_, params), fraction in zip(configs, WARM_BUDGETS, strict=True):
        accuracy, latency = synthetic_objectives(narrowed.settings(params))
        # the synthetic losses add exactly, so each point keeps its budget
        assert accuracy >= 0.95 - fraction * (0.95 - 0.90) - 1e-9
        latencies.append(latency)
    assert latencies == sorted(latencies, reverse=True) and latencies[-1] < latencies[0]
    # quantization-only: the same greedy over the bits alone
    quant = warm_configs(result, narrowed.quant_only())
    assert quant and all(k.endswith("bits") for _, p in quant for k in p)
    # the same points expressed in the joint space (everything else at the base)
    bits = warm_configs(result, narrowed, bits_only=True)
    assert [label for label, _ in bits] == [
        f"screen greedy bits {label[14:]}" for label, _ in quant
    ]
    for (_, joint_params), (_, quant_params) in zip(bits, quant, strict=True):
        assert narrowed.settings(joint_params) == narrowed.quant_only().settings(quant_params)


CALIBRATED = (*WARM_BUDGETS, NEAR_FLOOR)


def _check_targets(configs, space, pool, *, bits_only=False, base=BASE):
    """Each point's accuracy under ``pool`` keeps its budget's target loss (``base``: the
    accuracy the room to the floor is counted from)."""
    by_label = dict(configs)
    for fraction in CALIBRATED:
        label = f"screen greedy{' bits' if bits_only else ''} {fraction:g}"
        if label in by_label:
            accuracy = pool.accuracy(space.settings(by_label[label]))
            assert accuracy >= BASE - fraction * (base - FLOOR) - 1e-9, label


def test_calibration_keeps_the_targets_when_losses_compound(synthetic_space):
    pool = _Pool(compound=20.0)
    result, narrowed = _screened(synthetic_space, pool)
    # the additive model's harshest point breaks its target here (0.9125)
    plain = dict(warm_configs(result, narrowed))
    assert pool.accuracy(narrowed.settings(plain["screen greedy 0.75"])) < BASE - 0.75 * (
        BASE - FLOOR
    )
    screen_requests = pool.requests
    cache = {}
    measure = pool_measure(pool=pool, space=narrowed, rung=result.rung, cache=cache)
    calibrated = calibrated_warm_configs(result, narrowed, measure=measure)
    labels = [label for label, _ in calibrated]  # the near-floor point may repeat 0.75's
    assert labels[:3] == [f"screen greedy {f:g}" for f in WARM_BUDGETS]
    _check_targets(calibrated, narrowed, pool)
    # harsher budgets still buy latency
    latencies = [synthetic_objectives(narrowed.settings(p))[1] for _, p in calibrated]
    assert latencies == sorted(latencies, reverse=True) and latencies[-1] < latencies[0]
    # at most one batch of the budgets' points per round, each point measured once
    measured = pool.requests - screen_requests
    assert (
        0
        < measured
        == len(cache)
        <= CALIBRATION_ROUNDS * len(CALIBRATED) + REFINE_ROUNDS * (REFINE_WIDTH)
    )
    # a second search of the run (the same cache) measures nothing again
    again = calibrated_warm_configs(result, narrowed, measure=measure)
    assert again == calibrated and pool.requests - screen_requests == measured


def test_calibration_pushes_sub_additive_points_further(synthetic_space):
    """Losses that compound less than they add (bits, measured): a point far under its
    target is solved again with a larger budget, and keeps the target."""
    pool = _Pool(shrink_mixes=True)
    result, narrowed = _screened(synthetic_space, pool)
    plain = dict(warm_configs(result, narrowed))
    measure = pool_measure(pool=pool, space=narrowed, rung=result.rung)
    calibrated = dict(calibrated_warm_configs(result, narrowed, measure=measure))
    _check_targets(calibrated.items(), narrowed, pool)
    latency = {
        label: synthetic_objectives(narrowed.settings(params))[1]
        for label, params in calibrated.items()
    }
    for label, params in plain.items():
        assert latency[label] <= synthetic_objectives(narrowed.settings(params))[1] + 1e-12
    assert any(
        latency[label] < synthetic_objectives(narrowed.settings(params))[1] - 1e-9
        for label, params in plain.items()
    )


def test_additive_losses_keep_the_plain_points_or_better(synthetic_space):
    pool = _Pool()
    result, narrowed = _screened(synthetic_space, pool)
    plain = dict(warm_configs(result, narrowed, bits_only=True))
    measure = pool_measure(pool=pool, space=narrowed, rung=result.rung)
    calibrated = dict(calibrated_warm_configs(result, narrowed, measure=measure, bits_only=True))
    _check_targets(calibrated.items(), narrowed, pool, bits_only=True)

    def fastest(configs):
        return min(synthetic_objectives(narrowed.settings(p))[1] for p in configs.values())

    # a point can serve a milder budget (labels name the mildest budget it serves)
    assert calibrated and fastest(calibrated) <= fastest(plain) + 1e-12


@pytest.mark.parametrize("broken", [{"fail": True}, {"nan": True}])
def test_failed_measurements_keep_the_plain_points(synthetic_space, broken):
    result, narrowed = _screened(synthetic_space, _Pool())
    measure = pool_measure(pool=_Pool(**broken), space=narrowed, rung=result.rung)
    calibrated = calibrated_warm_configs(result, narrowed, measure=measure)
    plain = warm_configs(result, narrowed)
    # the plain points as they are, and the near-floor budget's first solve, unmeasured
    assert calibrated[: len(plain)] == plain
    assert [label for label, _ in calibrated[len(plain) :]] == [f"screen greedy {NEAR_FLOOR:g}"]


def test_the_room_counts_from_the_full_rung(synthetic_space):
    """A cheap subset easier than the full split (the base 0.95 there, 0.93 on the full
    rung where the floor holds): the targets shrink to the full rung's room."""
    pool = _Pool(compound=20.0)
    result, narrowed = _screened(synthetic_space, pool)
    measure = pool_measure(pool=pool, space=narrowed, rung=result.rung)
    wide = calibrated_warm_configs(result, narrowed, measure=measure)
    narrow = calibrated_warm_configs(result, narrowed, measure=measure, base_full_accuracy=0.93)
    _check_targets(narrow, narrowed, pool, base=0.93)
    latency = {label: synthetic_objectives(narrowed.settings(params))[1] for label, params in wide}
    for label, params in narrow:  # less room: no faster than with the whole room
        if label in latency:
            assert synthetic_objectives(narrowed.settings(params))[1] >= latency[label] - 1e-12
    assert min(latency.values()) <= min(
        synthetic_objectives(narrowed.settings(params))[1] for _, params in narrow
    )


@pytest.mark.parametrize("floor", [0.95, 0.99])
def test_no_room_no_points(synthetic_space, floor):
    pool = _Pool()
    result = screen(space=synthetic_space, pool=pool, floor=floor, fidelity=Fidelity())
    measure = pool_measure(pool=pool, space=synthetic_space, rung=result.rung)
    assert calibrated_warm_configs(result, synthetic_space, measure=measure) == []


def test_the_near_floor_point_is_pushed_closer_to_its_target(synthetic_space, monkeypatch):
    """Sub-additive losses: the near-floor budget's first points land far under its target;
    it is solved again until within NEAR_FLOOR_UNDERSHOOT of it, so it ends faster than the
    0.75 point (with the milder budgets' 0.6 it stopped at the 0.75 point's configuration)."""
    label = f"screen greedy {NEAR_FLOOR:g}"

    monkeypatch.setattr(greedy, "REFINE_ROUNDS", 0)  # the re-solves alone

    def near_floor(undershoot):
        monkeypatch.setattr(greedy, "NEAR_FLOOR_UNDERSHOOT", undershoot)
        pool = _Pool(shrink_mixes=True)
        result, narrowed = _screened(synthetic_space, pool)
        measure = pool_measure(pool=pool, space=narrowed, rung=result.rung)
        configs = dict(calibrated_warm_configs(result, narrowed, measure=measure))
        _check_targets(configs.items(), narrowed, pool)
        return {k: synthetic_objectives(narrowed.settings(p))[1] for k, p in configs.items()}

    loose = near_floor(greedy.UNDERSHOOT)
    tight = near_floor(NEAR_FLOOR_UNDERSHOOT)
    assert label not in loose  # the same configuration as the 0.75 point's
    assert tight[label] < tight["screen greedy 0.75"] == loose["screen greedy 0.75"]


@pytest.mark.parametrize("kind", [{"compound": 20.0}, {"shrink_mixes": True}, {}])
def test_each_budget_keeps_the_fastest_measured_point_within_its_target(synthetic_space, kind):
    """Whichever budget's solve measured it: no measured point within a budget's target is
    faster than the one the budget keeps (a budget's own points can be slower than a milder
    budget's, the knapsack's choices not being monotone in the budget)."""
    pool = _Pool(**kind)
    result, narrowed = _screened(synthetic_space, pool)
    cache = {}
    measure = pool_measure(pool=pool, space=narrowed, rung=result.rung, cache=cache)
    configs = dict(calibrated_warm_configs(result, narrowed, measure=measure))
    measured = [got for got in cache.values() if got is not None]
    for fraction in CALIBRATED:
        label = f"screen greedy {fraction:g}"
        if label not in configs:
            continue  # the same point as a milder budget's
        floor = result.base_accuracy - fraction * (BASE - FLOOR)
        kept = measure([configs[label]])[0]
        assert kept[0] >= floor - 1e-12
        assert kept[1] == min(lat for acc, lat in measured if acc >= floor - 1e-12)


def test_the_near_floor_point_is_extended_a_choice_at_a_time(synthetic_space, monkeypatch):
    """Losses that compound (L + 20·L²): the re-solves add several choices at once and
    overshoot, so no re-solved point lands between the 0.75 and 0.9 targets; adding one
    choice at a time to the fastest point within the near-floor target, measured, finds a
    faster one that keeps it, in at most REFINE_ROUNDS × REFINE_WIDTH measurements."""
    label = f"screen greedy {NEAR_FLOOR:g}"

    def run(rounds):
        monkeypatch.setattr(greedy, "REFINE_ROUNDS", rounds)
        pool = _Pool(compound=20.0)
        result, narrowed = _screened(synthetic_space, pool)
        before = pool.requests
        measure = pool_measure(pool=pool, space=narrowed, rung=result.rung)
        configs = dict(calibrated_warm_configs(result, narrowed, measure=measure))
        _check_targets(configs.items(), narrowed, pool)
        latency = {k: synthetic_objectives(narrowed.settings(p))[1] for k, p in configs.items()}
        return latency, pool.requests - before

    plain, plain_count = run(0)
    refined, refined_count = run(REFINE_ROUNDS)
    assert label not in plain  # the 0.75 point's configuration
    assert refined[label] < refined["screen greedy 0.75"] == plain["screen greedy 0.75"]
    assert 0 < refined_count - plain_count <= REFINE_ROUNDS * REFINE_WIDTH
