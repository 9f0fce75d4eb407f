"""INT8 vs FP32 ONNX Runtime latency of the residual zoo networks through lowbit's export.

``fashion-resnet`` (a 3×3 stem and basic blocks 24-48-96 with residual adds, ReLU after each
add, global average pooling; about 21 MMAC on 1×28×28: the residual test net of
tests/models/test_export_residual.py scaled up) and ``fashion-mobilenet`` (inverted residual
blocks with depthwise convs) are built with random weights (seed 0; BatchNorm statistics from
random inputs: latency does not depend on what the weights learned), compressed by each
plan (activations calibrated on random inputs) and exported with
:func:`lowbit.models.export.deploy.export_compressed`; both ONNX models then run in ONNX
Runtime on one thread (median of timed runs after a warm-up,
:func:`lowbit.models.hostcal.timing.time_session`) at batch 1 and 64.

Usage::

    .venv/bin/python benchmarks/bench_residual_int8.py [--out FILE] [--repeats N] [--models a,b]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from torch import nn

from lowbit.models.bridge import to_workload
from lowbit.models.compression.compress import compress
from lowbit.models.compression.plan import CompressionPlan
from lowbit.models.export.deploy import export_compressed
from lowbit.models.export.ort import ort_session
from lowbit.models.hostcal.isa import cpu_info
from lowbit.models.hostcal.timing import time_session
from lowbit.models.zoo import build

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("fashion-resnet", "fashion-mobilenet")
BATCHES = (1, 64)
PLANS = ("W8A8", "W4A8")


def random_model(name: str) -> tuple[nn.Module, torch.Tensor]:
    """Zoo model ``name`` with seeded random weights and BatchNorm statistics of random
    inputs, and a calibration batch."""
    model = build(name, seed=0)
    g = torch.Generator().manual_seed(0)
    model.train()
    with torch.no_grad():
        for _ in range(10):
            model(torch.rand(64, *model.input_shape, generator=g))
    return model.eval(), torch.rand(256, *model.input_shape, generator=g)


def measure(name: str, plan_name: str, *, repeats: int) -> list[dict]:
    """INT8 and FP32 median milliseconds of ``name`` compressed by ``plan_name``, per batch."""
    model, calib = random_model(name)
    small = compress(model, CompressionPlan.from_bits_string(plan_name), calib=calib)
    shape, mmac = tuple(model.input_shape), to_workload(model).macs / 1e6
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        result = export_compressed(small, out_dir=tmp, check=False)
        kernels = result.deploy["ort_kernels"]
        sessions = {
            k: ort_session(str(p))
            for k, p in (("int8", result.int8_path), ("fp32", result.fp32_path))
        }
        for batch in BATCHES:
            x = np.random.default_rng(batch).uniform(size=(batch, *shape)).astype(np.float32)
            runs = repeats if batch == 1 else max(repeats // 4, 5)
            ms = {
                k: time_session(s, x, warmup=max(runs // 5, 3), repeats=runs).median_s * 1e3
                for k, s in sessions.items()
            }
            rows.append(
                {
                    "model": name,
                    "mmac": mmac,
                    "plan": plan_name,
                    "batch": batch,
                    "fp32_ms": ms["fp32"],
                    "int8_ms": ms["int8"],
                    "speedup": ms["fp32"] / ms["int8"],
                    "runs": runs,
                    "int8_kernels": kernels["int8"],
                    "fp32_kernels": kernels["fp32"],
                }
            )
    return rows


def render(rows: list[dict], cpu: dict) -> str:
    lines = [
        f"CPU: {cpu['model']} ({cpu['isa']}; flags: {' '.join(cpu['flags'])})",
        "ONNX Runtime, 1 thread, median of timed runs",
        f"{'model':<18} {'MMAC':>5} {'plan':<5} {'batch':>5} {'FP32 ms':>9} {'INT8 ms':>9} "
        f"{'INT8 speed-up':>14}",
    ]
    for r in rows:
        lines.append(
            f"{r['model']:<18} {r['mmac']:>5.1f} {r['plan']:<5} {r['batch']:>5} "
            f"{r['fp32_ms']:>9.3f} {r['int8_ms']:>9.3f} {r['speedup']:>13.2f}x"
        )
    for name in dict.fromkeys(r["model"] for r in rows):
        kernels = next(r["int8_kernels"] for r in rows if r["model"] == name)
        lines.append(f"{name} INT8 kernels: " + ", ".join(f"{k} {v}" for k, v in kernels.items()))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "bench-results" / "bench_residual_int8.json",
        help="JSON results file (default: bench-results/bench_residual_int8.json)",
    )
    parser.add_argument("--repeats", type=int, default=200, help="timed runs at batch 1")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated zoo names")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    torch.set_num_threads(1)
    rows = [
        row
        for name in args.models.split(",")
        for plan in PLANS
        for row in measure(name, plan, repeats=args.repeats)
    ]
    cpu = cpu_info()
    sys.stdout.write(render(rows, cpu))
    payload = {
        "benchmark": "bench_residual_int8",
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "onnxruntime": onnxruntime.__version__,
        "cpu": {k: cpu[k] for k in ("model", "isa", "flags", "vnni")},
        "threads": 1,
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(args.out.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
