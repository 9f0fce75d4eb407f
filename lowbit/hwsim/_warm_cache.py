"""Steady-state caches, the :class:`WarmCache` cost rule (``[overheads] warm_cache``): a CPU
that runs inference after inference keeps a small model's weights in its last-level cache,
so its "off-chip" traffic comes from that level. Unlike the other rules it changes no
layer's cycles: it changes the memory a workload sees (:meth:`CostRule.steady_state`), so
:func:`warm_profile` returns the profile of that steady state, decided by the weights of
the whole workload."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from ._cost_rule_base import CostRule
from ._schema_types import Key
from .compression import FLOAT_BITS
from .profile import HardwareProfile
from .workload import Layer

__all__ = ["WARM_SHARE", "WarmCache", "warm_profile", "weight_bytes"]

#: the share of a cache level a workload's weights may fill and still stay there between
#: inferences (the rest: activations, the runtime's buffers, code). On an Intel Xeon (2 MB
#: L2) a 2-layer transformer's 1.6 MB of FP32 weights ran its GEMMs at the arithmetic's
#: rate, no stream from L3 (at half, as before, it was simulated 20 % slow), while a
#: 2.05 MB FP32 GEMM streamed (L3)
WARM_SHARE = 0.9


@dataclass(frozen=True, slots=True)
class WarmCache(CostRule):
    """``warm_cache``: the runtime runs inference after inference (a CPU measured in steady
    state), so when a workload's weights fit in :data:`WARM_SHARE` of the outermost
    on-chip level that holds weights (a CPU's last-level cache) they stay there between
    inferences, and what the model reads "off chip" comes from that level
    (:func:`warm_profile`). ``false``: weights stream from off chip every inference (an
    accelerator's DRAM or flash)."""

    keys = {"warm_cache": Key("bool", required=False, default=False)}
    warm_cache: bool = False

    def steady_state(self, profile: HardwareProfile, layers: Sequence[Layer]) -> HardwareProfile:
        return warm_profile(profile, layers) if self.warm_cache else profile


#: (id of the cold profile, home level) -> (cold profile, its warm twin): one warm object
#: per profile and level, so the engines' per-profile caches keep working
_WARM: OrderedDict[tuple[int, str], tuple[HardwareProfile, HardwareProfile]] = OrderedDict()
_CACHE_SIZE = 32


def weight_bytes(layers: Iterable[Layer], profile: HardwareProfile) -> float:
    """Bytes of the layers' stored weights on ``profile`` (promoted to the precision mode
    unless the profile packs sub-byte weights)."""
    total = 0.0
    for layer in layers:
        for g in layer.gemms():
            if g.weights_are_activations:
                continue
            bits = g.w_bits
            if profile.weight_storage != "packed" and bits < FLOAT_BITS:
                bits = max(bits, 8)
            total += g.count * g.N * g.K * bits / 8
    return total


def warm_profile(profile: HardwareProfile, layers: Iterable[Layer]) -> HardwareProfile:
    """``profile`` as ``layers`` see it in steady state: unchanged unless the profile keeps
    caches warm; then every off-chip level runs at the bandwidth and energy per byte of the
    innermost on-chip level holding weights whose :data:`WARM_SHARE` they fit (a model whose
    weights fit L2 reads them from L2, a larger one from L3). Weights beyond the largest such
    level are read in part from it: the share it keeps (:data:`WARM_SHARE` of its size over
    the weights) at its rate, the rest at the off-chip level's, the harmonic mix of the two
    -- a shared L3 that keeps 7-8 MB of a core's weights read 16 MB of float weights at
    18-21 GB/s, between its 43 and DRAM's 12.5-15 (an AMD EPYC Zen 3 under KVM)."""
    if not profile.overheads.warm_cache:
        return profile
    nbytes = weight_bytes(layers, profile)
    on_chip = profile.on_chip("weights")
    home = next((m for m in reversed(on_chip) if nbytes <= WARM_SHARE * m.size_bytes), None)
    kept = 1.0
    if home is None:
        if not on_chip:
            return profile
        home = max(on_chip, key=lambda m: m.size_bytes)
        # rounded: one warm twin per thousandth, so the engines' per-profile caches hold
        kept = round(WARM_SHARE * home.size_bytes / nbytes, 3)
        if kept <= 0:
            return profile
    key = (id(profile), home.name, kept)
    found = _WARM.get(key)
    if found is not None and found[0] is profile:
        _WARM.move_to_end(key)
        return found[1]

    # the home level's own rate, even below the off-chip one's: a measured host's is the
    # rate its kernels stream weights at in steady state (fitted), where a copy through
    # DRAM may run faster (an Intel Xeon under KVM: 7.5 against 9 bytes a cycle) -- taking
    # the larger made the fitted rate idle whenever it came out below, and wander 10-24 %
    # between calibrations
    def read(m):
        """An off-chip level as the weights see it: the home level's rate and energy for
        the share it keeps, its own for the rest."""
        if kept == 1.0:
            return replace(
                m,
                bandwidth_bytes_per_cycle=home.bandwidth_bytes_per_cycle,
                energy_pj_per_byte=home.energy_pj_per_byte,
            )
        seconds = kept / home.bandwidth_bytes_per_cycle + (1 - kept) / m.bandwidth_bytes_per_cycle
        return replace(
            m,
            bandwidth_bytes_per_cycle=1.0 / seconds,
            energy_pj_per_byte=kept * home.energy_pj_per_byte + (1 - kept) * m.energy_pj_per_byte,
        )

    memory = tuple(read(m) if m.off_chip else m for m in profile.memory)
    warm = replace(profile, memory=memory)
    _WARM[key] = (profile, warm)
    if len(_WARM) > _CACHE_SIZE:
        _WARM.popitem(last=False)
    return warm
