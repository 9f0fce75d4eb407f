"""The float round trip a tensor on two grids costs, as hwsim layers (for
:mod:`lowbit.models.bridge`).

ONNX Runtime keeps a tensor integer only when one QuantizeLinear writes it
(:mod:`lowbit.models.compression._grid_split`). Otherwise -- what hwsim's ONNX importer also
finds in the exported graph -- the writer runs in float:

- a conv (or linear) layer runs as a float conv: its input is dequantized (a first layer's
  float input is quantized and dequantized, as the export writes it) and, read from an
  integer layer's channels-last output, transposed back; its weights are dequantized at
  every run; its output is quantized once per grid and transposed channels-last once per
  grid a conv reads;
- an integer add keeps its kernel, and its ReLU becomes a DequantizeLinear, a float ReLU
  and one QuantizeLinear per grid.

Codes are uint8 whatever a grid's width, so the movement layers are at 8 bits.
"""

from __future__ import annotations

import math
from dataclasses import replace

from lowbit.hwsim.workload import Compression, Elementwise, Layer
from lowbit.models.compression._grid_split import SplitOutput

__all__ = ["add_round_trip", "conv_round_trip", "weight_elements"]

_CODES = Compression(w_bits=8, a_bits=8)
_FLOAT = Compression(w_bits=None, a_bits=None)


def _move(name: str, kind: str, elements: int, compression: Compression = _CODES) -> Elementwise:
    return Elementwise(name=name, compression=compression, elements=elements, kind=kind)


def conv_round_trip(
    layer: Layer,
    split: SplitOutput,
    *,
    in_elements: int,
    out_elements: int,
    weights: int,
    first: bool,
) -> list[Layer]:
    """``layer`` (an integer compute layer whose output is ``split``) as the float conv
    ONNX Runtime runs, with its movement layers in order. ``in_elements`` /
    ``out_elements``: its input and output elements (kept channels), ``weights``: its
    weight elements; ``first``: it reads the graph input."""
    name = layer.name
    before = [_move(f"{name}:quantize-input", "quantize", in_elements)] if first else []
    before.append(_move(f"{name}:dequantize-input", "dequantize", in_elements))
    if not first:  # an integer layer wrote it channels-last
        before.append(_move(f"{name}:layout-input", "transpose", in_elements))
    before.append(_move(f"{name}:dequantize-weights", "dequantize", weights))
    float_layer = replace(layer, compression=replace(layer.compression, w_bits=None, a_bits=None))
    after = [
        _move(f"{name}:layout-output-{i}", "transpose", out_elements)
        for i in range(split.conv_grids)
    ]
    after += [_move(f"{name}:quantize-{i}", "quantize", out_elements) for i in range(split.grids)]
    return [*before, float_layer, *after]


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
    """Weight elements of a compute ``module`` under ``compression``'s kept channels."""
    return max(1, math.ceil(module.weight.numel() * compression.keep * compression.in_keep))
