"""A CPU's depthwise convolution kernel: the :class:`DepthwiseKernel` cost rule
(``[overheads] depthwise_*``, ``fp32_depthwise_*``)."""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil

from ._cost_rule_base import CostRule, GemmCall, count_key, cycles_key, is_depthwise

__all__ = ["DepthwiseKernel"]


@dataclass(frozen=True, slots=True)
class DepthwiseKernel(CostRule):
    """A depthwise convolution runs its own kernel on a CPU, not a GEMM: per MAC plus per
    output pixel (all channels of one position: the window gather and requantization) plus
    per output row of each channel (a float kernel's row loop over its blocked layout), on
    top of its fixed costs; integer precisions at ``depthwise_*``, FP32 at
    ``fp32_depthwise_*``. One whose channels are not a multiple of
    ``depthwise_channel_multiple`` (the kernel's SIMD channel block) costs
    ``depthwise_unaligned_cycles_per_mac`` (FP32: ``fp32_depthwise_unaligned_cycles_per_mac``)
    per MAC instead (0: as aligned ones): ONNX Runtime on x86 packs a depthwise conv's
    weights for its fast kernel only when the channels are a multiple of 16 (measured: INT8
    1.7-1.9x the aligned rate, FP32 1.4-1.8x on an AMD Zen 3 with AVX2; INT8 3.5x on
    AVX-512 VNNI). ONNX Runtime's INT8 depthwise kernel is slower than its FP32 one
    on small-channel layers. 0 per MAC: costed as a GEMM. An FP32 one whose channels are not
    a multiple of ``fp32_depthwise_layout_multiple`` runs no blocked kernel at all but a
    grouped conv, one small GEMM per channel, at ``fp32_depthwise_generic_cycles_per_output``
    per output element and ``fp32_depthwise_generic_cycles_per_channel`` per channel and image
    (a GEMM call each) instead of the costs above (0 per output: as an unaligned one): ONNX
    Runtime takes a float conv into its NCHWc layout only when its channels are a multiple
    of 4 -- measured on an AMD Zen 3, 3x3 maps at 28 x 28 of 18, 26, 29 and 58 channels took
    9-10 cycles an output, of 12, 20, 28, 60 and 116 channels 3-4; 58 channels at 14 x 14
    ~14 an output."""

    keys = {
        "depthwise_channel_multiple": count_key(1, 1, 1024),
        "depthwise_cycles_per_mac": cycles_key(),
        "depthwise_cycles_per_pixel": cycles_key(),
        "depthwise_unaligned_cycles_per_mac": cycles_key(),
        "fp32_depthwise_cycles_per_mac": cycles_key(),
        "fp32_depthwise_cycles_per_pixel": cycles_key(),
        "fp32_depthwise_unaligned_cycles_per_mac": cycles_key(),
        "fp32_depthwise_cycles_per_channel_row": cycles_key(),
        "fp32_depthwise_layout_multiple": count_key(1, 1, 1024),
        "fp32_depthwise_generic_cycles_per_output": cycles_key(),
        "fp32_depthwise_generic_cycles_per_channel": cycles_key(),
    }
    depthwise_channel_multiple: int = 1
    depthwise_cycles_per_mac: float = 0.0
    depthwise_cycles_per_pixel: float = 0.0
    depthwise_unaligned_cycles_per_mac: float = 0.0
    fp32_depthwise_cycles_per_mac: float = 0.0
    fp32_depthwise_cycles_per_pixel: float = 0.0
    fp32_depthwise_unaligned_cycles_per_mac: float = 0.0
    fp32_depthwise_cycles_per_channel_row: float = 0.0
    fp32_depthwise_layout_multiple: int = 1
    fp32_depthwise_generic_cycles_per_output: float = 0.0
    fp32_depthwise_generic_cycles_per_channel: float = 0.0

    def generic(self, *, integer: bool, channels: int) -> bool:
        """Whether a depthwise conv of ``channels`` runs the float grouped path (docstring)."""
        priced = (
            self.fp32_depthwise_generic_cycles_per_output > 0
            or self.fp32_depthwise_generic_cycles_per_channel > 0
        )
        return not integer and priced and channels % self.fp32_depthwise_layout_multiple != 0

    def cost(self, *, integer: bool, channels: int = 0) -> tuple[float, float, float]:
        """(cycles per MAC, per output pixel, per output row of one channel) of a depthwise
        conv of ``channels``."""
        if integer:
            per_mac = self.depthwise_cycles_per_mac
            unaligned = self.depthwise_unaligned_cycles_per_mac
            per_pixel, per_row = self.depthwise_cycles_per_pixel, 0.0
        else:
            per_mac = self.fp32_depthwise_cycles_per_mac
            unaligned = self.fp32_depthwise_unaligned_cycles_per_mac
            per_pixel = self.fp32_depthwise_cycles_per_pixel
            per_row = self.fp32_depthwise_cycles_per_channel_row
        if unaligned > 0 and per_mac > 0 and channels % self.depthwise_channel_multiple:
            per_mac = unaligned
        return per_mac, per_pixel, per_row

    def own_kernel(self, call: GemmCall) -> int | None:
        if not (call.first and is_depthwise(call.layer)):
            return None
        g, layer = call.gemm, call.layer
        if self.generic(integer=call.integer, channels=layer.in_c):
            # one instance (a channel; the layer has g.count): its output pixels, and a GEMM
            # call per image
            outputs, calls = g.M * g.N, layer.batch
            cycles = (
                self.fp32_depthwise_generic_cycles_per_output * outputs
                + self.fp32_depthwise_generic_cycles_per_channel * calls
            )
            return ceil(cycles - 1e-9)
        per_mac, per_pixel, per_row = self.cost(integer=call.integer, channels=call.layer.in_c)
        if not per_mac > 0:
            return None
        # per MAC, per output pixel shared by the layer's instances (one per channel), and
        # per output row of each of the instance's output channels
        rows = g.N * layer.out_h * layer.batch
        cycles = per_mac * g.M * g.N * call.k_eff + per_pixel * g.M / g.count + per_row * rows
        return ceil(cycles - 1e-9)
