"""Range and shape checks of the files a search run leaves (deployment configs and
``summary.json``), kept apart from :mod:`lowbit.search.results`, which writes and reads them.
Every check appends problems with their key paths; nothing here raises.
"""

from __future__ import annotations

import math
from typing import Any

from lowbit.hwsim.limits import MAX_SEED, MAX_STEPS, check_int

__all__ = ["LAYER_COSTS", "REPORT_NEEDS", "check_ranges", "non_negative", "summary_problems"]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _finite(value: int | float) -> bool:
    """Whether ``value`` is a finite float, or an int that converts to one (``10**400``
    does not: ``math.isfinite`` raises on it)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and _finite(value)


#: summary.json keys validate and report read: path -> (kind, check, required when its
#: top-level key is one a reader needs)
_SUMMARY_KEYS: dict[str, tuple[str, Any, bool]] = {
    "model": ("a string", lambda v: isinstance(v, str), True),
    "hardware": ("an object", lambda v: isinstance(v, dict), True),
    "hardware.name": ("a string", lambda v: isinstance(v, str), True),
    "reference": ("an object", lambda v: isinstance(v, dict), True),
    "reference.fp32_val": ("a finite number", _number, True),
    "reference.fp32_test": ("a finite number", _number, True),
    "reference.w8a8_latency_ms": ("a finite number", _number, True),
    "methods": ("an object", lambda v: isinstance(v, dict), True),
    "seed": ("an integer >= 0", lambda v: _is_int(v) and 0 <= v <= MAX_SEED, False),
    "evaluator": ("an object", lambda v: isinstance(v, dict), False),
    "objectives": ("an array", lambda v: isinstance(v, list), False),
    "constraints": ("an object", lambda v: isinstance(v, dict), False),
    "co_design": ("an object or null", lambda v: v is None or isinstance(v, dict), False),
    "versions": ("an object", lambda v: isinstance(v, dict), False),
}
_METHOD_KEYS: dict[str, tuple[str, Any]] = {
    "pareto": (
        "an array of config ids",
        lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v),
    ),
    "completed": ("an integer", _is_int),
    "failed": ("an integer", _is_int),
    "best_within_1pt": ("an object or null", lambda v: v is None or isinstance(v, dict)),
    "hypervolume_val": ("a finite number", _number),
    "hypervolume_test": ("a finite number", _number),
}


#: the top-level summary.json keys ``lowbit report`` needs (validate needs only the model)
REPORT_NEEDS = ("model", "hardware", "reference", "methods")


def summary_problems(summary: Any, *, needs: tuple[str, ...] = REPORT_NEEDS) -> list[str]:
    """Every key of a run's ``summary.json`` (as parsed) that ``lowbit validate`` and
    ``lowbit report`` read and that is of the wrong type, or missing though its top-level
    key is in ``needs``; each with its key path."""
    if not isinstance(summary, dict):
        return [f"must be a JSON object, got {type(summary).__name__}"]
    problems = []
    for path, (kind, check, required) in _SUMMARY_KEYS.items():
        node: Any = summary
        for key in path.split("."):
            node = node.get(key, _MISSING) if isinstance(node, dict) else _MISSING
        if node is _MISSING:
            if required and path.split(".")[0] in needs:
                problems.append(f"{path}: missing")
        elif not check(node):
            problems.append(f"{path}: must be {kind}, got {node!r:.60}")
    methods = summary.get("methods")
    for name, method in methods.items() if isinstance(methods, dict) else ():
        if not isinstance(method, dict):
            problems.append(f"methods.{name}: must be an object, got {method!r:.60}")
            continue
        for key, (kind, check) in _METHOD_KEYS.items():
            if key in method and not check(method[key]):
                problems.append(f"methods.{name}.{key}: must be {kind}, got {method[key]!r:.60}")
    return problems


_MISSING = object()


#: config values -> their key paths, by the range they must lie in
_FRACTIONS = {
    "accuracy_val": "accuracy.val",
    "accuracy_test": "accuracy.test",
    "fp32_val": "accuracy.fp32_val",
    "fp32_test": "accuracy.fp32_test",
    "accuracy_cheap": "accuracy.cheap_val",
}
_NON_NEGATIVE = {
    "latency_ms": "simulation.latency_ms",
    "energy_mj": "simulation.energy_mj",
    "total_cycles": "simulation.total_cycles",
    "size_kib": "size_kib",
}
_SEEDS = {"seed": "seed", "qat_seed": "qat.seed", "calib_seed": "calibration.seed"}
#: counts of images and threads: at least one
_COUNTS = {
    "calib_samples": "calibration.samples",
    "val_samples": "accuracy.val_samples",
    "test_samples": "accuracy.test_samples",
    "cheap_val_samples": "accuracy.cheap_val_samples",
    "threads": "accuracy.torch_threads",
}
LAYER_COSTS = ("macs", "total_cycles", "latency_ms", "energy_mj")


def non_negative(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and _finite(value) and value >= 0


def check_ranges(values: dict[str, Any], problems: list[str]) -> None:
    """Append a problem for every value (already of the right type) out of its range: a
    NaN accuracy or a negative cycle count would reach reports and exports silently."""
    for key, path in _FRACTIONS.items():
        value = values.get(key)
        if value is not None and not (_finite(value) and 0 <= value <= 1):
            problems.append(f"{path}: must be a fraction in [0, 1], got {value!r:.40}")
    for key, path in _NON_NEGATIVE.items():
        value = values.get(key)
        if value is not None and not non_negative(value):
            problems.append(f"{path}: must be a finite number >= 0, got {value!r:.40}")
    for key, path in _SEEDS.items():
        if values.get(key) is not None:
            problem = check_int(values[key], name=path, low=0, high=MAX_SEED)
            if problem:
                problems.append(problem)
    for key, path in _COUNTS.items():
        if values.get(key) is not None:
            problem = check_int(values[key], name=path, low=1, high=2**31 - 1)
            if problem:
                problems.append(problem)
    if values.get("qat_steps") is not None:
        problem = check_int(values["qat_steps"], name="qat.steps", low=0, high=MAX_STEPS)
        if problem:
            problems.append(problem)
