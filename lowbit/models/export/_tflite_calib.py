"""Ranges of the tensors an attention model computes in float, for their TFLite int16 grids.

lowbit quantizes a ViT's linear and matmul layers only (:mod:`lowbit.models.zoo.vit`): the
patch embedding's output, the residual stream, LayerNorm's steps, the attention scores and
GELU's input and output are float in the search and in the INT8 ONNX export. A
fully-integer TFLite model needs a grid for each (:mod:`lowbit.models.export._tflite_vit`).
:func:`float_ranges` measures them on the export's calibration images: it runs the
fake-quant model (what the search measured) and records the largest magnitude of each
tensor, and for LayerNorm its steps (``d = x − mean``, ``d²``, the variance, its square
root and inverse square root, the normalized value, γ times it, the output), computed from
the LayerNorm's input as :meth:`lowbit.models.export._tflite_int16.Int16Ops.layernorm`
computes them.
The final norm reads the class token only (the TFLite model slices it out first).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["CALIB_BATCH", "float_ranges"]

CALIB_BATCH = 500
#: the float tensors recorded by module output: name suffix -> key suffix
_OUTPUTS = (
    "patch_embed",
    "embed",
    "attn.qk",
    "attn.proj",
    "add1",
    "mlp.fc1",
    "mlp.act",
    "mlp.fc2",
    "add2",
)


def _norm_steps(ln: nn.LayerNorm, x: torch.Tensor) -> dict[str, float]:
    """Largest |value| of each step of the decomposed LayerNorm of ``x`` (last axis)."""
    x = x.double()
    d = x - x.mean(-1, keepdim=True)
    var = (d * d).mean(-1, keepdim=True)
    rstd = torch.rsqrt(var + ln.eps)
    n = d * rstd
    g = n * ln.weight.double()
    out = g + ln.bias.double()
    steps = {
        "d": d,
        "sq": d * d,
        "var": var,
        "rstd": rstd,
        "std": torch.sqrt(var + ln.eps),
        "n": n,
        "g": g,
        "out": out,
    }
    return {key: float(v.abs().max()) for key, v in steps.items()}


@torch.no_grad()
def float_ranges(model: nn.Module, *, calib: torch.Tensor) -> dict[str, float]:
    """Largest |value| over ``calib`` (model inputs) of every float tensor of ViT ``model``.

    Keys: module name + ``""`` for a module's output (``patch_embed``, ``embed``,
    ``blocks.0.attn.qk`` (the attention scores), ``blocks.0.add1``, ``blocks.0.mlp.act``, ...)
    and LayerNorm name + ``.d``, ``.sq``, ``.var``, ``.rstd``, ``.std``, ``.n``, ``.g``, ``.out``.
    """
    ranges: dict[str, float] = {}

    def keep(key: str, value: float) -> None:
        ranges[key] = max(ranges.get(key, 0.0), value)

    def on_output(name: str):
        def hook(_m: nn.Module, _args: Any, out: torch.Tensor) -> None:
            keep(name, float(out.detach().abs().max()))

        return hook

    def on_norm(name: str, cls_only: bool):
        def hook(m: nn.Module, args: Any, _out: torch.Tensor) -> None:
            x = args[0].detach()
            for key, value in _norm_steps(m, x[:, :1] if cls_only else x).items():
                keep(f"{name}.{key}", value)

        return hook

    handles = []
    for name, module in model.named_modules():
        if isinstance(module, nn.LayerNorm):
            handles.append(module.register_forward_hook(on_norm(name, name == "norm")))
        elif name.endswith(_OUTPUTS) and name.split(".")[0] in ("patch_embed", "embed", "blocks"):
            handles.append(module.register_forward_hook(on_output(name)))
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(calib), CALIB_BATCH):
            model(calib[start : start + CALIB_BATCH])
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return ranges
