"""``run_sweep``: every workload on every grid point, speed-ups against the profile as given,
the suite's geometric mean, sweep.csv, and its input errors."""

from __future__ import annotations

import csv
import io
import math

import pytest

from lowbit import hwsim
from lowbit.hwsim.area import area_mm2
from lowbit.hwsim.errors import LowbitError
from lowbit.hwsim.profiles import load_profile
from lowbit.hwsim.sweep import run_sweep
from lowbit.hwsim.workloads import builtin_workload

HW = "npu-systolic-32"  # 32 rows as given, with an [area] model


@pytest.fixture(scope="module")
def suite():
    workloads = [builtin_workload("resnet18"), builtin_workload("bert-base")]
    axes = [("compute.rows", [16, 32]), ("clock_hz", [5e8, 1e9])]
    return run_sweep(hardware=HW, workloads=workloads, axes=axes)


def test_every_workload_on_every_grid_point_in_row_major_order(suite):
    assert suite.keys == ("compute.rows", "clock_hz") and suite.is_suite
    assert [(p.values, p.workload) for p in suite.points] == [
        ((rows, clock), name)
        for rows in (16, 32)
        for clock in (5e8, 1e9)
        for name in ("resnet18", "bert-base")
    ]


def test_points_are_the_simulation_of_the_overridden_profile(suite):
    given = load_profile(HW)
    for p in suite.points:
        variant = load_profile(HW, overrides=dict(zip(suite.keys, p.values, strict=True)))
        result = hwsim.simulate(builtin_workload(p.workload), variant)
        assert (p.total_cycles, p.latency_s) == (result.total_cycles, result.latency_s)
        base = hwsim.simulate(builtin_workload(p.workload), given)
        assert p.speedup == pytest.approx(base.latency_s / result.latency_s)
        assert p.area_mm2 == pytest.approx(area_mm2(variant))
    at_given = [p for p in suite.points if p.values == (32, given.clock_hz)]
    assert [p.speedup for p in at_given] == pytest.approx([1.0, 1.0])


def test_suite_is_the_geometric_mean_per_grid_point(suite):
    summary = suite.suite()
    assert [s.values for s in summary] == [(16, 5e8), (16, 1e9), (32, 5e8), (32, 1e9)]
    for s in summary:
        members = [p for p in suite.points if p.values == s.values]
        assert s.geomean_speedup == pytest.approx(
            math.sqrt(members[0].speedup * members[1].speedup)
        )
        assert s.total_latency_s == pytest.approx(sum(p.latency_s for p in members))
    by_rows = suite.suite(by=(0,))  # grouped by the first key only: 4 points each
    assert [s.values for s in by_rows] == [(16,), (32,)]


def test_csv_has_one_row_per_point(suite):
    rows = list(csv.DictReader(io.StringIO(suite.csv_text())))
    assert list(rows[0]) == [
        "workload",
        "compute.rows",
        "clock_hz",
        "total_cycles",
        "latency_s",
        "energy_j",
        "speedup",
        "area_mm2",
    ]
    assert len(rows) == len(suite.points)
    for row, p in zip(rows, suite.points, strict=True):
        assert float(row["latency_s"]) == p.latency_s and row["workload"] == p.workload


def test_overrides_apply_to_every_point_and_the_grid_wins():
    workload = builtin_workload("bert-base")
    result = run_sweep(
        hardware=HW,
        workloads=[workload],
        axes=[("compute.rows", [16])],
        overrides={"compute.rows": 64, "clock_hz": 5e8},
    )
    given = hwsim.simulate(
        workload, load_profile(HW, overrides={"compute.rows": 64, "clock_hz": 5e8})
    )
    point = hwsim.simulate(
        workload, load_profile(HW, overrides={"compute.rows": 16, "clock_hz": 5e8})
    )
    assert result.baselines[0].latency_s == given.latency_s
    assert result.points[0].latency_s == point.latency_s
    assert not result.is_suite


@pytest.mark.parametrize(
    ("workloads", "axes", "expected"),
    [
        (["bert-base", "bert-base"], [("compute.rows", [16])], "workload bert-base given twice"),
        (["bert-base"], [("compute.rows", [16]), ("compute.rows", [32])], "given twice"),
        (["bert-base"], [("compute.rows", [])], "axis compute.rows has no values"),
        (["bert-base"], [], "at least one workload and one axis"),
        (["bert-base"], [("compute.rows", [-4])], "compute.rows"),
    ],
)
def test_bad_sweeps_are_user_errors(workloads, axes, expected):
    with pytest.raises(LowbitError, match=expected):
        run_sweep(hardware=HW, workloads=[builtin_workload(n) for n in workloads], axes=axes)
