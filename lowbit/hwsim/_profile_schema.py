"""The hardware-profile schema (``schema_version = 1``) as data.

Every key a profile may hold is declared once, with its type, unit, bounds and default:
here, or beside the behaviour that reads it -- a precision model's sub-table in its class
(:mod:`lowbit.hwsim._precision_models`, read through the registry), a cost rule's
``[overheads]`` keys in its class (:mod:`lowbit.hwsim._cost_rules`). The generic walker
over the schema (missing, unknown, mistyped and out-of-range keys, and the defaults) is
:mod:`lowbit.hwsim._profile_walk`. Rules that tie several keys together live in
:mod:`lowbit.hwsim._profile_rules`. lowbit/hardware_profiles/README.md documents the same
keys for users (a test checks that it names every one).

Upper bounds are not physical limits: they catch unit mistakes (GB/s written as bytes per
cycle, MHz written as Hz), so anything beyond them is "implausibly large". Lower bounds of
rates are physical floors (a clock of 1 kHz, a byte or a MAC per 1,000 cycles): below them a
value is a mistake, and a tiny positive rate (``1e-308``) would make cycle counts, latency
and energy overflow to infinity.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from ._cost_rules import COST_RULES, overhead_keys
from ._precision_models import PRECISION_MODELS
from ._schema_types import MIN_CLOCK_HZ, MIN_RATE, VALID_BITS, Key, Table, TableArray
from .profile import OPERANDS

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSIONS",
    "COMPUTE",
    "OVERHEADS",
    "FAMILIES",
    "WEIGHT_STORAGE",
    "Key",
    "Table",
    "TableArray",
    "VALID_BITS",
]

SCHEMA_VERSIONS = (1,)
FAMILIES = ("npu", "fpga", "cpu", "mcu")
WEIGHT_STORAGE = ("packed", "promoted", "compressed")


_PRECISION = Table(
    {
        "w_bits": Key("bits"),
        "a_bits": Key("bits"),
        "macs_per_pe_per_cycle": Key("number", low=MIN_RATE, high=4096),
        "energy_pj_per_mac": Key("number", low=0, high=1e4, unit="pJ"),
    }
)


class _ComputeKeys(Mapping):
    """``[compute]``'s keys: the array's, then how its precision modes are given --
    ``precision_model`` (choices: the registered models), the explicit
    ``[[compute.precision]]`` entries, and each registered model's sub-table. The models are
    read from the registry (:data:`lowbit.hwsim._precision_models.PRECISION_MODELS`) at
    every use, so a model registered later is in the schema at once."""

    def __init__(self, array: dict[str, Key], precision: TableArray) -> None:
        self._array, self._precision = array, precision

    def _keys(self) -> dict[str, Key | Table | TableArray]:
        models = {name: m.table for name, m in PRECISION_MODELS.items() if m.table is not None}
        choice = Key("str", required=False, default="table", choices=tuple(PRECISION_MODELS))
        return {**self._array, "precision_model": choice, "precision": self._precision, **models}

    def __getitem__(self, name: str) -> Key | Table | TableArray:
        return self._keys()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())


COMPUTE = Table(
    _ComputeKeys(
        {
            "kind": Key("str", choices=("systolic", "vector")),
            "rows": Key("int", low=1, high=65536),
            "cols": Key("int", low=1, high=65536),
            "cores": Key("int", required=False, default=1, low=1, high=65536),
            # required for systolic arrays; a vector unit's only dataflow is "vector"
            "dataflow": Key("str", required=False),
            "dataflows": Key("list[str]", required=False),
        },
        TableArray(_PRECISION, required=False, min_items=0),
    )
)


class _OverheadKeys(Mapping):
    """``[overheads]``'s keys: those every target has, then the cost rules' (each rule's
    own, :mod:`lowbit.hwsim._cost_rules`), read from the rule registry at every use so a
    rule registered later is in the schema at once."""

    def __init__(self, general: dict[str, Key]) -> None:
        self._general = general
        #: (the registry's rules when last merged, the merged keys): a profile's validation
        #: looks up every key, and merging them afresh for each took 6 % of a host fit
        self._merged: tuple[list, dict[str, Key | Table]] | None = None

    def _keys(self) -> dict[str, Key | Table]:
        if self._merged is None or self._merged[0] != COST_RULES:
            self._merged = (list(COST_RULES), {**self._general, **overhead_keys()})
        return self._merged[1]

    def __getitem__(self, name: str) -> Key | Table:
        return self._keys()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())


#: ``[overheads]``: the keys every target has, then those of the cost rules
OVERHEADS = Table(
    _OverheadKeys(
        {
            "layer_cycles": Key("int", required=False, default=0, low=0, high=10**9),
            # default as hwsim.profile.Overheads: a few tens of cycles per tile
            "tile_cycles": Key("int", required=False, default=16, low=0, high=10**6),
            "run_cycles": Key("int", required=False, default=0, low=0, high=10**9),
            "float_run_cycles": Key("int", required=False, default=0, low=0, high=10**9),
            "two_grid_round_trip": Key("bool", required=False, default=False),
        }
    ),
    required=False,
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
        "overheads": OVERHEADS,
        # read only when weight_storage = "compressed" (_profile_rules)
        "weight_compression": Table(
            {
                "w_bits": Key("list[bits]"),
                "stored_bits_per_weight": Key("list[number]", low=0, high=64, unit="bits"),
                "zero_stored_bits_per_weight": Key(
                    "number", required=False, default=0.0, low=0, high=64, unit="bits"
                ),
                "bytes_per_output_channel": Key(
                    "number", required=False, default=0.0, low=0, high=1024, unit="bytes"
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
