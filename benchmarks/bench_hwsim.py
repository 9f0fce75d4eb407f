"""How fast is hwsim? Prints tables and writes JSON (default bench-results/bench_hwsim.json).

1. Analytic engine, cold: layer evaluations per second on distinct layers, each computed
   afresh (``AnalyticEngine.evaluate_uncached``: no results cache is read or filled; the
   per-profile data is built once), for every built-in profile, one core. The best of
   ``COLD_REPEATS`` passes (CPU time), so other work on the machine counts less.
2. Analytic engine, warm: whole-network evaluations per second for each built-in workload
   (the same workload and profile again and again: what a search re-evaluating a
   network sees).
3. Event engine: seconds for resnet50 on each built-in profile.
4. SCALE-Sim (only when ``LOWBIT_SCALESIM_PYTHON`` names the python of a venv with
   ``scalesim==3.0.0``, see benchmarks/scalesim_reference.py): its wall time on ResNet-18
   (torchvision shapes, inputs padded so its no-padding convs see the same sizes) on a 32x32
   os array, ours on the same cfg + topology, the ratio, and whether compute cycles match.

Usage::

    .venv/bin/python benchmarks/bench_hwsim.py [--out FILE] [--scalesim-layers N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scalesim_reference import CFG_TEMPLATE  # the sibling script (imports no SCALE-Sim here)

from lowbit import hwsim
from lowbit.hwsim.engines.analytic import AnalyticEngine
from lowbit.hwsim.profiles import builtin_profile_names, load_profile, load_scalesim_cfg
from lowbit.hwsim.scalesim import load_topology
from lowbit.hwsim.workload import Conv2d, Linear, Workload
from lowbit.hwsim.workloads import builtin_workload, workload_names

ROOT = Path(__file__).resolve().parent.parent
COLD_LAYERS = 3000
COLD_REPEATS = 3
WARM_SECONDS = 1.0

#: a 32x32 output-stationary array, the reference script's cfg (CALC bandwidth: SCALE-Sim
#: reports compute cycles only)
SCALESIM_CFG = CFG_TEMPLATE.format(rows=32, cols=32, dataflow="os")


def distinct_layers(n: int) -> list:
    """n layers with pairwise different shapes (half convs, half linears)."""
    layers = []
    for i in range(n):
        if i % 2:
            layers.append(
                Linear(name=f"fc{i}", in_features=64 + i, out_features=96 + i % 97, tokens=49)
            )
        else:
            size = 7 + i % 50
            layers.append(
                Conv2d(
                    name=f"conv{i}",
                    in_h=size,
                    in_w=size,
                    in_c=16 + i // 50,
                    out_c=32 + i % 31,
                    k_h=3,
                    k_w=3,
                    stride=1,
                    out_h=size - 2,
                    out_w=size - 2,
                )
            )
    return layers


def bench_cold(profile, layers: list) -> float:
    """Layer evaluations per second, every one computed afresh (best of COLD_REPEATS)."""
    engine = AnalyticEngine()
    engine.evaluate_uncached(layers[0], profile)  # build the per-profile data
    best = float("inf")
    for _ in range(COLD_REPEATS):
        start = time.process_time()
        for layer in layers:
            engine.evaluate_uncached(layer, profile)
        best = min(best, time.process_time() - start)
    return len(layers) / best


def bench_warm(workload: Workload, profile) -> float:
    hwsim.simulate(workload, profile)  # fill the memo
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < WARM_SECONDS:
        hwsim.simulate(workload, profile)
        count += 1
    return count / elapsed


def bench_event(profile) -> float:
    workload = builtin_workload("resnet50")
    start = time.perf_counter()
    hwsim.simulate(workload, profile, engine="event")
    return time.perf_counter() - start


def resnet18_topology(limit: int | None) -> str:
    """ResNet-18's convs and fc as a SCALE-Sim conv topology; inputs padded by k // 2."""
    rows = [
        "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
        "Num Filter, Strides,"
    ]
    for layer in builtin_workload("resnet18").layers:
        if isinstance(layer, Conv2d):
            pad = layer.k_h // 2
            h, w = layer.in_h + 2 * pad, layer.in_w + 2 * pad
            dims = (h, w, layer.k_h, layer.k_w, layer.in_c, layer.out_c, layer.stride)
        elif isinstance(layer, Linear):
            dims = (1, 1, 1, 1, layer.in_features, layer.out_features, 1)
        else:
            continue
        rows.append(f"{layer.name}, " + ", ".join(str(d) for d in dims) + ",")
    body = rows[1:] if limit is None else rows[1 : limit + 1]
    return "\n".join([rows[0], *body]) + "\n"


def bench_scalesim(python: str, limit: int | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-scalesim-") as tmp:
        cfg = Path(tmp) / "bench.cfg"
        topology = Path(tmp) / "resnet18.csv"
        cfg.write_text(SCALESIM_CFG)
        topology.write_text(resnet18_topology(limit))
        script = ROOT / "benchmarks" / "scalesim_reference.py"
        start = time.perf_counter()
        done = subprocess.run(
            [python, str(script), "--run", str(cfg), str(topology)],
            capture_output=True,
            text=True,
            check=True,
        )
        process_seconds = time.perf_counter() - start
        theirs = json.loads(done.stdout.strip().splitlines()[-1])

        start = time.perf_counter()
        profile = load_scalesim_cfg(cfg)
        workload = load_topology(topology)
        result = hwsim.simulate(workload, profile)
        ours_seconds = time.perf_counter() - start
    ours = {layer.name: layer.compute_cycles for layer in result.layers}
    matches = [ours[ref["name"]] == ref["compute_cycles"] for ref in theirs["layers"]]
    worst = max(
        abs(ours[ref["name"]] - ref["compute_cycles"]) / ref["compute_cycles"]
        for ref in theirs["layers"]
    )
    return {
        "layers": len(theirs["layers"]),
        "network_layers": len(resnet18_topology(None).splitlines()) - 1,
        "scalesim_version": theirs["scalesim"],
        "scalesim_seconds": theirs["seconds"],
        "scalesim_process_seconds": process_seconds,
        "ours_seconds": ours_seconds,
        "ratio": theirs["seconds"] / ours_seconds,
        "compute_cycles_exact": sum(matches),
        "compute_cycles_max_rel_error": worst,
        "scalesim_total_compute_cycles": sum(r["compute_cycles"] for r in theirs["layers"]),
        "ours_total_compute_cycles": sum(ours.values()),
    }


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    lines = [
        "  ".join(str(c).rjust(w) for c, w in zip(row, widths, strict=True))
        for row in [headers, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="hwsim speed benchmark")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results" / "bench_hwsim.json")
    parser.add_argument(
        "--scalesim-layers",
        type=int,
        default=None,
        help="only the first N ResNet-18 layers for the SCALE-Sim comparison (default: all)",
    )
    args = parser.parse_args(argv)

    profiles = builtin_profile_names()
    base = load_profile("npu-systolic-32")
    report: dict = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor(),
    }

    layers = distinct_layers(COLD_LAYERS)
    cold = {name: bench_cold(load_profile(name), layers) for name in profiles}
    report["analytic_cold_layer_evals_per_s"] = cold
    print(
        f"analytic engine, cold ({COLD_LAYERS} distinct layers computed afresh, one core, "
        f"best of {COLD_REPEATS} passes in CPU time):"
    )
    print(table(["profile", "layer evals/s"], [[n, f"{v:,.0f}"] for n, v in cold.items()]))
    print()

    warm = {name: bench_warm(builtin_workload(name), base) for name in workload_names()}
    report["analytic_warm_network_evals_per_s"] = warm
    print("analytic engine, warm, npu-systolic-32:")
    print(
        table(
            ["workload", "layers", "network evals/s"],
            [[n, str(len(builtin_workload(n).layers)), f"{v:,.0f}"] for n, v in warm.items()],
        )
    )

    event = {name: bench_event(load_profile(name)) for name in profiles}
    report["event_resnet50_seconds"] = event
    print("\nevent engine, resnet50:")
    print(table(["profile", "seconds"], [[n, f"{s:.3f}"] for n, s in event.items()]))

    python = os.environ.get("LOWBIT_SCALESIM_PYTHON")
    if python:
        ref = bench_scalesim(python, args.scalesim_layers)
        report["scalesim_resnet18_32x32_os"] = ref
        print(
            f"\nSCALE-Sim {ref['scalesim_version']} vs hwsim, ResNet-18 convs + fc "
            f"({ref['layers']} of {ref['network_layers']} layers), 32x32 os, CALC:\n"
            f"  SCALE-Sim {ref['scalesim_seconds']:.1f} s (process "
            f"{ref['scalesim_process_seconds']:.1f} s), hwsim {ref['ours_seconds'] * 1e3:.1f} ms "
            f"(load cfg + topology + simulate): {ref['ratio']:,.0f}x faster\n"
            f"  compute cycles exact on {ref['compute_cycles_exact']}/{ref['layers']} layers, "
            f"max relative error {ref['compute_cycles_max_rel_error']:.2%}"
        )
    else:
        print("\nSCALE-Sim comparison skipped: set LOWBIT_SCALESIM_PYTHON to its venv's python")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, args.out)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
