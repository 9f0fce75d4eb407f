"""Single INT8 linear layers of unequal sides, as a Gemm and as a MatMul, timed by ONNX
Runtime's per-node profiler.

The layer chains (:mod:`lowbit.models.hostcal.bench`) time F→F Gemms: square weights, as
many first-operand elements (rows x in features) as outputs (rows x out features), as many
output columns as in features. There the GEMM library's costs per output, per output
column and per first-operand element trade off against each other and against its MAC
rate: fed its own data with 2 % noise, the fit's library speedup moved by 12 % (CV),
correlated 0.94 with the per-output cost. Single layers of equal MACs with in and out
features swapped tell them apart, and the same shapes as a bare MatMul tell what a Gemm
adds: ONNX Runtime runs a Gemm with its bias as QGemm, which applies the bias and
per-column scales itself, and a MatMul as QLinearMatMul (a network's bias then an Add of
its own). On an Intel Xeon (AMX-INT8), 1 row of 256→1024 took 46 k cycles as a QGemm, 35 k
as a QLinearMatMul, of 1024→256 30 k and 25 k (the profiler's ~11 k included in each):
a QGemm costs ~12 cycles more per output column.

:func:`gemm_sweep` measures each shape of :data:`GEMM_SWEEP` (none of the held-out
check's) in both forms the way :func:`lowbit.models.hostcal.conv.conv_sweep` measures
single convs: its kernel time per run from the profiler, less the profiler's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lowbit.models.hostcal.bench import least_disturbed, lower_median
from lowbit.models.hostcal.conv import probe_kernel_s, without_profiler
from lowbit.models.hostcal.timing import serialized

__all__ = [
    "FORMS",
    "GEMM_PASSES",
    "GEMM_ROUNDS",
    "GEMM_SWEEP",
    "gemm_model",
    "gemm_sweep",
    "merged_rounds",
    "middle_mean",
]

#: (rows, in features, out features): 1 to 128 rows, most in pairs of equal MACs with in
#: and out features swapped (the costs per output column and per first-operand element
#: apart from the MACs')
GEMM_SWEEP = (
    (1, 256, 1024), (1, 1024, 256), (4, 512, 512), (4, 1024, 64), (16, 64, 1024),
    (16, 1024, 256), (64, 64, 1024), (64, 1024, 64), (64, 256, 256), (64, 512, 512),
    (128, 1024, 256), (128, 256, 1024),
)  # fmt: skip


#: rounds of :func:`gemm_sweep` a calibration spreads over its run (~0.8 s each on an Intel
#: Xeon), one after each phase, merged by :func:`merged_rounds`: eight sweeps back to back
#: there agreed within 1.7 % per shape (median), but two calibrations' single sweeps moved
#: 2-3 % per shape, and the fit's GEMM-library constants 5-40 % with them (a drift of a
#: shared machine slower than a sweep: more passes in one sweep, or longer ones, did not
#: steady them; four rounds brought the library's speedup within 4 % in four pairs)
GEMM_ROUNDS = 8


#: the ONNX operator of each form of linear layer and the kernel ONNX Runtime runs it with
#: (its QDQ fusion): a Gemm with its bias (QGemm) and a bare MatMul (QLinearMatMul)
FORMS = {"gemm": ("Gemm", "QGemm"), "matmul": ("MatMul", "QLinearMatMul")}


def gemm_model(rows: int, fan_in: int, out: int, *, form: str = "gemm"):
    """ONNX model of one QDQ INT8 linear layer (``fan_in`` → ``out``, per-channel int8
    weights) on ``rows`` rows, between a QuantizeLinear and a DequantizeLinear as in a
    quantized network: a Gemm with a bias (``form`` "gemm": ONNX Runtime fuses it to QGemm)
    or a bare MatMul ("matmul": QLinearMatMul); the node is named ``probe``."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(rows * 7 + fan_in * 3 + out)
    inits = []

    def init(name: str, array: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(array, name))
        return name

    scale = np.full(out, 0.02 / np.sqrt(fan_in), np.float32)
    gemm = form == "gemm"
    # a Gemm's weights (out, in), transposed by transB; a MatMul's (in, out)
    w = rng.integers(-64, 64, size=(out, fan_in) if gemm else (fan_in, out)).astype(np.int8)
    act = (init("s", np.array(0.05, np.float32)), init("z", np.array(0, np.uint8)))
    nodes = [
        helper.make_node("QuantizeLinear", ["x", *act], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", *act], ["xd"]),
        helper.make_node(
            "DequantizeLinear",
            [init("w", w), init("ws", scale), init("wz", np.zeros(out, np.int8))],
            ["wd"],
            axis=0 if gemm else 1,
        ),
    ]
    if gemm:
        nodes += [
            helper.make_node(
                "DequantizeLinear",
                [
                    init("b", np.zeros(out, np.int32)),
                    init("bs", scale * 0.05),
                    init("bz", np.zeros(out, np.int32)),
                ],
                ["bd"],
                axis=0,
            ),
            helper.make_node("Gemm", ["xd", "wd", "bd"], ["y"], transB=1, name="probe"),
        ]
    else:
        nodes.append(helper.make_node("MatMul", ["xd", "wd"], ["y"], name="probe"))
    nodes += [
        helper.make_node("QuantizeLinear", ["y", *act], ["yq"]),
        helper.make_node("DequantizeLinear", ["yq", *act], ["out"]),
    ]
    graph = helper.make_graph(
        nodes,
        "gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, fan_in])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


#: passes of one :func:`gemm_sweep` round (the median per GEMM): the rounds' spread over the
#: calibration steadies the GEMMs (:data:`GEMM_ROUNDS`), not more passes in one; five passes
#: a round were 12 s of a calibration's 135 s of measuring on an AMD Zen 3
GEMM_PASSES = 3


def gemm_sweep(
    shapes=GEMM_SWEEP, *, repeats: int = 100, profiler_s: float = 0.0, passes: int = GEMM_PASSES
) -> list[dict[str, Any]]:
    """Kernel time of one INT8 linear layer per ``(rows, in features, out features)`` shape
    and form (:data:`FORMS`: a Gemm and a MatMul each): rows of ``rows, in_features,
    out_features, form, kernel_s`` (less the profiler's own ``profiler_s``; what it
    reported is ``profiled_kernel_s``), the median of ``passes`` passes over all of them,
    ``repeats / passes`` runs each (:func:`~lowbit.models.hostcal.bench.least_disturbed`)."""

    def measure(item: tuple[tuple[int, int, int], str]) -> dict[str, Any]:
        (rows, fan_in, out), form = item
        onnx_op, kernel = FORMS[form]
        seconds = probe_kernel_s(
            serialized(gemm_model, rows, fan_in, out, form=form),
            np.random.default_rng(0).random((rows, fan_in), np.float32),
            repeats=max(repeats // passes, 5),
            kernel=kernel,
            what=f"{fan_in}->{out} {onnx_op}",
        )
        return {
            "rows": rows,
            "in_features": fan_in,
            "out_features": out,
            "form": form,
            "kernel_s": without_profiler(seconds, profiler_s),
            "profiled_kernel_s": seconds,
        }

    items = [(shape, form) for shape in shapes for form in FORMS]
    return least_disturbed(
        measure, items, key=lambda row: row["kernel_s"], passes=passes, median=True
    )


def middle_mean(values: Sequence[float]) -> float:
    """The mean of the middle half of ``values`` (a quarter left out at each end, rounded
    down); the median (the lower middle of an even count) of fewer than four. A round a slow
    spell disturbed is left out as by a median, and the rest average each other's noise:
    refitted, 22 calibrations of an Intel Xeon (AMX-INT8) had their single GEMMs' rounds
    merged by the median and by the middle half's mean, and the pairs' constants over 5 %
    went from 31 to 30 of 385 (with :mod:`lowbit.models.hostcal._fit`'s prior on a Gemm's
    own costs, 27 -> 26)."""
    ordered = sorted(float(v) for v in values)
    if not ordered:
        raise ValueError("need at least one value")
    cut = len(ordered) // 4
    if cut == 0:
        return lower_median(ordered, key=float)
    middle = ordered[cut : len(ordered) - cut]
    return sum(middle) / len(middle)


def merged_rounds(rounds, *, profiler_s: float = 0.0) -> list[dict[str, Any]]:
    """One row per shape and form of several :func:`gemm_sweep` rounds (the same shapes in
    the same order, timed at different times of a calibration): the rounds'
    ``profiled_kernel_s`` merged by :func:`middle_mean`, less the profiler's own
    ``profiler_s`` (``kernel_s``); ``rounds_profiled_kernel_s`` keeps every round's."""
    rounds = [list(r) for r in rounds]
    if not rounds or not rounds[0]:
        return []
    out = []
    for rows in zip(*rounds, strict=True):
        keys = {(r["rows"], r["in_features"], r["out_features"], r["form"]) for r in rows}
        if len(keys) != 1:
            raise ValueError(f"the rounds timed different GEMMs: {sorted(keys)}")
        profiled = middle_mean([r["profiled_kernel_s"] for r in rows])
        out.append(
            {
                **rows[0],
                "kernel_s": without_profiler(profiled, profiler_s),
                "profiled_kernel_s": profiled,
                "rounds_profiled_kernel_s": [r["profiled_kernel_s"] for r in rows],
            }
        )
    return out
