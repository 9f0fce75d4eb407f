"""Per-layer detail of one deployment configuration for the report, from the per-layer
table of :mod:`lowbit.results.layers` (which re-simulates the config to split each layer's
cycles into compute, memory stall and fixed overhead and to place it on the target's
roofline). When the re-simulation does not reproduce the config's total cycles the detail's
note says so; when it cannot run at all (a model or a profile file that is not available
here) :func:`config_detail` holds the config's own per-layer totals only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from lowbit.results.layers import hardware_of, resimulate

__all__ = ["LayerDetail", "ConfigDetail", "config_detail", "fp32_latency_ms", "hardware_of"]


@dataclass(frozen=True, slots=True)
class LayerDetail:
    """One layer of a configuration: its compression and its simulated cost.

    ``keep`` is the kept fraction of output channels; ``rank``/``full_rank`` the low-rank
    factorisation (``rank`` None: full rank). Cycle fields are 0 when unknown.
    """

    name: str
    op: str
    w_bits: int | None
    a_bits: int | None
    keep: float
    nm: str
    rank: int | None
    full_rank: int | None
    macs: int
    compute_cycles: int
    stall_cycles: int
    overhead_cycles: int
    total_cycles: int
    dram_bytes: int
    peak_macs_per_cycle: float
    dram_bytes_per_cycle: float
    bound: str

    @property
    def rank_fraction(self) -> float:
        if self.rank is None or not self.full_rank:
            return 1.0
        return self.rank / self.full_rank


@dataclass(frozen=True, slots=True)
class ConfigDetail:
    """The layers of one config; ``resimulated`` False means only totals are known."""

    config_id: str
    clock_hz: float
    layers: tuple[LayerDetail, ...]
    resimulated: bool
    note: str = ""

    @property
    def compute_layers(self) -> tuple[LayerDetail, ...]:
        return tuple(layer for layer in self.layers if layer.macs > 0)


def _or(value: Any, default: Any) -> Any:
    """``value``, or ``default`` where the table has none (None or NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return default
    return value


def config_detail(config: dict[str, Any]) -> ConfigDetail:
    """Per-layer detail of deployment config ``config`` (a parsed configs/<id>.json)."""
    found = resimulate(config)
    layers = tuple(
        LayerDetail(
            name=row["layer"],
            op=row["op"],
            w_bits=row["w_bits"],
            a_bits=row["a_bits"],
            keep=float(_or(row["keep"], 1.0)),
            nm=_or(row["nm"], "dense"),
            rank=row["rank"],
            full_rank=row["full_rank"],
            macs=int(_or(row["macs"], 0)),
            compute_cycles=int(_or(row["compute_cycles"], 0)),
            stall_cycles=int(_or(row["stall_cycles"], 0)),
            overhead_cycles=int(_or(row["overhead_cycles"], 0)),
            total_cycles=int(_or(row["total_cycles"], 0)),
            dram_bytes=int(_or(row["dram_bytes"], 0)),
            peak_macs_per_cycle=float(_or(row["peak_macs_per_cycle"], 0.0)),
            dram_bytes_per_cycle=float(_or(row["dram_bytes_per_cycle"], 0.0)),
            bound=_or(row["bound"], ""),
        )
        for row in found.rows
    )
    return ConfigDetail(
        config_id=found.config_id,
        clock_hz=found.clock_hz,
        layers=layers,
        resimulated=found.resimulated,
        note=found.note,
    )


def fp32_latency_ms(model_name: str, *, hardware: str, overrides: dict[str, Any]) -> float | None:
    """Simulated latency of the uncompressed float model, or None where the target has no
    float mode (or the model/profile is not available here)."""
    from lowbit import hwsim
    from lowbit.hwsim.errors import LowbitError

    try:
        from lowbit import models
        from lowbit.hwsim.profiles import load_profile
        from lowbit.models.zoo import ZOO, build
    except ImportError:
        return None
    if model_name not in ZOO:
        return None
    try:
        profile = load_profile(hardware, overrides=overrides or None)
        workload = models.to_workload(build(model_name), models.CompressionPlan(layers={}))
        return hwsim.simulate(workload, profile).latency_s * 1e3
    except (LowbitError, ValueError):
        return None
