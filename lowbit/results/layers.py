"""Per-layer tables of deployment configurations: what each layer was given and what it costs.

A config (``configs/<id>.json``) stores, per simulated layer, its bits, MACs, total cycles,
latency and energy, and the plan that compressed it. :func:`stored_rows` reads those (keep
ratio, N:M and rank from the plan's entry for the layer). The split of the total into
compute, memory stall and fixed overhead, the DRAM traffic and the roofline numbers are
not stored: :func:`resimulate` applies the config's plan to its zoo model again
(``models.to_workload``, shapes only, no training) and simulates it on its hardware (the
built-in profile with the config's co-design overrides) with the run's engine. When the
re-simulation does not reproduce the stored total cycles (the simulator or the profile
changed since the run) its ``note`` says so; when it cannot run at all (a model or profile
not available here) the stored rows come back with the reason.

Columns (:data:`LAYER_COLUMNS`; ``<NA>`` where unknown): see ``docs/results.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from ._tables import frame

__all__ = [
    "LAYER_COLUMNS",
    "Resimulation",
    "hardware_of",
    "layers_frame",
    "resimulate",
    "stored_rows",
]

#: column -> kind (lowbit.results._tables.KINDS), in table order
LAYER_COLUMNS: dict[str, str] = {
    "config_id": "text",
    "method": "text",
    "layer": "text",
    "op": "text",
    "w_bits": "int",
    "a_bits": "int",
    "keep": "float",
    "nm": "text",
    "rank": "int",
    "full_rank": "int",
    "rank_fraction": "float",
    "macs": "int",
    "compute_cycles": "int",
    "stall_cycles": "int",
    "overhead_cycles": "int",
    "total_cycles": "int",
    "latency_ms": "float",
    "energy_mj": "float",
    "dram_bytes": "int",
    "peak_macs_per_cycle": "float",
    "dram_bytes_per_cycle": "float",
    "bound": "text",
    "resimulated": "bool",
}


@dataclass(frozen=True, slots=True)
class Resimulation:
    """The layers of one config (rows keyed by :data:`LAYER_COLUMNS`), the clock they
    were timed at, whether they were re-simulated, and why not / what differs."""

    config_id: str
    clock_hz: float
    rows: tuple[dict[str, Any], ...]
    resimulated: bool
    note: str = ""


def hardware_of(config: dict[str, Any]) -> dict[str, Any]:
    """The config's co-design overrides (``{}`` when the profile was used as given)."""
    overrides = config.get("hardware", {}).get("overrides") or {}
    return dict(overrides) if isinstance(overrides, dict) else {}


def _nm(nm: Any) -> str:
    return f"{nm[0]}:{nm[1]}" if nm else "dense"


def _plan_entries(plan_data: dict[str, Any]) -> Any:
    """``name -> LayerSpec`` by the plan's precedence, or None without the models package."""
    try:
        from lowbit.models.compression.plan import CompressionPlan, PlanError
    except ImportError:
        return None
    try:
        return CompressionPlan.from_dict(plan_data).resolve
    except PlanError:
        return None


def stored_rows(config: dict[str, Any]) -> tuple[float, list[dict[str, Any]]]:
    """(clock Hz, rows) of a parsed config from what it stores: ``simulation.layers`` and
    the plan; cycle splits, DRAM bytes and roofline numbers are ``None``."""
    sim = config.get("simulation", {})
    total_ms = float(sim.get("latency_ms") or 0.0)
    cycles = int(sim.get("total_cycles") or 0)
    clock = cycles / (total_ms / 1e3) if total_ms > 0 else 0.0
    resolve = _plan_entries(config.get("plan") or {})
    rows = []
    for raw in sim.get("layers", []):
        spec = resolve(raw["name"]) if resolve is not None and raw.get("macs") else None
        rows.append(
            _row(
                config,
                layer=raw["name"],
                op=raw["op"],
                w_bits=raw.get("w_bits"),
                a_bits=raw.get("a_bits"),
                keep=spec.keep if spec else None,
                nm=_nm(spec.nm) if spec else None,
                rank=spec.rank if spec else None,
                rank_fraction=(spec.rank_fraction or 1.0) if spec and not spec.rank else None,
                macs=raw.get("macs"),
                total_cycles=raw.get("total_cycles"),
                latency_ms=raw.get("latency_ms"),
                energy_mj=raw.get("energy_mj"),
                resimulated=False,
            )
        )
    return clock, rows


def _row(config: dict[str, Any], **values: Any) -> dict[str, Any]:
    row = dict.fromkeys(LAYER_COLUMNS)
    row.update(config_id=config.get("id"), method=config.get("method"), **values)
    return row


def _plan_settings(model, plan) -> dict[str, dict[str, Any]]:
    """Per compute layer: bits, keep, N:M, integer rank and full rank (plan.effective)."""
    from lowbit.models.compression.plan import compute_layers, full_rank, rank_eligible

    modules = compute_layers(model)
    out = {}
    for name, spec in plan.effective(model).items():
        module = modules.get(name)
        eligible = module is not None and hasattr(module, "weight") and rank_eligible(module)
        out[name] = {
            "w_bits": spec.w_bits,
            "a_bits": spec.a_bits,
            "keep": float(spec.keep),
            "nm": _nm(spec.nm),
            "rank": spec.rank,
            "full_rank": full_rank(module) if eligible else None,
        }
    return out


def _stored(config: dict[str, Any], note: str) -> Resimulation:
    clock, rows = stored_rows(config)
    return Resimulation(config.get("id", "?"), clock, tuple(rows), resimulated=False, note=note)


def resimulate(config: dict[str, Any]) -> Resimulation:
    """The layers of the parsed config ``config`` re-simulated (module docstring); the
    stored layers with the reason when that cannot be done here."""
    from lowbit import hwsim
    from lowbit.hwsim.errors import LowbitError

    try:
        from lowbit import models
        from lowbit.hwsim.profiles import load_profile
        from lowbit.models.zoo import ZOO, build
    except ImportError as exc:  # the models package (torch) is optional for reports
        return _stored(config, f"per-layer breakdown needs the models package ({exc})")
    model_name = config.get("model", "")
    hw_name = config.get("hardware", {}).get("name", "")
    if model_name not in ZOO:
        return _stored(config, f"model {model_name!r} is not in the zoo: totals only")
    try:
        profile = load_profile(hw_name, overrides=hardware_of(config) or None)
        model = build(model_name)
        plan = models.CompressionPlan.from_dict(config["plan"])
        settings = _plan_settings(model, plan)
        engine = config.get("simulation", {}).get("engine", "analytic")
        workload = models.to_workload(
            model, plan, name=model_name, round_trip=profile.overheads.two_grid_round_trip
        )
        sim = hwsim.simulate(workload, profile, engine=engine)
    except (LowbitError, ValueError, KeyError) as exc:
        return _stored(config, f"could not re-simulate ({exc}): totals only")
    note = ""
    stored = config.get("simulation", {}).get("total_cycles")
    if stored is not None and int(stored) != sim.total_cycles:
        note = (
            f"re-simulation gives {sim.total_cycles:,} cycles, the run recorded {int(stored):,} "
            "(the simulator or the profile changed since the run)"
        )
    elif config.get("hardware", {}).get("content_hash") not in (None, profile.content_hash()):
        note = "the profile file changed since the run (same cycles)"
    rows = []
    for r in sim.layers:
        s = settings.get(r.name, {})
        rank, full = s.get("rank"), s.get("full_rank")
        rows.append(
            _row(
                config,
                layer=r.name,
                op=r.op,
                w_bits=s.get("w_bits", r.w_bits if r.macs else None),
                a_bits=s.get("a_bits", r.a_bits if r.macs else None),
                keep=s.get("keep", 1.0 if r.macs else None),
                nm=s.get("nm", "dense" if r.macs else None),
                rank=rank,
                full_rank=full,
                rank_fraction=(rank / full if rank and full else 1.0) if r.macs else None,
                macs=r.macs,
                compute_cycles=r.compute_cycles,
                stall_cycles=r.stall_cycles,
                overhead_cycles=r.overhead_cycles,
                total_cycles=r.total_cycles,
                latency_ms=r.total_cycles / sim.clock_hz * 1e3,
                energy_mj=r.energy_j * 1e3,
                dram_bytes=r.dram_read_bytes + r.dram_write_bytes,
                peak_macs_per_cycle=r.peak_macs_per_cycle,
                dram_bytes_per_cycle=r.dram_bytes_per_cycle,
                bound=r.bound,
                resimulated=True,
            )
        )
    return Resimulation(config.get("id", "?"), sim.clock_hz, tuple(rows), True, note)


def layers_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The layer table of ``rows`` (:data:`LAYER_COLUMNS`, in that order and dtype)."""
    columns = {name: [row.get(name) for row in rows] for name in LAYER_COLUMNS}
    return frame(columns, LAYER_COLUMNS)
