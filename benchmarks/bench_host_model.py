"""How well the host-CPU profile predicts networks and layers it never saw, on this CPU.

Three tables (every one names the CPU and its integer ISA):

1. **Repeatability** (``--calibrations 2``): the host calibration run twice in a row; each
   fitted constant of the two profiles side by side (the goal: within 5 % on a quiet machine).
2. **Held-out check** (:mod:`lowbit.models.hostcal.check`): six architectures (ResNet-18,
   MobileNetV2, ShuffleNetV2, an Inception-style net, VGG, a transformer encoder) and 20
   single layers, INT8 by ONNX Runtime's own ``quantize_static``, against FP32, batch 1.
3. **The zoo through lowbit's export and through ORT's quantizer**: ``fashion-resnet``,
   ``fashion-mobilenet`` and ``digits-cnn`` (seeded random weights: latency does not depend
   on what they learned), compressed W8A8 and W4A8 and exported by
   :func:`lowbit.models.export.deploy.export_compressed`; each INT8 file is simulated by
   importing it (``lowbit simulate --workload model.int8.onnx``) and, for lowbit's export, also
   from the search's own workload (:func:`lowbit.models.bridge.to_workload`, what
   ``lowbit validate`` compares). The exported FP32 model is also quantized by ONNX Runtime's
   ``quantize_static`` and checked the same way.

Usage::

    .venv/bin/python benchmarks/bench_host_model.py [--calibrations 2] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import onnxruntime
import torch

from lowbit import hwsim
from lowbit.hwsim._cost_rules import ElementwiseCosts
from lowbit.hwsim.profiles import load_profile
from lowbit.models.bridge import to_workload
from lowbit.models.compression.compress import compress
from lowbit.models.compression.plan import CompressionPlan
from lowbit.models.export.deploy import export_compressed
from lowbit.models.hostcal.calibration import calibrate, default_profile_path, write
from lowbit.models.hostcal.check import (
    CheckRow,
    Prepared,
    check,
    simulate_s,
    summarize,
    table,
    timed_rows,
)
from lowbit.models.hostcal.graphs import quantize_int8
from lowbit.models.hostcal.isa import cpu_info

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_residual_int8 import random_model  # noqa: E402  (the same seeded zoo nets)


def _rate(kind: str, *, integer: bool):
    """A profile -> its cycles per element of memory-only layers of ``kind``."""
    return lambda p: ElementwiseCosts.of(p.overheads).element_rate(kind, integer=integer)


ROOT = Path(__file__).resolve().parent.parent
ZOO = ("fashion-resnet", "fashion-mobilenet", "digits-cnn")
PLANS = ("W8A8", "W4A8")
#: fitted constants compared between two calibrations
CONSTANTS = (
    # per core (the rate per lane times the fitted N blocking's lanes: two calibrations may
    # choose different blockings, which halves or doubles the rate per lane)
    ("INT8 MACs/cycle", lambda p: p.compute.resolve(8, 8).macs_per_pe_per_cycle * p.compute.cols),
    (
        "FP32 MACs/cycle",
        lambda p: p.compute.resolve(32, 32).macs_per_pe_per_cycle * p.compute.cols,
    ),
    ("clock GHz", lambda p: p.clock_hz / 1e9),
    *(
        (key, lambda p, key=key: getattr(p.overheads, key))
        for key in (
            "layer_cycles",
            "gemm_cycles",
            "run_cycles",
            "conv_cycles_per_pixel",
            "conv_cycles_per_image",
            "unaligned_conv_cycles_per_pixel",
            "unaligned_conv_cycles_per_output",
            "im2col_copy_cycles",
            "gemm_library_speedup",
            "requant_cycles_per_output",
            "library_requant_cycles_per_output",
            "library_cycles_per_row",
            "fused_bias_cycles_per_column",
            "fused_bias_cycles_per_output",
            "float_gemm_library_speedup",
            "depthwise_cycles_per_mac",
            "depthwise_cycles_per_pixel",
        )
    ),
    (
        "streamed weights bytes/cycle",  # the largest cache's fitted bandwidth
        lambda p: max(p.on_chip("weights"), key=lambda m: m.size_bytes).bandwidth_bytes_per_cycle,
    ),
    ("transpose cycles/element", _rate("transpose", integer=False)),
    ("transpose inward cycles/element", _rate("transpose_inward", integer=False)),
    ("transpose inward narrow cycles/el", _rate("transpose_inward_narrow", integer=False)),
    ("float reorder in cycles/element", _rate("reorder_input", integer=False)),
    ("float reorder out cycles/element", _rate("reorder_output", integer=False)),
    ("quantize cycles/element", _rate("quantize", integer=False)),
    ("dequantize cycles/element", _rate("dequantize", integer=False)),
    ("INT8 softmax cycles/el", _rate("softmax", integer=True)),
    ("INT8 add cycles/el", _rate("add", integer=True)),
    ("INT8 mul cycles/el", _rate("mul", integer=True)),
    ("INT8 concat cycles/el", _rate("concat", integer=True)),
    ("float ReLU6 pass cycles/el", _rate("activation_pass", integer=False)),
    *(
        (
            f"{kind} cycles/row",
            lambda p, kind=kind: ElementwiseCosts.of(p.overheads).row_rate(kind, integer=False),
        )
        for kind in ("layernorm", "softmax", "transpose")
    ),
)


def repeatability(runs: int, tmp: Path, *, keep: Path | None = None) -> tuple[list[dict], Path]:
    """Calibrate ``runs`` times; rows of each constant's values and spread (max/min - 1).
    ``keep``: each calibration's measurements (its JSON sidecar) are copied to
    ``<keep>.calibration-<i>.json``, to refit later (``bench_host_refit.py``)."""
    profiles = []
    for i in range(runs):
        path = write(calibrate(), tmp / f"host-{i}.toml")
        profiles.append(load_profile(path))
        if keep is not None:
            keep.parent.mkdir(parents=True, exist_ok=True)
            sidecar = path.with_suffix(".json").read_bytes()
            keep.with_suffix(f".calibration-{i}.json").write_bytes(sidecar)
    return spreads(profiles), path


#: constants that are rates per cycle (the rest of :data:`CONSTANTS` are cycles, but the
#: dimensionless speedups and the clock itself)
PER_CYCLE = ("INT8 MACs/cycle", "FP32 MACs/cycle", "streamed weights bytes/cycle")
RATIOS = ("gemm_library_speedup", "float_gemm_library_speedup", "clock GHz")


def _spread(values: list[float]) -> float:
    low, high = min(values), max(values)
    return (high / low - 1) * 100 if low > 0 else float("nan")


def spreads(profiles) -> list[dict]:
    """Each of :data:`CONSTANTS` on every profile, its spread (max/min - 1, percent), and
    its spread in time (``time_spread_pct``: cycles at each profile's own measured clock,
    rates per second): the clock is measured on a scalar chain of adds, and a shared
    core's reading moved 7 % between two calibrations while its vector kernels' speed did
    not, which moves every constant in cycles by as much."""
    rows = []
    for key, get in CONSTANTS:
        values = [float(get(p)) for p in profiles]
        if key in RATIOS:
            timed = values
        elif key in PER_CYCLE:
            timed = [v * p.clock_hz for v, p in zip(values, profiles, strict=True)]
        else:
            timed = [v / p.clock_hz for v, p in zip(values, profiles, strict=True)]
        rows.append(
            {
                "constant": key,
                "values": values,
                "spread_pct": _spread(values),
                "time_spread_pct": float("nan") if key == "clock GHz" else _spread(timed),
            }
        )
    return rows


def zoo_rows(profile, tmp: Path) -> list[tuple[CheckRow, float]]:
    """(check row, bridge-simulated INT8 seconds or NaN) per zoo model, plan and quantizer;
    every model timed in passes over all of them, at the profile's clock (:func:`timed_rows`)."""
    todo, bridged = [], []  # the cases to time; each one's bridge-simulated seconds
    for name in ZOO:
        model, calib = random_model(name)
        for plan in PLANS:
            small = compress(model, CompressionPlan.from_bits_string(plan), calib=calib)
            result = export_compressed(small, out_dir=tmp / f"{name}-{plan}", check=False)
            fp32 = simulate_s(result.fp32_path, profile, fp32=True)[0]
            bridge = hwsim.simulate(
                to_workload(
                    model,
                    CompressionPlan.from_bits_string(plan),
                    round_trip=profile.overheads.two_grid_round_trip,
                ),
                profile,
            ).latency_s
            ort = quantize_int8(result.fp32_path, tmp / f"{name}-{plan}" / "ort.int8.onnx")
            cases = (
                (f"{name} {plan} lowbit", result.int8_path, bridge),
                (f"{name} ORT-quantized", ort, float("nan")),
            )
            for label, path, via_bridge in cases:
                if plan != PLANS[0] and "ORT" in label:
                    continue  # the ORT quantizer sees the same FP32 model for every plan
                sim, macs = simulate_s(path, profile, fp32=False)
                todo.append(Prepared(label, "zoo", macs, path, sim, result.fp32_path, fp32))
                bridged.append(via_bridge)
    # at the profile's clock, as the check
    return list(zip(timed_rows(profile, todo, repeats=100), bridged, strict=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--calibrations",
        type=int,
        default=2,
        help="calibrations in a row for the repeatability table (0: use the cached host profile)",
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench-results" / "bench_host_model.json"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cpu = cpu_info()
    label = cpu["label"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        repeat, path = (
            repeatability(args.calibrations, tmp, keep=args.out)
            if args.calibrations > 0
            else ([], default_profile_path())
        )
        profile = load_profile(path)
        if repeat:
            print(f"repeatability of {args.calibrations} calibrations on {label}:")
            for r in repeat:
                values = " ".join(f"{v:10.4g}" for v in r["values"])
                print(
                    f"  {r['constant']:40} {values}  spread {r['spread_pct']:5.1f}%  "
                    f"in time {r['time_spread_pct']:5.1f}%"
                )
        rows = check(profile)
        zoo = zoo_rows(profile, tmp)
    print(table(rows + [r for r, _ in zoo], cpu_label=label, clock_hz=profile.clock_hz))
    print("lowbit export vs the search's own workload (bridge) on the same profile:")
    for row, bridge in zoo:
        if bridge == bridge:  # not NaN
            print(
                f"  {row.name:34} measured {row.int8_measured_s * 1e3:7.3f} ms  imported "
                f"{row.int8_ratio:5.2f}x  bridge {bridge / row.int8_measured_s:5.2f}x"
            )
    payload = {
        "benchmark": "bench_host_model",
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "cpu": {k: cpu[k] for k in ("model", "isa", "label")},
        "threads": 1,
        "repeatability": repeat,
        "check": [r.as_dict() for r in rows],
        "zoo": [{**r.as_dict(), "bridge_simulated_s": b} for r, b in zoo],
        "summary": summarize(rows + [replace(r, kind="network") for r, _ in zoo]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2, default=float) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
