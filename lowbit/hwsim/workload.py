"""Workload IR: the layers a simulator sees, with their shapes and their compression.

Shapes are the *dense, original* shapes of a layer; the layer's :class:`Compression`
(:mod:`lowbit.hwsim.compression`, the typed spec plans and the search space share) says how
it was reduced (structured pruning of output / input channels, N:M or unstructured
sparsity, low rank, bit-widths; float operands are 32 bits wide here). The simulator derives
the effective shapes from both, so a plan can be applied to a built-in workload without
rewriting it, and a rank-r layer is simulated as its two factor GEMMs (first-class, not a
rewrite the user must do).

Every compute layer reduces to a GEMM view (:class:`Gemm`): ``M`` rows of input (output
pixels × batch, or tokens), ``N`` output features (filters), ``K`` reduction length
(window size), repeated ``count`` times (groups, attention heads). This is the notation
SCALE-Sim uses (P = M, N = filters, W = K).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .compression import FLOAT_BITS, Compression, kept_channels

__all__ = [
    "FLOAT_BITS",
    "Compression",
    "Gemm",
    "Layer",
    "Conv2d",
    "Linear",
    "MatMul",
    "Elementwise",
    "Pool",
    "Workload",
    "ELEMENTWISE_KINDS",
    "MOVEMENT_KINDS",
    "FLOAT_LAYOUT_KINDS",
    "FLOAT_ONLY_KINDS",
    "FLOAT_PASS_KINDS",
    "INTEGER_COST_KINDS",
    "ceil_div",
    "aligned_channels",
]

#: data movement a CPU runtime executes as operators (layout transposes, concats, splits,
#: the input's quantization and the output's dequantization), and the second pass its float
#: conv kernel makes over its output for a fused activation other than ReLU (ONNX Runtime
#: applies ReLU in the kernel's registers, ReLU6 or LeakyReLU afterwards): free -- addressed
#: in place, no layer cost at all -- on a profile that gives the kind no per-element cost
MOVEMENT_KINDS = (
    *("quantize", "dequantize", "transpose", "transpose_inward", "transpose_strided"),
    *("concat", "split"),
    "activation_pass",
    *("reorder_input", "reorder_output"),
)
#: passes a float kernel makes inside its own operator: no dispatch of their own (no
#: ``layer_cycles``), and nothing at all at 8 bits or fewer (an integer graph folds the
#: activation into its requantization)
FLOAT_PASS_KINDS = ("activation_pass",)
#: the reorders a float graph's runtime adds at the borders of its blocked conv layout
#: (ONNX Runtime's NCHWc on x86: :mod:`lowbit.hwsim._onnx_nchwc`): operators of their own,
#: and nothing at all at 8 bits or fewer (an integer graph's convs run channels-last instead)
FLOAT_LAYOUT_KINDS = ("reorder_input", "reorder_output")
#: kinds that exist only while their layer's graph runs float
FLOAT_ONLY_KINDS = FLOAT_PASS_KINDS + FLOAT_LAYOUT_KINDS
#: operator kinds of memory-only layers (``Elementwise.kind``, ``Pool.kind``) that a profile
#: may give a per-element compute cost (``overheads.elementwise_cycles_per_element``);
#: "" = unknown, costed by its memory traffic alone
ELEMENTWISE_KINDS = (
    *("add", "mul", "relu", "gelu", "layernorm", "softmax", "embedding", "maxpool", "avgpool"),
    *MOVEMENT_KINDS,
)
#: kinds a runtime runs with an integer kernel of its own cost on 8-bit activations (ONNX
#: Runtime's lookup-table QLinearSoftmax; its QLinearAdd on uint8, a residual add or the bias
#: after a QLinearMatMul, at a third of the float Add's cost per element; its QLinearConcat,
#: which requantizes each input on another grid than the output's, ~10x a copy): a profile
#: may price them apart, as ``<kind>_int8`` in ``overheads.elementwise_cycles_per_element``
INTEGER_COST_KINDS = ("softmax", "add", "mul", "concat")


def _check_kind(layer_name: str, kind: str) -> None:
    if kind != "" and kind not in ELEMENTWISE_KINDS:
        raise ValueError(
            f"layer {layer_name!r}: unknown kind {kind!r} (valid: {', '.join(ELEMENTWISE_KINDS)}, "
            "or empty)"
        )


@dataclass(frozen=True, slots=True)
class Gemm:
    """One GEMM the hardware runs: ``count`` independent (M×K)·(K×N) products.

    ``weights_are_activations`` is true for attention matmuls (both operands come from
    activations: no weight fetch from DRAM, both at ``a_bits``).
    """

    name: str
    M: int
    N: int
    K: int
    count: int = 1
    w_bits: int = 8
    a_bits: int = 8
    weight_density: float = 1.0
    nm: tuple[int, int] | None = None
    weights_are_activations: bool = False

    @property
    def macs(self) -> int:
        """Dense MACs (sparsity is a hardware matter: not every target skips zeros)."""
        return self.M * self.N * self.K * self.count


@dataclass(frozen=True, slots=True, kw_only=True)
class Layer:
    """Base of all layers: a name and a compression. Subclasses define the shapes."""

    name: str
    compression: Compression = field(default_factory=Compression)

    op: str = field(default="", init=False)

    def gemms(self) -> tuple[Gemm, ...]:
        """The GEMMs this layer runs after compression (empty for memory-only layers)."""
        return ()

    @property
    def macs(self) -> int:
        return sum(g.macs for g in self.gemms())

    @property
    def full_rank(self) -> int:
        """``min(N, K)`` of the dense layer, the rank a ``rank_fraction`` is a fraction of
        (0: the layer cannot be factorised)."""
        return 0

    def with_compression(self, compression: Compression) -> Layer:
        """A copy under ``compression``; a ``rank_fraction`` becomes this layer's integer
        rank (:meth:`Compression.rank_of`)."""
        if compression.rank_fraction is not None:
            rank = compression.rank_of(self.full_rank)
            compression = replace(compression, rank=rank, rank_fraction=None)
        return replace(self, compression=compression)

    # memory-only traffic, in elements (compute layers derive theirs from gemms)
    def memory_elements(self) -> tuple[int, int]:
        """(elements read, elements written) for a memory-only layer."""
        return (0, 0)


def _rank(c: Compression, full_rank: int, N: int, K: int) -> int | None:
    """The rank of an (M×K)·(K×N) GEMM under ``c`` (None: full rank): ``rank``, or the rank of
    ``rank_fraction`` of the dense layer's ``full_rank``; one that does not reduce it is None."""
    rank = c.rank if c.rank_fraction is None else c.rank_of(full_rank)
    return rank if rank is not None and rank < min(N, K) else None


def _factor(
    name: str, M: int, N: int, K: int, count: int, c: Compression, full_rank: int
) -> tuple[Gemm, ...]:
    """Dense or rank-r GEMMs for an (M×K)·(K×N) layer; rank r -> (K→r) then (r→N)."""
    # the fields a layer's compression sets (bit widths as the cost models count them)
    common = dict(count=count, weight_density=c.weight_density, nm=c.nm)
    common.update(w_bits=c.w_storage_bits, a_bits=c.a_storage_bits)
    r = _rank(c, full_rank, N, K)
    if r is None:
        return (Gemm(name, M, N, K, **common),)
    return (Gemm(f"{name}.lr0", M, r, K, **common), Gemm(f"{name}.lr1", M, N, r, **common))


#: a conv's ``weight_storage``: as the deployment stores its bit width, int8, uint8
WEIGHT_STORAGES = ("", "s8", "u8")


@dataclass(frozen=True, slots=True, kw_only=True)
class Conv2d(Layer):
    """2-D convolution (NHWC view). ``groups == in_c == out_c`` is depthwise.

    ``out_h``/``out_w`` are stored, not derived, because conventions differ: PyTorch floors
    ``(H + 2p - F) / S + 1``; SCALE-Sim (no padding) takes ``ceil((H - F + S) / S)``.
    A low-rank conv is a k×k conv with r filters followed by a 1×1 conv. ``as_deployed``:
    its channel counts are those the runtime runs (a conv imported from a deployed ONNX
    graph), so a profile's ``pad_conv_channels`` does not pad it again. ``pad_out`` /
    ``pad_in``: whether such a deployment pads its output channels (not when a residual
    stream or a depthwise conv reads them) and whether its inputs arrive padded.
    ``weight_storage``: the integer type its weights are stored in, ``"s8"`` or ``"u8"``
    (an imported conv's), or ``""``: as the profile's deployment stores its bit width
    (:class:`lowbit.hwsim._cost_rules.DirectConvKernel`'s ``u8_weight_bits``).
    """

    in_h: int
    in_w: int
    in_c: int
    out_c: int
    k_h: int
    k_w: int
    stride: int = 1
    out_h: int
    out_w: int
    groups: int = 1
    batch: int = 1
    as_deployed: bool = False
    pad_in: bool = True
    pad_out: bool = True
    weight_storage: str = ""
    op: str = field(default="conv2d", init=False)

    def __post_init__(self) -> None:
        dims = ("in_h", "in_w", "in_c", "out_c", "k_h", "k_w", "stride", "out_h", "out_w")
        bad = [
            f"{d}={getattr(self, d)!r}"
            for d in (*dims, "groups", "batch")
            if not isinstance(getattr(self, d), int) or getattr(self, d) < 1
        ]
        if bad:
            raise ValueError(f"layer {self.name!r}: dimensions must be positive integers: {bad}")
        if self.in_c % self.groups or self.out_c % self.groups:
            raise ValueError(
                f"layer {self.name!r}: groups={self.groups} must divide in_c={self.in_c} "
                f"and out_c={self.out_c}"
            )
        if self.weight_storage not in WEIGHT_STORAGES:
            raise ValueError(
                f"layer {self.name!r}: weight_storage must be one of {WEIGHT_STORAGES}, "
                f"got {self.weight_storage!r}"
            )

    @staticmethod
    def out_size(size: int, k: int, stride: int, padding: int) -> int:
        """PyTorch's output size: floor((size + 2·padding − k) / stride) + 1."""
        return (size + 2 * padding - k) // stride + 1

    @property
    def depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.in_c

    @property
    def full_rank(self) -> int:
        """min(out_c, k_h·k_w·in_c); 0 for a grouped conv (not factorisable)."""
        return 0 if self.groups > 1 else min(self.out_c, self.k_h * self.k_w * self.in_c)

    def gemms(self) -> tuple[Gemm, ...]:
        c = self.compression
        M = self.out_h * self.out_w * self.batch
        if self.groups > 1:
            # grouped / depthwise: pruning keeps whole groups, so channels per group stay.
            groups = kept_channels(self.groups, min(c.keep, c.in_keep))
            N = self.out_c // self.groups
            K = self.k_h * self.k_w * (self.in_c // self.groups)
            return _factor(self.name, M, N, K, groups, c, self.full_rank)
        N = kept_channels(self.out_c, c.keep)
        in_c = kept_channels(self.in_c, c.in_keep)
        K = self.k_h * self.k_w * in_c
        # a rank-r conv: k×k conv with r filters, then 1×1 conv r -> N (same output pixels)
        return _factor(self.name, M, N, K, 1, c, self.full_rank)


@dataclass(frozen=True, slots=True, kw_only=True)
class Linear(Layer):
    """Fully connected layer on ``tokens`` rows (batch × sequence). ``fused_bias``: the
    runtime adds the bias and scales each output column inside the GEMM (an ONNX Gemm:
    ONNX Runtime's QGemm); false for a bare matrix product whose bias, if any, is an Add of
    its own (an ONNX MatMul: QLinearMatMul), which some CPU profiles cost apart
    (:class:`lowbit.hwsim._fused_bias.FusedBiasGemm`)."""

    in_features: int
    out_features: int
    tokens: int = 1
    fused_bias: bool = True
    op: str = field(default="linear", init=False)

    def __post_init__(self) -> None:
        bad = [
            f"{d}={getattr(self, d)!r}"
            for d in ("in_features", "out_features", "tokens")
            if not isinstance(getattr(self, d), int) or getattr(self, d) < 1
        ]
        if bad:
            raise ValueError(f"layer {self.name!r}: dimensions must be positive integers: {bad}")
        if not isinstance(self.fused_bias, bool):
            raise ValueError(f"layer {self.name!r}: fused_bias must be true or false")

    @property
    def full_rank(self) -> int:
        return min(self.out_features, self.in_features)

    def gemms(self) -> tuple[Gemm, ...]:
        c = self.compression
        N = kept_channels(self.out_features, c.keep)
        K = kept_channels(self.in_features, c.in_keep)
        return _factor(self.name, self.tokens, N, K, 1, c, self.full_rank)


@dataclass(frozen=True, slots=True, kw_only=True)
class MatMul(Layer):
    """Activation × activation product (attention QKᵀ and AV): ``heads`` (M×K)·(K×N).

    Both operands are activations: quantized at ``a_bits``, never fetched as weights, not
    prunable or factorisable.
    """

    M: int
    N: int
    K: int
    heads: int = 1
    op: str = field(default="matmul", init=False)

    def __post_init__(self) -> None:
        bad = [
            f"{d}={getattr(self, d)!r}"
            for d in ("M", "N", "K", "heads")
            if not isinstance(getattr(self, d), int) or getattr(self, d) < 1
        ]
        if bad:
            raise ValueError(f"layer {self.name!r}: dimensions must be positive integers: {bad}")

    def gemms(self) -> tuple[Gemm, ...]:
        a = self.compression.a_storage_bits
        return (
            Gemm(
                self.name,
                self.M,
                self.N,
                self.K,
                self.heads,
                w_bits=a,
                a_bits=a,
                weights_are_activations=True,
            ),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Elementwise(Layer):
    """Memory-only layer (add, activation, norm, softmax): reads ``inputs`` tensors of
    ``elements`` each and writes one. ``kind`` (one of :data:`ELEMENTWISE_KINDS`, or "")
    names the operator so a profile can charge its per-element compute cost. ``rows``: the
    pieces the operator handles one at a time, when it does (a LayerNorm's or softmax's
    reduction rows, a transpose's contiguous runs; 0: not known), so a profile can charge
    a cost per row as well (``overheads.elementwise_cycles_per_row``); ``channels``: the
    tensor's channels, for a cost that depends on them (0: not known)."""

    elements: int
    inputs: int = 1
    kind: str = ""
    rows: int = 0
    #: the tensor's channels where a cost depends on them (a layout change back to NCHW
    #: writes one stream per channel); 0: not known
    channels: int = 0
    op: str = field(default="elementwise", init=False)

    def __post_init__(self) -> None:
        _check_kind(self.name, self.kind)
        if not 0 <= self.rows <= self.elements:
            raise ValueError(
                f"layer {self.name!r}: rows {self.rows} must be between 0 and its "
                f"{self.elements} elements"
            )
        if not 0 <= self.channels <= self.elements:
            raise ValueError(
                f"layer {self.name!r}: channels {self.channels} must be between 0 and its "
                f"{self.elements} elements"
            )

    @property
    def cost_elements(self) -> int:
        """Elements the per-element cost applies to: the output's (one per input set)."""
        return self.elements

    def memory_elements(self) -> tuple[int, int]:
        return (self.elements * self.inputs, self.elements)


@dataclass(frozen=True, slots=True, kw_only=True)
class Pool(Layer):
    """Pooling: memory-only; reads ``in_elements`` and writes ``out_elements``; ``kind`` is
    "maxpool", "avgpool" or "" (see :class:`Elementwise`); ``channels``: the input's channel
    count when known (0: unknown), for targets that pool a pixel's channels in SIMD blocks
    (``Overheads.pool_channel_block``)."""

    in_elements: int
    out_elements: int
    kind: str = ""
    channels: int = 0
    op: str = field(default="pool", init=False)

    def __post_init__(self) -> None:
        _check_kind(self.name, self.kind)
        if self.channels < 0 or (self.channels and self.in_elements % self.channels):
            raise ValueError(
                f"layer {self.name!r}: channels {self.channels} must divide in_elements "
                f"{self.in_elements} (or be 0: unknown)"
            )

    def block_elements(self, block: int) -> int:
        """Input elements with each pixel's channels padded to a multiple of ``block`` (what a
        kernel that pools a pixel's channels in SIMD blocks processes); ``cost_elements``
        when the channels are unknown or ``block`` is 0."""
        if not block or not self.channels:
            return self.cost_elements
        pixels = self.in_elements // self.channels
        return pixels * -(-self.channels // block) * block

    @property
    def cost_elements(self) -> int:
        """Elements the per-element cost applies to: the input's (each is compared or
        summed once per window it falls in; with ONNX Runtime's kernels ~ once)."""
        return self.in_elements

    def memory_elements(self) -> tuple[int, int]:
        return (self.in_elements, self.out_elements)


@dataclass(frozen=True, slots=True)
class Workload:
    """A named, ordered list of layers (execution order)."""

    name: str
    layers: tuple[Layer, ...]

    def __post_init__(self) -> None:
        names = [layer.name for layer in self.layers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"workload {self.name!r}: duplicate layer names {dupes}")
        if not self.layers:
            raise ValueError(f"workload {self.name!r}: has no layers")

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"workload {self.name!r} has no layer {name!r}")

    def with_compression(self, by_name: dict[str, Compression]) -> Workload:
        """A copy with the given layers' compression replaced; unknown names are an error."""
        known = {layer.name for layer in self.layers}
        unknown = sorted(set(by_name) - known)
        if unknown:
            raise KeyError(f"workload {self.name!r} has no layers {unknown}")
        return Workload(
            self.name,
            tuple(
                layer.with_compression(by_name[layer.name]) if layer.name in by_name else layer
                for layer in self.layers
            ),
        )


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def aligned_channels(channels: int, *, multiple: int, minimum: int = 1) -> int:
    """``channels`` rounded up to a multiple of ``multiple``, and at least ``minimum``: the
    channel counts a kernel that blocks channels takes (``Overheads.pad_conv_channels``)."""
    return max(minimum, -(-channels // multiple) * multiple)
