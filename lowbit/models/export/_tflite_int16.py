"""int16 TFLite steps for what an attention model computes in float (:mod:`._tflite_vit`).

Where lowbit keeps a tensor in float (the residual stream, LayerNorm, the attention scores,
GELU), the TFLite model holds it as int16 with zero point 0 on a grid of its own:
``MARGIN`` times the largest magnitude the calibration images gave
(:func:`lowbit.models.export._tflite_calib.float_ranges`), in 32,767 steps. An int8 grid
(255 steps) there would round each value by up to half a percent of its range, which the
next layers read on lowbit's int8 grids; int16 rounds 128 times finer, so the int8 codes a
quantized layer reads agree with the INT8 ONNX model's but for ties. Every step is a
builtin op with an int16 kernel in LiteRT: ADD/SUB (general scales, ``potScaleInt16``
off), MUL, MEAN, RSQRT, SOFTMAX, GELU, BATCH_MATMUL, FULLY_CONNECTED and CONV_2D (16x8:
int16 input, int8 weights, int64 bias), QUANTIZE between int8 and int16.

LayerNorm is decomposed as TFLite's converter decomposes it for quantized models: MEAN,
SUB, MUL (the square), MEAN, ADD ε, RSQRT, MUL, MUL γ, ADD β; with one Newton step after
RSQRT (MUL, MUL, SUB, MUL), whose int16 kernel is ~1 % off for the smallest variances.
"""

from __future__ import annotations

import numpy as np

from lowbit.models.export._qdq_grids import ActGrid, ExportError
from lowbit.models.export._tflite_ir import GraphBuilder

__all__ = ["INT16_MAX", "MARGIN", "Int16Ops"]

INT16_MAX = 32767
#: an int16 grid spans this many times the calibrated largest magnitude (test images may
#: reach beyond the calibration images'; one bit of the 15 is spent on it)
MARGIN = 2.0
_NONE = {"fusedActivationFunction": "NONE"}


class Int16Ops(GraphBuilder):
    """int16 tensors and steps; ``self.ranges`` holds the calibrated magnitudes."""

    ranges: dict[str, float]
    #: (tensor, grid key) -> the tensor requantized onto that lowbit grid
    on_grid: dict[tuple, int]

    def range_of(self, key: str) -> float:
        if key not in self.ranges:
            raise ExportError(f"TFLite export: no calibrated range for {key!r} (a bug)")
        return self.ranges[key]

    def t16(self, name: str, shape, key: str | None = None, *, peak: float | None = None) -> int:
        """An int16 activation on the grid of calibrated tensor ``key`` (or ``peak``)."""
        peak = self.range_of(key) if peak is None else peak
        scale = np.float32(max(peak, 1e-6) * MARGIN / INT16_MAX)
        return self.tensor(
            name,
            shape,
            "int16",
            scale=np.array([scale], np.float32),
            zero_point=np.zeros(1, np.int64),
        )

    def const16(self, name: str, values: np.ndarray) -> int:
        """A constant int16 tensor holding ``values`` (symmetric, per tensor)."""
        values = np.asarray(values, np.float64)
        scale = np.float32(max(float(np.abs(values).max()), 1e-12) / INT16_MAX)
        codes = np.clip(np.round(values / np.float64(scale)), -INT16_MAX, INT16_MAX)
        t = self.tensor(
            name,
            values.shape,
            "int16",
            scale=np.array([scale], np.float32),
            zero_point=np.zeros(1, np.int64),
        )
        self.g.tensors[t].data = codes.astype(np.int16)
        return t

    def widen(self, x: int) -> int:
        """int8 tensor ``x`` as int16 on the same scale, zero point 0: exact."""
        t = self.g.tensors[x]
        if t.dtype == "int16":
            return x
        out = self.tensor(
            f"{t.name}.int16",
            t.shape,
            "int16",
            scale=t.scale,
            zero_point=np.zeros(1, np.int64),
            layout=t.layout,
        )
        self.op("QUANTIZE", [x], [out])
        return out

    def to_grid(self, x: int, grid: ActGrid, name: str) -> int:
        """``x`` requantized onto lowbit's activation ``grid`` (uint8 codes − 128 = int8),
        its codes clamped to a sub-8-bit grid's range."""
        cache = self.on_grid
        if (x, grid.key()) in cache:
            return cache[(x, grid.key())]
        target = (float(np.float32(grid.scale)), grid.zero_point - 128)
        t = self.g.tensors[x]
        if t.dtype == "int8" and self.grid_of(x) == target:
            out = x
        else:
            out = self.act(name, t.shape, target, t.layout)
            self.op("QUANTIZE", [x], [out])
        cache[(x, grid.key())] = self.clamp(out, grid.qmin - 128, grid.qmax - 128)
        return cache[(x, grid.key())]

    def clamp(self, x: int, lo: int, hi: int) -> int:
        """int8 ``x`` with its codes clamped to [lo, hi] (MAXIMUM / MINIMUM)."""
        for bound, code, keep in ((lo, "MAXIMUM", lo > -128), (hi, "MINIMUM", hi < 127)):
            if keep:
                t = self.g.tensors[x]
                c = self.const(
                    f"{t.name}.{code.lower()}_bound",
                    np.array([bound], np.int8),
                    scale=t.scale,
                    zero_point=t.zero_point,
                )
                out = self.tensor(f"{t.name}.{code.lower()}", t.shape, like=x)
                self.op(code, [x, c], [out])
                x = out
        return x

    def binary(self, code: str, a: int, b: int, name: str, key: str | None, **grid) -> int:
        """int16 ADD / SUB / MUL of ``a`` and ``b`` (broadcast) onto ``key``'s grid."""
        shape = np.broadcast_shapes(tuple(self.g.tensors[a].shape), tuple(self.g.tensors[b].shape))
        out = self.t16(name, list(shape), key, **grid)
        opts = {
            "ADD": ("AddOptions", {**_NONE, "potScaleInt16": False}),
            "SUB": ("SubOptions", {**_NONE, "potScaleInt16": False}),
            "MUL": ("MulOptions", dict(_NONE)),
        }[code]
        self.op(code, [a, b], [out], opts)
        return out

    def mean_last(self, x: int, name: str, key: str | None = None) -> int:
        """MEAN over the last axis (kept), on ``key``'s grid (default: ``x``'s)."""
        t = self.g.tensors[x]
        axis = self.const(f"{name}.axis", np.array([len(t.shape) - 1], np.int32))
        shape = [*t.shape[:-1], 1]
        out = self.t16(name, shape, key) if key else self.tensor(name, shape, t.dtype, like=x)
        self.op("MEAN", [x, axis], [out], ("ReducerOptions", {"keepDims": True}))
        return out

    def layernorm(self, name: str, x: int, ln) -> int:
        """The int16 LayerNorm (``torch.nn.LayerNorm`` ``ln``) of int16 ``x`` over its last
        axis: MEAN, SUB, MUL, MEAN, ADD ε, RSQRT (+ a Newton step), MUL, MUL γ, ADD β."""
        if ln.weight is None or ln.bias is None or len(ln.normalized_shape) != 1:
            raise ExportError(f"TFLite export: LayerNorm {name!r} without an affine γ/β")
        mean = self.mean_last(x, f"{name}.mean")
        d = self.binary("SUB", x, mean, f"{name}.centered", f"{name}.d")
        sq = self.binary("MUL", d, d, f"{name}.squared", f"{name}.sq")
        var = self.mean_last(sq, f"{name}.variance", f"{name}.var")
        # ε as at least one code of the variance's grid: RSQRT then never reads zero
        vs = float(self.g.tensors[var].scale[0])
        eps_code = max(1, round(float(ln.eps) / vs))
        eps = self.tensor(
            f"{name}.eps",
            [1],
            "int16",
            scale=np.array([vs], np.float32),
            zero_point=np.zeros(1, np.int64),
        )
        self.g.tensors[eps].data = np.array([eps_code], np.int16)
        var_eps = self.binary("ADD", var, eps, f"{name}.variance_eps", f"{name}.var")
        r0 = self.t16(f"{name}.rstd", self.g.tensors[var].shape, f"{name}.rstd")
        self.op("RSQRT", [var_eps], [r0])
        # RSQRT's int16 kernel interpolates a table over the whole input range: ~1 % off
        # for the smallest variances. One Newton step, r = r0·(3 − v·r0²)/2, squares that
        # error (~1e-4); the /2 is folded into γ.
        sd = self.binary("MUL", var_eps, r0, f"{name}.std", f"{name}.std")
        one = self.binary("MUL", sd, r0, f"{name}.newton", None, peak=1.0)
        three = self.const16(f"{name}.three", np.array([3.0]))
        h = self.binary("SUB", three, one, f"{name}.newton_factor", None, peak=2.0)
        rstd = self.binary(
            "MUL", r0, h, f"{name}.rstd2", None, peak=2.0 * self.range_of(f"{name}.rstd")
        )
        n = self.binary(
            "MUL", d, rstd, f"{name}.normalized", None, peak=2.0 * self.range_of(f"{name}.n")
        )
        gamma = self.const16(f"{name}.weight", 0.5 * ln.weight.detach().double().numpy())
        g = self.binary("MUL", n, gamma, f"{name}.scaled", f"{name}.g")
        beta = self.const16(f"{name}.bias", ln.bias.detach().double().numpy())
        return self.binary("ADD", g, beta, name, f"{name}.out")
