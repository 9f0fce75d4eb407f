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
    on small-channel layers. 0 per MAC: costed as a GEMM."""

    keys = {
        "depthwise_channel_multiple": count_key(1, 1, 1024),
        "depthwise_cycles_per_mac": cycles_key(),
        "depthwise_cycles_per_pixel": cycles_key(),
        "depthwise_unaligned_cycles_per_mac": cycles_key(),
        "fp32_depthwise_cycles_per_mac": cycles_key(),
        "fp32_depthwise_cycles_per_pixel": cycles_key(),
        "fp32_depthwise_unaligned_cycles_per_mac": cycles_key(),
        "fp32_depthwise_cycles_per_channel_row": cycles_key(),
    }
    depthwise_channel_multiple: int = 1
    depthwise_cycles_per_mac: float = 0.0
    depthwise_cycles_per_pixel: float = 0.0
    depthwise_unaligned_cycles_per_mac: float = 0.0
    fp32_depthwise_cycles_per_mac: float = 0.0
    fp32_depthwise_cycles_per_pixel: float = 0.0
    fp32_depthwise_unaligned_cycles_per_mac: float = 0.0
    fp32_depthwise_cycles_per_channel_row: float = 0.0

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
        per_mac, per_pixel, per_row = self.cost(integer=call.integer, channels=call.layer.in_c)
        if not per_mac > 0:
            return None
        # per MAC, per output pixel shared by the layer's instances (one per channel), and
        # per output row of each of the instance's output channels
        g, layer = call.gemm, call.layer
        rows = g.N * layer.out_h * layer.batch
        cycles = per_mac * g.M * g.N * call.k_eff + per_pixel * g.M / g.count + per_row * rows
        return ceil(cycles - 1e-9)
