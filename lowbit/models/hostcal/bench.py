"""Microbenchmarks of this CPU through ONNX Runtime (one thread) and numpy.

Used by :mod:`lowbit.models.hostcal.calibration` to calibrate the host profile (each timing
through :mod:`lowbit.models.hostcal.timing`):

* :func:`least_disturbed` (from :mod:`lowbit.models.hostcal.quiet`) — each shape measured
  once per pass over all shapes, the least disturbed pass kept among those timed on a quiet
  core (a slow spell of the machine hits one pass of a shape, not both);
  :func:`chain_slopes` so for chains;
* :func:`depth_slope` — the cost of one more layer in a chain, timed robustly (both depths
  alternately in rounds, median slope, retried while scattered, never clipped);
* :func:`bench_chains` — per-layer cost of chains of identical conv / GEMM layers, INT8 QDQ
  (fused by ONNX Runtime into QLinearConv / QGemm) and FP32 (+ Relu). A chain of depth d
  costs ``run + d · layer``; two depths give ``layer`` and ``run`` (the fixed cost of a
  ``Run`` call: session dispatch, input binding, output allocation);
* :func:`glue_op_slope` — the dispatch cost of one tiny non-GEMM operator (a chain of Adds);
* :func:`copy_bandwidth` — bytes read + written per second by numpy copies of a buffer.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lowbit.hwsim.errors import LowbitError
from lowbit.models.hostcal.clock import at_reference_clock
from lowbit.models.hostcal.quiet import (
    EXTRA_PASSES,
    QUIET_WAIT_S,
    least_disturbed,
    lower_median,
    quiet_only,
)
from lowbit.models.hostcal.timing import bind, budgeted_runs, run_times_s, warm_up

__all__ = [
    "CHAIN_PASSES",
    "DEPTHS",
    "EXTRA_PASSES",
    "QUIET_WAIT_S",
    "MAX_SPREAD",
    "MeasurementError",
    "PASSES",
    "Slope",
    "FULL_SHAPES",
    "QUICK_SHAPES",
    "bench_chains",
    "chain_model",
    "chain_weight_bytes",
    "streaming_shapes",
    "copy_bandwidth",
    "copy_buffers",
    "depth_slope",
    "glue_op_slope",
    "least_disturbed",
    "lower_median",
    "quiet_only",
    "chain_slopes",
]

_KiB = 1024

#: layer chains (kind, size, spatial, batch): conv = C→C 3x3 on spatial² pixels; gemm =
#: F→F on ``batch`` rows; shapes span the zoo's layers (4-128 channels, batch 1-64), then
#: four convolutions the direct INT8 kernel does not take (models.hostcal), then
#: edge-scale layers at batch 1 (28-56 pixel maps, wide GEMMs), then layers whose 2.4-3 MB
#: of weights overflow any L2 (streamed from L3 at every run: five stay within a 16 MB L3),
#: then products of two activations (attention: ``batch`` heads of size x size matrices)
FULL_SHAPES = (
    ("conv", 8, 8, 1), ("conv", 16, 8, 1), ("conv", 32, 4, 1), ("conv", 16, 8, 16),
    ("conv", 32, 8, 64), ("conv", 16, 8, 64), ("conv", 64, 4, 64), ("conv", 32, 4, 64),
    ("gemm", 16, 1, 1), ("gemm", 64, 1, 1), ("gemm", 128, 1, 1), ("gemm", 64, 1, 64),
    ("gemm", 128, 1, 64), ("gemm", 256, 1, 64), ("gemm", 32, 1, 1088),
    ("conv", 8, 8, 16), ("conv", 8, 8, 64), ("conv", 6, 8, 64), ("conv", 12, 4, 64),
    ("conv", 32, 56, 1), ("conv", 48, 28, 1), ("conv", 96, 14, 1), ("conv", 160, 14, 1),
    ("gemm", 384, 1, 1), ("gemm", 768, 1, 1),
    ("conv", 512, 4, 1), ("conv", 576, 3, 1), ("gemm", 1536, 1, 1), ("gemm", 1536, 1, 16),
    ("matmul", 32, 1, 4), ("matmul", 64, 1, 4), ("matmul", 64, 1, 16),
)  # fmt: skip
QUICK_SHAPES = (("conv", 16, 4, 1), ("conv", 16, 8, 16), ("gemm", 16, 1, 1), ("gemm", 64, 1, 64))
DEPTHS = (1, 5)
#: passes over a calibration's shapes (:func:`least_disturbed`)
PASSES = 3
#: passes of :func:`bench_chains` (and the depthwise sweep) over their chains, the median
#: one kept per chain: the least of three picked, among slopes converted to the reference
#: clock, the pass whose conversion erred lowest -- the GEMM library's weakly determined
#: speedup then moved 6-26 % between calibrations on an Intel Xeon, 3 % with the median of 5
CHAIN_PASSES = 5


def _input_dims(kind: str, size: int, spatial: int, batch: int | str) -> list:
    """The input shape of a :func:`chain_model` chain: NCHW for a conv, (rows, features)
    for a GEMM, (1, heads, size, size) for a matmul (``batch``: the rows or heads)."""
    return {
        "conv": [batch, size, spatial, spatial],
        "matmul": [1, batch, size, size],
    }.get(kind, [batch, size])


def chain_weight_bytes(kind: str, size: int, depth: int) -> int:
    """Int8 weight bytes of a :func:`chain_model` chain of ``depth`` layers: a 3x3 conv's
    ``size² · 9`` a layer, a GEMM's ``size²``; a matmul multiplies activations (none)."""
    return {"conv": 9, "gemm": 1}.get(kind, 0) * size**2 * depth


def streaming_shapes(shapes, *, cache_bytes: int, depth: int) -> tuple:
    """The layer-chain shapes (``(kind, size, spatial, batch)``) whose chain of ``depth``
    layers holds more int8 weights than ``cache_bytes`` (a core's L2): they stream their
    weights from the shared last-level cache at every run."""
    return tuple(s for s in shapes if chain_weight_bytes(s[0], s[1], depth) > cache_bytes)


def chain_model(kind: str, size: int, spatial: int, depth: int, int8: bool):
    """ONNX model: ``depth`` identical layers (module docstring), QDQ INT8 or FP32 + Relu.
    ``matmul``: products of an activation with itself, ``x_{i+1} = x_i · x_i``, on the
    input's second axis of ``size`` x ``size`` matrices (attention's QK^T and AV, both
    operands activations: ONNX Runtime's QLinearMatMul); its codes centred on 128."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(size * 131 + depth)
    shape = _input_dims(kind, size, spatial, "b")
    w_shape = (size, size, 3, 3) if kind == "conv" else (size, size)
    inits, nodes = [], []

    def init(name: str, array: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(array, name))
        return name

    def weights(i: int) -> tuple[str, str]:
        """Layer ``i``'s random int8 weights, per-channel scales and zero bias (through a
        DequantizeLinear each when ``int8``): (weight, bias) tensor names."""
        w = rng.integers(-64, 64, size=w_shape).astype(np.int8)
        scale = np.full(size, 0.02 / math.sqrt(w[0].size), np.float32)
        if not int8:
            weight = init(f"w{i}", (w * scale.reshape((-1,) + (1,) * (w.ndim - 1))))
            return weight, init(f"b{i}", np.zeros(size, np.float32))
        wq = (init(f"w{i}", w), init(f"ws{i}", scale), init(f"wz{i}", np.zeros(size, np.int8)))
        nodes.append(helper.make_node("DequantizeLinear", list(wq), [f"wd{i}"], axis=0))
        bq = (
            init(f"b{i}", np.zeros(size, np.int32)),
            init(f"bs{i}", scale * 0.05),
            init(f"bz{i}", np.zeros(size, np.int32)),
        )
        nodes.append(helper.make_node("DequantizeLinear", list(bq), [f"bd{i}"], axis=0))
        return f"wd{i}", f"bd{i}"

    zero = 128 if kind == "matmul" else 0
    act = (init("s", np.array(0.05, np.float32)), init("z", np.array(zero, np.uint8)))
    x = "x"
    if int8:
        nodes.append(helper.make_node("QuantizeLinear", [x, *act], ["xq"]))
        nodes.append(helper.make_node("DequantizeLinear", ["xq", *act], ["x0"]))
        x = "x0"
    for i in range(depth):
        y = f"y{i}"
        if kind == "matmul":
            nodes.append(helper.make_node("MatMul", [x, x], [y]))
        elif kind == "conv":
            nodes.append(helper.make_node("Conv", [x, *weights(i)], [y], pads=[1] * 4))
        else:
            nodes.append(helper.make_node("Gemm", [x, *weights(i)], [y], transB=1))
        if int8:
            nodes.append(helper.make_node("QuantizeLinear", [y, *act], [f"q{i}"]))
            nodes.append(helper.make_node("DequantizeLinear", [f"q{i}", *act], [f"a{i}"]))
        else:
            nodes.append(helper.make_node("Relu", [y], [f"a{i}"]))
        x = f"a{i}"
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


class MeasurementError(LowbitError):
    """A calibration's measurement is unusable: a microbenchmark's per-layer time came out
    non-positive after every retry (the machine was too busy, or the runtime elided the
    layers), or a timing no CPU could have produced
    (:func:`~lowbit.models.hostcal.quality.measurement_problems`). One class for both, so
    :func:`~lowbit.models.hostcal.calibration.calibrate` measures again on either."""


@dataclass(frozen=True, slots=True)
class Slope:
    """Cost of one more layer in a chain, from chains of two depths (seconds)."""

    per_layer_s: float
    intercept_s: float
    #: interquartile range of the per-round estimates over their median (0 = perfectly
    #: repeatable); the measurement is retried with more runs while it exceeds
    #: :data:`MAX_SPREAD`
    spread: float
    attempts: int
    #: the two chain depths it was measured at
    depths: tuple[int, int] = DEPTHS

    @property
    def long_s(self) -> float:
        """Seconds of the longer chain: of several measurements of one chain, the least
        disturbed has the least."""
        return self.intercept_s + self.depths[1] * self.per_layer_s


#: largest relative spread of the per-round slope estimates accepted without a retry
MAX_SPREAD = 0.25
#: untimed runs of each chain before :func:`depth_slope` times it, fewer once they took
#: WARMUP_BUDGET_S (at least three): ten runs of the longest chains (2.5-8 ms each) took
#: two thirds as long as the five rounds timed after them
WARMUP_RUNS = 10
WARMUP_BUDGET_S = 0.01
#: a round of :func:`depth_slope` runs the longer chain for about this long at most (at
#: least three runs; :func:`~lowbit.models.hostcal.timing.budgeted_runs`): the calibration's
#: layer chains took 50 of its 141 s of measuring on an AMD Zen 3, two thirds of that in the
#: eight chains of 2.5-8 ms a run, timed 12 times a round
ROUND_BUDGET_S = 0.015
#: the most model bytes :func:`chain_slopes` keeps sessions of between its passes (kept in
#: the order first opened; the rest opened anew each pass): keeping all of a calibration's
#: layer chains open took its memory to 1.1 GB
KEPT_SESSION_BYTES = 32 * 1024**2


def depth_slope(
    build: Any,
    x: np.ndarray,
    *,
    depths: tuple[int, int] = DEPTHS,
    repeats: int,
    rounds: int = 5,
    attempts: int = 3,
    what: str = "chain",
    open_session: Callable[[int], Any] | None = None,
) -> Slope:
    """Per-layer cost of ``build(depth)`` (an ONNX model of ``depth`` identical layers) on
    input ``x`` (``open_session(depth)``: a session of it to time, when the caller keeps
    them open between measurements; a new one each time without): both depths are timed
    alternately in ``rounds`` rounds of ``repeats`` runs -- fewer for a long chain,
    :data:`ROUND_BUDGET_S` -- (so a load spike hits both alike), each round gives one
    slope, and the median slope is the answer. A non-positive
    or scattered (relative IQR above :data:`MAX_SPREAD`) answer is measured again with
    twice the runs, up to ``attempts`` times; a scattered positive one is then accepted
    (its spread is recorded), a non-positive one raises :class:`MeasurementError` naming
    ``what``: a difference of two timings is never clipped into a fake number."""
    from lowbit.models.export.ort import ort_session

    short, long = depths
    if not 0 < short < long:
        raise ValueError(f"need 0 < depths[0] < depths[1], got {depths}")
    sessions = [open_session(d) if open_session else ort_session(build(d)) for d in depths]
    bindings = [bind(s, x=x) for s in sessions]
    per_run = [
        warm_up(s, binding=b, runs=WARMUP_RUNS, budget_s=WARMUP_BUDGET_S)
        for s, b in zip(sessions, bindings, strict=True)
    ]
    # the longer chain's run sets how many runs a round takes
    repeats = budgeted_runs(repeats, per_run_s=per_run[1], budget_s=ROUND_BUDGET_S, least=3)
    for attempt in range(1, attempts + 1):
        slopes, intercepts = [], []
        for _ in range(rounds):
            t0, t1 = (
                float(np.median(run_times_s(s, binding=b, runs=repeats)))
                for s, b in zip(sessions, bindings, strict=True)
            )
            slope = (t1 - t0) / (long - short)
            slopes.append(slope)
            intercepts.append(t0 - short * slope)
        per_layer = float(np.median(slopes))
        q1, q3 = np.percentile(slopes, (25, 75))
        spread = float((q3 - q1) / per_layer) if per_layer > 0 else math.inf
        if per_layer > 0 and (spread <= MAX_SPREAD or attempt == attempts):
            intercept = max(float(np.median(intercepts)), 0.0)
            return Slope(per_layer, intercept, spread, attempt, (short, long))
        repeats *= 2
    raise MeasurementError(
        f"{what}: the per-layer time did not come out positive in {attempts} attempts "
        f"(median of depth-{long} minus depth-{short} chains <= 0); the machine may be too "
        "busy to calibrate: retry when it is quiet"
    )


def chain_slopes(
    items: Sequence[Any],
    *,
    build: Callable[[Any, int], Any],
    inputs: Callable[[Any], np.ndarray],
    what: Callable[[Any], str],
    repeats: int,
    depths: tuple[int, int] = DEPTHS,
    passes: int = PASSES,
    median: bool = False,
) -> list[Slope]:
    """:func:`depth_slope` of the chain ``build(item, depth)`` on ``inputs(item)`` for every
    item, in :func:`least_disturbed` passes: per item, the measurement whose longer chain
    ran fastest (with ``median``, the median one). Each chain is built once, its serialized
    model kept for the later passes: building them again took a fifth of a calibration's
    layer chains on an AMD Zen 3, and the INT8 depthwise chains go through ONNX Runtime's
    quantizer. Its session too, opened once and kept for the later passes (up to
    :data:`KEPT_SESSION_BYTES` of models): the layer chains opened 748 sessions in 8.1 s
    there, 199 in 4.0 s so; each pass's warm-up runs warm it again (:func:`depth_slope`)."""
    from lowbit.models.export.ort import ort_session

    built: dict[tuple[int, int], bytes] = {}
    opened: dict[tuple[int, int], Any] = {}
    kept_bytes = 0

    def model(index: int, depth: int) -> bytes:
        if (index, depth) not in built:
            built[index, depth] = build(items[index], depth).SerializeToString()
        return built[index, depth]

    def session(index: int, depth: int) -> Any:
        nonlocal kept_bytes
        if (index, depth) in opened:
            return opened[index, depth]
        data = model(index, depth)
        new = ort_session(data)
        if kept_bytes + len(data) <= KEPT_SESSION_BYTES:  # the large ones: opened each pass
            opened[index, depth] = new
            kept_bytes += len(data)
        return new

    def measure(index: int) -> Slope:
        return depth_slope(
            lambda depth: model(index, depth),
            inputs(items[index]),
            depths=depths,
            repeats=repeats,
            what=what(items[index]),
            open_session=lambda depth: session(index, depth),
        )

    return least_disturbed(
        measure, range(len(items)), key=lambda slope: slope.long_s, passes=passes, median=median
    )


def bench_chains(
    shapes,
    *,
    repeats: int,
    passes: int = CHAIN_PASSES,
    precisions: tuple[bool, ...] = (True, False),
) -> list[dict[str, Any]]:
    """Per-layer and per-run cost of every chain shape, INT8 and FP32 (``precisions``: which
    of the two, True for INT8; :func:`chain_slopes`; ``repeats`` runs per round, shared by
    the ``passes``; the median pass kept)."""
    items = [(shape, int8) for shape in shapes for int8 in precisions]

    def build(item, depth: int):
        (kind, size, spatial, _), int8 = item
        return chain_model(kind, size, spatial, depth, int8)

    def inputs(item) -> np.ndarray:
        return np.random.default_rng(0).normal(size=_input_dims(*item[0])).astype(np.float32)

    def what(item) -> str:
        (kind, size, spatial, batch), int8 = item
        return f"{'int8' if int8 else 'fp32'} {kind} chain {size}x{spatial} b{batch}"

    slopes = chain_slopes(
        items,
        build=build,
        inputs=inputs,
        what=what,
        repeats=max(repeats // passes, 5),
        passes=passes,
        median=True,
    )
    return [
        {
            "kind": kind,
            "size": size,
            "spatial": spatial,
            "batch": batch,
            "precision": "int8" if int8 else "fp32",
            "layer_s": slope.per_layer_s,
            "run_s": slope.intercept_s,
            "spread": slope.spread,
        }
        for ((kind, size, spatial, batch), int8), slope in zip(items, slopes, strict=True)
    ]


def glue_op_slope(*, repeats: int) -> Slope:
    """Cost of one tiny non-GEMM operator (dispatch only): a chain of Adds on 16 floats.
    The whole measurement takes milliseconds, so the calibration takes it at more than one
    point in time and keeps the least disturbed (:attr:`Slope.long_s`)."""
    from onnx import TensorProto, helper, numpy_helper

    def chain(depth: int):
        nodes = [
            helper.make_node("Add", ["x" if i == 0 else f"a{i}", "c"], [f"a{i + 1}"])
            for i in range(depth)
        ]
        graph = helper.make_graph(
            nodes,
            "glue",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
            [helper.make_tensor_value_info(f"a{depth}", TensorProto.FLOAT, None)],
            [numpy_helper.from_array(np.ones(16, np.float32), "c")],
        )
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    x = np.zeros((1, 16), np.float32)
    return depth_slope(chain, x, depths=(1, 17), repeats=repeats, what="Add dispatch")


#: bytes of a page, and where in its page the copy's destination starts (the source at 0)
_PAGE_BYTES = 4096
_DESTINATION_OFFSET_BYTES = 2048


def copy_buffers(nbytes: int) -> tuple[np.ndarray, np.ndarray]:
    """(source, destination) of :func:`copy_bandwidth`: ``nbytes`` each (at least 8), the
    source at the start of a page, the destination half a page in. Where they start is not
    left to the allocator: glibc put the two buffers of a cache-sized copy 16 bytes apart
    within their pages in one process and not in another, and on an AMD Zen 3 (AVX2) a copy
    whose destination sits 16 bytes off its source in the page ran at 4.8-5.3 GB/s in L1
    and L2 against 26-68 GB/s aligned (the same buffers, the same process); two calibrations
    in a row measured L1 and L2 at 3.2 / 3.8 and 13.8 / 50 GB/s so, and the fit on the slow
    pair came out with a root-mean-square log error of 0.34 against 0.21."""
    size = max(int(nbytes), 8)

    def placed(offset: int) -> np.ndarray:
        raw = np.empty(size + 2 * _PAGE_BYTES, dtype=np.uint8)
        start = (-raw.ctypes.data) % _PAGE_BYTES + offset
        return raw[start : start + size]

    src = placed(0)
    src.fill(1)
    return src, placed(_DESTINATION_OFFSET_BYTES)


def copy_bandwidth(nbytes: int, *, repeats: int) -> float:
    """Copy bandwidth (bytes read + written per second) of a ``nbytes`` buffer: the median
    of ``repeats`` timings, each at the reference clock under a
    :func:`~lowbit.models.hostcal.clock.clock_track`. The median, not the fastest: each
    timing is converted by the clock read beside it, and the fastest of 20 is the one whose
    conversion erred lowest -- on an Intel Xeon six runs in a row spread 8.6 % (L2) and
    22 % (twice the L2) by the fastest, 4.3 % and 1.1 % by the median; calibrations whose
    L2 bandwidth differed by 20 % fitted the GEMM library's constants 14-25 % apart."""
    src, dst = copy_buffers(nbytes)
    np.copyto(dst, src)
    loops = max(1, (64 * _KiB**2) // max(nbytes, 1))

    def copy_s() -> float:
        start = time.perf_counter()
        for _ in range(loops):
            np.copyto(dst, src)
        return (time.perf_counter() - start) / loops

    times = []
    for _ in range(max(repeats, 1)):
        seconds, factor = at_reference_clock(copy_s)
        times.append(seconds * factor)
    return 2 * src.nbytes / float(np.median(times))
