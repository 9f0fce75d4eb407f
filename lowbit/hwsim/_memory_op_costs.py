"""The cost rules of memory-only layers (split from :mod:`lowbit.hwsim._cost_rules`, which
registers them): a kind's cycles per element (:class:`ElementwiseCosts`) and a pool's SIMD
channel blocks (:class:`PoolChannelBlock`)."""

from __future__ import annotations

from dataclasses import dataclass

from ._cost_rule_base import CostRule, count_key
from ._schema_types import Key, Table
from .workload import ELEMENTWISE_KINDS, INTEGER_COST_KINDS, Layer, Pool

__all__ = ["FALLBACK_KINDS", "ElementwiseCosts", "PoolChannelBlock"]


#: kind -> the kind whose cost it takes where a profile does not price it apart: a Transpose
#: that moves the innermost axis (ONNX Runtime copies it element by element) costs what a
#: layout transpose does on a profile measured without it; so does the layout change back
#: from channels-last to NCHW
FALLBACK_KINDS = {"transpose_strided": "transpose", "transpose_inward": "transpose"}


@dataclass(frozen=True, slots=True)
class ElementwiseCosts(CostRule):
    """A memory-only layer's compute cost per element by its ``kind``
    (:data:`lowbit.hwsim.workload.ELEMENTWISE_KINDS`): a CPU runs LayerNorm or GELU at a few
    cycles per element, not at copy speed; on integer (8-bit or narrower) activations
    ``<kind>_int8`` when given (:data:`~lowbit.hwsim.workload.INTEGER_COST_KINDS`). A data
    movement kind it does not price is free (addressed in place)."""

    keys = {
        "elementwise_cycles_per_element": Table(
            {
                kind: Key("number", required=False, low=0, high=10**6, unit="cycles")
                for kind in (*ELEMENTWISE_KINDS, *(f"{k}_int8" for k in INTEGER_COST_KINDS))
            },
            required=False,
        )
    }
    #: (kind, cycles per element) pairs, sorted by kind
    elementwise_cycles_per_element: tuple[tuple[str, float], ...] = ()

    def element_rate(self, kind: str, *, integer: bool) -> float:
        wanted = (f"{kind}_int8", kind) if integer else (kind,)
        if kind in FALLBACK_KINDS:  # a profile that does not price it apart
            wanted = (*wanted, FALLBACK_KINDS[kind])
        for name in wanted:
            for known, cycles in self.elementwise_cycles_per_element:
                if known == name:
                    return cycles
        return 0.0


@dataclass(frozen=True, slots=True)
class PoolChannelBlock(CostRule):
    """A pooling layer whose channel count is known processes each pixel's channels in
    blocks of ``pool_channel_block`` elements (one SIMD register: 64 uint8 with AVX-512), so
    its per-element cost applies to the channels padded up to a multiple of it: pooling 8
    channels costs what pooling 64 does (ONNX Runtime's NhwcMaxPool). 0: per element."""

    keys = {"pool_channel_block": count_key(0, 0, 4096)}
    pool_channel_block: int = 0

    def element_count(self, layer: Layer, elements: int) -> int:
        if isinstance(layer, Pool):
            return layer.block_elements(self.pool_channel_block)
        return elements
