"""The base of the cost rules (:mod:`lowbit.hwsim._cost_rules`): :class:`CostRule` with its
hooks, and what a hook is given -- one GEMM of a layer (:class:`GemmCall`), the shape its
kernel runs (:class:`RunShape`), a whole layer (:class:`LayerCall`)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, ClassVar

from ._schema_types import Key, Table
from .workload import FLOAT_BITS, Conv2d, Gemm, Layer

if TYPE_CHECKING:
    from .profile import Overheads, Precision

__all__ = [
    "CostRule",
    "GemmCall",
    "LayerCall",
    "RunShape",
    "count_key",
    "cycles_key",
    "is_depthwise",
]


def is_depthwise(layer: Layer) -> bool:
    """A depthwise convolution: one input channel per group (any channel multiplier)."""
    return isinstance(layer, Conv2d) and layer.groups > 1 and layer.groups == layer.in_c


@dataclass(frozen=True, slots=True)
class GemmCall:
    """One GEMM of a layer as the rules see it. ``first``: the layer's first GEMM (a
    low-rank layer's k×k factor; its second is 1×1); ``k_eff``: the reduction length it
    executes (less the zeros the target skips), ``compute_frac`` of its K."""

    layer: Layer
    gemm: Gemm
    mode: Precision
    first: bool
    k_eff: int
    compute_frac: float

    @property
    def integer(self) -> bool:
        return self.mode.w_bits < FLOAT_BITS

    @property
    def conv(self) -> bool:
        """An integer convolution a CPU runs as GEMMs (ungrouped: its direct kernel; grouped,
        not depthwise: one generic-path GEMM per group)."""
        return self.integer and isinstance(self.layer, Conv2d) and not is_depthwise(self.layer)

    @property
    def window(self) -> int:
        """Kernel positions per input channel in K: k_h·k_w for the first GEMM of a conv, 1
        for a low-rank conv's 1×1 second."""
        layer = self.layer
        return layer.k_h * layer.k_w if self.first and isinstance(layer, Conv2d) else 1

    @property
    def in_channels(self) -> int:
        """A conv GEMM's input channels (K per kernel position); 0 for other layers."""
        return self.gemm.K // self.window if isinstance(self.layer, Conv2d) else 0


@dataclass(frozen=True, slots=True)
class RunShape:
    """What a GEMM's kernel runs: ``n`` outputs, reduction ``k`` (executed), and a conv's
    ``in_channels`` per kernel position (0 for other layers)."""

    n: int
    k: int
    in_channels: int


@dataclass(frozen=True, slots=True)
class LayerCall:
    """A whole layer: its GEMMs, the precision mode each runs in, and one operator's
    dispatch cost (``Overheads.layer_cycles``)."""

    layer: Layer
    gemms: tuple[Gemm, ...]
    modes: tuple[Precision, ...]
    layer_cycles: int


def cycles_key(high: float = 10**6) -> Key:
    """An optional cost in cycles per something, 0 by default."""
    return Key("number", required=False, default=0.0, low=0, high=high, unit="cycles")


def count_key(default: int, low: int, high: int) -> Key:
    """An optional integer (a channel block, a count of cycles)."""
    return Key("int", required=False, default=default, low=low, high=high)


@dataclass(frozen=True, slots=True)
class CostRule:
    """One cost behaviour of a target's runtime. Subclasses are frozen dataclasses whose
    fields are the ``[overheads]`` keys they read (names and defaults as in
    :class:`~lowbit.hwsim.profile.Overheads`), ``keys`` their schema, and override the hooks
    they need; every hook of this base changes nothing. A rule's defaults must cost nothing
    (a rule at its defaults is left out)."""

    #: the schema of the rule's ``[overheads]`` keys (its fields)
    keys: ClassVar[dict[str, Key | Table]] = {}

    @classmethod
    def of(cls, overheads: Overheads) -> CostRule:
        """The rule with a profile's values."""
        return cls(**{f.name: getattr(overheads, f.name) for f in fields(cls)})

    def active(self) -> bool:
        """Does any field differ from its default (which costs nothing)?"""
        return any(getattr(self, f.name) != f.default for f in fields(self))

    def run_shape(self, call: GemmCall) -> RunShape | None:
        """The shape the GEMM's kernel runs instead of its own (None: no change). The first
        rule that gives one wins."""
        return None

    def own_kernel(self, call: GemmCall) -> int | None:
        """Compute cycles of one instance when the GEMM runs a kernel of its own, not the
        MAC array's (None: it does not). The first rule that gives them wins; the other
        GEMM hooks are then skipped."""
        return None

    def adjust_cycles(self, call: GemmCall, *, shape: RunShape, cycles: int) -> int:
        """One instance's compute cycles after this rule, given those before it."""
        return cycles

    def conv_rates(self, call: GemmCall, *, shape: RunShape) -> tuple[float, float]:
        """(cycles per output pixel, cycles per image) of an integer convolution GEMM
        (``call.conv``): summed over the rules, then charged ``ceil(pixel · M + image ·
        batch)`` once."""
        return 0.0, 0.0

    def fixed_cycles(self, call: LayerCall) -> int:
        """Cycles added once to the layer (outside its schedule)."""
        return 0

    def element_rate(self, kind: str, *, integer: bool) -> float:
        """Cycles per element of a memory-only layer of ``kind`` (summed over the rules);
        ``integer``: its activations are 8 bits or narrower."""
        return 0.0

    def element_count(self, layer: Layer, elements: int) -> int:
        """The elements of a memory-only layer its rate applies to, given those before."""
        return elements
