"""The firmware config schema (docs/firmware-config.md): validation that lists every
problem with its key path. Kept apart from :mod:`models.firmware`, which builds configs."""

from __future__ import annotations

from typing import Any

from models.plan import CompressionPlan, PlanError

__all__ = ["FIRMWARE_KIND", "FIRMWARE_SCHEMA_VERSION", "validate_firmware_config"]

FIRMWARE_SCHEMA_VERSION = 1
FIRMWARE_KIND = "lowbit-firmware-config"
_TARGET_LAYER_KEYS = {
    "name": str, "op": str, "w_bits": int, "a_bits": int, "macs": int, "cycles": int,
    "latency_ms": float, "energy_mj": float, "bound": str,
}  # fmt: skip


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


def validate_firmware_config(data: Any) -> list[str]:
    """Every schema problem of ``data`` as ``"key.path: message"`` (empty when valid)."""
    if not isinstance(data, dict):
        return [f"config: must be a JSON object, got {type(data).__name__}"]
    problems: list[str] = []
    version = _check(problems, data, "schema_version", int, "")
    if version is not None and version != FIRMWARE_SCHEMA_VERSION:
        problems.append(f"schema_version: unsupported {version} (supported: 1)")
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
            tat = f"{at}tensors[{j}]"
            _check(problems, tensor, "name", str, tat + ".")
            if kind != "matmul":
                _check(problems, tensor, "weight_shape", list, tat + ".")
                _check_grid(problems, (tensor or {}).get("weight"), tat + ".weight", weight=True)
            _check_grid(problems, (tensor or {}).get("input"), tat + ".input", weight=False)
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
    return problems
