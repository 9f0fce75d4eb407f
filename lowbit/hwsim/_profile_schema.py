"""The hardware-profile schema (``schema_version = 1``) as data, and the generic checks.

Every key a profile may hold is declared once here, with its type, unit, bounds and
default; the walker :func:`check_tree` reports missing keys, unknown keys, wrong types and
out-of-range numbers with their key paths (``memory[1].bandwidth_bytes_per_cycle``). Rules
that tie several keys together live in :mod:`lowbit.hwsim._profile_rules`. lowbit/hardware_profiles/
README.md documents the same keys for users (a test checks that it names every one).

Upper bounds are not physical limits: they catch unit mistakes (GB/s written as bytes per
cycle, MHz written as Hz), so anything beyond them is "implausibly large". Lower bounds of
rates are physical floors (a clock of 1 kHz, a byte or a MAC per 1,000 cycles): below them a
value is a mistake, and a tiny positive rate (``1e-308``) would make cycle counts, latency
and energy overflow to infinity.
"""

from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass

from .profile import DEPTHWISE_KEYS, OPERANDS
from .workload import ELEMENTWISE_KINDS, INTEGER_COST_KINDS

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSIONS",
    "FAMILIES",
    "WEIGHT_STORAGE",
    "PRECISION_MODELS",
    "Key",
    "Table",
    "TableArray",
    "check_tree",
    "fill_defaults",
    "BITFUSION_DEFAULT_BITS",
    "BITSERIAL_DEFAULT_BITS",
    "show",
    "did_you_mean",
    "is_int",
    "is_number",
]

SCHEMA_VERSIONS = (1,)
FAMILIES = ("npu", "fpga", "cpu", "mcu")
WEIGHT_STORAGE = ("packed", "promoted")
PRECISION_MODELS = ("table", "bitfusion", "bitserial")
#: integer bit-widths a precision mode may name; 32 means float (as in hwsim.workload).
VALID_BITS = tuple(range(1, 17)) + (32,)
BITFUSION_DEFAULT_BITS = (2, 4, 8)
BITSERIAL_DEFAULT_BITS = tuple(range(1, 9))
#: slowest clock accepted (Hz) and lowest rate (bytes or MACs per cycle): physical floors
MIN_CLOCK_HZ = 1e3
MIN_RATE = 1e-3


@dataclass(frozen=True, slots=True)
class Key:
    """One scalar or list key.

    ``type`` is one of: ``int``, ``number`` (int or float), ``str``, ``bool``, ``bits``
    (1-16 or 32), ``list[str]``, ``list[number]``, ``list[bits]``, ``list[pair]`` (a list
    of ``[n, m]`` integer pairs). Bounds apply to numbers and to list items.
    """

    type: str
    required: bool = True
    default: object = None
    low: float | None = None
    low_open: bool = False  # True: must be > low; False: must be >= low
    high: float | None = None
    choices: tuple[str, ...] = ()
    unit: str = ""


@dataclass(frozen=True, slots=True)
class Table:
    keys: dict[str, Key | Table | TableArray]
    required: bool = True


@dataclass(frozen=True, slots=True)
class TableArray:
    """An array of tables (``[[memory]]``); ``named`` arrays are addressed by ``name`` in
    override paths as well as by index."""

    table: Table
    required: bool = True
    min_items: int = 1
    named: bool = False


_PRECISION = Table(
    {
        "w_bits": Key("bits"),
        "a_bits": Key("bits"),
        "macs_per_pe_per_cycle": Key("number", low=MIN_RATE, high=4096),
        "energy_pj_per_mac": Key("number", low=0, high=1e4, unit="pJ"),
    }
)

COMPUTE = Table(
    {
        "kind": Key("str", choices=("systolic", "vector")),
        "rows": Key("int", low=1, high=65536),
        "cols": Key("int", low=1, high=65536),
        "cores": Key("int", required=False, default=1, low=1, high=65536),
        # required for systolic arrays; a vector unit's only dataflow is "vector"
        "dataflow": Key("str", required=False),
        "dataflows": Key("list[str]", required=False),
        "precision_model": Key("str", required=False, default="table", choices=PRECISION_MODELS),
        "precision": TableArray(_PRECISION, required=False, min_items=0),
        "bitfusion": Table(
            {
                "bits": Key("list[bits]", required=False, default=list(BITFUSION_DEFAULT_BITS)),
                "w8a8_macs_per_pe_per_cycle": Key(
                    "number", required=False, default=1.0, low=MIN_RATE, high=4096
                ),
                "w8a8_energy_pj_per_mac": Key("number", low=0, high=1e4, unit="pJ"),
            },
            required=False,
        ),
        "bitserial": Table(
            {
                "bits": Key("list[bits]", required=False, default=list(BITSERIAL_DEFAULT_BITS)),
                "w1a1_macs_per_pe_per_cycle": Key(
                    "number", required=False, default=1.0, low=MIN_RATE, high=4096
                ),
                "w1a1_energy_pj_per_mac": Key("number", low=0, high=1e4, unit="pJ"),
            },
            required=False,
        ),
    }
)

MEMORY_LEVEL = Table(
    {
        "name": Key("str"),
        "size_bytes": Key("int", low=1, high=2**50, unit="bytes"),
        "bandwidth_bytes_per_cycle": Key("number", low=MIN_RATE, high=2**20, unit="bytes/cycle"),
        "energy_pj_per_byte": Key("number", low=0, high=1e5, unit="pJ/byte"),
        "holds": Key("list[str]", choices=OPERANDS),
        "off_chip": Key("bool", required=False, default=False),
        "double_buffered": Key("bool", required=False, default=False),
    }
)

SCHEMA = Table(
    {
        "schema_version": Key("int"),
        "name": Key("str"),
        "description": Key("str", required=False, default=""),
        "family": Key("str", choices=FAMILIES),
        "clock_hz": Key("number", low=MIN_CLOCK_HZ, high=10e9, unit="Hz"),
        "weight_storage": Key("str", required=False, default="packed", choices=WEIGHT_STORAGE),
        "static_power_w": Key("number", required=False, default=0.0, low=0, high=1e4, unit="W"),
        "compute": COMPUTE,
        "memory": TableArray(MEMORY_LEVEL, named=True),
        "sparsity": Table(
            {
                "nm_patterns": Key("list[pair]", required=False, default=[]),
                "zero_skipping": Key("bool", required=False, default=False),
                "index_bits_per_nonzero": Key(
                    "number", required=False, default=0.0, low=0, high=64, unit="bits"
                ),
            },
            required=False,
        ),
        "overheads": Table(
            {
                "layer_cycles": Key("int", required=False, default=0, low=0, high=10**9),
                # default as hwsim.profile.Overheads: a few tens of cycles per tile
                "tile_cycles": Key("int", required=False, default=16, low=0, high=10**6),
                "run_cycles": Key("int", required=False, default=0, low=0, high=10**9),
                "gemm_cycles": Key("int", required=False, default=0, low=0, high=10**9),
                "narrow_activation_cycles": Key(
                    "int", required=False, default=0, low=0, high=10**9
                ),
                "conv_channel_multiple": Key("int", required=False, default=1, low=1, high=1024),
                "conv_min_out_channels": Key("int", required=False, default=1, low=1, high=65536),
                "unaligned_conv_cycles_per_pixel": Key(
                    "number", required=False, default=0.0, low=0, high=10**6, unit="cycles"
                ),
                "conv_cycles_per_pixel": Key(
                    "number", required=False, default=0.0, low=0, high=10**6, unit="cycles"
                ),
                "requant_cycles_per_output": Key(
                    "number", required=False, default=0.0, low=0, high=10**6, unit="cycles"
                ),
                "pad_conv_channels": Key("bool", required=False, default=False),
                "warm_cache": Key("bool", required=False, default=False),
                "depthwise_channel_multiple": Key(
                    "int", required=False, default=1, low=1, high=1024
                ),
                "pool_channel_block": Key("int", required=False, default=0, low=0, high=4096),
                "conv_cycles_per_image": Key(
                    "number", required=False, default=0.0, low=0, high=10**9, unit="cycles"
                ),
                **{
                    key: Key(
                        "number", required=False, default=0.0, low=0, high=10**6, unit="cycles"
                    )  # fmt: skip
                    for key in DEPTHWISE_KEYS
                },
                "elementwise_cycles_per_element": Table(
                    {
                        kind: Key("number", required=False, low=0, high=10**6, unit="cycles")
                        for kind in (
                            *ELEMENTWISE_KINDS,
                            *(f"{k}_int8" for k in INTEGER_COST_KINDS),
                        )  # fmt: skip
                    },
                    required=False,
                ),
            },
            required=False,
        ),
        "tunables": TableArray(
            Table({"key": Key("str"), "values": Key("list[number]")}),
            required=False,
            min_items=0,
        ),
        "area": Table(
            {
                "mm2_per_pe": Key("number", low=0, high=1e3, unit="mm2"),
                "mm2_per_kib_sram": Key("number", low=0, high=1e3, unit="mm2"),
                "mm2_per_gbps_dram": Key("number", low=0, high=1e3, unit="mm2"),
                "base_mm2": Key("number", required=False, default=0.0, low=0, high=1e6),
                "source": Key("str", required=False, default=""),
            },
            required=False,
        ),
    }
)


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
