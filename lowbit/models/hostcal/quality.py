"""Quality gates of a host calibration: a profile is written only when its fit is
physically possible and fits what it measured (otherwise the calibration is retried, then
refused with one clear error).

The gates (:data:`MAX_MEAN_ABS_PCT_ERROR`, the ISA's peak rates) are loose on purpose: a
busy machine gives a worse fit that is still usable, while a runaway fit -- an INT8 rate of
4,000 MACs per lane and cycle with a 765 % mean error, seen once on an AMX machine -- is
refused.
"""

from __future__ import annotations

import math
from typing import Any

from lowbit.hwsim.errors import LowbitError
from lowbit.models.hostcal.bench import MeasurementError
from lowbit.models.hostcal.isa import PEAK_MACS_PER_CYCLE

__all__ = [
    "MAX_MEAN_ABS_PCT_ERROR",
    "MAX_TIMING_S",
    "MIN_TIMING_S",
    "CalibrationError",
    "MeasurementError",
    "fit_problems",
    "measurement_problems",
]

#: largest mean |simulated / measured - 1| (percent) of each fitted group accepted
MAX_MEAN_ABS_PCT_ERROR = {
    "int8": 50.0,
    "fp32": 60.0,
    "int8_depthwise": 50.0,
    "fp32_depthwise": 60.0,
}


class CalibrationError(LowbitError):
    """The calibration's fit failed its quality gates on every attempt."""


#: the longest timing a calibration takes of one thing (the largest probe runs ~1 ms on a
#: 2-core Xeon; a second is 1,000x that): a row beyond it is corrupt, not slow
MAX_TIMING_S = 1.0
#: the dearest cost per element or per row it measures (~16 ns: a LayerNorm row)
MAX_COST_S = 1e-6
#: the shortest time a kernel or layer it times can take (the smallest runs ~2 us; 10 ns is
#: a few dozen cycles): a row below it is corrupt -- a GEMM timed at 1e-308 s drove the fit
#: to a speedup outside what a profile may hold
MIN_TIMING_S = 1e-8

#: (key, field, may it be zero): the rows of timings a calibration takes
_ROWS = (
    ("chains", "layer_s", False),
    ("chains", "run_s", True),  # an intercept (the Run call): a difference, may be nil
    ("conv_sweep", "kernel_s", False),
    ("conv_sweep", "profiled_kernel_s", False),
    ("u8_conv_sweep", "kernel_s", False),
    ("u8_conv_sweep", "profiled_kernel_s", False),
    ("gemm_sweep", "kernel_s", False),
    ("gemm_sweep", "profiled_kernel_s", False),
    ("gemm_sweep", "rounds_profiled_kernel_s", False),
    ("depthwise", "layer_s", False),
    ("weight_footprints", "run_s", False),
)
#: single timings (differences of two: zero allowed)
_SCALARS = ("run_overhead_s", "float_run_overhead_s", "op_overhead_s", "profiler_overhead_s")
#: tables of seconds per element or per row
_COSTS = ("elementwise_s_per_element", "elementwise_s_per_row", "movement_s_per_element")


def _timing_problem(value: Any, *, zero: bool, limit: float) -> str | None:
    """Why ``value`` is not a timing (``None`` when it is): a number, finite, at most
    ``limit`` seconds, and at least :data:`MIN_TIMING_S` (or zero or more, ``zero``: a
    difference of two timings)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{value!r} is not a number of seconds"
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        return f"{value!r} s is not a {'non-negative' if zero else 'positive'} finite time"
    if value > limit:
        return f"{value:.4g} s is longer than {limit:.0e} s"
    if not zero and value < MIN_TIMING_S:
        return f"{value:.4g} s is shorter than {MIN_TIMING_S:.0e} s"
    return None


def measurement_problems(m: dict[str, Any]) -> list[str]:
    """Every timing of a calibration's measurements (what
    :func:`lowbit.models.hostcal.profile_fit.from_measurements` fits: live, or a sidecar read
    back) that no CPU could have produced -- negative, zero or below :data:`MIN_TIMING_S`
    where a kernel ran, not finite, longer than :data:`MAX_TIMING_S` -- each with its key
    path; empty when all are plausible. The fit weighs rows by their relative error, so one
    absurd row would be fitted silently and the profile be the other rows'."""
    problems = []

    def check(path: str, value: Any, *, zero: bool, limit: float = MAX_TIMING_S) -> None:
        problem = _timing_problem(value, zero=zero, limit=limit)
        if problem:
            problems.append(f"{path}: {problem}")

    for key, name, zero in _ROWS:
        for i, row in enumerate(m.get(key) or ()):
            if not isinstance(row, dict) or name not in row:
                continue  # a row without the field: the fit names what it lacks
            values = row[name]
            if isinstance(values, list):
                for j, value in enumerate(values):
                    check(f"{key}[{i}].{name}[{j}]", value, zero=zero)
            else:
                check(f"{key}[{i}].{name}", values, zero=zero)
    for key in _SCALARS:
        if key in m:
            check(key, m[key], zero=True)
    for key in _COSTS:
        for op, value in (m.get(key) or {}).items():
            check(f"{key}.{op}", value, zero=True, limit=MAX_COST_S)
    pool = m.get("int8_maxpool") or {}
    if "profiled_s" in pool:
        check("int8_maxpool.profiled_s", pool["profiled_s"], zero=False)
    for level, value in (m.get("bandwidth_bytes_per_s") or {}).items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"bandwidth_bytes_per_s.{level}: {value!r} is not a number")
        elif not (math.isfinite(value) and value > 0):
            problems.append(f"bandwidth_bytes_per_s.{level}: {value!r} is not a positive rate")
    return problems


def fit_problems(data: dict[str, Any], fitted: dict[str, Any], *, isa: str) -> list[str]:
    """What is wrong with a fitted host profile (empty: it passes): a rate above the core's
    physical peak for its ISA, a mean error above :data:`MAX_MEAN_ABS_PCT_ERROR`, a
    non-finite or negative constant."""
    problems = []
    int8_peak, fp32_peak = PEAK_MACS_PER_CYCLE.get(isa, PEAK_MACS_PER_CYCLE["generic"])
    cols = data["compute"]["cols"] * data["compute"]["rows"]
    for mode in data["compute"]["precision"]:
        rate = mode["macs_per_pe_per_cycle"] * cols
        peak, what = (fp32_peak, "FP32") if mode["w_bits"] >= 32 else (int8_peak, "INT8")
        if not math.isfinite(rate) or rate <= 0 or rate > peak:
            problems.append(
                f"{what} rate {rate:.4g} MACs/cycle is outside (0, {peak}], the "
                f"physical peak of one {isa} core"
            )
    for group, limit in MAX_MEAN_ABS_PCT_ERROR.items():
        error = fitted.get(f"mean_abs_pct_error_{group}")
        if error is not None and not (math.isfinite(error) and error <= limit):
            problems.append(f"{group} fit: mean |error| {error:.1f}% > {limit:.0f}%")
    for key, value in data["overheads"].items():
        if isinstance(value, (int, float)) and not (math.isfinite(value) and value >= 0):
            problems.append(f"overheads.{key} = {value} (must be finite and >= 0)")
    return problems
