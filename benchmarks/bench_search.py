"""How good and how fast is the search? Prints a table and writes JSON.

For each target (default: digits-cnn on npu-bitfusion and on fpga-zcu102-dsp) and each seed,
one run of every method on the same budget (``--trials`` completed trials for joint,
quant-only and random; the uniform and HAWQ configurations once), 2 Ray workers:

- best joint Pareto point within 1 point of FP32: latency / uniform W8A8 latency (goal
  <= 0.5), selected on val as the search does (its test loss is shown), and the best one
  whose *test* loss is <= 1 point (an oracle, shown for reference);
- hypervolume (accuracy vs latency / W8A8, reference (0, 2), on val) of joint vs
  quant-only vs random (and the fixed baselines), mean ± standard deviation over seeds;
- trials per minute of the joint search loop with 1 vs 2 workers (goal: 2 workers
  >= 1.7× one), measured on the first target with ``--throughput-trials`` trials.

Usage::

    .venv/bin/python benchmarks/bench_search.py [--trials 200] [--seeds 3]
        [--targets npu-bitfusion,fpga-zcu102-dsp] [--model digits-cnn]
        [--methods joint,quant-only,random,uniform,hawq]
        [--throughput-trials 100] [--finetune-steps 0] [--out FILE]

A target is a built-in profile name, a ``.toml`` file, or ``host``: this CPU's calibrated
host profile (calibrated first if missing). The edge models (``--model fashion-resnet``)
search in two rungs (every trial on 1,000 val images, the promising ones on all 5,000).

Runs go to ``bench-results/search-runs/`` (one run directory per target × seed; rerunning
resumes them; ``--from-runs`` only tabulates finished ones). The full default run took
167 s on 2 cores (trials of ~40 ms).
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
METHODS = ("joint", "quant-only", "random", "uniform", "hawq")
HOST = "host"
GOAL_LATENCY = 0.5
GOAL_SCALING = 1.7


def _mean_sd(values: list[float]) -> dict[str, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "sd": None, "min": None, "max": None, "n": 0}
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return {
        "mean": statistics.fmean(values),
        "sd": sd,
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def _oracle_best(run_dir: Path, fp32_test: float) -> dict | None:
    """Fastest joint Pareto config whose TEST loss is <= 1 point (reference only)."""
    with open(run_dir / "pareto.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["method"] == "joint"]
    ok = [r for r in rows if (fp32_test - float(r["accuracy_test"])) * 100 <= 1.0 + 1e-9]
    if not ok:
        return None
    best = min(ok, key=lambda r: float(r["latency_vs_w8a8"]))
    return {
        "config_id": best["config_id"],
        "latency_vs_w8a8": float(best["latency_vs_w8a8"]),
        "test_loss_points": (fp32_test - float(best["accuracy_test"])) * 100,
    }


def _hardware(target: str):
    if target != HOST:
        return target
    from lowbit.models.hostcal.calibration import load_or_calibrate

    return load_or_calibrate()


def run_target(args, target: str, seed: int, runs: Path) -> dict:
    from lowbit.search import SearchSetup, ZooModel, run_search

    out = runs / f"{args.model}-{target}-s{seed}"
    start = time.perf_counter()
    if args.from_runs:
        summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        return _row(args, target, seed, summary, out, summary.get("seconds"))
    result = run_search(
        SearchSetup(
            model=ZooModel(name=args.model, finetune_steps=args.finetune_steps),
            hardware=_hardware(target),
            n_trials=args.trials,
            out_dir=out,
            workers=2,
            seed=seed,
            methods=args.methods,
            min_accuracy=args.min_accuracy,
            progress=not args.quiet,
        )
    )
    return _row(args, target, seed, result.summary, out, time.perf_counter() - start)


def _row(args, target: str, seed: int, summary: dict, out: Path, seconds) -> dict:
    best = summary["methods"]["joint"]["best_within_1pt"]
    return {
        "target": target,
        "seed": seed,
        "seconds": seconds,
        "fp32_test": summary["reference"]["fp32_test"],
        "w8a8_latency_ms": summary["reference"]["w8a8_latency_ms"],
        "best_val_selected": best,
        "best_test_oracle": _oracle_best(out, summary["reference"]["fp32_test"]),
        "hypervolume_val": {m: summary["methods"][m]["hypervolume_val"] for m in args.methods},
        "hypervolume_test": {m: summary["methods"][m]["hypervolume_test"] for m in args.methods},
        "best_within_1pt": {m: summary["methods"][m]["best_within_1pt"] for m in args.methods},
        "run_dir": str(out),
    }


def throughput(args, target: str, runs: Path) -> dict:
    from lowbit.search import SearchSetup, ZooModel, run_search

    out = {}
    for workers in (1, 2):
        run_dir = runs / f"throughput-{target}-w{workers}"
        shutil.rmtree(run_dir, ignore_errors=True)  # a fresh study: every trial is timed
        setup = SearchSetup(
            model=ZooModel(name=args.model, finetune_steps=args.finetune_steps),
            hardware=_hardware(target),
            n_trials=args.throughput_trials,
            out_dir=run_dir,
            workers=workers,
            methods=("joint",),
            progress=not args.quiet,
        )
        result = run_search(setup)
        out[workers] = result.summary["methods"]["joint"]["this_run"]
    scaling = out[2]["trials_per_minute"] / out[1]["trials_per_minute"]
    return {
        "target": target,
        "trials": args.throughput_trials,
        "trials_per_minute": {str(k): v["trials_per_minute"] for k, v in out.items()},
        "scaling_2_vs_1": scaling,
        "goal": GOAL_SCALING,
        "meets_goal": scaling >= GOAL_SCALING,
    }


def aggregate(rows: list[dict], targets: list[str], methods: tuple[str, ...]) -> dict:
    out = {}
    for target in targets:
        mine = [r for r in rows if r["target"] == target]
        val_sel = [
            r["best_val_selected"]["latency_vs_w8a8"] if r["best_val_selected"] else None
            for r in mine
        ]
        loss = [
            r["best_val_selected"]["test_loss_points"] if r["best_val_selected"] else None
            for r in mine
        ]
        oracle = [
            r["best_test_oracle"]["latency_vs_w8a8"] if r["best_test_oracle"] else None
            for r in mine
        ]
        best = min((v for v in val_sel if v is not None), default=None)
        out[target] = {
            "latency_vs_w8a8_val_selected": _mean_sd(val_sel),
            "test_loss_points_val_selected": _mean_sd(loss),
            "latency_vs_w8a8_test_oracle": _mean_sd(oracle),
            "hypervolume_val": {
                m: _mean_sd([r["hypervolume_val"][m] for r in mine]) for m in methods
            },
            "hypervolume_test": {
                m: _mean_sd([r["hypervolume_test"][m] for r in mine]) for m in methods
            },
            "latency_vs_w8a8_within_1pt": {
                m: _mean_sd([(r["best_within_1pt"][m] or {}).get("latency_vs_w8a8") for r in mine])
                for m in methods
            },
            "goal_latency_vs_w8a8": GOAL_LATENCY,
            "meets_goal_mean": (_mean_sd(val_sel)["mean"] or 9.9) <= GOAL_LATENCY,
            "best_over_seeds": best,
        }
    return out


def _fmt(stat: dict, digits: int = 3) -> str:
    if stat["mean"] is None:
        return "-"
    return f"{stat['mean']:.{digits}f} ± {stat['sd']:.{digits}f}"


def print_table(agg: dict, tp: dict | None, methods: tuple[str, ...], cpu: str) -> None:
    print()
    print(f"machine: {cpu}")
    print("best joint point within 1 point of FP32 (latency / uniform W8A8; goal <= 0.5)")
    print(f"{'target':<18} {'val-selected':>16} {'its test loss':>15} {'test oracle':>16}")
    for target, a in agg.items():
        print(
            f"{target:<18} {_fmt(a['latency_vs_w8a8_val_selected']):>16} "
            f"{_fmt(a['test_loss_points_val_selected'], 2):>15} "
            f"{_fmt(a['latency_vs_w8a8_test_oracle']):>16}"
        )
    print()
    for key, title in (
        ("hypervolume_val", "hypervolume on val (accuracy vs latency/W8A8, ref (0, 2), max 2)"),
        ("hypervolume_test", "hypervolume on test (the Pareto configs re-measured)"),
        ("latency_vs_w8a8_within_1pt", "fastest point within 1 point of FP32 on val, / W8A8"),
    ):
        print()
        print(f"{title}, mean ± sd over seeds")
        print(f"{'target':<18} " + " ".join(f"{m:>15}" for m in methods))
        for target, a in agg.items():
            print(f"{target:<18} " + " ".join(f"{_fmt(a[key][m]):>15}" for m in methods))
    if tp:
        print()
        tpm = tp["trials_per_minute"]
        print(
            f"throughput ({tp['target']}, {tp['trials']} trials): 1 worker {tpm['1']:.0f}/min, "
            f"2 workers {tpm['2']:.0f}/min, scaling {tp['scaling_2_vs_1']:.2f}x "
            f"(goal >= {GOAL_SCALING}x)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--model", default="digits-cnn")
    parser.add_argument("--targets", default="npu-bitfusion,fpga-zcu102-dsp")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--throughput-trials", type=int, default=100)
    parser.add_argument("--finetune-steps", type=int, default=0)
    parser.add_argument(
        "--min-accuracy",
        type=float,
        default=None,
        help="accuracy constraint of every searched method (val; infeasible trials are "
        "neither promoted nor on the fronts the hypervolumes count)",
    )
    parser.add_argument("--out", default=str(ROOT / "bench-results" / "bench_search.json"))
    parser.add_argument("--runs", default=str(ROOT / "bench-results" / "search-runs"))
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument(
        "--from-runs",
        action="store_true",
        help="tabulate the finished run directories' summary.json instead of searching",
    )
    args = parser.parse_args(argv)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from lowbit.models.hostcal.isa import cpu_info

    targets = [t for t in args.targets.split(",") if t]
    args.methods = tuple(m for m in args.methods.split(",") if m)
    if "joint" not in args.methods:
        parser.error("--methods must include joint")
    if Path(args.out).is_dir():  # before the runs, not after them
        parser.error(f"--out {args.out}: a directory; give the JSON file to write")
    cpu = cpu_info()["label"]
    runs = Path(args.runs)
    start = time.perf_counter()
    rows = [run_target(args, t, seed, runs) for t in targets for seed in range(args.seeds)]
    tp = throughput(args, targets[0], runs) if args.throughput_trials > 0 else None
    agg = aggregate(rows, targets, args.methods)
    print_table(agg, tp, args.methods, cpu)
    report = {
        "benchmark": "bench_search",
        "model": args.model,
        "trials": args.trials,
        "seeds": args.seeds,
        "methods": list(args.methods),
        "cpu": cpu,
        "finetune_steps": args.finetune_steps,
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
        "seconds": time.perf_counter() - start,
        "aggregate": agg,
        "throughput": tp,
        "runs": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out} ({report['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
