"""``lowbit calibrate-host``: measure this CPU and write the host hardware profile."""

from __future__ import annotations

import argparse
import json
import sys

HELP = "microbenchmark this CPU (ONNX Runtime, 1 thread) and write a host hardware profile"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        metavar="FILE.toml",
        help="profile to write (default: $LOWBIT_CACHE/host/host-cpu.toml); a .json sidecar "
        "with the raw measurements is written next to it",
    )
    parser.add_argument(
        "--quick", action="store_true", help="few shapes and repeats (seconds; coarser numbers)"
    )
    parser.add_argument("--format", choices=("table", "json"), default="table")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lowbit.hwsim.errors import LowbitError
    from lowbit.hwsim.fileio import check_output_file
    from lowbit.models.hostcal.calibration import calibrate, default_profile_path, write

    path = Path(args.out) if args.out else default_profile_path()
    if path.suffix != ".toml":  # checked before the minute of measuring
        raise LowbitError(f"{path}: the profile file must end in .toml")
    check_output_file(path, flag="--out")
    check_output_file(path.with_suffix(".json"), flag="--out")  # the calibration sidecar
    calibration = calibrate(quick=args.quick)
    path = write(calibration, path)
    m = calibration.measurements
    if args.format == "json":
        json.dump({"profile": str(path), **m}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    fit, cpu, o = m["fit"], m["cpu"], calibration.data["overheads"]
    bw = ", ".join(f"{k} {v / 1e9:.0f} GB/s" for k, v in m["bandwidth_bytes_per_s"].items())
    caches = ", ".join(f"{k} {v // 1024} KiB" for k, v in cpu["caches_bytes"].items())
    lines = [
        f"CPU: {cpu.get('label', cpu['model'])}, {cpu['clock_hz'] / 1e9:.2f} GHz, "
        f"{cpu['simd_lanes_32bit']} lanes of 32 bits",
        f"flags: {' '.join(cpu['flags'])}",
        f"caches: {caches}; copy bandwidth: {bw}",
        f"fitted on {len(m['chains'])} layer chains + {len(m['conv_sweep'])} single convs: "
        f"{fit['layer_cycles']} cycles per INT8 layer, "
        f"INT8 {fit['int8_macs_per_pe_per_cycle']:.3g} / FP32 "
        f"{fit['fp32_macs_per_pe_per_cycle']:.3g} MACs/lane/cycle, cols {fit['cols']}; "
        f"{fit['conv_cycles_per_pixel']:.3g} (+{fit['unaligned_conv_cycles_per_pixel']:.3g} "
        f"unaligned) cycles per conv pixel; mean |error| INT8 "
        f"{fit['mean_abs_pct_error_int8']:.1f}%, FP32 {fit['mean_abs_pct_error_fp32']:.1f}%",
        f"fixed costs: run_cycles {o['run_cycles']} per inference "
        f"({m['run_overhead_s'] * 1e6:.2f} us per Run call), layer_cycles {o['layer_cycles']} "
        f"per operator, gemm_cycles {o['gemm_cycles']} per INT8 GEMM, "
        f"{o['unaligned_conv_cycles_per_pixel']:.3g} cycles/pixel for unaligned INT8 convs",
        f"wrote {path} (+ {path.with_suffix('.json').name})",
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0
