"""The integer instruction set of a CPU, from its feature flags (``/proc/cpuinfo``).

The INT8 kernels ONNX Runtime's MLAS library picks depend on it (its platform dispatch reads
the same CPUID bits), and so do the numbers a host profile is fitted to:

==============  =====================================================================
``amx-int8``    Intel AMX tiles (``amx_int8`` + ``amx_tile``): INT8 GEMMs on tiles
``avx512-vnni`` AVX-512 with VNNI (``avx512_vnni``): 64 u8·s8 products per instruction
``avx-vnni``    AVX2 with the VEX-coded VNNI (``avx_vnni``): 32 per instruction
``avx512``      AVX-512BW without VNNI: u8·s8 via ``vpmaddubsw`` (saturating pairs)
``avx2``        AVX2 (``avx2``): u8·s8 via ``vpmaddubsw``, 32 products per instruction
``sse4``        SSE4.1 only
``arm-i8mm``    Armv8.6 matrix multiply (``i8mm``): SMMLA 2x8 · 8x2 blocks
``arm-dotprod`` Armv8.2 dot product (``asimddp``): SDOT, 4 products per 32-bit lane
``arm-neon``    NEON without dot product
``generic``     none of the above
==============  =====================================================================

The best one wins (AMX-INT8 CPUs also have AVX-512 VNNI: ``fallbacks`` lists the others, as
MLAS uses them for shapes its best kernel does not take). Every measured number lowbit
prints names the CPU model and this ISA beside it (:func:`host_label`).

:func:`cpu_flags` and :func:`cpu_info` read what the OS says about the CPU (flags, clock,
cache and memory sizes), with its ISA, for host calibration and for every benchmark's
record of the machine it ran on. :func:`cpu_flags` lives in :mod:`lowbit.models._host`
(the export reads it too, without importing host calibration) and is re-exported here.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lowbit.models._host import cpu_flags, read_os_text

__all__ = [
    "ISA_ORDER",
    "PEAK_MACS_PER_CYCLE",
    "Isa",
    "cpu_flags",
    "cpu_info",
    "detect_isa",
    "host_label",
]

_KiB = 1024

#: (name, flags that must all be present, SIMD lanes of 32 bits), best first
ISA_ORDER: tuple[tuple[str, frozenset[str], int], ...] = (
    ("amx-int8", frozenset({"amx_int8", "amx_tile", "avx512f"}), 16),
    ("avx512-vnni", frozenset({"avx512_vnni", "avx512bw"}), 16),
    ("avx-vnni", frozenset({"avx_vnni", "avx2"}), 8),
    ("avx512", frozenset({"avx512bw", "avx512f"}), 16),
    ("avx2", frozenset({"avx2"}), 8),
    ("sse4", frozenset({"sse4_1"}), 4),
    ("arm-i8mm", frozenset({"i8mm", "asimddp"}), 4),
    ("arm-dotprod", frozenset({"asimddp"}), 4),
    ("arm-neon", frozenset({"asimd"}), 4),
)


@dataclass(frozen=True, slots=True)
class Isa:
    """The integer ISA of a CPU (module docstring).

    Attributes:
        name: the best ISA the flags allow (``"avx512-vnni"``, ...; ``"generic"``).
        simd_lanes_32bit: 32-bit lanes of its vector registers.
        fallbacks: the other ISAs the CPU also runs, best first.
    """

    name: str
    simd_lanes_32bit: int
    fallbacks: tuple[str, ...] = ()

    @property
    def vnni(self) -> bool:
        """An INT8 dot-product instruction without intermediate saturation (VNNI, AMX,
        Arm SDOT/SMMLA): weights can use the full s8 range with u8 activations."""
        return self.name in ("amx-int8", "avx512-vnni", "avx-vnni", "arm-i8mm", "arm-dotprod")

    @property
    def int8_peak_macs_per_cycle(self) -> int:
        """Upper bound of one core's INT8 multiply-accumulates per cycle with this ISA
        (:data:`PEAK_MACS_PER_CYCLE`): a fitted rate above it is a runaway fit."""
        return PEAK_MACS_PER_CYCLE[self.name][0]

    @property
    def fp32_peak_macs_per_cycle(self) -> int:
        """Upper bound of one core's FP32 FMAs per cycle with this ISA."""
        return PEAK_MACS_PER_CYCLE[self.name][1]

    @property
    def depthwise_channel_block(self) -> int:
        """The channel block of ONNX Runtime's depthwise kernels: 16 on x86 with AVX2 or
        better (it packs a depthwise conv's weights for its fast kernel only when the
        channels are a multiple of 16, AVX2 and AVX-512 alike), the 32-bit lanes elsewhere
        (not measured there). A channel count off this block costs more per MAC: on an AMD
        Zen 3 (AVX2) 24, 40, 72, 120 and 200 channels ran 1.7-1.9x the cycles per MAC of
        16-192 at INT8, 1.4-1.8x at FP32."""
        return 16 if self.name in _X86_256_BIT else self.simd_lanes_32bit

    @property
    def float_layout_channel_multiple(self) -> int:
        """The channel multiple ONNX Runtime needs to run a float conv in its blocked NCHWc
        layout: 4 on x86 with AVX2 or better (measured on an AMD Zen 3: depthwise convs of
        12, 20, 28, 60 and 116 channels ran the blocked kernel, of 18, 26, 29 and 58 a
        grouped conv at ~3x the time); 1 elsewhere (no blocked layout: not measured)."""
        return 4 if self.name in _X86_256_BIT else 1

    @property
    def conv_out_channel_block(self) -> int:
        """Output channels ONNX Runtime's direct integer conv kernel computes at a time, a
        partial last block costing a whole one: 16 on x86 with AVX2 or better (measured on
        an AMD Zen 3: 24 outputs took what 32 did, 40 what 48, 56 what 64), the 32-bit
        lanes elsewhere (not measured there)."""
        return 16 if self.name in _X86_256_BIT else self.simd_lanes_32bit

    @property
    def label(self) -> str:
        """Human-readable, e.g. ``AVX-512 VNNI``."""
        return _LABELS.get(self.name, self.name)


#: (INT8, FP32) multiply-accumulates per cycle of one core, upper bounds: instructions'
#: products times the issue ports that can run them on the widest implementations
#: (vendors' optimization manuals): AMX's TMUL 1,024 INT8 MACs/cycle; 512-bit VPDPBUSD 64
#: products on up to 2 ports; 256-bit VNNI 32 on 2; VPMADDUBSW 32 (256-bit) or 64 (512-bit)
#: products on 2 ports; 128-bit SSE 16 on 2; Arm SMMLA 32 and SDOT 16 per 128-bit
#: instruction on up to 4 pipes. FP32: 2 FMA ports of 16 (AVX-512), 8 (AVX2) or 4 lanes
#: (SSE), 4 NEON pipes of 4 lanes.
PEAK_MACS_PER_CYCLE = {
    "amx-int8": (1024, 32),
    "avx512-vnni": (128, 32),
    "avx-vnni": (64, 16),
    "avx512": (128, 32),
    "avx2": (64, 16),
    "sse4": (32, 8),
    "arm-i8mm": (128, 16),
    "arm-dotprod": (64, 16),
    "arm-neon": (32, 16),
    "generic": (32, 16),
}

#: x86 ISAs with 256-bit integer SIMD (AVX2) or wider
_X86_256_BIT = frozenset({"amx-int8", "avx512-vnni", "avx-vnni", "avx512", "avx2"})

_LABELS = {
    "amx-int8": "AMX-INT8 (+AVX-512 VNNI)",
    "avx512-vnni": "AVX-512 VNNI",
    "avx-vnni": "AVX-VNNI (AVX2)",
    "avx512": "AVX-512 (no VNNI)",
    "avx2": "AVX2",
    "sse4": "SSE4.1",
    "arm-i8mm": "Arm i8mm + dot product",
    "arm-dotprod": "Arm dot product",
    "arm-neon": "Arm NEON",
    "generic": "no SIMD integer dot product",
}


def detect_isa(flags: Iterable[str]) -> Isa:
    """The :class:`Isa` of a CPU with these feature flags (``/proc/cpuinfo``'s ``flags`` on
    x86, ``Features`` on Arm)."""
    flags = frozenset(flags)
    found = [(name, lanes) for name, need, lanes in ISA_ORDER if need <= flags]
    if not found:
        return Isa("generic", 4)
    (best, lanes), rest = found[0], found[1:]
    return Isa(best, lanes, tuple(name for name, _ in rest))


def host_label(model: str, isa: Isa) -> str:
    """``"<CPU model>, <ISA label>"``: what every measured number is printed beside."""
    return f"{model.strip() or 'unknown CPU'}, {isa.label}"


def _size(text: str) -> int:
    text = text.strip().upper()
    scale = {"K": _KiB, "M": _KiB**2, "G": _KiB**3}.get(text[-1:], 1)
    return int(text.rstrip("KMG") or 0) * scale


def cpu_info() -> dict[str, Any]:
    """Model name, clock, SIMD lanes, VNNI, and data/unified cache sizes per level (bytes)."""
    text = read_os_text("/proc/cpuinfo")
    field = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        field.setdefault(key.strip(), value.strip())
    mhz = float(field.get("cpu MHz") or 3000.0)
    caches: dict[int, int] = {}
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        kind = read_os_text(str(index / "type")).strip()
        if kind in ("Data", "Unified"):
            level = int(read_os_text(str(index / "level")) or 0)
            caches[level] = _size(read_os_text(str(index / "size")))
    flags = cpu_flags()
    isa = detect_isa(flags)
    meminfo = read_os_text("/proc/meminfo").split()
    memory = _size(meminfo[1] + "K") if meminfo[:1] == ["MemTotal:"] else 0
    return {
        "model": field.get("model name", platform.processor() or "unknown"),
        "clock_hz": mhz * 1e6,
        "simd_lanes_32bit": isa.simd_lanes_32bit,
        "vnni": isa.vnni,
        "isa": isa.name,
        "isa_fallbacks": list(isa.fallbacks),
        "label": host_label(field.get("model name", platform.processor() or ""), isa),
        "flags": sorted(f for f in flags if f.startswith(("avx", "fma", "amx", "sse4"))),
        "caches_bytes": {f"L{k}": v for k, v in sorted(caches.items())},
        "memory_bytes": memory,
    }
