"""``lowbit demo``: the main job on built-in defaults, in a few minutes on 2 cores.

1. simulate a built-in network on a bit-flexible NPU at uniform precisions (the simulator);
2. search per-layer bits, pruning and rank for ``fashion-resnet-demo`` (a 20.9-MMAC ResNet
   with residual adds on real Fashion-MNIST, trained on first use with the demo's short
   schedule: 3 epochs of 20,000 images) on that NPU, against quantization-only search and
   the uniform precisions on the same budget (the product's main job). Two rungs: every
   trial on 1,000 val images, the promising ones on all 5,000; no QAT; configs below
   :data:`_MIN_ACCURACY` are infeasible (not re-measured on test, not exported), and a
   sensitivity screen first drops each layer's choices that alone fall below it
   (:mod:`lowbit.search.screen`; its greedy points join the warm starts);
3. validate the winners: export them to INT8 ONNX, time them on this CPU and compare with
   the simulator's host-CPU model (calibrated by microbenchmarks on first use);
4. write the HTML report and print where the results are.

Each step runs the same code as its own subcommand, through the command table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ._data_dir import add_data_dir_argument, apply_data_dir

HELP = (
    "run the main job on built-in defaults: search fashion-resnet-demo on npu-bitfusion, "
    "validate, report"
)

_HARDWARE = "npu-bitfusion"
_NETWORK = "resnet18"
_MODEL = "fashion-resnet-demo"
#: the accuracy constraint of the demo's search, on val: 2.5 points under the demo model's
#: FP32 (87.5 % val, 86.5 % test), so the screen's greedy points, spread over the room down
#: to it, sit around the "within 1 point of FP32" region users read first
_MIN_ACCURACY = 0.85
_BASELINES = "quant-only,uniform"
#: trials per searched method: the screen's greedy points start both searches near the
#: floor, so a short search still refines them; the whole demo stays under 8 minutes on
#: 2 cores with the model cached
_TRIALS = 16
#: Pareto configs the demo exports and times (plus the uniform baselines), spread along
#: the front: its two ends
_VALIDATE_TOP = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", help="run directory (default runs/demo)")
    parser.add_argument(
        "--trials", type=int, default=_TRIALS, help=f"trials per method (default {_TRIALS})"
    )
    parser.add_argument("--workers", type=int, default=2, help="Ray workers (default 2)")
    add_data_dir_argument(parser)


def run(args: argparse.Namespace) -> int:
    apply_data_dir(args)
    from lowbit.cli import main
    from lowbit.hwsim.fileio import check_output_dir

    check_output_dir(args.out, flag="--out")  # before minutes of training and search
    from lowbit.models.workloads import apply_bits, resolve_workload, simulate

    from ._resolve import resolve_profile

    profile = resolve_profile(_HARDWARE)
    network = resolve_workload(_NETWORK)
    print(f"[1/4] {_NETWORK} on {profile.name}, uniform precision (analytic engine)")
    base = None
    for w_bits, a_bits in ((8, 8), (4, 8), (4, 4), (2, 2)):
        result = simulate(
            apply_bits(network, w_bits=w_bits, a_bits=a_bits), profile, engine="analytic"
        )
        base = base or result
        speedup = base.total_cycles / result.total_cycles
        print(
            f"  W{w_bits}A{a_bits}  {result.latency_s * 1e3:8.4g} ms  "
            f"{result.energy_j * 1e3:8.4g} mJ  speed-up {speedup:5.2f}x"
        )
    out = Path(args.out)
    aside = _set_aside_stale_run(out, profile)
    if aside is not None:
        print(
            f"\n{out} holds a run from another lowbit version or target profile: moved to "
            f"{aside} (kept, not resumed)"
        )
    print(f"\n[2/4] search: {_MODEL} on {profile.name}, {args.trials} trials per method")
    code = main(
        [
            "search",
            "--model",
            _MODEL,
            "--hardware",
            _HARDWARE,
            "--trials",
            str(args.trials),
            "--workers",
            str(args.workers),
            "--baselines",
            _BASELINES,
            "--min-accuracy",
            str(_MIN_ACCURACY),
            "--out",
            str(out),
        ]
    )
    if code:
        return code
    print("\n[3/4] validate the Pareto configs on this CPU (real INT8 vs simulated)")
    code = main(["validate", "--run", str(out), "--top", str(_VALIDATE_TOP), "--repeats", "50"])
    if code:
        return code
    print("\n[4/4] report")
    code = main(["report", "--run", str(out)])
    if code:
        return code
    print(f"\nresults: {out.resolve()}")
    for name in ("report.html", "pareto.csv", "trials.csv", "summary.json", "validation.csv"):
        print(f"  {out / name}")
    return 0


def _set_aside_stale_run(out: Path, profile) -> Path | None:
    """Rename a previous demo run in ``out`` made by another lowbit version or on another
    profile content (its trials' latencies and accuracies would not be comparable: the
    search would refuse to resume it) to ``<out>.<time>``; return the new path, or None."""
    import lowbit

    try:
        summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        hardware_hash = summary["hardware"]["content_hash"]
        version = summary["versions"]["lowbit"]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # nothing there, or not a run summary: the search decides
    if hardware_hash == profile.content_hash() and version == lowbit.__version__:
        return None
    out = out.resolve()  # "." has no name to suffix
    aside = out.with_name(f"{out.name}.{time.strftime('%Y%m%d-%H%M%S')}")
    out.rename(aside)
    return aside
