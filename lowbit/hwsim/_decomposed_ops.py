"""Cost rules of an NPU that runs what it has no unit for as a sequence of simpler
operators (:mod:`lowbit.hwsim._cost_rules` registers them; their keys are in
lowbit/hardware_profiles/README.md).

Ethos-U55 has a MAC array for convolutions and fully connected layers and an elementwise
unit; Arm's Vela compiles a LayerNorm into ~15 elementwise, reduction and lookup-table
operators, a softmax into ~15 more, and an attention product of two activations (no weights)
into elementwise multiplies and reductions instead of the MAC array. Such a layer costs
cycles per element (``[overheads.elementwise_cycles_per_element]``), plus the operators'
fixed costs once per layer (:class:`DecomposedLayerCycles`); such a matmul costs cycles per
MAC (:class:`ActivationMatmulKernel`).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil

from ._cost_rule_base import CostRule, GemmCall, LayerCall, cycles_key
from ._schema_types import Key, Table
from .workload import ELEMENTWISE_KINDS

__all__ = ["ActivationMatmulKernel", "DecomposedLayerCycles"]


@dataclass(frozen=True, slots=True)
class DecomposedLayerCycles(CostRule):
    """A memory-only layer of a ``kind`` in ``elementwise_layer_cycles`` costs that many
    cycles once, on top of ``layer_cycles`` and its per-element cost: the fixed costs of the
    several operators the target runs it as (their commands, a lookup table loaded into the
    NPU). Kinds not listed cost nothing more."""

    keys = {
        "elementwise_layer_cycles": Table(
            {
                kind: Key("number", required=False, low=0, high=10**9, unit="cycles")
                for kind in ELEMENTWISE_KINDS
            },
            required=False,
        )
    }
    #: (kind, cycles once per layer) pairs, sorted by kind
    elementwise_layer_cycles: tuple[tuple[str, float], ...] = ()

    def fixed_cycles(self, call: LayerCall) -> int:
        if call.gemms:
            return 0
        kind = getattr(call.layer, "kind", "")
        for known, cycles in self.elementwise_layer_cycles:
            if known == kind:
                return ceil(cycles - 1e-9)
        return 0


@dataclass(frozen=True, slots=True)
class ActivationMatmulKernel(CostRule):
    """An integer GEMM of two activations (an attention matmul: no weights to stream
    through the MAC array) costs ``activation_matmul_cycles_per_mac`` per MAC instead of
    its mapped cycles: the target runs it as elementwise multiplies and reductions. 0: on
    the MAC array like any GEMM."""

    keys = {"activation_matmul_cycles_per_mac": cycles_key()}
    activation_matmul_cycles_per_mac: float = 0.0

    def own_kernel(self, call: GemmCall) -> int | None:
        rate = self.activation_matmul_cycles_per_mac
        if not (rate > 0 and call.integer and call.gemm.weights_are_activations):
            return None
        g = call.gemm
        return ceil(rate * g.M * g.N * call.k_eff - 1e-9)
