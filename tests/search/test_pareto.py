"""Dominance, non-dominated sorting and the 2-D hypervolume against hand-checked values."""

from __future__ import annotations

import random

import pytest

from lowbit.search.pareto import dominates, hypervolume_2d, non_dominated, non_dominated_sort

ACC_LAT = ("maximize", "minimize")

# (accuracy, latency): index 1 and 5 are equal; 3 is dominated by 1; 4 by 0.
POINTS = [(0.9, 1.0), (0.8, 0.5), (0.85, 0.9), (0.7, 0.6), (0.9, 1.2), (0.8, 0.5)]


def test_non_dominated_hand_checked_set():
    assert non_dominated(POINTS, directions=ACC_LAT) == [0, 1, 2, 5]


def test_sort_fronts_hand_checked():
    assert non_dominated_sort(POINTS, directions=ACC_LAT) == [[0, 1, 2, 5], [3, 4]]


def test_dominates_respects_directions():
    assert dominates((0.9, 1.0), (0.9, 1.2), directions=ACC_LAT)
    assert not dominates((0.9, 1.2), (0.9, 1.0), directions=ACC_LAT)
    assert not dominates((0.8, 0.5), (0.8, 0.5), directions=ACC_LAT)  # equal: no dominance
    assert dominates((1.0, 1.0), (2.0, 2.0), directions=("minimize", "minimize"))


def test_sort_matches_brute_force_on_random_points():
    rng = random.Random(3)
    pts = [(rng.randint(0, 5), rng.randint(0, 5), rng.randint(0, 5)) for _ in range(60)]
    dirs = ("maximize", "minimize", "minimize")
    fronts = non_dominated_sort(pts, directions=dirs)
    assert sorted(i for f in fronts for i in f) == list(range(len(pts)))
    first = [
        i
        for i in range(len(pts))
        if not any(dominates(pts[j], pts[i], directions=dirs) for j in range(len(pts)))
    ]
    assert sorted(fronts[0]) == first
    for k in range(1, len(fronts)):
        for i in fronts[k]:  # every later point is dominated by one of the previous front
            assert any(dominates(pts[j], pts[i], directions=dirs) for j in fronts[k - 1])
        for i in fronts[k]:  # and none inside its own front dominates it
            assert not any(dominates(pts[j], pts[i], directions=dirs) for j in fronts[k])


def test_hypervolume_hand_computed():
    # front sorted by accuracy: (0.9, 1.0), (0.85, 0.9), (0.8, 0.5), reference (0, 2):
    # 0.9·(2 − 1.0) + 0.85·(1.0 − 0.9) + 0.8·(0.9 − 0.5) = 0.9 + 0.085 + 0.32 = 1.305
    hv = hypervolume_2d(POINTS, reference=(0.0, 2.0), directions=ACC_LAT)
    assert hv == pytest.approx(1.305)


def test_hypervolume_single_point_is_a_rectangle():
    hv = hypervolume_2d([(0.5, 0.5)], reference=(0.0, 2.0), directions=ACC_LAT)
    assert hv == pytest.approx(0.5 * 1.5)


def test_hypervolume_ignores_dominated_and_out_of_reference_points():
    base = hypervolume_2d(POINTS[:3], reference=(0.0, 2.0), directions=ACC_LAT)
    more = POINTS[:3] + [(0.1, 0.95), (0.95, 2.5), (0.99, 2.0)]  # dominated / beyond ref
    assert hypervolume_2d(more, reference=(0.0, 2.0), directions=ACC_LAT) == pytest.approx(base)
    assert hypervolume_2d([], reference=(0.0, 2.0), directions=ACC_LAT) == 0.0


def test_hypervolume_matches_grid_count():
    """A fine grid count of the dominated area agrees with the exact sweep."""
    rng = random.Random(7)
    pts = [(rng.random(), rng.random() * 2) for _ in range(15)]
    exact = hypervolume_2d(pts, reference=(0.0, 2.0), directions=ACC_LAT)
    n = 400
    inside = 0
    for i in range(n):
        a = (i + 0.5) / n  # accuracy cell centre in [0, 1]
        for j in range(n):
            lat = (j + 0.5) / n * 2
            inside += any(p[0] >= a and p[1] <= lat for p in pts)
    assert exact == pytest.approx(inside / n / n * 2, abs=0.01)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="directions"):
        non_dominated([(1, 2)], directions=("maximize", "sideways"))
    with pytest.raises(ValueError, match="2 objectives per point"):
        hypervolume_2d([(1, 2, 3)], reference=(0, 0), directions=ACC_LAT)
