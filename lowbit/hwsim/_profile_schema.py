"""The hardware-profile schema (``schema_version = 1``) as data.

Every key a profile may hold is declared once here, with its type, unit, bounds and
default; the generic walker over it (missing, unknown, mistyped and out-of-range keys, and
the defaults) is :mod:`lowbit.hwsim._profile_walk`. Rules that tie several keys together
live in :mod:`lowbit.hwsim._profile_rules`. lowbit/hardware_profiles/
README.md documents the same keys for users (a test checks that it names every one).

Upper bounds are not physical limits: they catch unit mistakes (GB/s written as bytes per
cycle, MHz written as Hz), so anything beyond them is "implausibly large". Lower bounds of
rates are physical floors (a clock of 1 kHz, a byte or a MAC per 1,000 cycles): below them a
value is a mistake, and a tiny positive rate (``1e-308``) would make cycle counts, latency
and energy overflow to infinity.
"""

from __future__ import annotations

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
    "VALID_BITS",
    "BITFUSION_DEFAULT_BITS",
    "BITSERIAL_DEFAULT_BITS",
]

SCHEMA_VERSIONS = (1,)
FAMILIES = ("npu", "fpga", "cpu", "mcu")
WEIGHT_STORAGE = ("packed", "promoted", "compressed")
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
                "conv_in_channel_block": Key("int", required=False, default=1, low=1, high=1024),
                "conv_part_kernel_positions": Key("int", required=False, default=0, low=0, high=64),
                "conv_part_kernel_channel_block": Key(
                    "int", required=False, default=1, low=1, high=1024
                ),
                "output_stage_cycles_per_output": Key(
                    "number", required=False, default=0.0, low=0, high=10**6, unit="cycles"
                ),
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
