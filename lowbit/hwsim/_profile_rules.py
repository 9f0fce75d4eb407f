"""Validation of raw profile data: the schema walk plus the rules that tie keys together.

:func:`validate` returns every problem as ``"key.path: message"`` (nothing raised), so the
loader can report all of them in one :class:`~lowbit.hwsim.errors.ProfileError`. Rules only look at
values that passed the schema walk, so one mistake is reported once. A precision model's own
checks are its class's (:mod:`lowbit.hwsim._precision_models`), asked through the registry.
"""

from __future__ import annotations

import copy
import re

from ._precision_models import PRECISION_MODELS
from ._profile_overrides import BadPath, resolve_path
from ._profile_schema import SCHEMA, SCHEMA_VERSIONS
from ._profile_walk import check_tree, check_unique, is_int, show
from .profile import DATAFLOWS, OPERANDS

__all__ = ["validate"]

_PROFILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
# level names appear in key paths (memory.NAME.size_bytes): no dots, not an index
_LEVEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def validate(data: object, *, check_tunables: bool = True) -> list[str]:
    """Every problem in raw profile ``data`` (an empty list means it builds).

    Example:
        >>> validate({"schema_version": 2})
        ['schema_version: unsupported 2 (supported: 1)']
    """
    if not isinstance(data, dict):
        return [f"profile: must be a table, got {show(data)}"]
    version = data.get("schema_version")
    if is_int(version) and version not in SCHEMA_VERSIONS:
        # other keys may mean something else in another version: report this alone
        supported = ", ".join(map(str, SCHEMA_VERSIONS))
        return [f"schema_version: unsupported {version} (supported: {supported})"]
    out: list[str] = []
    check_tree(SCHEMA, data, "", out)
    name = data.get("name")
    if isinstance(name, str) and not _PROFILE_NAME.match(name):
        out.append(
            f"name: must start with a letter or digit and hold only letters, digits and . _ + -"
            f", got {show(name)}"
        )
    if isinstance(data.get("compute"), dict):
        _compute_rules(data["compute"], out)
    if isinstance(data.get("memory"), list):
        _memory_rules(data["memory"], out)
    sparsity = data.get("sparsity")
    if isinstance(sparsity, dict) and isinstance(sparsity.get("nm_patterns"), list):
        check_unique(sparsity["nm_patterns"], "sparsity.nm_patterns", out)
    _compression_rules(data, out)
    if check_tunables and not out and data.get("tunables"):
        _tunable_rules(data, out)
    return out


def _compression_rules(data: dict, out: list[str]) -> None:
    """``weight_storage = "compressed"`` and ``[weight_compression]`` go together; its two
    lists pair up, one entry per grid width."""
    storage, table = data.get("weight_storage"), data.get("weight_compression")
    if storage == "compressed" and table is None:
        out.append(
            'weight_compression: missing (weight_storage = "compressed" needs the encoder\'s '
            "stored bits per weight)"
        )
    elif table is not None and storage != "compressed":
        out.append(
            'weight_compression: only read when weight_storage = "compressed" (it is '
            f"{show(storage if storage is not None else 'packed')})"
        )
    if not isinstance(table, dict):
        return
    bits, stored = table.get("w_bits"), table.get("stored_bits_per_weight")
    if isinstance(bits, list) and not bits:
        out.append("weight_compression.w_bits: must not be empty")
    if isinstance(bits, list) and isinstance(stored, list) and len(bits) != len(stored):
        out.append(
            f"weight_compression.stored_bits_per_weight: {len(stored)} entries for "
            f"{len(bits)} w_bits (one per width)"
        )
    if isinstance(bits, list) and all(is_int(b) for b in bits):
        check_unique(bits, "weight_compression.w_bits", out)


def _str_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _compute_rules(compute: dict, out: list[str]) -> None:
    kind = compute.get("kind")
    if isinstance(kind, str) and kind in DATAFLOWS:
        allowed = DATAFLOWS[kind]
        valid = ", ".join(allowed)
        dataflow = compute.get("dataflow")
        if dataflow is None and kind == "systolic":
            out.append(f"compute.dataflow: missing (a systolic array needs one of: {valid})")
        elif isinstance(dataflow, str) and dataflow not in allowed:
            out.append(f"compute.dataflow: unknown '{dataflow}' (valid: {valid})")
        dataflows = compute.get("dataflows")
        if _str_list(dataflows):
            if not dataflows:
                out.append("compute.dataflows: must not be empty")
            for i, d in enumerate(dataflows):
                if d not in allowed:
                    out.append(f"compute.dataflows[{i}]: unknown '{d}' (valid: {valid})")
            check_unique(dataflows, "compute.dataflows", out)
            if isinstance(dataflow, str) and dataflow in allowed and dataflow not in dataflows:
                out.append(
                    f"compute.dataflow: '{dataflow}' is not in compute.dataflows "
                    f"({', '.join(dataflows)})"
                )
    name = compute.get("precision_model", "table")
    model = PRECISION_MODELS.get(name) if isinstance(name, str) else None
    if model is None:
        return  # reported by the schema walk
    for other in PRECISION_MODELS:
        if other != name and other in compute:
            out.append(
                f'compute.{other}: only read when precision_model = "{other}" (it is "{name}")'
            )
    derived = model.check(compute, out)
    entries = compute.get("precision", [])
    seen = set(derived)
    for i, entry in enumerate(entries if isinstance(entries, list) else []):
        if not isinstance(entry, dict):
            continue
        w, a = entry.get("w_bits"), entry.get("a_bits")
        if not (is_int(w) and is_int(a)):
            continue
        if (w == 32) != (a == 32):
            out.append(
                f"compute.precision[{i}]: w_bits and a_bits must both be 32 (float) or both "
                f"integer widths, got W{w}A{a}"
            )
        if (w, a) in seen:
            origin = f'precision_model = "{name}"' if (w, a) in derived else "an earlier entry"
            out.append(f"compute.precision[{i}]: W{w}A{a} is already defined by {origin}")
        seen.add((w, a))


def _memory_rules(levels: list, out: list[str]) -> None:
    names: dict[str, int] = {}
    complete = True  # every level has valid holds / off_chip: coverage can be checked
    first_on_chip: str | None = None
    for i, level in enumerate(levels):
        if not isinstance(level, dict):
            complete = False
            continue
        name = level.get("name")
        label = f'"{name}"' if isinstance(name, str) else f"memory[{i}]"
        if isinstance(name, str):
            if not _LEVEL_NAME.match(name):
                out.append(
                    f"memory[{i}].name: must start with a letter and hold only letters, "
                    f"digits, _ and - (it is used in key paths), got {show(name)}"
                )
            if name in names:
                first = names[name]
                out.append(f"memory[{i}].name: {show(name)} is also the name of memory[{first}]")
            names.setdefault(name, i)
        holds = level.get("holds")
        if _str_list(holds):
            if not holds:
                out.append(f"memory[{i}].holds: must name at least one of {', '.join(OPERANDS)}")
            check_unique(holds, f"memory[{i}].holds", out)
        else:
            complete = False
        off_chip = level.get("off_chip", False)
        if not isinstance(off_chip, bool):
            complete = False
        elif not off_chip and first_on_chip is None:
            first_on_chip = label
        elif off_chip and first_on_chip is not None:
            out.append(
                f"memory[{i}]: off-chip level {label} comes after on-chip level "
                f"{first_on_chip} (list levels outermost first)"
            )
    if not complete:
        return
    for operand in OPERANDS:
        if not any(lv.get("off_chip", False) and operand in lv["holds"] for lv in levels):
            out.append(
                f"memory: no off-chip level holds {operand} (set off_chip = true on the "
                f'DRAM / flash level and list "{operand}" in its holds)'
            )
    _backing_sizes(levels, out)


def _backing_sizes(levels: list[dict], out: list[str]) -> None:
    """An off-chip level (DRAM, flash) is where the tensors its on-chip levels cache live:
    it cannot be smaller than an on-chip level holding one of its operands (a 1-byte DRAM
    would otherwise pass, and change nothing, since the engines never evict off chip)."""
    for i, level in enumerate(levels):
        size = level.get("size_bytes")
        if not level.get("off_chip", False) or not is_int(size):
            continue
        inner = [
            lv
            for lv in levels
            if not lv.get("off_chip", False)
            and is_int(lv.get("size_bytes"))
            and lv["size_bytes"] > size
            and set(lv["holds"]) & set(level["holds"])
        ]
        if inner:
            big = max(inner, key=lambda lv: lv["size_bytes"])
            shared = ", ".join(o for o in level["holds"] if o in big["holds"])
            out.append(
                f"memory[{i}].size_bytes: off-chip level {show(level.get('name'))} is "
                f"{size} bytes, smaller than on-chip level {show(big.get('name'))} "
                f"({big['size_bytes']} bytes), which caches its {shared} (an off-chip level "
                "must hold every byte the levels it feeds do)"
            )


def _tunable_rules(data: dict, out: list[str]) -> None:
    for i, tunable in enumerate(data["tunables"]):
        key, values = tunable["key"], tunable["values"]
        where = f"tunables[{i}]"
        try:
            _container, _leaf, spec, _canonical = resolve_path(data, key)
        except BadPath as exc:
            out.append(f"{where}.key: {key}: {exc}")
            continue
        if spec.type not in ("int", "number"):
            out.append(f"{where}.key: {key} is not numeric (tunable values are numbers)")
            continue
        if not values:
            out.append(f"{where}.values: must not be empty")
        check_unique(values, f"{where}.values", out)
        for j, value in enumerate(values):
            variant = copy.deepcopy(data)
            container, leaf, _spec, _canonical = resolve_path(variant, key, create=True)
            container[leaf] = value
            problems = validate(variant, check_tunables=False)
            if problems:
                out.append(f"{where}.values[{j}]: {key} = {show(value)} gives {problems[0]!r}")
