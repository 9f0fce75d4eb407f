"""The README's zoo table: params, MACs and test accuracy at FP32 / W8A8 / W4A8 / W2A8.

Each quantized model is ``models.compress`` of the trained FP32 model with a uniform plan
(per-channel symmetric weights, min-max activation ranges calibrated on the val split;
first and last layer pinned to W8A8 as ``CompressionPlan`` does by default), measured on the
test split. MACs are per sample (``models.bridge.to_workload``). Prints Markdown.

Usage::

    .venv/bin/python benchmarks/accuracy_table.py [--seed S] [--json FILE] [--models A,B]

Edge models train on first use (minutes each; ``lowbit train --model NAME`` caches them).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from lowbit.models import compress, evaluate, load_split, load_trained, to_workload
from lowbit.models.accuracy import as_model_input
from lowbit.models.compression.plan import CompressionPlan
from lowbit.models.zoo import ZOO

BITS = ("W8A8", "W4A8", "W2A8")


def rows(*, seed: int, names: list[str]) -> list[dict]:
    out = []
    for name in names:
        entry = ZOO[name]
        base = load_trained(name, seed=seed, progress=True)
        calib = as_model_input(base, load_split(base.dataset, "val")[0])
        row = {
            "model": name,
            "dataset": entry.dataset,
            "params": sum(p.numel() for p in base.parameters()),
            "macs": to_workload(base).macs,
            "FP32": evaluate(base, split="test"),
        }
        for bits in BITS:
            small = compress(base, CompressionPlan.from_bits_string(bits), calib=calib)
            row[bits] = evaluate(small, split="test")
        out.append(row)
    return out


def markdown(table: list[dict]) -> str:
    head = ["model", "dataset", "params", "MACs", "FP32", *BITS]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * 6) + "|"]
    for r in table:
        cells = [r["model"], r["dataset"], f"{r['params']:,}", f"{r['macs']:,}"]
        cells += [f"{100 * r[key]:.1f} %" for key in ("FP32", *BITS)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    parser.add_argument(
        "--models", default=",".join(ZOO), help="comma-separated zoo names (default: all)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    table = rows(seed=args.seed, names=[n for n in args.models.split(",") if n])
    sys.stdout.write(markdown(table))
    if args.json:
        args.json.write_text(json.dumps(table, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
