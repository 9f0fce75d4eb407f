"""The base of the cost rules (:mod:`lowbit.hwsim._cost_rules`): :class:`CostRule` with its
hooks, what a hook is given -- one GEMM of a layer (:class:`GemmCall`), the shape its
kernel runs (:class:`RunShape`), a whole layer (:class:`LayerCall`) -- and the registry:
:data:`COST_RULES` in the order the engines apply them, :func:`register_cost_rule`, and a
profile's active rules by hook (:class:`RuleSet`). Import them from
:mod:`lowbit.hwsim._cost_rules`, which registers the built-in rules."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import MISSING, dataclass, fields, is_dataclass
from typing import TYPE_CHECKING, ClassVar

from ._schema_types import Key, Table
from .workload import FLOAT_BITS, Conv2d, Gemm, Layer

if TYPE_CHECKING:
    from .profile import HardwareProfile, Overheads, Precision

__all__ = [
    "COST_RULES",
    "GENERAL_OVERHEAD_KEYS",
    "CostRule",
    "RuleSet",
    "register_cost_rule",
    "overhead_keys",
    "GemmCall",
    "LayerCall",
    "RunShape",
    "count_key",
    "cycles_key",
    "im2col_copies",
    "is_depthwise",
]


def is_depthwise(layer: Layer) -> bool:
    """A depthwise convolution: one input channel per group (any channel multiplier)."""
    return isinstance(layer, Conv2d) and layer.groups > 1 and layer.groups == layer.in_c


def reads_in_place(layer: Layer) -> bool:
    """A 1x1 convolution of stride 1: ONNX Runtime's INT8 kernel reads its input rows in
    place (a GEMM on the input); any other conv -- a strided 1x1 too -- gathers each output
    pixel's inputs (an indirection buffer, or an im2col)."""
    return isinstance(layer, Conv2d) and layer.k_h * layer.k_w == 1 and layer.stride == 1


def im2col_copies(layer: Layer) -> int:
    """Copies per output pixel (and group) of ONNX Runtime's NHWC im2col for an integer
    conv on the generic path (``math::Im2col``): one per window row (k_h) when the group
    covers every input channel (the row's k_w taps are contiguous), one per tap (k_h k_w)
    in a grouped conv; none for a 1x1 conv of stride 1 (its rows are read in place)."""
    if not isinstance(layer, Conv2d) or reads_in_place(layer):
        return 0
    return layer.k_h * layer.k_w if layer.groups > 1 else layer.k_h


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
    def library(self) -> bool:
        """A GEMM the runtime hands to its GEMM library, integer or float: a linear layer's
        or a matmul's, not a convolution's."""
        return not isinstance(self.layer, Conv2d)

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
        """The rule with a profile's values: its ``Overheads`` fields, or for a rule
        registered beside the built-in ones, its entries of ``Overheads.registered``."""
        more = dict(overheads.registered)
        values = {}
        for f in fields(cls):
            if hasattr(overheads, f.name):
                values[f.name] = getattr(overheads, f.name)
            elif f.name in more:
                values[f.name] = more[f.name]
        return cls(**values)

    def active(self) -> bool:
        """Does any field differ from its default (which costs nothing)?"""
        return any(getattr(self, f.name) != f.default for f in fields(self))

    def steady_state(self, profile: HardwareProfile, layers: Sequence[Layer]) -> HardwareProfile:
        """The profile ``layers`` (a workload, or one layer alone) are costed on when the
        runtime runs inference after inference (warm caches); ``profile`` itself when this
        rule changes nothing. Applied before any other hook, in rule order."""
        return profile

    def run_shape(self, call: GemmCall) -> RunShape | None:
        """The shape the GEMM's kernel runs instead of its own (None: no change). The first
        rule that gives one wins."""
        return None

    def blocked_outputs(self, call: GemmCall, *, shape: RunShape) -> int:
        """The outputs the kernel's arithmetic covers when it computes them in blocks wider
        than the target's mapping (0: ``shape.n``; the first rule that gives one wins). Only
        the MACs pay for them: per-output costs stay ``shape.n``'s."""
        return 0

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

    def row_rate(self, kind: str, *, integer: bool) -> float:
        """Cycles per row of a memory-only layer of ``kind`` that works row by row
        (``Elementwise.rows``; summed over the rules)."""
        return 0.0

    def traffic_cycles(self, activation_bytes: float) -> float:
        """The least cycles a layer that reads and writes ``activation_bytes`` of
        activations (its inputs and its output together) takes: its compute and that
        traffic overlap, the larger counts (the largest over the rules)."""
        return 0.0


#: ``[overheads]`` keys every target has, no rule's (the engines' own costs: per layer, per
#: tile, per inference)
GENERAL_OVERHEAD_KEYS = (
    "layer_cycles",
    "tile_cycles",
    "run_cycles",
    "float_run_cycles",
    "two_grid_round_trip",
)

#: every cost rule, in the order the engines apply them (:func:`register_cost_rule`)
COST_RULES: list[type[CostRule]] = []


def register_cost_rule(
    rule: type[CostRule], *, before: type[CostRule] | None = None
) -> type[CostRule]:
    """Add ``rule`` to :data:`COST_RULES`, last or just ``before`` another rule (the order
    the costs compose in); the ``[overheads]`` schema and every profile built from then on
    read its keys, and the engines apply it. Usable as a decorator.

    A rule is a frozen dataclass subclass of :class:`CostRule` whose fields are exactly its
    ``keys``, each key owned by one rule, each optional with its field's default as its
    default (a rule at its defaults costs nothing).

    Raises:
        ValueError: the rule breaks one of these (every problem, with its key), or is
            already registered, or ``before`` is not.
    """
    name = getattr(rule, "__name__", repr(rule))
    if not (isinstance(rule, type) and issubclass(rule, CostRule) and is_dataclass(rule)):
        raise ValueError(f"cost rule {name}: must be a dataclass subclass of CostRule")
    if rule in COST_RULES:
        raise ValueError(f"cost rule {name} is already registered")
    if before is not None and before not in COST_RULES:
        raise ValueError(f"cost rule {name}: before={before.__name__} is not registered")
    owners = {key: other.__name__ for other in COST_RULES for key in other.keys}
    owners.update(dict.fromkeys(GENERAL_OVERHEAD_KEYS, "every target"))
    owners["registered"] = "Overheads (where registered rules' values live)"
    problems = []  # (a dataclass subclass of the frozen CostRule is frozen)
    own = {f.name: f for f in fields(rule)}
    for key in sorted(set(own) ^ set(rule.keys)):
        problems.append(f"{key}: " + ("a field without a key" if key in own else "no field"))
    for key, spec in rule.keys.items():
        if key in owners:
            problems.append(f"{key}: already a key of {owners[key]}")
        if key not in own:
            continue
        if own[key].default is MISSING:
            problems.append(f"{key}: the field needs a default")
        elif isinstance(spec, Key) and (spec.required or spec.default != own[key].default):
            problems.append(f"{key}: must be optional with the field's default")
    if problems:
        raise ValueError(f"cost rule {name}: " + "; ".join(problems))
    COST_RULES.insert(COST_RULES.index(before) if before else len(COST_RULES), rule)
    return rule


def overhead_keys() -> dict[str, Key | Table]:
    """The ``[overheads]`` keys the rules own, in rule order."""
    return {name: spec for rule in COST_RULES for name, spec in rule.keys.items()}


class RuleSet:
    """A profile's active rules, by hook (what the engines loop over; built once per
    profile with its :class:`~lowbit.hwsim.engines._target.Target`)."""

    __slots__ = (
        "steady",
        "shape",
        "block",
        "kernel",
        "adjust",
        "conv",
        "fixed",
        "rate",
        "count",
        "row",
        "traffic",
    )

    def __init__(self, overheads: Overheads) -> None:
        rules = [r for r in (cls.of(overheads) for cls in COST_RULES) if r.active()]

        def having(hook: str) -> tuple:
            base = getattr(CostRule, hook)
            return tuple(r for r in rules if getattr(type(r), hook) is not base)

        self.steady = having("steady_state")
        self.shape = having("run_shape")
        self.block = having("blocked_outputs")
        self.kernel = having("own_kernel")
        self.adjust = having("adjust_cycles")
        self.conv = having("conv_rates")
        self.fixed = having("fixed_cycles")
        self.rate = having("element_rate")
        self.count = having("element_count")
        self.row = having("row_rate")
        self.traffic = having("traffic_cycles")
