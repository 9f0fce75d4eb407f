"""Per-kernel microbenchmarks of ONNX Runtime's INT8 convolution and pooling kernels.

:mod:`models.hostbench` times chains of identical layers (C→C), which cannot show the
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

The kernel time excludes the dispatch between nodes (measured by
:func:`models.hostbench.glue_op_s`) and the ``Run`` call; :mod:`models.hostcal` fits the
host profile to both kinds of measurement.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import numpy as np

__all__ = ["CONV_SWEEP", "QUICK_CONV_SWEEP", "conv_sweep", "int8_maxpool_s_per_element"]

#: (in channels, out channels, kernel, spatial, batch): 3x3 stems (1 in), pruned and
#: unaligned channel counts (6, 8, 12), the direct kernel's (4k in, >= 16 out), at the zoo's
#: batch-64 sizes on 8x8 and 4x4 maps; and 1x1 convs (a low-rank conv's second factor)
CONV_SWEEP = tuple(
    (cin, cout, 3, spatial, 64)
    for spatial in (8, 4)
    for cin in (1, 4, 6, 8, 16, 32)
    for cout in (4, 8, 12, 16, 32, 64)
) + tuple((cin, cout, 1, 8, 64) for cin, cout in ((4, 16), (8, 32), (6, 16), (16, 32), (12, 64)))
QUICK_CONV_SWEEP = ((1, 16, 3, 4, 16), (16, 16, 3, 4, 16), (16, 8, 3, 4, 16), (4, 16, 1, 4, 16))


def _model(cin: int, cout: int, *, k: int = 3, pool: bool = False):
    """QDQ graph: Q → DQ → Conv(cin→cout, k x k, same padding) → Q → DQ [→ MaxPool 2x2 → Q
    → DQ → Conv(cout→cout) → Q → DQ] (the pool between two convs, as in the zoo's CNNs)."""
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

    def conv(src: str, dst: str, c_in: int, c_out: int, tag: str) -> None:
        w = rng.integers(-64, 64, size=(c_out, c_in, k, k)).astype(np.int8)
        scale = np.full(c_out, 0.02 / np.sqrt(w[0].size), np.float32)
        wq = (init(f"w{tag}", w), init(f"ws{tag}", scale),
              init(f"wz{tag}", np.zeros(c_out, np.int8)))  # fmt: skip
        bq = (init(f"b{tag}", np.zeros(c_out, np.int32)), init(f"bs{tag}", scale * 0.05),
              init(f"bz{tag}", np.zeros(c_out, np.int32)))  # fmt: skip
        nodes.append(helper.make_node("DequantizeLinear", list(wq), [f"wd{tag}"], axis=0))
        nodes.append(helper.make_node("DequantizeLinear", list(bq), [f"bd{tag}"], axis=0))
        nodes.append(
            helper.make_node("Conv", [src, f"wd{tag}", f"bd{tag}"], [f"y{tag}"], pads=[k // 2] * 4)
        )
        qdq(f"y{tag}", dst)

    qdq("x", "x0")
    conv("x0", "a0", cin, cout, "0")
    out = "a0"
    if pool:
        nodes.append(
            helper.make_node("MaxPool", ["a0"], ["p"], kernel_shape=[2, 2], strides=[2, 2])
        )
        qdq("p", "p0")
        conv("p0", "a1", cout, cout, "1")
        out = "a1"
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", cin, "h", "w"])
    y = helper.make_tensor_value_info(out, TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "kernel", [x], [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _kernel_s(model: Any, x: np.ndarray, *, repeats: int, warmup: int = 20) -> dict[str, float]:
    """Mean kernel seconds per ONNX Runtime operator type (summed over the graph's nodes
    of that type) of one run, from the per-node profiler, after ``warmup`` runs."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        options.profile_file_prefix = os.path.join(tmp, "kernels")
        session = ort.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        feed = {session.get_inputs()[0].name: x}
        for _ in range(warmup + repeats):
            session.run(None, feed)
        with open(session.end_profiling()) as f:
            events = json.load(f)
    per_run: dict[str, list[float]] = {}
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_run.setdefault(event["args"]["op_name"], []).append(event["dur"] * 1e-6)
    runs = warmup + repeats
    # the first warmup runs' events are dropped: the last `repeats` runs of each node
    return {op: float(np.sum(v[len(v) * warmup // runs :]) / repeats) for op, v in per_run.items()}


def conv_sweep(shapes=CONV_SWEEP, *, repeats: int = 100) -> list[dict[str, Any]]:
    """Kernel time of one INT8 conv per shape (module docstring): rows of
    ``in_c, out_c, k, spatial, batch, kernel_s``."""
    rows = []
    for cin, cout, k, spatial, batch in shapes:
        x = np.random.default_rng(0).random((batch, cin, spatial, spatial), np.float32)
        kernels = _kernel_s(_model(cin, cout, k=k), x, repeats=repeats)
        if "QLinearConv" not in kernels:
            raise RuntimeError(f"ONNX Runtime did not fuse the {cin}->{cout} conv: {kernels}")
        rows.append({"in_c": cin, "out_c": cout, "k": k, "spatial": spatial, "batch": batch,
                     "kernel_s": kernels["QLinearConv"]})  # fmt: skip
    return rows


def int8_maxpool_s_per_element(*, channels: int = 64, spatial: int = 8, batch: int = 64,
                               repeats: int = 100) -> dict[str, Any]:  # fmt: skip
    """Seconds per input element of the 2x2 MaxPool between two INT8 convs, and the kernel
    ONNX Runtime ran it with (``NhwcMaxPool`` on uint8 where the layout allows)."""
    x = np.random.default_rng(0).random((batch, channels, spatial, spatial), np.float32)
    kernels = _kernel_s(_model(channels, channels, pool=True), x, repeats=repeats)
    pools = {op: s for op, s in kernels.items() if "MaxPool" in op}
    if not pools:
        raise RuntimeError(f"no MaxPool kernel in the profile: {sorted(kernels)}")
    return {"s_per_element": sum(pools.values()) / x.size, "kernels": sorted(pools)}
