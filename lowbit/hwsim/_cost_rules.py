"""Cost rules: what a target's runtime costs beyond its MAC array and its traffic, one class
per quirk (a CPU's depthwise kernel, its direct conv kernel's channel alignment, ...).

A rule is a frozen dataclass whose fields are the ``[overheads]`` keys it reads -- the same
names and defaults as :class:`lowbit.hwsim.profile.Overheads`, the record a profile builds --
with ``keys``, their schema (the ``[overheads]`` table of
:mod:`lowbit.hwsim._profile_schema` is assembled from them), and the cost functions.
:data:`COST_RULES` is the one list: :class:`RuleSet` builds a profile's rules from it, and
the engines apply them in its order at each hook of
:class:`~lowbit.hwsim._cost_rule_base.CostRule`: the profile a workload is costed on
(``steady_state``: a warm cache, :mod:`lowbit.hwsim._warm_cache`; applied by
:mod:`lowbit.hwsim.engines._base`), then per layer (:mod:`lowbit.hwsim.engines._layer`)
the shape a GEMM's kernel runs
(``run_shape``: padded channels, blocked reduction), the outputs its arithmetic covers
(``blocked_outputs``: a kernel's output-channel blocks), a kernel that is not a GEMM
(``own_kernel``: depthwise; an NPU's attention matmul), a GEMM's cycles (``adjust_cycles``:
output stage, requantization), an integer conv's per-pixel and per-image cycles
(``conv_rates``), cycles once per layer (``fixed_cycles``: launches, extra operators, a
decomposed layer's), and a memory-only layer's cycles per element (``element_rate``,
``element_count``). The rules of an NPU that decomposes layers live in
:mod:`lowbit.hwsim._decomposed_ops`, those of memory-only layers in
:mod:`lowbit.hwsim._memory_op_costs`.

A new quirk of lowbit's targets is one rule here, registered below in its place, its fields
in ``Overheads`` and its keys in lowbit/hardware_profiles/README.md (tests check all three
agree). A rule of your own target is one :func:`register_cost_rule` call (its values then
live in ``Overheads.registered``).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil

from ._activation_spill import ActivationSpill
from ._cost_rule_base import (
    COST_RULES,
    GENERAL_OVERHEAD_KEYS,
    CostRule,
    GemmCall,
    LayerCall,
    RuleSet,
    RunShape,
    count_key,
    cycles_key,
    im2col_copies,
    overhead_keys,
    reads_in_place,
    register_cost_rule,
)
from ._decomposed_ops import ActivationMatmulKernel, DecomposedLayerCycles
from ._depthwise import DepthwiseKernel
from ._fused_bias import FusedBiasGemm
from ._memory_op_costs import ElementwiseCosts, PoolChannelBlock
from ._schema_types import Key
from ._warm_cache import WarmCache
from .workload import (
    FLOAT_BITS,
    Conv2d,
    Layer,
    aligned_channels,
)

__all__ = [
    "COST_RULES",
    "GENERAL_OVERHEAD_KEYS",
    "RuleSet",
    "overhead_keys",
    "register_cost_rule",
    "DepthwiseKernel",
    "DirectConvKernel",
    "FusedBiasGemm",
    "im2col_copies",
    "ConvReductionBlocking",
    "WindowGather",
    "OutputStage",
    "Requantization",
    "GemmLaunch",
    "NarrowActivationClamp",
    "ElementwiseCosts",
    "PoolChannelBlock",
    "DecomposedLayerCycles",
    "ActivationMatmulKernel",
    "WarmCache",
    "ActivationSpill",
]


@dataclass(frozen=True, slots=True)
class DirectConvKernel(CostRule):
    """A CPU's direct integer conv kernel takes input and output channels in multiples of
    ``conv_channel_multiple`` and at least ``conv_min_out_channels`` outputs. Other integer
    convolutions -- and every grouped, not depthwise, one (once per group) -- run a generic
    im2col path that costs ``unaligned_conv_cycles_per_pixel`` more per output pixel
    (building the pixel's im2col row, requantizing it). The direct kernel computes the
    output channels in blocks of ``conv_out_channel_block``: the MACs of a last, partial
    block cost a whole one (ONNX Runtime's AVX2 kernel, 16 channels: on an AMD Zen 3 a
    batch-1 3x3 conv of 24 outputs took what one of 32 did, 40 what 48, 56 what 64). With
    ``pad_conv_channels`` the deployment pads ungrouped ones up to the kernel's channels
    with zero filters instead, as lowbit's INT8 export does (``models._onnx_pad``): such a
    conv computes on the padded counts, and a stem's input is widened by one more operator
    (a Pad: one dispatch). The generic path also costs ``unaligned_conv_cycles_per_output``
    per output element (ONNX Runtime's MlasGemm writes int32 accumulators to a buffer, once
    per group, and MlasRequantizeOutput reads them back in a second pass; the direct kernel
    requantizes in registers): ~0.28 cycles on AVX-512 VNNI, where a 1->64 stem costs 1.6x a
    1->4 one (measured). Its im2col gathers a pixel's window with ``im2col_copy_cycles`` per
    copy (:func:`im2col_copies`): a window row at once when a group covers all the input
    channels, one window tap at a time otherwise -- a 3x3 grouped conv makes 9 copies per
    pixel and group where an ungrouped one makes 3. Every other integer GEMM -- a Gemm or
    MatMul layer, an attention MatMul, a generic-path conv's -- runs the runtime's GEMM
    library, at ``gemm_library_speedup`` times the direct kernel's MAC rate (ONNX Runtime's
    MlasGemm takes AMX tiles on a CPU with AMX-INT8, its direct conv kernel does not); a
    GEMM whose second operand is an activation too (attention's QK^T and AV, ONNX Runtime's
    QLinearMatMul: nothing pre-packed) at ``activation_gemm_speedup`` times it instead. A
    float GEMM that is not a convolution (a linear layer, a matmul: ONNX Runtime's SGEMM)
    runs at ``float_gemm_library_speedup`` times the float MAC rate, which float convs (its
    blocked NCHWc kernel) run at. The direct kernel takes int8 weights only: a conv whose
    weights are stored as uint8 runs the generic path whatever its channels -- one whose
    ``weight_storage`` says so (imported), or, on a profile with ``u8_weight_bits`` > 0, one
    of at least that many weight bits whose storage the deployment chooses (lowbit's export
    stores 8-bit weights as uint8 where ONNX Runtime's u8·s8 kernels saturate: on AVX2
    without VNNI; measured there at batch 64, 1.4-1.8x the int8 one, 1x1 1.5-2.2x), its GEMM
    at ``u8_gemm_library_speedup`` times the direct kernel's rate (the u8·u8 library widens
    both operands to int16; 0: at ``gemm_library_speedup``)."""

    keys = {
        "conv_channel_multiple": count_key(1, 1, 1024),
        "conv_min_out_channels": count_key(1, 1, 65536),
        "conv_out_channel_block": count_key(1, 1, 1024),
        "unaligned_conv_cycles_per_pixel": cycles_key(),
        "unaligned_conv_cycles_per_output": cycles_key(),
        "im2col_copy_cycles": cycles_key(),
        "gemm_library_speedup": Key("number", required=False, default=1.0, low=0.05, high=64),
        "activation_gemm_speedup": Key("number", required=False, default=1.0, low=0.01, high=64),
        "float_gemm_library_speedup": Key("number", required=False, default=1.0, low=0.05, high=64),
        "pad_conv_channels": Key("bool", required=False, default=False),
        "u8_weight_bits": count_key(0, 0, 16),
        "u8_gemm_library_speedup": Key("number", required=False, default=0.0, low=0.0, high=64),
    }
    conv_channel_multiple: int = 1
    conv_min_out_channels: int = 1
    conv_out_channel_block: int = 1
    unaligned_conv_cycles_per_pixel: float = 0.0
    unaligned_conv_cycles_per_output: float = 0.0
    im2col_copy_cycles: float = 0.0
    gemm_library_speedup: float = 1.0
    activation_gemm_speedup: float = 1.0
    float_gemm_library_speedup: float = 1.0
    pad_conv_channels: bool = False
    u8_weight_bits: int = 0
    u8_gemm_library_speedup: float = 0.0

    def _pads(self, layer: Layer) -> bool:
        return self.pad_conv_channels and layer.groups == 1 and not layer.as_deployed

    def run_shape(self, call: GemmCall) -> RunShape | None:
        if not (call.conv and self._pads(call.layer)):
            return None
        n, k_padded = self._padded(call)
        k = max(1, ceil(k_padded * call.compute_frac - 1e-9))
        return RunShape(n, k, k_padded // call.window)

    def blocked_outputs(self, call: GemmCall, *, shape: RunShape) -> int:
        block = self.conv_out_channel_block
        if block <= 1 or not call.conv or call.layer.groups != 1 or self._generic(call, shape):
            return 0  # the block is the direct kernel's
        return aligned_channels(shape.n, multiple=block)

    def _padded(self, call: GemmCall) -> tuple[int, int]:
        """(N, K) of the conv GEMM padded as ``models._onnx_pad`` does: outputs to a
        multiple of the step and at least the minimum (unless the layer's ``pad_out`` is
        false: a residual stream or a depthwise conv reads them); inputs as their producer
        padded them (``pad_in``) -- a stem's (fewer channels than the step: the network's
        input) to the step only, always; a low-rank layer's inner channels (its first
        GEMM's outputs, its second's inputs) are always padded."""
        layer, g, first = call.layer, call.gemm, call.first
        step, least = self.conv_channel_multiple, self.conv_min_out_channels
        in_c = call.in_channels
        # the layer's outputs, not a low-rank inner tensor (the first of two factors, named
        # after the layer: whatever the layer's own name, so the cost never depends on it)
        last = g.name != f"{layer.name}.lr0"
        if first and in_c < step:
            in_pad = aligned_channels(in_c, multiple=step, minimum=1)
        elif layer.pad_in or not first:
            in_pad = aligned_channels(in_c, multiple=step, minimum=least)
        else:
            in_pad = in_c
        out_pad = aligned_channels(g.N, multiple=step, minimum=least)
        return (out_pad if layer.pad_out or not last else g.N), in_pad * call.window

    def _generic(self, call: GemmCall, shape: RunShape) -> bool:
        """Does this integer conv GEMM run the generic path (grouped, or unaligned)?"""
        step = self.conv_channel_multiple
        return (
            call.layer.groups > 1
            or self._u8_weights(call)
            or shape.in_channels % step != 0
            or shape.n % step != 0
            or shape.n < self.conv_min_out_channels
        )

    def _u8_weights(self, call: GemmCall) -> bool:
        """Are this integer conv's weights stored as uint8 (class docstring)?"""
        storage = getattr(call.layer, "weight_storage", "")
        if storage:
            return storage == "u8"
        bits = call.layer.compression.w_bits  # the layer's own (a precision mode may widen)
        return bits is not None and 0 < self.u8_weight_bits <= bits

    def adjust_cycles(self, call: GemmCall, *, shape: RunShape, cycles: int) -> int:
        if not call.integer:
            speedup = self.float_gemm_library_speedup
            if speedup != 1.0 and call.library:
                return max(1, ceil(cycles / speedup - 1e-9))
            return cycles
        generic = call.conv and self._generic(call, shape)
        if call.gemm.weights_are_activations:
            speedup = self.activation_gemm_speedup
        elif self.u8_gemm_library_speedup > 0 and call.conv and self._u8_weights(call):
            speedup = self.u8_gemm_library_speedup
        else:
            speedup = self.gemm_library_speedup
        if speedup != 1.0 and (generic or not call.conv):
            cycles = max(1, ceil(cycles / speedup - 1e-9))
        rate = self.unaligned_conv_cycles_per_output
        if rate > 0 and generic:
            return cycles + ceil(rate * call.gemm.M * shape.n - 1e-9)
        return cycles

    def conv_rates(self, call: GemmCall, *, shape: RunShape) -> tuple[float, float]:
        if self._generic(call, shape):
            copies = im2col_copies(call.layer) if call.first else 0
            return self.unaligned_conv_cycles_per_pixel + self.im2col_copy_cycles * copies, 0.0
        return 0.0, 0.0

    def fixed_cycles(self, call: LayerCall) -> int:
        layer = call.layer
        if not (call.gemms and isinstance(layer, Conv2d) and self._pads(layer)):
            return 0
        integer = call.modes[0].w_bits < FLOAT_BITS
        return call.layer_cycles if integer and layer.in_c < self.conv_channel_multiple else 0


@dataclass(frozen=True, slots=True)
class ConvReductionBlocking(CostRule):
    """An NPU convolution's reduction blocking (integer, ungrouped convs): each kernel
    position reads its input channels in blocks of ``conv_in_channel_block`` (the IFM block
    depth of a depth-first traversal); with ``conv_part_kernel_positions`` > 0 the NPU may
    instead take that many kernel positions at a time, input channels in blocks of
    ``conv_part_kernel_channel_block`` (part kernel first, for few input channels),
    whichever is cheaper. Defaults (1, 0, 1): the im2col K as it is."""

    keys = {
        "conv_in_channel_block": count_key(1, 1, 1024),
        "conv_part_kernel_positions": count_key(0, 0, 64),
        "conv_part_kernel_channel_block": count_key(1, 1, 1024),
    }
    conv_in_channel_block: int = 1
    conv_part_kernel_positions: int = 0
    conv_part_kernel_channel_block: int = 1

    def run_shape(self, call: GemmCall) -> RunShape | None:
        blocks = self.conv_in_channel_block > 1 or self.conv_part_kernel_positions > 0
        if not (blocks and call.conv and call.layer.groups == 1):
            return None
        in_c, window = call.in_channels, call.window
        k = window * aligned_channels(in_c, multiple=self.conv_in_channel_block)
        if self.conv_part_kernel_positions > 0:
            positions = aligned_channels(window, multiple=self.conv_part_kernel_positions)
            k = min(
                k, positions * aligned_channels(in_c, multiple=self.conv_part_kernel_channel_block)
            )
        return RunShape(call.gemm.N, max(1, ceil(k * call.compute_frac - 1e-9)), in_c)


@dataclass(frozen=True, slots=True)
class WindowGather(CostRule):
    """Every integer, ungrouped convolution with a k x k window (k > 1; of a low-rank one,
    the k x k factor) costs ``conv_cycles_per_pixel`` per output pixel on top of its MACs
    (the CPU kernel gathers the pixel's window -- im2col -- and requantizes its outputs)
    and ``conv_cycles_per_image`` per image of the batch (setting up each image's gather:
    padding, buffers). ONNX Runtime's INT8 NHWC 3x3 conv costs ~20 cycles per pixel however
    few its channels; a 1 x 1 conv of stride 1 reads its rows in place, a strided one
    gathers too (ORT's indirection buffer: a ResNet's 1x1 stride-2 shortcut measured 1.3-1.6
    us more than a gather-free 1x1 on an Intel Xeon, ~28 cycles a pixel)."""

    keys = {
        "conv_cycles_per_pixel": cycles_key(),
        "conv_cycles_per_image": cycles_key(10**9),
    }
    conv_cycles_per_pixel: float = 0.0
    conv_cycles_per_image: float = 0.0

    def conv_rates(self, call: GemmCall, *, shape: RunShape) -> tuple[float, float]:
        if call.window > 1 or (call.first and not reads_in_place(call.layer)):
            return self.conv_cycles_per_pixel, self.conv_cycles_per_image
        return 0.0, 0.0


@dataclass(frozen=True, slots=True)
class OutputStage(CostRule):
    """An integer GEMM's output stage (requantization, activation, write to the output
    block) handles ``output_stage_cycles_per_output`` cycles per output element, pipelined
    with the MACs: the GEMM takes max(MAC cycles, this x outputs)."""

    keys = {"output_stage_cycles_per_output": cycles_key()}
    output_stage_cycles_per_output: float = 0.0

    def adjust_cycles(self, call: GemmCall, *, shape: RunShape, cycles: int) -> int:
        rate, g = self.output_stage_cycles_per_output, call.gemm
        if call.integer and rate > 0:
            return max(cycles, ceil(rate * g.M * g.N - 1e-9))
        return cycles


@dataclass(frozen=True, slots=True)
class Requantization(CostRule):
    """Every integer GEMM (conv, linear, matmul; each factor of a low-rank layer) costs
    ``requant_cycles_per_output`` per output element on top of its MACs: requantizing the
    int32 accumulator (scale, round, clamp, narrow). An integer GEMM that is not a
    convolution (a linear layer, a matmul: the runtime hands it to its GEMM library, which
    writes int32 accumulators that the operator then requantizes in a pass of its own) costs
    ``library_requant_cycles_per_output`` more per output, and ``library_cycles_per_row``
    per row of its first operand (the library packs each row and sums it for the zero-point
    correction). Float GEMMs pay none of them."""

    keys = {
        "requant_cycles_per_output": cycles_key(),
        "library_requant_cycles_per_output": cycles_key(),
        "library_cycles_per_row": cycles_key(),
    }
    requant_cycles_per_output: float = 0.0
    library_requant_cycles_per_output: float = 0.0
    library_cycles_per_row: float = 0.0

    def adjust_cycles(self, call: GemmCall, *, shape: RunShape, cycles: int) -> int:
        if not call.integer:
            return cycles
        rate, per_row = self.requant_cycles_per_output, 0.0
        if call.library:
            rate += self.library_requant_cycles_per_output
            per_row = self.library_cycles_per_row
        extra = rate * call.gemm.M * shape.n + per_row * call.gemm.M
        return cycles + ceil(extra - 1e-9) if extra > 0 else cycles


@dataclass(frozen=True, slots=True)
class GemmLaunch(CostRule):
    """``gemm_cycles`` once per integer GEMM a layer runs, on top of ``layer_cycles``: a
    low-rank layer is two GEMMs (two kernel launches, two requantization setups); float
    GEMMs do not pay it. An integer GEMM of two activations also pays
    ``activation_gemm_cycles`` per instance (per attention head: one library call each,
    packing its second operand)."""

    keys = {
        "gemm_cycles": count_key(0, 0, 10**9),
        "activation_gemm_cycles": count_key(0, 0, 10**9),
    }
    gemm_cycles: int = 0
    activation_gemm_cycles: int = 0

    def fixed_cycles(self, call: LayerCall) -> int:
        total = 0
        for g, m in zip(call.gemms, call.modes, strict=True):
            if m.w_bits < FLOAT_BITS:
                total += self.gemm_cycles
                if g.weights_are_activations:
                    total += g.count * self.activation_gemm_cycles
        return total


@dataclass(frozen=True, slots=True)
class NarrowActivationClamp(CostRule):
    """``narrow_activation_cycles`` once per activation operand narrower than 8 bits of an
    integer layer that computes at 8 bits or more: the runtime clamps the codes to the
    narrow grid with one more operator (the Clip ONNX Runtime runs in lowbit's INT8
    exports); both operands of an attention matmul, the input otherwise. Not for targets
    that compute at the narrow width natively."""

    keys = {"narrow_activation_cycles": count_key(0, 0, 10**9)}
    narrow_activation_cycles: int = 0

    def fixed_cycles(self, call: LayerCall) -> int:
        if not call.gemms:
            return 0
        g, mode = call.gemms[0], call.modes[0]
        if g.a_bits >= 8 or mode.a_bits < 8 or mode.w_bits >= FLOAT_BITS:
            return 0
        return (2 if g.weights_are_activations else 1) * self.narrow_activation_cycles


# every built-in rule, in the order the engines apply them (the steady state first: it is
# the profile the others cost on; padding before blocking: a padded conv is not blocked; the
# output stage's max before requantization's sum)
for _rule in (
    WarmCache,
    DepthwiseKernel,
    ActivationMatmulKernel,
    DirectConvKernel,
    FusedBiasGemm,
    ConvReductionBlocking,
    WindowGather,
    OutputStage,
    Requantization,
    GemmLaunch,
    NarrowActivationClamp,
    ElementwiseCosts,
    DecomposedLayerCycles,
    PoolChannelBlock,
    ActivationSpill,
):
    register_cost_rule(_rule)
