"""Activations that overflow the cache a CPU's kernels work in: the :class:`ActivationSpill`
cost rule (registered by :mod:`lowbit.hwsim._cost_rules`)."""

from __future__ import annotations

from dataclasses import dataclass

from ._cost_rule_base import CostRule, count_key
from ._schema_types import MIN_RATE, Key

__all__ = ["ActivationSpill"]


@dataclass(frozen=True, slots=True)
class ActivationSpill(CostRule):
    """A layer whose activations -- its inputs and its output together -- overflow
    ``activation_cache_bytes`` (the cache a CPU core's kernels work in: its L2) moves them
    through the next level out, at ``activation_spill_bytes_per_cycle``: it takes at least
    that traffic's time (compute and traffic overlap; the larger counts). The engines keep
    any activation that fits a CPU's largest cache "on chip", which for a 300 MB L3 is every
    one: on an Intel Xeon (2 MB L2), ONNX Runtime's reorder of a 1.8 MB float tensor into its
    blocked layout took 178 us where its per-element cost gives 59, and the stride-2
    depthwise conv reading it 114 us against 24 -- both at ~6.5 bytes per cycle (the host
    calibration measures the rate as a copy twice the L2's size: ~8.6 there). A float
    kernel's pass over its own output blocks (``activation_pass``) is exempt: it runs while
    they are in cache. Either key left out (0): no such floor; a rate, when given, is at
    least :data:`~lowbit.hwsim._schema_types.MIN_RATE` (a physical floor: a rate of 1e-308
    made the floor infinite)."""

    keys = {
        "activation_cache_bytes": count_key(0, 0, 2**50),
        "activation_spill_bytes_per_cycle": Key(
            "number", required=False, default=0.0, low=MIN_RATE, high=10**6, unit="bytes/cycle"
        ),
    }
    activation_cache_bytes: int = 0
    activation_spill_bytes_per_cycle: float = 0.0

    def active(self) -> bool:
        return self.activation_cache_bytes > 0 and self.activation_spill_bytes_per_cycle > 0

    def traffic_cycles(self, activation_bytes: float) -> float:
        if activation_bytes <= self.activation_cache_bytes:
            return 0.0
        return activation_bytes / self.activation_spill_bytes_per_cycle
