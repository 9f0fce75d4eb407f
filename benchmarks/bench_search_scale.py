"""How fast are search trials on an edge-scale model? Prints a table and writes JSON.

For one zoo model (default fashion-resnet) on one target (default npu-bitfusion), three
fresh searches of the joint method (``--trials`` completed trials each; the run directories
are deleted first, so every trial is timed):

1. one worker, every trial at the full rung (``fidelity=full``: all of val, QAT if asked;
   ``--full-trials`` trials, default 8: these are the slow ones);
2. one worker, two rungs (``fidelity=multi``): the median seconds of a cheap-rung
   evaluation (goal: <= 3 s), of a promotion's full-rung evaluation (the worker reuses the
   compressed model), of a whole trial, the share promoted, and trials per minute;
3. two workers, two rungs: trials per minute (goal: >= 1.7x the single worker's).

Seconds are the workers' own (``duration_*`` in trials.csv); trials per minute are the
driver's wall clock for the loop. On a loaded machine both suffer: the table names the CPU and
the load average before and after.

Usage::

    .venv/bin/python benchmarks/bench_search_scale.py [--model fashion-resnet]
        [--hardware npu-bitfusion] [--trials 24] [--full-trials 8] [--cheap-val 1000]
        [--calib-samples 512]
        [--finetune-steps 0] [--out bench-results/bench_search_scale.json]

A model whose val split is not larger than ``--cheap-val`` (the toy digits models) gets a
cheap rung of a third of its val split (said in the output).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

from lowbit.models.hostcal.isa import cpu_info

ROOT = Path(__file__).resolve().parent.parent
GOAL_CHEAP_S = 3.0
GOAL_SCALING = 1.7


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _trials(run_dir: Path) -> list[dict]:
    with open(run_dir / "trials.csv", newline="") as fh:
        return [r for r in csv.DictReader(fh) if r["state"] == "COMPLETE"]


def one_search(
    args, *, label: str, workers: int, fidelity: str, cheap_val: int, trials: int
) -> dict:
    from lowbit.search import SearchSetup, ZooModel, run_search

    run_dir = Path(args.runs) / f"{args.model}-{label}"
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh study: every trial is timed
    start = time.perf_counter()
    model = ZooModel(
        name=args.model,
        finetune_steps=args.finetune_steps,
        fidelity=fidelity,
        cheap_val_samples=cheap_val,
        calib_samples=args.calib_samples,
    )
    result = run_search(
        SearchSetup(
            model=model,
            hardware=args.hardware,
            n_trials=trials,
            out_dir=run_dir,
            workers=workers,
            methods=("joint",),
            progress=not args.quiet,
        )
    )
    joint = result.summary["methods"]["joint"]
    rows = _trials(run_dir)

    def column(key: str) -> list[float]:
        return [float(r[key]) for r in rows if r.get(key) not in ("", None)]

    cheap = [float(r["duration_s"]) for r in rows if r["rung"] == "0"]
    return {
        "label": label,
        "workers": workers,
        "fidelity": result.summary["fidelity"],
        "trials": len(rows),
        "promoted": sum(r["rung"] == "1" for r in rows) if fidelity == "multi" else None,
        "median_trial_s": _median(column("duration_s")),
        "median_cheap_eval_s": joint["this_run"]["median_seconds"]["cheap"],
        "median_full_eval_s": joint["this_run"]["median_seconds"]["full"],
        "median_cheap_only_trial_s": _median(cheap),
        "trials_per_minute": joint["this_run"]["trials_per_minute"],
        "loop_seconds": joint["this_run"]["seconds"],
        "wall_seconds": time.perf_counter() - start,
        "hypervolume_val": joint["hypervolume_val"],
        "run_dir": str(run_dir),
    }


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def print_table(report: dict) -> None:
    rows = report["runs"]
    print()
    print(
        f"{report['model']} on {report['hardware']}: {report['trials']} trials per two-rung "
        f"search, {report['full_trials']} at the full rung only, QAT steps "
        f"{report['finetune_steps']}"
    )
    print(
        f"CPU: {report['machine']['cpu']} ({report['machine']['cpus']} logical CPUs), "
        f"load average {report['load_before'][0]:.1f} before, {report['load_after'][0]:.1f} "
        "after"
    )
    print(
        f"cheap rung: {report['cheap_val']} val images; calibration: "
        f"{report['calib_samples']} val images"
    )
    print()
    head = (
        f"{'search':<22} {'trials':>6} {'promoted':>8} {'cheap eval s':>12} "
        f"{'full eval s':>11} {'trial s':>8} {'trials/min':>10}"
    )
    print(head)
    for r in rows:
        promoted = "-" if r["promoted"] is None else f"{r['promoted']}/{r['trials']}"
        print(
            f"{r['label']:<22} {r['trials']:>6} {promoted:>8} "
            f"{_fmt(r['median_cheap_eval_s']):>12} {_fmt(r['median_full_eval_s']):>11} "
            f"{_fmt(r['median_trial_s']):>8} {_fmt(r['trials_per_minute'], '.1f'):>10}"
        )
    g = report["goals"]
    met = {True: "met", False: "NOT met"}
    print()
    print(
        f"median cheap-rung evaluation, 1 worker: {_fmt(g['median_cheap_eval_s'])} s "
        f"(goal <= {GOAL_CHEAP_S:g} s: {met[g['cheap_goal_met']]})"
    )
    print(
        f"2 workers vs 1 (two rungs): {_fmt(g['scaling_2_vs_1'])}x trials/min "
        f"(goal >= {GOAL_SCALING}x: {met[g['scaling_goal_met']]})"
    )
    print(f"two rungs vs one, 1 worker: {_fmt(g['speedup_multi_vs_full'])}x trials/min")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="fashion-resnet")
    parser.add_argument("--hardware", default="npu-bitfusion")
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--full-trials", type=int, default=8)
    parser.add_argument("--cheap-val", type=int, default=1000)
    parser.add_argument("--calib-samples", type=int, default=512)
    parser.add_argument("--finetune-steps", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "bench-results" / "bench_search_scale.json"))
    parser.add_argument("--runs", default=str(ROOT / "bench-results" / "search-scale-runs"))
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    import optuna

    from lowbit import models
    from lowbit.models.data import split_sizes

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    val = split_sizes(models.load_trained(args.model).dataset)["val"]  # trains if needed
    cheap_val = args.cheap_val if args.cheap_val < val else max(1, val // 3)
    if cheap_val != args.cheap_val:
        print(f"{args.model}: val has {val} images; cheap rung of {cheap_val} instead")
    load_before = os.getloadavg()
    start = time.perf_counter()
    runs = [
        one_search(
            args,
            label="1 worker, full rung",
            workers=1,
            fidelity="full",
            cheap_val=cheap_val,
            trials=args.full_trials,
        ),
        one_search(
            args,
            label="1 worker, two rungs",
            workers=1,
            fidelity="multi",
            cheap_val=cheap_val,
            trials=args.trials,
        ),
        one_search(
            args,
            label="2 workers, two rungs",
            workers=2,
            fidelity="multi",
            cheap_val=cheap_val,
            trials=args.trials,
        ),
    ]
    full, multi1, multi2 = runs
    scaling = multi2["trials_per_minute"] / multi1["trials_per_minute"]
    report = {
        "benchmark": "bench_search_scale",
        "model": args.model,
        "hardware": args.hardware,
        "trials": args.trials,
        "full_trials": args.full_trials,
        "finetune_steps": args.finetune_steps,
        "cheap_val": cheap_val,
        "calib_samples": full["fidelity"]["calib_samples"],
        "machine": {
            "cpu": cpu_info()["label"],  # model name and integer ISA
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "load_before": list(load_before),
        "load_after": list(os.getloadavg()),
        "seconds": time.perf_counter() - start,
        "goals": {
            "median_cheap_eval_s": multi1["median_cheap_eval_s"],
            "cheap_goal": GOAL_CHEAP_S,
            "cheap_goal_met": (multi1["median_cheap_eval_s"] or 1e9) <= GOAL_CHEAP_S,
            "scaling_2_vs_1": scaling,
            "scaling_goal": GOAL_SCALING,
            "scaling_goal_met": scaling >= GOAL_SCALING,
            "speedup_multi_vs_full": multi1["trials_per_minute"] / full["trials_per_minute"],
        },
        "runs": runs,
    }
    print_table(report)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out} ({report['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
