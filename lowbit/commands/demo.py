"""``lowbit demo``: the main job on built-in defaults.

Simulates a built-in network on a built-in bit-flexible NPU at uniform 8-bit and at
mixed lower bit-widths, prints the per-layer table and the speed-up: the question lowbit
answers, in its smallest form. (The search issue replaces this with a small search.)
"""

from __future__ import annotations

import argparse

HELP = "run the main job on built-in defaults (simulate resnet18 on npu-bitfusion)"

_DEFAULT_HARDWARE = "npu-bitfusion"
_DEFAULT_WORKLOAD = "resnet18"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hardware", default=_DEFAULT_HARDWARE, help="profile name or file")
    parser.add_argument("--workload", default=_DEFAULT_WORKLOAD, help="workload name or CSV")


def run(args: argparse.Namespace) -> int:
    from ._resolve import apply_bits, resolve_profile, resolve_workload
    from .simulate import render_result, simulate

    profile = resolve_profile(args.hardware)
    workload = resolve_workload(args.workload)
    results = {}
    for w_bits, a_bits in ((8, 8), (4, 8), (4, 4), (2, 4)):
        compressed = apply_bits(workload, w_bits=w_bits, a_bits=a_bits)
        results[(w_bits, a_bits)] = simulate(compressed, profile, engine="analytic")
    print(render_result(results[(8, 8)]))
    base = results[(8, 8)]
    print(f"uniform precision on {profile.name}:")
    for (w_bits, a_bits), result in results.items():
        speedup = base.total_cycles / result.total_cycles
        print(
            f"  W{w_bits}A{a_bits}  {result.latency_s * 1e3:9.4g} ms  "
            f"{result.energy_j * 1e3:9.4g} mJ  speed-up {speedup:5.2f}x"
        )
    return 0
