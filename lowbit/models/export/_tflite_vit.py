"""A compressed ViT as a fully-integer TFLite graph (:mod:`lowbit.models.export.tflite`).

lowbit quantizes a ViT's (:mod:`lowbit.models.zoo.vit`) linear layers and its attention
products ``qk`` and ``av``; the INT8 ONNX export computes the rest in float (the patch
embedding's output, the residual stream, LayerNorm, softmax, GELU). This builder reads the
structure from the model (pruned ``mlp.fc1`` channels and low-rank layers are physical
already) and the integer layers from :func:`lowbit.models.export.plain.deploy_copy` (the
int8 weight codes per output channel and the int32 bias the ONNX model holds, the input
grids the search measured), and emits per encoder block::

    LayerNorm (int16, :mod:`._tflite_int16`) -> QUANTIZE onto q/k/v's int8 grids
    q, k, v: FULLY_CONNECTED int8 -> int8, each onto its reader's grid (q's weight and
        bias scales times the 1/sqrt(head_dim) the model multiplies q with: same codes)
    RESHAPE + TRANSPOSE into heads; scores = BATCH_MATMUL int16 (q, kᵀ widened exactly)
    SOFTMAX int16 -> QUANTIZE onto av's int8 grid; BATCH_MATMUL int8 (probabilities, v)
        -> int8 on proj's grid; TRANSPOSE + RESHAPE back
    proj: FULLY_CONNECTED 16x8 -> int16; ADD int16 (the residual stream)
    LayerNorm -> fc1 16x8 -> GELU int16 -> QUANTIZE onto fc2's grid -> fc2 16x8; ADD int16

The patch embedding is a 16x8 CONV_2D, its tokens RESHAPEd, PADded by one token and added
to a constant holding the class token and the position embeddings; the classifier slices
the class token (STRIDED_SLICE) before the final LayerNorm and writes int16 logits
(16x8), as the CNN export does. The int16 grids of the float tensors come from the export's
calibration images (:mod:`._tflite_calib`); every int8 grid is lowbit's.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from lowbit.models.export._qdq_grids import ActGrid, ExportError, LayerQuant
from lowbit.models.export._tflite_int16 import Int16Ops
from lowbit.models.export._tflite_ir import Graph

__all__ = ["convert_vit", "is_attention_model"]

_NONE = {"fusedActivationFunction": "NONE"}


def is_attention_model(model: nn.Module) -> bool:
    """``model`` has the zoo ViT's structure (patch embedding, encoder blocks, norm, head)."""
    return all(hasattr(model, a) for a in ("patch_embed", "embed", "blocks", "norm", "head"))


class _ViT(Int16Ops):
    def __init__(self, compressed: nn.Module, ranges: dict[str, float], io: str):
        from lowbit.models.export.plain import deploy_copy

        self.g = Graph()
        self.model = compressed
        self.plain, quants, _ = deploy_copy(compressed)
        self.quants: dict[str, LayerQuant] = {q.name: q for q in quants}
        self.ranges = ranges
        self.io = io
        self.on_grid = {}

    def quant(self, name: str) -> LayerQuant:
        q = self.quants.get(name)
        if q is None or not q.integer:
            raise ExportError(
                f"TFLite export: layer {name!r} runs in float (its input or weights are not "
                "quantized): a fully-integer TFLite model needs every linear and matmul "
                "layer int8"
            )
        return q

    def input_grid(self, name: str) -> ActGrid:
        """The int8 grid layer ``name`` (or a low-rank layer's first half) reads."""
        if hasattr(self.plain.get_submodule(name), "first"):
            name += ".first"
        return self.quant(name).inputs[0]

    # -- integer layers ------------------------------------------------------------------
    def _weights(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        w = self.quant(name).weight
        levels = np.asarray(w.codes, np.int64)
        if levels.min() < -128 or levels.max() > 127:
            raise ExportError(f"TFLite export: layer {name!r}: weight codes beyond int8")
        return levels.astype(np.int8), np.asarray(w.scales, np.float32).reshape(-1)

    def _bias(
        self,
        name: str,
        module: nn.Module,
        s_x: float,
        s_w: np.ndarray,
        wide: bool,
        factor: float = 1.0,
    ):
        """int32 (int64 for 16x8) bias codes on s_x·s_w, labelled s_x·s_w·``factor``."""
        scale = (np.float64(s_x) * s_w.astype(np.float64)).astype(np.float32)
        codes = np.zeros(s_w.shape, np.float64)
        if module.bias is not None:
            codes = np.round(module.bias.detach().double().numpy() / scale.astype(np.float64))
        scale = (scale.astype(np.float64) * factor).astype(np.float32)
        dtype = np.int64 if wide else np.int32
        limit = np.iinfo(np.int32)
        codes = np.clip(codes, limit.min, limit.max).astype(dtype)
        return self.const(
            f"{name}.bias", codes, scale=scale, zero_point=np.zeros(codes.shape, np.int64)
        )

    def linear(self, name: str, x: int, out: tuple) -> int:
        """Linear layer ``name`` on int8 ``x``: ``out`` is ("int8", grid, factor) for its
        output times ``factor`` on int8 ``grid`` (the weight and bias scales carry the
        factor, the codes are the layer's), ("int16", key) for a 16x8 layer onto calibrated
        tensor ``key``'s grid, or ("logits", (scale, 0, "int16"))."""
        module = self.plain.get_submodule(name)
        if hasattr(module, "first"):  # low rank: first -> second's grid -> second
            mid = self.linear(f"{name}.first", x, ("int8", self.input_grid(f"{name}.second"), 1))
            return self.linear(f"{name}.second", mid, out)
        if not isinstance(module, nn.Linear):
            raise ExportError(f"TFLite export: layer {name!r} is not a linear layer")
        grid = self.quant(name).inputs[0]
        s_x = float(np.float32(grid.scale))
        if self.grid_of(x) != (s_x, grid.zero_point - 128):
            raise ExportError(f"TFLite export: layer {name!r} reads a tensor off its grid (a bug)")
        levels, s_w = self._weights(name)
        self.g.probes[name] = x
        wide = out[0] != "int8"
        factor = out[2] if out[0] == "int8" else 1.0
        w = self.const(
            f"{name}.weight",
            np.ascontiguousarray(levels),
            scale=(s_w.astype(np.float64) * factor).astype(np.float32),
            zero_point=np.zeros(len(s_w), np.int64),
            axis=0,
        )
        b = self._bias(name, module, s_x, s_w, wide, factor)
        shape = [*self.g.tensors[x].shape[:-1], levels.shape[0]]
        if out[0] == "int8":
            target = out[1]
            scale = float(np.float32(target.scale))
            y = self.act(name, shape, (scale, target.zero_point - 128), ("flat", None))
        elif out[0] == "int16":
            x, y = self.widen(x), self.t16(name, shape, out[1])
        else:
            x = self.widen(x)
            y = self.tensor(
                name,
                shape,
                "int16",
                scale=np.array([out[1][0]], np.float32),
                zero_point=np.zeros(1, np.int64),
            )
        opts = {**_NONE, "keepNumDims": True}
        self.op("FULLY_CONNECTED", [x, w, b], [y], ("FullyConnectedOptions", opts))
        if out[0] == "int8":
            y = self.clamp(y, target.qmin - 128, target.qmax - 128)
        return y

    def patch_embedding(self, x: int) -> int:
        """16x8 CONV_2D, tokens, class token and position embeddings: the residual stream."""
        module = self.plain.get_submodule("patch_embed")
        if not isinstance(module, nn.Conv2d) or module.padding != (0, 0) or module.groups != 1:
            raise ExportError("TFLite export: the patch embedding is not a plain Conv2d")
        levels, s_w = self._weights("patch_embed")
        self.g.probes["patch_embed"] = x
        s_x = self.grid_of(x)[0]
        b = self._bias("patch_embed", module, s_x, s_w, True)
        w = self.const(
            "patch_embed.weight",
            np.ascontiguousarray(levels.transpose(0, 2, 3, 1)),
            scale=s_w,
            zero_point=np.zeros(len(s_w), np.int64),
            axis=0,
        )
        _, h, wd, _ = self.g.tensors[x].shape
        (kh, kw), (sh, sw) = module.kernel_size, module.stride
        oh, ow, dim = (h - kh) // sh + 1, (wd - kw) // sw + 1, levels.shape[0]
        conv = self.t16("patch_embed", [1, oh, ow, dim], "patch_embed")
        opts = {
            "padding": "VALID",
            "strideH": sh,
            "strideW": sw,
            "dilationHFactor": 1,
            "dilationWFactor": 1,
            **_NONE,
        }
        self.op("CONV_2D", [self.widen(x), w, b], [conv], ("Conv2DOptions", opts))
        tokens = self.reshape(conv, [oh * ow, dim], "patch_embed.tokens")
        embed = self.model.embed
        table = embed.pos_embedding.detach().double().numpy().copy()
        table[:, :1] += embed.cls_token.detach().double().numpy()
        paddings = self.const("embed.paddings", np.array([[0, 0], [1, 0], [0, 0]], np.int32))
        padded = self.tensor("embed.padded", [1, table.shape[1], dim], "int16", like=conv)
        self.op("PAD", [tokens, paddings], [padded])
        return self.binary("ADD", padded, self.const16("embed.table", table), "embed", "embed")

    # -- shapes --------------------------------------------------------------------------
    def reshape(self, x: int, shape: list[int], name: str) -> int:
        t = self.g.tensors[x]
        new = self.const(f"{name}.shape", np.array([-1, *shape], np.int32))
        out = self.tensor(name, [1, *shape], t.dtype, like=x, layout=("flat", None))
        self.op("RESHAPE", [x, new], [out], ("ReshapeOptions", {"newShape": [-1, *shape]}))
        return out

    def transpose(self, x: int, perm: list[int], name: str) -> int:
        t = self.g.tensors[x]
        out = self.tensor(name, [t.shape[p] for p in perm], t.dtype, like=x)
        self.op("TRANSPOSE", [x, self.const(f"{name}.perm", np.array(perm, np.int32))], [out])
        return out

    def batch_matmul(self, a: int, b: int, out: int) -> int:
        self.op(
            "BATCH_MATMUL", [a, b], [out], ("BatchMatMulOptions", {"adjX": False, "adjY": False})
        )
        return out

    # -- blocks --------------------------------------------------------------------------
    def attention(self, p: str, y: int) -> int:
        """Self-attention of block ``p`` on LayerNorm output ``y`` (int16): proj's int16."""
        attn = self.model.get_submodule(f"{p}.attn")
        heads, hd = attn.heads, attn.head_dim
        tokens, dim = self.g.tensors[y].shape[1:]
        qk, av = self.quant(f"{p}.attn.qk"), self.quant(f"{p}.attn.av")

        def project(part: str, grid: ActGrid, factor: float, perm: list[int]) -> int:
            name = f"{p}.attn.{part}"
            x = self.to_grid(y, self.input_grid(name), f"{name}.input")
            out = self.linear(name, x, ("int8", grid, factor))
            return self.transpose(
                self.reshape(out, [tokens, heads, hd], f"{name}.heads"), perm, f"{name}.transposed"
            )

        q = project("q", qk.inputs[0], float(np.float32(hd**-0.5)), [0, 2, 1, 3])
        k = project("k", qk.inputs[1], 1.0, [0, 2, 3, 1])
        v = project("v", av.inputs[1], 1.0, [0, 2, 1, 3])
        self.g.probes[f"{p}.attn.qk"], self.g.probes[f"{p}.attn.qk:b"] = q, k
        shape = [1, heads, tokens, tokens]
        scores = self.batch_matmul(
            self.widen(q), self.widen(k), self.t16(f"{p}.attn.scores", shape, f"{p}.attn.qk")
        )
        probs16 = self.tensor(
            f"{p}.attn.softmax",
            shape,
            "int16",
            scale=np.array([1 / 32768], np.float32),
            zero_point=np.zeros(1, np.int64),
        )
        self.op("SOFTMAX", [scores], [probs16], ("SoftmaxOptions", {"beta": 1.0}))
        probs = self.to_grid(probs16, av.inputs[0], f"{p}.attn.probs")
        self.g.probes[f"{p}.attn.av"], self.g.probes[f"{p}.attn.av:b"] = probs, v
        grid = self.input_grid(f"{p}.attn.proj")
        mixed = self.act(
            f"{p}.attn.av",
            [1, heads, tokens, hd],
            (float(np.float32(grid.scale)), grid.zero_point - 128),
            ("flat", None),
        )
        mixed = self.clamp(self.batch_matmul(probs, v, mixed), grid.qmin - 128, grid.qmax - 128)
        merged = self.transpose(mixed, [0, 2, 1, 3], f"{p}.attn.merged")
        merged = self.reshape(merged, [tokens, dim], f"{p}.attn.proj.input")
        return self.linear(f"{p}.attn.proj", merged, ("int16", f"{p}.attn.proj"))

    def feed_forward(self, p: str, y: int) -> int:
        """fc1 (16x8) -> GELU int16 -> fc2's grid -> fc2 (16x8) of block ``p``."""
        x = self.to_grid(y, self.input_grid(f"{p}.mlp.fc1"), f"{p}.mlp.fc1.input")
        h = self.linear(f"{p}.mlp.fc1", x, ("int16", f"{p}.mlp.fc1"))
        act = self.model.get_submodule(f"{p}.mlp.act")
        if not isinstance(act, nn.GELU):
            raise ExportError(f"TFLite export: {p}.mlp.act is not a GELU")
        g = self.t16(f"{p}.mlp.act", self.g.tensors[h].shape, f"{p}.mlp.act")
        self.op("GELU", [h], [g], ("GeluOptions", {"approximate": act.approximate == "tanh"}))
        x = self.to_grid(g, self.input_grid(f"{p}.mlp.fc2"), f"{p}.mlp.fc2.input")
        return self.linear(f"{p}.mlp.fc2", x, ("int16", f"{p}.mlp.fc2"))

    def run(self, input_shape: tuple[int, ...], logits_grid: tuple) -> Graph:
        from lowbit.models.export.ort import INPUT_NAME, OUTPUT_NAME

        c, h, w = input_shape
        grid = self.input_grid("patch_embed")
        int8 = (float(np.float32(grid.scale)), grid.zero_point - 128)
        layout = ("nhwc", (c, h, w))
        if self.io == "int8":
            x = self.act(INPUT_NAME, [1, h, w, c], int8, layout)
            self.g.inputs.append(x)
        else:
            f = self.tensor(INPUT_NAME, [1, h, w, c], "float32", layout=layout)
            self.g.inputs.append(f)
            x = self.act(f"{INPUT_NAME}.int8", [1, h, w, c], int8, layout)
            self.op("QUANTIZE", [f], [x])
        stream = self.patch_embedding(x)
        for i, block in enumerate(self.model.blocks):
            p = f"blocks.{i}"
            y = self.layernorm(f"{p}.ln1", stream, block.ln1)
            stream = self.binary("ADD", stream, self.attention(p, y), f"{p}.add1", f"{p}.add1")
            y = self.layernorm(f"{p}.ln2", stream, block.ln2)
            stream = self.binary("ADD", stream, self.feed_forward(p, y), f"{p}.add2", f"{p}.add2")
        dim = self.g.tensors[stream].shape[-1]
        cls = self.tensor("class_token", [1, dim], "int16", like=stream)
        ends = self.const("class_token.end", np.array([0, 1, 0], np.int32))
        starts = self.const("class_token.begin", np.array([0, 0, 0], np.int32))
        steps = self.const("class_token.strides", np.array([1, 1, 1], np.int32))
        opts = {"beginMask": 0b101, "endMask": 0b101, "shrinkAxisMask": 0b010}
        self.op(
            "STRIDED_SLICE", [stream, starts, ends, steps], [cls], ("StridedSliceOptions", opts)
        )
        y = self.layernorm("norm", cls, self.model.norm)
        x = self.to_grid(y, self.input_grid("head"), "head.input")
        logits = self.linear("head", x, ("logits", logits_grid))
        self.g.tensors[logits].name = OUTPUT_NAME
        if self.io == "float":
            out = self.tensor(OUTPUT_NAME, self.g.tensors[logits].shape, "float32")
            self.op("DEQUANTIZE", [logits], [out])
            logits = out
        self.g.outputs.append(logits)
        return self.g


def convert_vit(
    compressed: nn.Module, *, calib: torch.Tensor, logits_grid: tuple, io: str = "int8"
) -> Graph:
    """The TFLite graph of compressed ViT ``compressed`` (module docstring), its int16 grids
    calibrated on ``calib`` (model inputs: the export's calibration images)."""
    from lowbit.models.export._tflite_calib import float_ranges

    if not is_attention_model(compressed):
        raise ExportError(
            "TFLite export: attention models are supported in the zoo's ViT layout (patch "
            "embedding, encoder blocks, norm, head) only"
        )
    if io not in ("int8", "float"):
        raise ExportError(f"unknown TFLite io {io!r} (valid: int8, float)")
    ranges = float_ranges(compressed, calib=calib)
    return _ViT(compressed, ranges, io).run(tuple(compressed.input_shape), logits_grid)
