"""What the OS says about this machine's CPU: its feature flags (``/proc/cpuinfo``).

A host fact, torch-free and without lowbit imports, read by both the export (which weight
type ONNX Runtime's INT8 kernels want, :func:`lowbit.models.export.deploy.resolve_weight_type`)
and host calibration (the ISA a profile is fitted on, :mod:`lowbit.models.hostcal.isa`, which
re-exports :func:`cpu_flags`), so neither subpackage imports the other for it.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

__all__ = ["cpu_flags", "read_os_text", "u8s8_saturates"]

#: an INT8 dot product that accumulates u8·s8 products in int32 (VNNI, AMX)
_VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


@cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where unavailable)."""
    for line in read_os_text("/proc/cpuinfo").splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def read_os_text(path: str) -> str:
    """The text of an OS information file (``/proc``, ``/sys``); empty where unreadable."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError:
        return ""


def u8s8_saturates(flags: frozenset[str] | set[str] | list[str]) -> bool:
    """Do ONNX Runtime's u8·s8 kernels add pairs of products into a saturating int16 on a
    CPU with these flags (``vpmaddubsw``: AVX2 without VNNI)? There lowbit's export stores
    8-bit weights as uint8 (the exact u8·u8 kernels) and a host profile prices them so."""
    flags = frozenset(flags)
    return "avx2" in flags and not (_VNNI_FLAGS & flags)
