"""Silicon area of a hardware profile, from its ``[area]`` table (co-design's cost model).

The model is linear in the parameters co-design turns (``[area]`` in
lowbit/hardware_profiles/README.md):

    area = base_mm2
         + mm2_per_pe        x PEs (rows x cols x cores)
         + mm2_per_kib_sram  x KiB of on-chip memory (every level not ``off_chip``)
         + mm2_per_gbps_dram x GB/s of off-chip ports (Σ bandwidth_bytes_per_cycle x clock_hz / 1e9)

A PE is one MAC slot at the base precision, as everywhere in hwsim; a double-buffered level
counts its whole ``size_bytes`` (both halves are silicon). Off-chip levels (DRAM, flash,
system SRAM behind a bus port) cost only their interface bandwidth, not their capacity: the
budget is the accelerator's own area.

Example:
    >>> from lowbit.hwsim.profiles import load_profile
    >>> # 0.5 base + 1024 PEs x 0.0007 + 160 KiB x 0.006 + 12.8 GB/s x 0.2
    >>> round(area_mm2(load_profile("npu-systolic-32")), 4)
    4.7368
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ProfileError
from .profile import HardwareProfile

__all__ = ["AreaBreakdown", "area_breakdown", "area_mm2"]


@dataclass(frozen=True, slots=True)
class AreaBreakdown:
    """The terms of :func:`area_mm2` (all mm²) and the quantities they scale."""

    pe_mm2: float
    sram_mm2: float
    dram_mm2: float
    base_mm2: float
    pes: int
    sram_kib: float
    dram_gbps: float

    @property
    def total_mm2(self) -> float:
        return self.pe_mm2 + self.sram_mm2 + self.dram_mm2 + self.base_mm2

    def to_dict(self) -> dict[str, float]:
        return {
            "total_mm2": self.total_mm2,
            "pe_mm2": self.pe_mm2,
            "sram_mm2": self.sram_mm2,
            "dram_mm2": self.dram_mm2,
            "base_mm2": self.base_mm2,
            "pes": self.pes,
            "sram_kib": self.sram_kib,
            "dram_gbps": self.dram_gbps,
        }


def area_breakdown(profile: HardwareProfile) -> AreaBreakdown:
    """Every term of the area of ``profile`` (module docstring).

    Raises:
        ProfileError: the profile has no ``[area]`` table.
    """
    model = profile.area
    if model is None:
        raise ProfileError(
            profile.name,
            [
                "area: missing (co-design needs an [area] table with mm2_per_pe, "
                "mm2_per_kib_sram and mm2_per_gbps_dram; see lowbit/hardware_profiles/README.md)"
            ],
        )
    pes = profile.compute.pes
    sram_kib = sum(m.size_bytes for m in profile.memory if not m.off_chip) / 1024
    dram_gbps = sum(
        m.bandwidth_bytes_per_cycle * profile.clock_hz / 1e9 for m in profile.memory if m.off_chip
    )
    return AreaBreakdown(
        pe_mm2=model.mm2_per_pe * pes,
        sram_mm2=model.mm2_per_kib_sram * sram_kib,
        dram_mm2=model.mm2_per_gbps_dram * dram_gbps,
        base_mm2=model.base_mm2,
        pes=pes,
        sram_kib=sram_kib,
        dram_gbps=dram_gbps,
    )


def area_mm2(profile: HardwareProfile) -> float:
    """Silicon area of ``profile`` in mm² (see the module docstring for the model).

    Raises:
        ProfileError: the profile has no ``[area]`` table.
    """
    return area_breakdown(profile).total_mm2
