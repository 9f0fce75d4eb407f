"""The cost rules of memory-only layers (split from :mod:`lowbit.hwsim._cost_rules`, which
registers them): a kind's cycles per element (:class:`ElementwiseCosts`) and a pool's SIMD
channel blocks (:class:`PoolChannelBlock`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._cost_rule_base import CostRule, count_key
from ._schema_types import Key, Table
from .workload import ELEMENTWISE_KINDS, INTEGER_COST_KINDS, Layer, Pool

__all__ = [
    "FALLBACK_KINDS",
    "INWARD_CHANNELS",
    "NARROW_INWARD",
    "ElementwiseCosts",
    "PoolChannelBlock",
]


#: kind -> the kind whose cost it takes where a profile does not price it apart: a Transpose
#: that moves the innermost axis (ONNX Runtime copies it element by element) costs what a
#: layout transpose does on a profile measured without it; so does the layout change back
#: from channels-last to NCHW
FALLBACK_KINDS = {"transpose_strided": "transpose", "transpose_inward": "transpose"}


#: the price key of a layout change back to NCHW of few channels, and the channel counts it
#: and ``transpose_inward`` are measured at: between them a layer's price follows log2 of its
#: channels (each channel one output stream; on an Intel Xeon, uint8: 0.20 cycles an element
#: at 8-16 channels, 0.23 at 32, 0.28 at 64, 0.33 at 128, 0.40 at 256), outside them the
#: nearer one's
NARROW_INWARD = "transpose_inward_narrow"
INWARD_CHANNELS = (32, 256)


@dataclass(frozen=True, slots=True)
class ElementwiseCosts(CostRule):
    """A memory-only layer's compute cost per element by its ``kind``
    (:data:`lowbit.hwsim.workload.ELEMENTWISE_KINDS`): a CPU runs LayerNorm or GELU at a few
    cycles per element, not at copy speed; on integer (8-bit or narrower) activations
    ``<kind>_int8`` when given (:data:`~lowbit.hwsim.workload.INTEGER_COST_KINDS`). A data
    movement kind it does not price is free (addressed in place)."""

    keys = {
        table: Table(
            {
                kind: Key("number", required=False, low=0, high=10**6, unit="cycles")
                for kind in (
                    *ELEMENTWISE_KINDS,
                    *(f"{k}_int8" for k in INTEGER_COST_KINDS),
                    NARROW_INWARD,
                )
            },
            required=False,
        )
        for table in ("elementwise_cycles_per_element", "elementwise_cycles_per_row")
    }
    #: (kind, cycles per element) pairs, sorted by kind
    elementwise_cycles_per_element: tuple[tuple[str, float], ...] = ()
    #: (kind, cycles per row) pairs, sorted by kind: what a layer that works row by row
    #: (``Elementwise.rows``: a LayerNorm's or softmax's reduction rows) pays per row on top
    #: of its elements (ONNX Runtime's float LayerNorm on an Intel Xeon: ~75 cycles a row,
    #: so rows of 32 features cost twice what rows of 128 do per element)
    elementwise_cycles_per_row: tuple[tuple[str, float], ...] = ()

    def _priced(self, kind: str, *, integer: bool) -> tuple[str, float]:
        """The key that prices ``kind`` per element and its cycles: ``<kind>_int8`` on
        integer activations where the profile has it, else the kind, else its fallback's
        (the kind and 0 when none is priced)."""
        wanted = (f"{kind}_int8", kind) if integer else (kind,)
        if kind in FALLBACK_KINDS:  # a profile that does not price it apart
            wanted = (*wanted, FALLBACK_KINDS[kind])
        known = dict(self.elementwise_cycles_per_element)
        name = next((name for name in wanted if name in known), kind)
        return name, known.get(name, 0.0)

    def element_rate(self, kind: str, *, integer: bool) -> float:
        return self._priced(kind, integer=integer)[1]

    def element_count(self, layer: Layer, elements: int) -> int:
        # a layout change back to NCHW of known channels, where the profile prices few
        # channels apart: its elements weighted by its price over the many-channel one's
        channels = getattr(layer, "channels", 0)
        if getattr(layer, "kind", "") != "transpose_inward" or channels <= 0:
            return elements
        known = dict(self.elementwise_cycles_per_element)
        wide, narrow = known.get("transpose_inward", 0.0), known.get(NARROW_INWARD, 0.0)
        if not (wide > 0 and narrow > 0):
            return elements
        low, high = (math.log2(c) for c in INWARD_CHANNELS)
        share = min(max((math.log2(channels) - low) / (high - low), 0.0), 1.0)
        return math.ceil(elements * (narrow + share * (wide - narrow)) / wide - 1e-9)

    def row_rate(self, kind: str, *, integer: bool) -> float:
        # the rows of the kernel that prices the elements: an integer kernel's
        # (``<kind>_int8``: ONNX Runtime's QLinearSoftmax) are its own, measured with its
        # cost per element; a kind with none runs the float kernel on 8-bit activations too
        name = self._priced(kind, integer=integer)[0]
        return dict(self.elementwise_cycles_per_row).get(name, 0.0)


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
