"""ONNX Runtime on this CPU: the session every timing and check uses, and the operator census
of the graph it runs. Torch-free, shared by the export and host calibration."""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np

__all__ = ["INPUT_NAME", "OUTPUT_NAME", "kernel_census", "ort_session", "run_batched"]

#: names of the graph input and output in every model the export writes
INPUT_NAME, OUTPUT_NAME = "input", "logits"


def ort_session(model: Any, *, threads: int = 1, optimized_path: str | None = None):
    """An ONNX Runtime CPU session on ``threads`` threads (intra and inter op), sequential
    execution, all graph optimizations (which fuse QDQ groups into integer kernels)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    if optimized_path is not None:
        opts.optimized_model_filepath = optimized_path
    data = model if isinstance(model, (str, bytes)) else model.SerializeToString()
    return ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])


def run_batched(session: Any, x: np.ndarray, *, batch_size: int) -> np.ndarray:
    """The session's first output on ``x``, run ``batch_size`` rows at a time (concatenated)."""
    outs = [
        session.run(None, {INPUT_NAME: x[i : i + batch_size]})[0]
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(outs)


def kernel_census(model: Any) -> dict[str, int]:
    """Operator counts of the graph ONNX Runtime runs after its optimizations."""
    import onnx

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "optimized.onnx")
        ort_session(model, optimized_path=path)
        optimized = onnx.load(path)
    counts: dict[str, int] = {}
    for node in optimized.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))
