"""The float round trip a tensor on two grids costs, as hwsim layers (for
:mod:`lowbit.models.bridge`).

ONNX Runtime keeps a tensor integer only when one QuantizeLinear writes it
(:mod:`lowbit.models.compression._grid_split`). Otherwise -- what hwsim's ONNX importer also
finds in the exported graph -- the writer runs in float:

- a conv (a low-rank one's second factor) runs as a float conv: its input is dequantized
  (a first layer's float input is quantized and dequantized, as the export writes it)
  and, read from an integer layer's channels-last output, transposed back; its weights
  are dequantized at every run; its output is quantized once per grid and transposed
  channels-last once per grid a conv reads;
- an integer add keeps its kernel, and its ReLU becomes a DequantizeLinear, a float ReLU
  and one QuantizeLinear per grid.

Codes are uint8 whatever a grid's width, so the movement layers are at 8 bits.
:func:`input_border` gives the operators it runs on the float input before the first
integer layer (its quantizer and, before a conv, its layout change).
"""

from __future__ import annotations

import math
from dataclasses import replace

from lowbit.hwsim.workload import (
    Compression,
    Conv2d,
    Elementwise,
    Layer,
    Linear,
    MatMul,
    aligned_channels,
)
from lowbit.models.compression._grid_split import SplitOutput
from lowbit.models.export._onnx_pad import CONV_CHANNEL_MULTIPLE, CONV_MIN_OUT_CHANNELS
from lowbit.models.graph import is_depthwise

__all__ = ["add_round_trip", "conv_round_trip", "input_border", "weight_elements"]

_CODES = Compression(w_bits=8, a_bits=8)
_FLOAT = Compression(w_bits=None, a_bits=None)


def _move(
    name: str, kind: str, elements: int, compression: Compression = _CODES, *, channels: int = 0
) -> Elementwise:
    return Elementwise(
        name=name, compression=compression, elements=elements, kind=kind, channels=channels
    )


def conv_round_trip(
    layer: Conv2d,
    split: SplitOutput,
    *,
    in_elements: int,
    out_elements: int,
    weights: int,
    first: bool,
) -> list[Layer]:
    """``layer`` (an integer conv whose output is ``split``) as ONNX Runtime runs it, with
    its movement layers in order. ``in_elements`` / ``out_elements``: its input and output
    elements (kept channels), ``weights``: its weight elements; ``first``: it reads the
    graph input. A low-rank layer is two convs once deployed: the first stays integer and
    only the second, which writes the split tensor, runs float."""
    name = layer.name
    factors = [g for g in layer.gemms() if g.name.endswith(".lr0")]
    head: list[Layer] = []
    if factors:  # rank r: (k x k -> r) integer, then (1x1, r -> out) float
        r = factors[0].N
        # lowbit's export pads the inner channels to the direct kernel's (models._onnx_pad)
        inner = aligned_channels(r, multiple=CONV_CHANNEL_MULTIPLE, minimum=CONV_MIN_OUT_CHANNELS)
        dense = replace(layer.compression, rank=None, rank_fraction=None)
        head = [replace(layer, name=f"{name}.first", out_c=r, compression=replace(dense, keep=1.0))]
        layer = replace(
            layer,
            name=f"{name}.second",
            compression=replace(dense, in_keep=1.0),
            in_c=inner,
            in_h=layer.out_h,
            in_w=layer.out_w,
            k_h=1,
            k_w=1,
            stride=1,
            groups=1,
        )
        in_elements = layer.batch * layer.out_h * layer.out_w * inner
        weights = max(1, math.ceil(inner * layer.out_c * layer.compression.keep))
        first = False
    before = [_move(f"{name}:quantize-input", "quantize", in_elements)] if first else []
    before.append(_move(f"{name}:dequantize-input", "dequantize", in_elements))
    if not first:  # an integer layer wrote it channels-last
        pixels = layer.batch * layer.in_h * layer.in_w  # its channels: a price depends on them
        channels = in_elements // pixels if pixels and in_elements % pixels == 0 else 0
        before.append(
            _move(f"{name}:layout-input", "transpose_inward", in_elements, channels=channels)
        )
    before.append(_move(f"{name}:dequantize-weights", "dequantize", weights))
    float_layer = replace(layer, compression=replace(layer.compression, w_bits=None, a_bits=None))
    after = [
        _move(f"{name}:layout-output-{i}", "transpose", out_elements)
        for i in range(split.conv_grids)
    ]
    after += [_move(f"{name}:quantize-{i}", "quantize", out_elements) for i in range(split.grids)]
    return [*head, *before, float_layer, *after]


def add_round_trip(layer: Elementwise, split: SplitOutput) -> list[Layer]:
    """The layers after integer add ``layer`` whose ReLU output is ``split``: dequantize,
    float ReLU, one quantize per grid."""
    n = layer.elements
    return [
        _move(f"{layer.name}:dequantize", "dequantize", n),
        _move(f"{layer.name}:relu", "relu", n, _FLOAT),
        *(_move(f"{layer.name}:quantize-{i}", "quantize", n) for i in range(split.grids)),
    ]


def weight_elements(module, compression: Compression) -> int:
    """Weight elements of a compute ``module`` under ``compression``'s kept channels (a
    depthwise conv's kept channels are its inputs too: counted once)."""
    kept = compression.keep if is_depthwise(module) else compression.keep * compression.in_keep
    return max(1, math.ceil(module.weight.numel() * kept))


def input_border(layers: list[Layer], *, input_shape: tuple[int, ...], batch: int) -> list[Layer]:
    """The operators ONNX Runtime runs on lowbit's exported graph's float input before its
    first integer layer: a QuantizeLinear and, before a conv on an image (a 4-D input), the
    layout change to channels-last (hwsim's importer finds both in the exported graph);
    none before a float first layer. On the input's own elements: the export pads a stem's
    input channels to its conv kernel's step first (1 -> 4, RGB 3 -> 4), a few hundred
    cycles at batch 1 that the bridge leaves out rather than guess which stems it pads."""
    first = next((x for x in layers if isinstance(x, (Conv2d, Linear, MatMul))), None)
    bits = first.compression.a_bits if first is not None else None
    if bits is None:
        return []
    codes = Compression(w_bits=bits, a_bits=bits)
    elements = batch * math.prod(input_shape)
    border = [
        Elementwise(name="input:quantize", compression=codes, elements=elements, kind="quantize")
    ]
    if isinstance(first, Conv2d) and len(input_shape) == 3:
        border.append(
            Elementwise(name="input:layout", compression=codes, elements=elements, kind="transpose")
        )
    return border
