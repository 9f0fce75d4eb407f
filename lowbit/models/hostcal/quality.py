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
from lowbit.models.hostcal.isa import PEAK_MACS_PER_CYCLE

__all__ = ["MAX_MEAN_ABS_PCT_ERROR", "CalibrationError", "fit_problems"]

#: largest mean |simulated / measured - 1| (percent) of each fitted group accepted
MAX_MEAN_ABS_PCT_ERROR = {
    "int8": 50.0,
    "fp32": 60.0,
    "int8_depthwise": 50.0,
    "fp32_depthwise": 60.0,
}


class CalibrationError(LowbitError):
    """The calibration's fit failed its quality gates on every attempt."""


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
