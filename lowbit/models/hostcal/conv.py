"""Per-kernel microbenchmarks of ONNX Runtime's INT8 convolution and pooling kernels.

:mod:`lowbit.models.hostcal.bench` times chains of identical layers (C→C), which cannot show the
shapes a compressed network really has: a stem conv from 1 input channel, pruned convs
(8→12), channel-changing low-rank factors. Those run ONNX Runtime's *generic* INT8 conv
path, which costs ~45 cycles per output pixel however few its MACs, against ~20 for the
direct NHWC kernel. This module measures single layers by ONNX Runtime's own per-node
profiler (``SessionOptions.enable_profiling``: one ``*_kernel_time`` event per node and
run, in microseconds), averaged over many runs:

* :func:`conv_sweep` — the kernel time of one QDQ INT8 conv (→ ``QLinearConv``) for every
  (in channels, out channels, kernel, spatial, batch) of :data:`CONV_SWEEP`;
* :func:`int8_maxpool_s_per_element` — the 2x2 MaxPool between two INT8 convs, which
  ONNX Runtime runs on uint8 NHWC tensors (``NhwcMaxPool``), per input element.

Each measured layer sits in a network's context (:func:`_model`): its input is the output
of a conv before it (in cache, channels-last) and its output feeds another conv, so its
kernel time is what it costs inside a compressed network -- measured alone, fed from the
graph input, the same conv costs 5-10 % more.

The kernel time excludes the dispatch between nodes (measured by
:func:`lowbit.models.hostcal.bench.glue_op_slope`) and the ``Run`` call;
:mod:`lowbit.models.hostcal.calibration` fits
the host profile to both kinds of measurement.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

import numpy as np

from lowbit.models.hostcal.bench import PASSES, least_disturbed
from lowbit.models.hostcal.clock import at_reference_clock
from lowbit.models.hostcal.timing import budgeted_runs, kernel_events, serialized, warm_runs_s

__all__ = [
    "CONV_SWEEP",
    "GROUPED_SWEEP",
    "PROFILER_SHARE",
    "QUICK_CONV_SWEEP",
    "U8_CONV_SWEEP",
    "conv_sweep",
    "int8_maxpool_s_per_element",
    "probe_kernel_s",
    "probe_kernel_times",
    "profiler_overhead_s",
]

#: a profiled kernel's runs per pass are cut to what fits about this long, at least
#: KERNEL_LEAST_RUNS (:func:`~lowbit.models.hostcal.timing.budgeted_runs`): the single
#: convs took 29 s of a calibration on an AMD Zen 3, most in the millisecond ones
KERNEL_BUDGET_S = 0.03
KERNEL_LEAST_RUNS = 20
#: the untimed runs before them stop once they took this long, after at least
#: KERNEL_LEAST_WARMUP (at most the ``warmup`` asked): twenty runs of the batch-64 convs
#: (1-10 ms each) were up to seven times the timed runs' budget
KERNEL_WARMUP_BUDGET_S = 0.015
KERNEL_LEAST_WARMUP = 5

#: (in channels, out channels, kernel, spatial, batch): 3x3 stems (1 in), pruned and
#: unaligned channel counts (6, 8, 12), the direct kernel's (4k in, >= 16 out), at the zoo's
#: batch-64 sizes on 8x8 and 4x4 maps; wide convs (64 in, up to 128 out: the kernels'
#: output-channel blocking shows in their cost); 1x1 convs (a low-rank conv's second
#: factor); and three convs at batch 8
CONV_SWEEP = (
    tuple(
        (cin, cout, 3, spatial, 64)
        for spatial in (8, 4)
        for cin in (1, 4, 6, 8, 16, 32)
        for cout in (4, 8, 12, 16, 32, 64)
    )
    + tuple((64, cout, 3, spatial, 64) for spatial in (8, 4) for cout in (16, 32, 48, 96, 128))
    + tuple((cin, cout, 1, 8, 64) for cin, cout in ((4, 16), (8, 32), (6, 16), (16, 32), (12, 64)))
    # batch 8: a cost per kernel (the profiler's own) apart from one per image
    + tuple((c, c, 3, 8, 8) for c in (16, 32, 64))
)
#: grouped (not depthwise) 3x3 convs, (in, out, kernel, spatial, batch, groups): ONNX
#: Runtime's generic path once per group, its im2col one copy per window tap (an ungrouped
#: conv copies a window row at once); group widths 8-32 at the zoo's batch-64 sizes; and
#: grouped 1x1 convs (a ShuffleNet v1 unit's), whose im2col copies nothing: they tell the
#: generic path's per-pixel cost from its per-copy one
GROUPED_SWEEP = (
    (64, 64, 3, 8, 64, 2), (64, 64, 3, 8, 64, 8), (96, 96, 3, 4, 64, 3), (48, 48, 3, 8, 64, 2),
    (32, 32, 3, 8, 64, 4), (128, 128, 3, 4, 64, 4), (64, 64, 1, 8, 64, 4),
    (128, 128, 1, 4, 64, 8),
)  # fmt: skip
#: convs with uint8 weights, timed only where the export stores 8-bit weights so (u8·s8
#: kernels that saturate: :mod:`lowbit.models.hostcal._fit_u8`): 3x3 and 1x1, 16-128 channels
U8_CONV_SWEEP = (
    (16, 16, 3, 8, 64), (32, 32, 3, 8, 64), (64, 64, 3, 8, 64), (64, 128, 3, 4, 64),
    (16, 32, 1, 8, 64), (64, 64, 1, 8, 64),
)  # fmt: skip
QUICK_CONV_SWEEP = (
    (1, 16, 3, 4, 16), (16, 16, 3, 4, 16), (16, 8, 3, 4, 16), (4, 16, 1, 4, 16),
    (32, 32, 3, 4, 16, 2),
    # two more (batch, map) pairs, so that the profiler's cost per kernel is fitted with the
    # rest rather than taken from its own measurement, a difference of two timings: on an
    # AMD Zen 3 that came out at 0.0, 0.3 and 5.0 us in three quick calibrations, and the
    # 1x1 conv above (~6.5 us profiled) at 1.0x, 3.6x and 2.5x its simulated time with it
    (16, 16, 3, 8, 64), (16, 16, 3, 8, 8),
)  # fmt: skip


def _model(cin: int, cout: int, *, k: int = 3, pool: bool = False, groups: int = 1, u8=False):
    """QDQ graph around the conv under test, ``probe`` (cin→cout, k x k, same padding), in
    a network's context: its input is the output of a 16→cin 3x3 conv (hot in cache,
    channels-last), or for cin = 1 the graph input (a stem); its output feeds [a 2x2
    MaxPool, ``pool``, then] a cout→16 1x1 conv. Every conv is Q/DQ-wrapped (→ QLinearConv);
    the probe has ``groups`` groups; with ``u8`` its weights are stored as uint8 (zero point
    128, the same levels), which ONNX Runtime runs on its u8·u8 path."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(cin * 97 + cout)
    inits, nodes = [], []

    def init(name: str, array: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(array, name))
        return name

    act = (init("s", np.array(0.05, np.float32)), init("z", np.array(0, np.uint8)))

    def qdq(src: str, dst: str) -> None:
        nodes.append(helper.make_node("QuantizeLinear", [src, *act], [f"{dst}_q"]))
        nodes.append(helper.make_node("DequantizeLinear", [f"{dst}_q", *act], [dst]))

    def conv(src: str, dst: str, c_in: int, c_out: int, size: int, name: str, g: int = 1) -> None:
        w = rng.integers(-64, 64, size=(c_out, c_in // g, size, size)).astype(np.int8)
        scale = np.full(c_out, 0.02 / np.sqrt(w[0].size), np.float32)
        zero = np.zeros(c_out, np.int8)
        if u8 and name == "probe":
            w, zero = (w.astype(np.int16) + 128).astype(np.uint8), np.full(c_out, 128, np.uint8)
        wq = (init(f"{name}_w", w), init(f"{name}_ws", scale), init(f"{name}_wz", zero))
        bq = (
            init(f"{name}_b", np.zeros(c_out, np.int32)),
            init(f"{name}_bs", scale * 0.05),
            init(f"{name}_bz", np.zeros(c_out, np.int32)),
        )
        nodes.append(helper.make_node("DequantizeLinear", list(wq), [f"{name}_wd"], axis=0))
        nodes.append(helper.make_node("DequantizeLinear", list(bq), [f"{name}_bd"], axis=0))
        nodes.append(
            helper.make_node(
                "Conv",
                [src, f"{name}_wd", f"{name}_bd"],
                [f"{name}_y"],
                pads=[size // 2] * 4,
                group=g,
                name=name,
            )
        )
        qdq(f"{name}_y", dst)

    qdq("x", "x0")
    src, channels = "x0", 1
    if cin > 1:
        conv("x0", "a_pre", 16, cin, 3, "pre")
        src, channels = "a_pre", 16
    conv(src, "a_probe", cin, cout, k, "probe", groups)
    src = "a_probe"
    if pool:
        nodes.append(
            helper.make_node(
                "MaxPool", [src], ["p"], kernel_shape=[2, 2], strides=[2, 2], name="pool"
            )
        )
        qdq("p", "p0")
        src = "p0"
    conv(src, "out", cout, 16, 1, "post")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", channels, "h", "w"])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "kernel", [x], [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _input(cin: int, spatial: int, batch: int) -> np.ndarray:
    """The graph input of :func:`_model` (16 channels unless the probe is a stem)."""
    channels = 1 if cin == 1 else 16
    return np.random.default_rng(0).random((batch, channels, spatial, spatial), np.float32)


def _kernel_s(model: Any, x: np.ndarray, *, repeats: int, warmup: int = 20) -> dict[str, Any]:
    """:func:`_kernel_times`' kernels (the clock factor left out)."""
    return _kernel_times(model, x, repeats=repeats, warmup=warmup)[0]


def _kernel_times(
    model: Any, x: np.ndarray, *, repeats: int, warmup: int = 20
) -> tuple[dict[str, Any], float]:
    """(kernels, clock factor): median kernel seconds of one run per node of ``model`` (keyed
    by the node name ONNX Runtime gives it: the original name plus a suffix after fusion)
    with its operator, from the per-node profiler, after up to ``warmup`` runs (at least
    :data:`KERNEL_LEAST_WARMUP`, fewer once they took :data:`KERNEL_WARMUP_BUDGET_S`), at
    the reference clock under a clock track -- seconds as timed are these over the factor."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        options.profile_file_prefix = os.path.join(tmp, "kernels")
        data = model if isinstance(model, bytes) else model.SerializeToString()
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: x}

        def timed_run() -> float:
            start = time.perf_counter()
            session.run(None, feed)
            return time.perf_counter() - start

        # up to `warmup` runs, fewer for a long kernel (KERNEL_WARMUP_BUDGET_S)
        warm = warm_runs_s(
            timed_run, runs=warmup, budget_s=KERNEL_WARMUP_BUDGET_S, least=KERNEL_LEAST_WARMUP
        )
        warmup = len(warm)
        per_run = float(np.median(warm)) if warm else 0.0  # not the cold first run's
        repeats = budgeted_runs(
            repeats, per_run_s=per_run, budget_s=KERNEL_BUDGET_S, least=KERNEL_LEAST_RUNS
        )

        def timed() -> None:
            for _ in range(repeats):
                session.run(None, feed)

        factor = at_reference_clock(timed)[1]  # the kernels' seconds at the reference clock
        events = kernel_events(session.end_profiling())
    per_run: dict[str, list[float]] = {}
    ops: dict[str, str] = {}
    for node, op, seconds in events:
        per_run.setdefault(node, []).append(seconds)
        ops[node] = op
    runs = warmup + repeats
    # the warmup runs' events are dropped: the last `repeats` runs of each node, the mean of
    # their middle half (one event per node and run): a load spike that hits a few runs is
    # not in it, and the profiler's whole microseconds average out to a finer time (a median
    # is one of them: 1 us of a 15 us kernel)
    kernels = {
        node: (ops[node], factor * interquartile_mean(v[len(v) * warmup // runs :]))
        for node, v in per_run.items()
    }
    return kernels, factor


def interquartile_mean(values) -> float:
    """The mean of the middle half of ``values`` (sorted; at least one value)."""
    ordered = np.sort(np.asarray(values, dtype=float))
    quarter = len(ordered) // 4
    return float(np.mean(ordered[quarter : len(ordered) - quarter]))


def _node(kernels: dict[str, Any], name: str) -> tuple[str, float]:
    """The (operator, seconds) of the node named ``name`` (before fusion's suffix)."""
    found = [v for node, v in kernels.items() if node == name or node.startswith(f"{name}_")]
    if len(found) != 1:
        raise RuntimeError(f"node {name!r} not found once in the profile: {sorted(kernels)}")
    return found[0]


def probe_kernel_s(model: Any, x: np.ndarray, *, repeats: int, kernel: str, what: str) -> float:
    """Seconds of one run of ``model``'s node named ``probe`` (:func:`_kernel_s`), checked to
    be the ``kernel`` ONNX Runtime was meant to run it with (``what``: the probe, for the
    error)."""
    return probe_kernel_times(model, x, repeats=repeats, kernel=kernel, what=what)[0]


def probe_kernel_times(
    model: Any, x: np.ndarray, *, repeats: int, kernel: str, what: str
) -> tuple[float, float]:
    """(:func:`probe_kernel_s`, the clock factor it was converted by)."""
    kernels, factor = _kernel_times(model, x, repeats=repeats)
    op, seconds = _node(kernels, "probe")
    if op != kernel:
        raise RuntimeError(f"ONNX Runtime ran the {what} as {op}, not {kernel}")
    return seconds, factor


def conv_sweep(
    shapes=CONV_SWEEP,
    *,
    repeats: int = 100,
    profiler_s: float = 0.0,
    passes: int = PASSES,
    u8: bool = False,
) -> list[dict[str, Any]]:
    """Kernel time of one INT8 conv per shape (module docstring): rows of
    ``in_c, out_c, k, spatial, batch, groups, kernel_s`` (less the profiler's own ``profiler_s``,
    :func:`profiler_overhead_s`; the time it reported is ``profiled_kernel_s``, the clock
    factor it was converted by ``clock_factor``): the least as timed of ``passes`` medians of
    ``repeats / passes`` runs, one per pass over all shapes
    (:func:`~lowbit.models.hostcal.bench.least_disturbed`). ``u8``: the weights stored as
    uint8 (rows marked ``"weights": "u8"``)."""

    def measure(shape: tuple[int, ...]) -> dict[str, Any]:
        cin, cout, k, spatial, batch, *grouped = shape
        groups = grouped[0] if grouped else 1
        seconds, factor = probe_kernel_times(
            serialized(_model, cin, cout, k=k, groups=groups, u8=u8),
            _input(cin, spatial, batch),
            repeats=max(repeats // passes, 5),
            kernel="QLinearConv",
            what=f"{cin}->{cout} conv",
        )
        return {
            "in_c": cin,
            "out_c": cout,
            "k": k,
            "spatial": spatial,
            "batch": batch,
            "groups": groups,
            "kernel_s": without_profiler(seconds, profiler_s),
            "profiled_kernel_s": seconds,
            "clock_factor": factor,
            **({"weights": "u8"} if u8 else {}),
        }

    # the least as timed (not converted: the least of converted times is the one whose clock
    # reading erred lowest, lowbit.models.hostcal.check.measure_all)
    return least_disturbed(
        measure,
        shapes,
        key=lambda row: row["profiled_kernel_s"] / row["clock_factor"],
        passes=passes,
    )


def int8_maxpool_s_per_element(
    *,
    channels: int = 64,
    spatial: int = 8,
    batch: int = 64,
    repeats: int = 100,
    profiler_s: float = 0.0,
) -> dict[str, Any]:
    """Seconds per input element of the 2x2 MaxPool between two INT8 convs (its kernel time
    less the profiler's own ``profiler_s``), and the kernel ONNX Runtime ran it with
    (``NhwcMaxPool`` on uint8 where the layout allows); with the profiled kernel seconds
    and the pool's input elements, to take a better estimate of the profiler's time off."""
    x = _input(channels, spatial, batch)
    kernels = _kernel_s(_model(channels, channels, pool=True), x, repeats=repeats)
    op, seconds = _node(kernels, "pool")
    pooled = batch * channels * spatial * spatial  # the pool's input elements
    return {
        "s_per_element": without_profiler(seconds, profiler_s) / pooled,
        "kernels": [op],
        "profiled_s": seconds,
        "elements": pooled,
    }


#: the most of a profiled kernel time the profiler's own cost can plausibly be for the
#: reference conv (~85 us kernel, 3-8 us of profiler): above it, a disturbed measurement
PROFILER_SHARE = 0.15


def profiler_overhead_s(*, repeats: int, op_s: float, attempts: int = 3) -> float:
    """What ONNX Runtime's per-node profiler adds to each kernel time it reports: the
    profiled kernel time of a reference INT8 conv (16 -> 16, 3x3, 8x8 maps, batch 64) less
    its true cost, the per-layer slope of a chain of it (:func:`depth_slope`) without its
    dispatch ``op_s``. Measured here at 3-5 us per node (Zen 4), a 5-10 % inflation of a
    batch-64 conv and far more of a small one; :func:`conv_sweep`'s callers subtract it.
    Measured ``attempts`` times: the median of the answers within :data:`PROFILER_SHARE`
    of the profiled time (above it: a load spike in one of the two timings)."""
    from lowbit.models.hostcal.bench import chain_model, depth_slope

    x = np.random.default_rng(0).normal(size=(64, 16, 8, 8)).astype(np.float32)
    found, plausible = [], []
    for _ in range(attempts):
        slope = depth_slope(
            lambda d: chain_model("conv", 16, 8, d, True),
            x,
            repeats=repeats,
            what="profiler reference chain",
        )
        kernels = _kernel_s(chain_model("conv", 16, 8, 5, True), x, repeats=repeats)
        profiled = float(np.median([sec for op, sec in kernels.values() if op == "QLinearConv"]))
        found.append(max(profiled - (slope.per_layer_s - op_s), 0.0))
        if found[-1] <= PROFILER_SHARE * profiled:
            plausible.append(found[-1])
    # a difference of two ~85 us timings: about +-1 us apart from one measurement to the
    # next, which would shift every small kernel of the sweep by as much -- the median of
    # the plausible ones; a load spike in one of the two timings shows as an overhead far
    # above the profiler's few microseconds (none plausible: the smallest, least disturbed)
    return float(np.median(plausible)) if plausible else min(found)


def without_profiler(seconds: float, overhead_s: float) -> float:
    """A profiled kernel time less the profiler's own ``overhead_s``, never below a quarter
    of the profiled time (a bounded correction, not a fabricated number)."""
    return max(seconds - overhead_s, 0.25 * seconds)
