"""Two search runs as pandas DataFrames: both Pareto fronts in one figure, the fastest
configuration within 1 point of FP32, and where its time goes, layer by layer.

Any two run directories (the ``--out`` of ``lowbit search``: two seeds, two targets, two
budgets) work. Run::

    python examples/compare_two_runs.py runs/a runs/b --out fronts.png

Notebook-style: each ``# %%`` cell can run on its own in an editor that knows cells
(VS Code, Jupyter through jupytext) once ``RUN_DIRS`` names two runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib
import pandas as pd

from lowbit.results import Run, load_run

matplotlib.use("Agg")

# %% [markdown]
# Load both runs. ``resimulate_layers`` splits each layer's cycles into compute, memory
# stall and fixed overhead (a zoo model's shapes are rebuilt; nothing is trained).

RUN_DIRS = ["runs/a", "runs/b"]


def load(run_dirs: list[str]) -> list[Run]:
    return [load_run(d, resimulate_layers=True) for d in run_dirs]


# %% [markdown]
# Each run's Pareto front: its Pareto configurations of every method, latency against
# validation accuracy, keeping the points no faster config beats on accuracy.


def front(pareto: pd.DataFrame) -> pd.DataFrame:
    ordered = pareto.sort_values(["latency_ms", "accuracy_val"], ascending=[True, False])
    best_so_far = ordered.accuracy_val.cummax().shift(fill_value=-1.0)
    return ordered[ordered.accuracy_val > best_so_far]


def plot_fronts(runs: list[Run], out: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for run in runs:
        points = front(run.pareto)
        label = f"{run.run_dir.name} ({run.model} on {run.hardware})"
        ax.step(points.latency_ms, 100 * points.accuracy_val, where="post", marker="o", label=label)
        ax.axhline(100 * run.fp32_val, linestyle=":", linewidth=0.8, color="grey")
    ax.set_xlabel("simulated latency (ms)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("Pareto fronts (dotted: FP32)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


# %% [markdown]
# The fastest configuration within 1 point of FP32 on val, over both runs (the search's
# own rule: ``best_within_1pt`` in summary.json, per method).


def fastest_within_one_point(runs: list[Run]) -> tuple[Run, pd.Series]:
    candidates = pd.concat(
        [
            run.pareto.assign(run=i)[run.pareto.accuracy_val >= run.fp32_val - 0.01]
            for i, run in enumerate(runs)
        ],
        ignore_index=True,
    )
    if candidates.empty:
        raise SystemExit("no Pareto configuration is within 1 point of FP32 in either run")
    best = candidates.sort_values(["latency_ms", "accuracy_val"], ascending=[True, False])
    row = best.iloc[0]
    return runs[row["run"]], row


# %% [markdown]
# Its per-layer table: bits, kept channels, rank, MACs and cycles.

LAYER_VIEW = [
    "layer",
    "op",
    "w_bits",
    "a_bits",
    "keep",
    "rank_fraction",
    "macs",
    "compute_cycles",
    "stall_cycles",
    "overhead_cycles",
    "total_cycles",
    "latency_ms",
]


def layer_table(run: Run, config_id: str) -> pd.DataFrame:
    return run.layers.loc[run.layers.config_id == config_id, LAYER_VIEW]


# %%


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs=2, metavar="RUN_DIR", help="two search run directories")
    parser.add_argument("--out", type=Path, default=Path("fronts.png"), help="the figure")
    args = parser.parse_args(argv)

    runs = load(args.runs)
    print(f"wrote {plot_fronts(runs, args.out)}")
    run, best = fastest_within_one_point(runs)
    print(
        f"fastest within 1 point of FP32: {best['config_id']} of {run.run_dir.name} "
        f"({best['method']}): {best['latency_ms']:.4g} ms, {best['latency_vs_w8a8']:.3f}x W8A8, "
        f"val {best['accuracy_val']:.2%}, test {best['accuracy_test']:.2%}"
    )
    print(layer_table(run, best["config_id"]).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
