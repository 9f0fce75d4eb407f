"""The firmware config schema (docs/firmware-config.md): validation that lists every
problem with its key path. Kept apart from :mod:`lowbit.models.export.firmware`, which builds
configs."""

from __future__ import annotations

import math
import re
from typing import Any

from lowbit.models.compression.plan import CompressionPlan, PlanError

__all__ = [
    "FIRMWARE_KIND",
    "FIRMWARE_SCHEMA_VERSION",
    "INT8_QMAX",
    "INT8_QMIN",
    "validate_firmware_config",
]

#: 2: integer tensors are described as deployed (BatchNorm folded, int32 bias); 1 described
#: the trained grids before folding and no bias, so it is refused rather than misread
FIRMWARE_SCHEMA_VERSION = 2
FIRMWARE_KIND = "lowbit-firmware-config"
#: the code range of int8 weight storage (``runs_as: "int8"`` tensors)
INT8_QMIN, INT8_QMAX = -128, 127
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_RUNS_AS = ("int8", "float")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_OLD_VERSIONS = {
    1: "written by an older lowbit: its weight scales are before BatchNorm folding and it has "
    "no int32 bias, so it does not describe the deployed model; rebuild it with "
    "models.firmware.write_firmware_config or `lowbit export`",
}
_TARGET_LAYER_KEYS = {
    "name": str,
    "op": str,
    "w_bits": int,
    "a_bits": int,
    "macs": int,
    "cycles": int,
    "latency_ms": float,
    "energy_mj": float,
    "bound": str,
}


def _check(problems: list[str], node: Any, key: str, kinds: Any, path: str, *, null=False):
    """Append a problem unless ``node[key]`` exists and has type ``kinds`` (or None)."""
    if not isinstance(node, dict) or key not in node:
        problems.append(f"{path}{key}: missing")
        return None
    value = node[key]
    if value is None and null:
        return None
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    if float in kinds:
        kinds = (*kinds, int)
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in kinds if k is not int or float not in kinds)
        problems.append(f"{path}{key}: must be {names}{' or null' if null else ''}, got {value!r}")
        return None
    return value


def _check_grid(problems: list[str], grid: Any, path: str, *, weight: bool) -> None:
    if grid is None:
        return
    if not isinstance(grid, dict):
        problems.append(f"{path}: must be an object or null")
        return
    for key in ("bits", "qmin", "qmax"):
        _check(problems, grid, key, int, path + ".")
    if weight:
        _check(problems, grid, "granularity", str, path + ".")
        _check(problems, grid, "symmetric", bool, path + ".")
        for key in ("scale", "zero_point"):
            _check(problems, grid, key, list, path + ".")
    else:
        _check(problems, grid, "scale", float, path + ".")
        _check(problems, grid, "zero_point", int, path + ".")


def _check_values(
    problems: list[str],
    values: Any,
    path: str,
    *,
    kind: type,
    length: int | None,
    lo: float | None = None,
    hi: float | None = None,
) -> None:
    """A list of ``length`` numbers of ``kind`` within [lo, hi] (floats: finite, > lo)."""
    if not isinstance(values, list):
        return  # reported by _check
    if length is not None and len(values) != length:
        problems.append(
            f"{path}: must have {length} entries (one per output channel), got {len(values)}"
        )
    kinds = (float, int) if kind is float else (int,)
    for i, v in enumerate(values):
        bad = isinstance(v, bool) or not isinstance(v, kinds)
        if not bad and kind is float:
            bad = not (v > lo and math.isfinite(v))  # NaN fails both
        elif not bad:
            bad = not lo <= v <= hi
        if bad:
            want = f"a finite number > {lo}" if kind is float else f"an integer in [{lo}, {hi}]"
            problems.append(f"{path}[{i}]: must be {want}, got {v!r}")
            return  # one per list is enough to act on


def _check_integer_tensor(problems: list[str], tensor: dict, path: str) -> None:
    """A ``runs_as: "int8"`` tensor: int8 per-channel weights, an input grid, int32 bias."""
    shape = tensor.get("weight_shape")
    out = shape[0] if isinstance(shape, list) and shape and isinstance(shape[0], int) else None
    weight, bias = tensor.get("weight"), tensor.get("bias")
    if not isinstance(weight, dict):
        problems.append(f"{path}weight: an int8 tensor needs its weight grid, got {weight!r}")
    else:
        if (weight.get("qmin"), weight.get("qmax")) != (INT8_QMIN, INT8_QMAX):
            problems.append(
                f"{path}weight: qmin, qmax of an int8 tensor must be {INT8_QMIN}, {INT8_QMAX}"
            )
        _check_values(
            problems, weight.get("scale"), path + "weight.scale", kind=float, length=out, lo=0.0
        )
        _check_values(
            problems,
            weight.get("zero_point"),
            path + "weight.zero_point",
            kind=int,
            length=out,
            lo=INT8_QMIN,
            hi=INT8_QMAX,
        )
    if tensor.get("input") is None:
        problems.append(f"{path}input: an int8 tensor needs its input grid, got null")
    if isinstance(bias, dict):
        at = path + "bias."
        if _check(problems, bias, "bits", int, at) not in (None, 32):
            problems.append(f"{at}bits: must be 32, got {bias['bits']!r}")
        _check_values(
            problems,
            _check(problems, bias, "scale", list, at),
            at + "scale",
            kind=float,
            length=out,
            lo=0.0,
        )
        _check_values(
            problems,
            _check(problems, bias, "codes", list, at),
            at + "codes",
            kind=int,
            length=out,
            lo=_INT32_MIN,
            hi=_INT32_MAX,
        )


def _check_tensor(problems: list[str], tensor: Any, path: str, *, matmul: bool) -> None:
    _check(problems, tensor, "name", str, path)
    runs_as = _check(problems, tensor, "runs_as", str, path)
    if runs_as is not None and runs_as not in _RUNS_AS:
        problems.append(f"{path}runs_as: must be one of {', '.join(_RUNS_AS)}, got {runs_as!r}")
    if not isinstance(tensor, dict):
        return
    _check_grid(problems, tensor.get("input"), path + "input", weight=False)
    if matmul:
        return
    _check(problems, tensor, "weight_shape", list, path)
    _check_grid(problems, tensor.get("weight"), path + "weight", weight=True)
    batchnorm = _check(problems, tensor, "folded_batchnorm", str, path, null=True)
    bias = _check(problems, tensor, "bias", dict, path, null=True)
    if runs_as == "int8":
        _check_integer_tensor(problems, tensor, path)
    elif runs_as == "float":
        if bias is not None:
            problems.append(f"{path}bias: a float tensor keeps its float bias: must be null")
        if batchnorm is not None:
            problems.append(f"{path}folded_batchnorm: must be null for a float tensor")


def validate_firmware_config(data: Any) -> list[str]:
    """Every schema problem of ``data`` as ``"key.path: message"`` (empty when valid)."""
    if not isinstance(data, dict):
        return [f"config: must be a JSON object, got {type(data).__name__}"]
    problems: list[str] = []
    version = _check(problems, data, "schema_version", int, "")
    if version is not None and version != FIRMWARE_SCHEMA_VERSION:
        # another version's fields mean other things: checking them against this one would
        # only bury the one problem that matters
        why = _OLD_VERSIONS.get(version, "unknown version")
        return [
            f"schema_version: unsupported {version} ({why}; supported: {FIRMWARE_SCHEMA_VERSION})"
        ]
    if data.get("kind") != FIRMWARE_KIND:
        problems.append(f"kind: must be {FIRMWARE_KIND!r}, got {data.get('kind')!r}")
    _check(problems, data, "model", str, "")
    plan = _check(problems, data, "plan", dict, "")
    if plan is not None:
        try:
            CompressionPlan.from_dict(plan)
        except PlanError as exc:
            problems.extend(f"plan.{p}" for p in exc.problems)
    for i, layer in enumerate(_check(problems, data, "layers", list, "") or []):
        at = f"layers[{i}]."
        _check(problems, layer, "name", str, at)
        kind = _check(problems, layer, "kind", str, at)
        for key in ("w_bits", "a_bits"):
            _check(problems, layer, key, int, at, null=True)
        if kind != "matmul":
            for key in ("in_channels", "out_channels"):
                _check(problems, layer, key, int, at)
            for key in ("kept_out_channels", "kept_in_channels"):
                _check(problems, layer, key, list, at, null=True)
            _check(problems, layer, "low_rank", dict, at, null=True)
            _check(problems, layer, "sparsity", dict, at)
        for j, tensor in enumerate(_check(problems, layer, "tensors", list, at) or []):
            _check_tensor(problems, tensor, f"{at}tensors[{j}].", matmul=kind == "matmul")
    for family, by_profile in (_check(problems, data, "targets", dict, "") or {}).items():
        if not isinstance(by_profile, dict) or not by_profile:
            problems.append(f"targets.{family}: must map profile names to results")
            continue
        for name, target in by_profile.items():
            at = f"targets.{family}.{name}."
            for key, kinds in (("profile", str), ("content_hash", str), ("clock_hz", float)):
                _check(problems, target, key, kinds, at)
            for key in ("latency_ms", "energy_mj", "cycles"):
                _check(problems, (target or {}).get("total"), key, (float, int), at + "total.")
            for k, row in enumerate(_check(problems, target, "layers", list, at) or []):
                for key, kinds in _TARGET_LAYER_KEYS.items():
                    _check(problems, row, key, kinds, f"{at}layers[{k}].")
    artifacts = _check(problems, data, "artifacts", dict, "") if "artifacts" in data else None
    for kind, entry in (artifacts or {}).items():  # optional: the files exported with it
        at = f"artifacts.{kind}."
        _check(problems, entry, "path", str, at)
        _check(problems, entry, "bytes", int, at)
        digest = _check(problems, entry, "sha256", str, at)
        if isinstance(digest, str) and not _SHA256.fullmatch(digest):
            problems.append(f"{at}sha256: must be 64 hex digits, got {digest!r}")
    return problems
