"""The generic checks of a hardware profile against its schema (:mod:`._profile_schema`).

:func:`check_tree` reports missing keys, unknown keys, wrong types and out-of-range numbers
with their key paths (``memory[1].bandwidth_bytes_per_cycle``); :func:`fill_defaults` gives
absent optional keys their schema defaults; :func:`show` and :func:`did_you_mean` word the
errors the way the user wrote the TOML.
"""

from __future__ import annotations

import difflib
import json
import math

from ._schema_types import VALID_BITS, Key, Table, TableArray

__all__ = [
    "check_tree",
    "check_unique",
    "did_you_mean",
    "fill_defaults",
    "is_int",
    "is_number",
    "show",
]


# ---------------------------------------------------------------------------------------
# value helpers


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return isinstance(value, int) or math.isfinite(value)  # ints: no overflow on huge ones


def show(value: object) -> str:
    """A value as the user wrote it in TOML: ``"32"`` for strings, ``true`` for booleans."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "[" + ", ".join(show(v) for v in value) + "]"
    return str(value)


def check_unique(items: list, path: str, out: list[str]) -> None:
    """Append ``path[i]: X listed twice`` for every repeat in ``items``."""
    seen: list = []
    for i, item in enumerate(items):
        if item in seen:
            out.append(f"{path}[{i}]: {show(item)} listed twice")
        seen.append(item)


def did_you_mean(word: str, options: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


def _num(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() and abs(bound) < 1e15 else f"{bound:g}"


# ---------------------------------------------------------------------------------------
# the walker

_TYPE_WORDS = {
    "int": "an integer",
    "number": "a number",
    "str": "a string",
    "bool": "true or false",
    "bits": "an integer bit-width",
}


def _check_scalar(spec: Key, kind: str, value: object, path: str, out: list[str]) -> None:
    if kind == "bits":
        if not is_int(value):
            out.append(f"{path}: must be an integer bit-width, got {show(value)}")
        elif value not in VALID_BITS:
            out.append(f"{path}: must be 1-16, or 32 for float, got {value}")
        return
    ok = {
        "int": is_int(value),
        "number": is_number(value),
        "str": isinstance(value, str),
        "bool": isinstance(value, bool),
    }[kind]
    if not ok:
        if kind == "number" and isinstance(value, float):
            out.append(f"{path}: must be a finite number, got {show(value)}")
        else:
            out.append(f"{path}: must be {_TYPE_WORDS[kind]}, got {show(value)}")
        return
    if kind == "str":
        if spec.choices and value not in spec.choices:
            valid = ", ".join(spec.choices)
            out.append(f"{path}: unknown '{value}' (valid: {valid})")
        return
    if kind in ("int", "number"):
        unit = f" {spec.unit}" if spec.unit else ""
        if spec.low is not None:
            if spec.low_open and not value > spec.low:
                out.append(f"{path}: must be > {_num(spec.low)}, got {show(value)}")
                return
            if not spec.low_open and not value >= spec.low:
                out.append(f"{path}: must be >= {_num(spec.low)}, got {show(value)}")
                return
        if spec.high is not None and value > spec.high:
            out.append(
                f"{path}: must be <= {_num(spec.high)}{unit} (implausibly large), got {show(value)}"
            )


def _check_key(spec: Key, value: object, path: str, out: list[str]) -> None:
    if not spec.type.startswith("list["):
        _check_scalar(spec, spec.type, value, path, out)
        return
    item = spec.type[5:-1]
    if not isinstance(value, list):
        out.append(f"{path}: must be an array, got {show(value)}")
        return
    for i, element in enumerate(value):
        where = f"{path}[{i}]"
        if item == "pair":
            if not (isinstance(element, list) and len(element) == 2 and all(map(is_int, element))):
                out.append(f"{where}: must be a pair of integers [n, m], got {show(element)}")
            elif not 0 < element[0] < element[1] <= 64:
                out.append(f"{where}: must be [n, m] with 0 < n < m <= 64, got {show(element)}")
        else:
            _check_scalar(spec, item, element, where, out)


def check_tree(spec: Table, data: object, path: str, out: list[str]) -> None:
    """Append to ``out`` every missing / unknown / mistyped / out-of-range key under ``data``."""
    prefix = f"{path}." if path else ""
    if not isinstance(data, dict):
        out.append(f"{path}: must be a table, got {show(data)}")
        return
    for name in data:
        if name not in spec.keys:
            out.append(f"{prefix}{name}: unknown key{did_you_mean(name, tuple(spec.keys))}")
    for name, child in spec.keys.items():
        where = f"{prefix}{name}"
        if name not in data:
            if child.required:
                out.append(f"{where}: missing")
            continue
        value = data[name]
        if isinstance(child, Key):
            _check_key(child, value, where, out)
        elif isinstance(child, Table):
            check_tree(child, value, where, out)
        else:
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                out.append(f"{where}: must be an array of tables ([[{where}]]), got {show(value)}")
                continue
            if len(value) < child.min_items:
                out.append(f"{where}: needs at least {child.min_items} entry")
            for i, element in enumerate(value):
                check_tree(child.table, element, f"{where}[{i}]", out)


def fill_defaults(spec: Table, data: dict) -> None:
    """Give every absent optional key of valid ``data`` its default, in place: optional
    tables whose keys are all optional are created, optional arrays of tables become ``[]``.
    The builder then reads every key directly, so defaults live only in this schema."""
    for name, child in spec.keys.items():
        if isinstance(child, Key):
            if name not in data and not child.required and child.default is not None:
                default = child.default  # None: derived by the builder (compute.dataflow)
                data[name] = list(default) if isinstance(default, list) else default
        elif isinstance(child, TableArray):
            if name not in data and not child.required:
                data[name] = []
            for element in data.get(name, []):
                fill_defaults(child.table, element)
        else:
            if name not in data and not child.required and not _has_required(child):
                data[name] = {}
            if name in data:
                fill_defaults(child, data[name])


def _has_required(table: Table) -> bool:
    return any(
        child.required
        if isinstance(child, Key)
        else isinstance(child, Table) and _has_required(child)
        for child in table.keys.values()
    )
