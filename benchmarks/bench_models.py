"""How long does one search trial's model work take? Prints a table and writes JSON.

A trial-like step is what a compression search does per candidate plan: ``compress`` the
trained model (low rank, prune, quantize, calibrate activations on the val split) and
measure its accuracy on the val split. Timed for each zoo model and three plans, one torch
thread, median of ``--repeats`` runs after one warm-up run:

- ``W8A8``: uniform 8-bit weights and activations (per-channel weight scales);
- ``W4A8``: uniform 4-bit per-channel weights, 8-bit activations;
- ``mixed``: W4A8 on every prune-group producer with 75 % of its channels kept and rank
  = half the full rank (``rank_fraction`` 0.5), W8A8 elsewhere (first/last pinned).

Goals: digits-cnn < 0.5 s, digits-vit < 2 s per step. Models are trained on first use
(``$LOWBIT_CACHE``); training time is not part of the step.

Usage::

    .venv/bin/python benchmarks/bench_models.py [--out FILE] [--repeats N] [--models a,b]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from lowbit.models import compress, load_split, load_trained
from lowbit.models.accuracy import accuracy, as_model_input
from lowbit.models.compression.plan import CompressionPlan, LayerSpec
from lowbit.models.graph import prune_groups_of
from lowbit.models.zoo import zoo_names

ROOT = Path(__file__).resolve().parent.parent
#: seconds per step the project aims for (see the module docstring)
GOALS = {"digits-cnn": 0.5, "digits-vit": 2.0}


def plans_for(model: torch.nn.Module) -> dict[str, CompressionPlan]:
    """The three benchmark plans for ``model``."""
    producers = [group.producer for group in prune_groups_of(model)]
    mixed = {p: LayerSpec(w_bits=4, a_bits=8, keep=0.75, rank_fraction=0.5) for p in producers}
    mixed["_default"] = LayerSpec(w_bits=8, a_bits=8)
    return {
        "W8A8": CompressionPlan.uniform(w_bits=8, a_bits=8),
        "W4A8": CompressionPlan.uniform(w_bits=4, a_bits=8, weight_granularity="per_channel"),
        "mixed": CompressionPlan(layers=mixed),
    }


def time_step(name: str, plan_name: str, plan: CompressionPlan, *, repeats: int) -> dict:
    """Median and min seconds of compress + calibrate + evaluate on val."""
    base = load_trained(name)
    x_val, y_val = load_split(base.dataset, "val")
    x_val = as_model_input(base, x_val)
    seconds = []
    acc = float("nan")
    for _ in range(repeats + 1):  # the first run warms caches and is dropped
        start = time.perf_counter()
        small = compress(base, plan, calib=x_val)
        acc = accuracy(small, x_val, y_val)
        seconds.append(time.perf_counter() - start)
    seconds = seconds[1:]
    return {
        "model": name,
        "plan": plan_name,
        "median_s": statistics.median(seconds),
        "min_s": min(seconds),
        "repeats": repeats,
        "val_accuracy": acc,
        "goal_s": GOALS.get(name),
    }


def render(rows: list[dict]) -> str:
    lines = [f"{'model':<12} {'plan':<6} {'median s':>9} {'min s':>8} {'val acc':>8}  goal"]
    for r in rows:
        goal = ""
        if r["goal_s"] is not None:
            verdict = "ok" if r["median_s"] < r["goal_s"] else "MISSED"
            goal = f"< {r['goal_s']} s {verdict}"
        lines.append(
            f"{r['model']:<12} {r['plan']:<6} {r['median_s']:>9.3f} {r['min_s']:>8.3f} "
            f"{r['val_accuracy']:>8.2%}  {goal}"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "bench-results" / "bench_models.json",
        help="JSON results file (default: bench-results/bench_models.json)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per step (default 5)")
    parser.add_argument("--models", default=",".join(zoo_names()), help="comma-separated names")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for name in args.models.split(","):
        for plan_name, plan in plans_for(load_trained(name)).items():
            rows.append(time_step(name, plan_name, plan, repeats=args.repeats))
    sys.stdout.write(render(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "bench_models",
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
        "results": rows,
    }
    tmp = args.out.with_suffix(args.out.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
