"""Per-layer detail of one deployment configuration, re-simulated for the report.

A config stores each layer's total cycles; the report also shows how they split into
compute, memory stall and fixed overhead, and where each layer sits on the target's
roofline. So the config's plan is applied to the zoo model again (``models.to_workload``,
shapes only: no training) and simulated on its hardware (the built-in profile with the
config's co-design overrides) with the engine the run used. When the re-simulation does
not reproduce the config's total cycles (the simulator or the profile file changed since
the run) the detail says so; when it cannot run at all (a model or a profile file that is
not available here) :func:`config_detail` returns the config's own per-layer totals only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


def hardware_of(config: dict[str, Any]) -> dict[str, Any]:
    """The config's co-design overrides (``{}`` when the profile was used as given)."""
    overrides = config.get("hardware", {}).get("overrides") or {}
    return dict(overrides) if isinstance(overrides, dict) else {}


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
            "nm": f"{spec.nm[0]}:{spec.nm[1]}" if spec.nm else "dense",
            "rank": spec.rank,
            "full_rank": full_rank(module) if eligible else None,
        }
    return out


def _from_config(config: dict[str, Any], note: str) -> ConfigDetail:
    """Totals only, from the config's own ``simulation.layers``."""
    sim = config.get("simulation", {})
    total_ms = float(sim.get("latency_ms") or 0.0)
    cycles = int(sim.get("total_cycles") or 0)
    clock = cycles / (total_ms / 1e3) if total_ms > 0 else 0.0
    plan_layers = config.get("plan", {}).get("layers", {})
    layers = []
    for raw in sim.get("layers", []):
        spec = plan_layers.get(raw["name"], {})
        nm = spec.get("nm")
        layers.append(
            LayerDetail(
                name=raw["name"],
                op=raw["op"],
                w_bits=raw.get("w_bits"),
                a_bits=raw.get("a_bits"),
                keep=float(spec.get("keep", 1.0)),
                nm=f"{nm[0]}:{nm[1]}" if nm else "dense",
                rank=spec.get("rank"),
                full_rank=None,
                macs=int(raw.get("macs", 0)),
                compute_cycles=0,
                stall_cycles=0,
                overhead_cycles=0,
                total_cycles=int(raw.get("total_cycles", 0)),
                dram_bytes=0,
                peak_macs_per_cycle=0.0,
                dram_bytes_per_cycle=0.0,
                bound="",
            )
        )
    return ConfigDetail(
        config_id=config.get("id", "?"),
        clock_hz=clock,
        layers=tuple(layers),
        resimulated=False,
        note=note,
    )


def config_detail(config: dict[str, Any]) -> ConfigDetail:
    """Per-layer detail of deployment config ``config`` (a parsed configs/<id>.json)."""
    from lowbit import hwsim
    from lowbit.hwsim.errors import LowbitError

    try:
        from lowbit import models
        from lowbit.hwsim.profiles import load_profile
        from lowbit.models.zoo import ZOO, build
    except ImportError as exc:  # the models package (torch) is optional for reports
        return _from_config(config, f"per-layer breakdown needs the models package ({exc})")
    model_name = config.get("model", "")
    hw_name = config.get("hardware", {}).get("name", "")
    if model_name not in ZOO:
        return _from_config(config, f"model {model_name!r} is not in the zoo: totals only")
    try:
        profile = load_profile(hw_name, overrides=hardware_of(config) or None)
        model = build(model_name)
        plan = models.CompressionPlan.from_dict(config["plan"])
        settings = _plan_settings(model, plan)
        engine = config.get("simulation", {}).get("engine", "analytic")
        workload = models.to_workload(model, plan, name=model_name)
        sim = hwsim.simulate(workload, profile, engine=engine)
    except (LowbitError, ValueError, KeyError) as exc:
        return _from_config(config, f"could not re-simulate ({exc}): totals only")
    note = ""
    stored = config.get("simulation", {}).get("total_cycles")
    if stored is not None and int(stored) != sim.total_cycles:
        note = (
            f"re-simulation gives {sim.total_cycles:,} cycles, the run recorded {int(stored):,} "
            "(the simulator or the profile changed since the run)"
        )
    elif config.get("hardware", {}).get("content_hash") not in (None, profile.content_hash()):
        note = "the profile file changed since the run (same cycles)"
    layers = []
    for r in sim.layers:
        s = settings.get(r.name, {})
        layers.append(
            LayerDetail(
                name=r.name,
                op=r.op,
                w_bits=s.get("w_bits", r.w_bits if r.macs else None),
                a_bits=s.get("a_bits", r.a_bits if r.macs else None),
                keep=s.get("keep", 1.0),
                nm=s.get("nm", "dense"),
                rank=s.get("rank"),
                full_rank=s.get("full_rank"),
                macs=r.macs,
                compute_cycles=r.compute_cycles,
                stall_cycles=r.stall_cycles,
                overhead_cycles=r.overhead_cycles,
                total_cycles=r.total_cycles,
                dram_bytes=r.dram_read_bytes + r.dram_write_bytes,
                peak_macs_per_cycle=r.peak_macs_per_cycle,
                dram_bytes_per_cycle=r.dram_bytes_per_cycle,
                bound=r.bound,
            )
        )
    return ConfigDetail(
        config_id=config.get("id", "?"),
        clock_hz=sim.clock_hz,
        layers=tuple(layers),
        resimulated=True,
        note=note,
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
