"""Sweeps: simulate workloads on every point of a grid of profile-key values.

Each grid point is a hypothetical accelerator: the profile with the point's keys overridden
(as ``--set`` would). Every workload runs on every point; its speed-up is against the
profile as given. For a suite (several workloads) :meth:`Sweep.suite` adds the geometric-mean
speed-up per point, and every point carries its silicon area when the profile has an
``[area]`` model (:mod:`lowbit.hwsim.area`).

Example:
    >>> from lowbit.hwsim.workloads import builtin_workload
    >>> result = run_sweep(  # doctest: +SKIP
    ...     hardware="npu-systolic-32",
    ...     workloads=[builtin_workload("bert-base")],
    ...     axes=[("compute.rows", [16, 32, 64])],
    ... )
    >>> [round(p.speedup, 2) for p in result.points]  # doctest: +SKIP
    [0.65, 1.0, 1.0]
"""

from __future__ import annotations

import csv
import io
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import DEFAULT_ENGINE
from .errors import LowbitError

if TYPE_CHECKING:
    from .profile import HardwareProfile
    from .result import SimResult
    from .workload import Workload

__all__ = ["SuitePoint", "Sweep", "SweepPoint", "format_value", "run_sweep"]


@dataclass(frozen=True, slots=True)
class SweepPoint:
    """One workload on one grid point; ``values`` follow :attr:`Sweep.keys`."""

    workload: str
    values: tuple[object, ...]
    total_cycles: int
    latency_s: float
    energy_j: float
    speedup: float
    area_mm2: float | None


@dataclass(frozen=True, slots=True)
class SuitePoint:
    """A grid point over the whole suite: geometric-mean speed-up, summed latency, area."""

    values: tuple[object, ...]
    geomean_speedup: float
    total_latency_s: float
    area_mm2: float | None


@dataclass(frozen=True, slots=True)
class Sweep:
    """A finished sweep: the varied ``keys``, each workload on the profile as given
    (``baselines``, in the order given) and every (grid point, workload) in ``points``,
    grid points in row-major order of the axes, workloads in order within a point."""

    profile: str
    engine: str
    keys: tuple[str, ...]
    baselines: tuple[SimResult, ...]
    points: tuple[SweepPoint, ...]

    @property
    def workloads(self) -> tuple[str, ...]:
        return tuple(b.workload for b in self.baselines)

    @property
    def is_suite(self) -> bool:
        """More than one workload."""
        return len(self.baselines) > 1

    @property
    def with_area(self) -> bool:
        """Every point has an area (the profile has an ``[area]`` model)."""
        return all(p.area_mm2 is not None for p in self.points)

    def suite(self, *, by: Sequence[int] | None = None) -> tuple[SuitePoint, ...]:
        """The points grouped by their values at the positions ``by`` (default: every key),
        in order of first appearance, each with its workloads' geometric-mean speed-up."""
        return suite_points(self.points, by=range(len(self.keys)) if by is None else by)

    def csv_text(self) -> str:
        """sweep.csv: one row per point (workload, keys, cycles, latency, energy, speed-up,
        and area when every point has one)."""
        fields = ["workload", *self.keys, "total_cycles", "latency_s", "energy_j", "speedup"]
        fields += ["area_mm2"] if self.with_area else []
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(fields)
        for p in self.points:
            row = [p.workload, *p.values, p.total_cycles, p.latency_s, p.energy_j, p.speedup]
            writer.writerow(row + ([p.area_mm2] if self.with_area else []))
        return buffer.getvalue()


def suite_points(points: Sequence[SweepPoint], *, by: Sequence[int]) -> tuple[SuitePoint, ...]:
    """``points`` grouped by ``tuple(p.values[i] for i in by)`` (see :meth:`Sweep.suite`)."""
    groups: dict[tuple, list[SweepPoint]] = {}
    for p in points:
        groups.setdefault(tuple(p.values[i] for i in by), []).append(p)
    return tuple(
        SuitePoint(
            values=values,
            geomean_speedup=math.exp(sum(math.log(p.speedup) for p in ps) / len(ps)),
            total_latency_s=sum(p.latency_s for p in ps),
            area_mm2=ps[0].area_mm2,
        )
        for values, ps in groups.items()
    )


def run_sweep(
    *,
    hardware: str | Path,
    workloads: Sequence[Workload],
    axes: Sequence[tuple[str, Sequence[object]]],
    overrides: Mapping[str, object] | None = None,
    engine: str = DEFAULT_ENGINE,
) -> Sweep:
    """Simulate every workload on every point of the grid ``axes``.

    Args:
        hardware: a built-in profile name, a profile ``.toml`` or a SCALE-Sim ``.cfg``.
        workloads: the (compressed) workloads; their names must differ.
        axes: ``[(key path, values), ...]``; the grid is their full product.
        overrides: key paths set on the profile as given and on every grid point (a grid
            point's own values win).
        engine: one of :func:`lowbit.hwsim.engine_names`.

    Raises:
        LowbitError: no workload or axis, an axis without values, a name given twice, or a
            profile variant that does not validate (a ``ProfileError`` naming the key).
    """
    from . import simulate
    from .profiles import load_profile

    names = [w.name for w in workloads]
    keys = [key for key, _ in axes]
    if not names or not keys:
        raise LowbitError("a sweep needs at least one workload and one axis")
    for what, given in (("workload", names), ("axis", keys)):
        repeated = sorted({n for n in given if given.count(n) > 1})
        if repeated:
            raise LowbitError(f"sweep: {what} {', '.join(repeated)} given twice")
    empty = [key for key, values in axes if not values]
    if empty:
        raise LowbitError(f"sweep: axis {', '.join(empty)} has no values")

    base = dict(overrides or {})
    given = load_profile(hardware, overrides=base or None)
    baselines = tuple(simulate(w, given, engine=engine) for w in workloads)
    points = []
    for combo in itertools.product(*(values for _, values in axes)):
        profile = load_profile(hardware, overrides={**base, **dict(zip(keys, combo, strict=True))})
        area = _area(profile)
        for workload, baseline in zip(workloads, baselines, strict=True):
            result = simulate(workload, profile, engine=engine)
            points.append(
                SweepPoint(
                    workload=workload.name,
                    values=tuple(combo),
                    total_cycles=result.total_cycles,
                    latency_s=result.latency_s,
                    energy_j=result.energy_j,
                    speedup=baseline.latency_s / result.latency_s,
                    area_mm2=area,
                )
            )
    return Sweep(
        profile=given.name,
        engine=engine,
        keys=tuple(keys),
        baselines=baselines,
        points=tuple(points),
    )


def _area(profile: HardwareProfile) -> float | None:
    """The profile's silicon area (mm2) if it has an [area] model."""
    if profile.area is None:
        return None
    from .area import area_mm2

    return area_mm2(profile)


def format_value(value: object) -> str:
    """A grid value as shown in tables and legends (floats in ``%g``)."""
    return f"{value:g}" if isinstance(value, float) else str(value)
