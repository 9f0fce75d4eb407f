"""SCALE-Sim compatibility: its ``.cfg`` files as hardware profiles, its topology CSVs as
workloads (:func:`load_topology`, re-exported from :mod:`lowbit.hwsim.topology`).

A SCALE-Sim v2/v3 config describes one systolic array. It becomes a ``systolic``
:class:`~lowbit.hwsim.profile.HardwareProfile` built through
:func:`lowbit.hwsim.profiles.profile_from_dict`
(so it is validated like a TOML profile, and ``--set`` overrides work on it):

* W8A8 only: SCALE-Sim's word is one byte (``single_layer_sim.py``: ``word_size = 1``).
* ``IfmapSramSzkB`` / ``FilterSramSzkB`` / ``OfmapSramSzkB`` are kilo-*words*, i.e.
  ``× 1024`` bytes; three separate, double-buffered on-chip levels holding inputs, weights
  and outputs (SCALE-Sim gives half of each to the active buffer).
* One off-chip DRAM holding everything. ``InterfaceBandwidth: USER`` -> its bandwidth is the
  first ``Bandwidth`` value (words = bytes per cycle). ``CALC`` -> SCALE-Sim never stalls
  and only reports the bandwidth it would need, so the DRAM gets
  :data:`CALC_BANDWIDTH_BYTES_PER_CYCLE` (1 MiB/cycle: effectively unlimited; a small
  prologue for the first tile may still show as stall cycles).
* Clock 1 GHz: SCALE-Sim reports cycles only, so seconds are nominal.
* No per-layer or per-tile overheads (``layer_cycles = tile_cycles = 0``: SCALE-Sim counts
  neither a launch cost nor a DMA handshake per tile). No sparsity support
  (``SparsitySupport: true`` is rejected); ``MemoryBanks``, address offsets, request
  buffers, custom layouts and Ramulator traces are accepted and ignored (they only shape
  SCALE-Sim's traces or bank conflicts).
* Energy: SCALE-Sim has none; we attach Horowitz (ISSCC 2014, 45 nm) figures so energy
  columns are not empty: 0.23 pJ per 8-bit MAC (0.2 mult + 0.03 add), 2.5 pJ/byte SRAM
  (32 KB, 64-bit access 20 pJ), 162.5 pJ/byte DRAM (1.3 nJ per 64-bit access).
"""

from __future__ import annotations

import configparser
from pathlib import Path
from typing import Any

from .errors import ProfileError
from .fileio import MAX_INPUT_BYTES
from .topology import load_topology, parse_topology

__all__ = [
    "CALC_BANDWIDTH_BYTES_PER_CYCLE",
    "SCALESIM_CLOCK_HZ",
    "read_scalesim_cfg",
    "load_topology",
    "parse_topology",
    "scalesim_cfg_to_dict",
]

#: DRAM bandwidth used for ``InterfaceBandwidth: CALC`` (SCALE-Sim does not stall there).
CALC_BANDWIDTH_BYTES_PER_CYCLE = 1 << 20
#: SCALE-Sim counts cycles only; we need a clock to report seconds.
SCALESIM_CLOCK_HZ = 1e9
#: stands for "large enough": SCALE-Sim's DRAM has no capacity.
_DRAM_SIZE_BYTES = 1 << 36

# Horowitz, "Computing's energy problem", ISSCC 2014 (45 nm): see the module docstring.
_MAC_PJ = 0.23
_SRAM_PJ_PER_BYTE = 2.5
_DRAM_PJ_PER_BYTE = 162.5

_ARCH = "architecture_presets"
_RUN = "run_presets"
# (section, key as SCALE-Sim writes it); configparser matches keys case-insensitively
_REQUIRED_INTS = (
    (_ARCH, "ArrayHeight"),
    (_ARCH, "ArrayWidth"),
    (_ARCH, "IfmapSramSzkB"),
    (_ARCH, "FilterSramSzkB"),
    (_ARCH, "OfmapSramSzkB"),
)
_DATAFLOWS = ("os", "ws", "is")
_MODES = ("CALC", "USER")


def read_scalesim_cfg(path: str | Path) -> dict[str, Any]:
    """Read a SCALE-Sim ``.cfg`` file into profile data in the TOML schema (not validated:
    :func:`lowbit.hwsim.profiles.load_scalesim_cfg` builds the profile).

    Raises:
        ProfileError: unreadable file, or a missing or malformed key (every problem listed,
            each with its ``[section] key``).
    """
    path = Path(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_INPUT_BYTES + 1)
    except OSError as exc:
        raise ProfileError(str(path), [f"cannot read file: {exc.strerror or exc}"]) from None
    if len(raw) > MAX_INPUT_BYTES:
        limit = MAX_INPUT_BYTES // 2**20
        raise ProfileError(str(path), [f"larger than {limit} MiB: not a SCALE-Sim config"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ProfileError(str(path), ["not a text (UTF-8) SCALE-Sim config"]) from None
    return scalesim_cfg_to_dict(text, source=str(path))


def scalesim_cfg_to_dict(text: str, *, source: str = "<scalesim cfg>") -> dict[str, Any]:
    """Translate SCALE-Sim config ``text`` into raw profile data in the TOML schema
    (see lowbit/hardware_profiles/README.md), before validation.

    Raises:
        ProfileError: not an INI file, or missing / malformed keys (all listed at once).
    """
    parser = configparser.ConfigParser(strict=True, interpolation=None)
    try:
        parser.read_string(text, source=source)
    except configparser.Error as exc:
        message = " ".join(str(exc).split())
        raise ProfileError(source, [f"not a SCALE-Sim config (INI syntax): {message}"]) from None

    problems: list[str] = []

    def get(section: str, key: str, *, required: bool = True) -> str | None:
        if parser.has_option(section, key):
            return parser.get(section, key).strip()
        if required:
            problems.append(f"[{section}] {key}: missing")
        return None

    def positive_int(section: str, key: str, raw: str | None) -> int:
        if raw is None:
            return 0
        try:
            value = int(raw)
        except ValueError:
            problems.append(f"[{section}] {key}: must be a positive integer, got {raw!r}")
            return 0
        if value < 1:
            problems.append(f"[{section}] {key}: must be a positive integer, got {value}")
        return value

    ints = {key: positive_int(sec, key, get(sec, key)) for sec, key in _REQUIRED_INTS}
    run_name = get("general", "run_name") or _stem(source)

    dataflow = (get(_ARCH, "Dataflow") or "").lower()
    if dataflow and dataflow not in _DATAFLOWS:
        problems.append(
            f"[{_ARCH}] Dataflow: unknown {dataflow!r} (valid: {', '.join(_DATAFLOWS)})"
        )

    mode = (get(_RUN, "InterfaceBandwidth") or "").upper()
    bandwidth: float = CALC_BANDWIDTH_BYTES_PER_CYCLE
    if mode and mode not in _MODES:
        problems.append(
            f"[{_RUN}] InterfaceBandwidth: unknown {mode!r} (valid: {', '.join(_MODES)})"
        )
    elif mode == "USER":
        raw = get(_ARCH, "Bandwidth")
        if raw is not None:
            # SCALE-Sim reads a comma list and uses the first value for the DRAM interface
            bandwidth = positive_int(_ARCH, "Bandwidth", raw.split(",")[0].strip())

    sparse = get("sparsity", "SparsitySupport", required=False)
    if sparse is not None and sparse.lower() == "true":
        problems.append(
            "[sparsity] SparsitySupport: true is not supported (lowbit imports dense "
            "SCALE-Sim configs only; model sparsity with a TOML profile's [sparsity])"
        )

    if problems:
        raise ProfileError(source, problems)

    rows, cols = ints["ArrayHeight"], ints["ArrayWidth"]
    # SCALE-Sim's SRAMs always feed the array at its demand rate: never the bottleneck.
    sram_bandwidth = float(rows * cols)

    def sram(name: str, kilowords: int, holds: str) -> dict[str, Any]:
        return {
            "name": name,
            "size_bytes": kilowords * 1024,  # kB = kilo-words of 1 byte
            "bandwidth_bytes_per_cycle": sram_bandwidth,
            "energy_pj_per_byte": _SRAM_PJ_PER_BYTE,
            "holds": [holds],
            "off_chip": False,
            "double_buffered": True,
        }

    mode_text = (
        "CALC (unlimited DRAM bandwidth)" if mode == "CALC" else f"USER {bandwidth:g} B/cycle"
    )
    return {
        "schema_version": 1,
        "name": run_name,
        "description": (
            f"SCALE-Sim config {_stem(source)}: {rows}x{cols} {dataflow} systolic array, "
            f"W8A8, InterfaceBandwidth {mode_text}, nominal 1 GHz clock"
        ),
        "family": "npu",
        "clock_hz": SCALESIM_CLOCK_HZ,
        "weight_storage": "packed",
        "static_power_w": 0.0,
        "compute": {
            "kind": "systolic",
            "rows": rows,
            "cols": cols,
            "cores": 1,
            "dataflow": dataflow,
            "dataflows": list(_DATAFLOWS),
            "precision_model": "table",
            "precision": [
                {
                    "w_bits": 8,
                    "a_bits": 8,
                    "macs_per_pe_per_cycle": 1.0,
                    "energy_pj_per_mac": _MAC_PJ,
                },
            ],
        },
        "memory": [
            {
                "name": "dram",
                "size_bytes": _DRAM_SIZE_BYTES,
                "bandwidth_bytes_per_cycle": float(bandwidth),
                "energy_pj_per_byte": _DRAM_PJ_PER_BYTE,
                "holds": ["weights", "inputs", "outputs"],
                "off_chip": True,
                "double_buffered": False,
            },
            sram("ifmap_sram", ints["IfmapSramSzkB"], "inputs"),
            sram("filter_sram", ints["FilterSramSzkB"], "weights"),
            sram("ofmap_sram", ints["OfmapSramSzkB"], "outputs"),
        ],
        "sparsity": {"nm_patterns": [], "zero_skipping": False, "index_bits_per_nonzero": 0.0},
        # SCALE-Sim models neither a per-layer nor a per-tile (DMA handshake) cost
        "overheads": {"layer_cycles": 0, "tile_cycles": 0},
    }


def _stem(source: str) -> str:
    """The file name without directory and extension (``configs/scale.cfg`` -> ``scale``)."""
    return Path(source).stem or source
