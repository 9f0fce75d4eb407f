"""``lowbit models``: the model zoo with parameters, MACs and measured FP32 accuracy."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from . import _args
from ._data_dir import add_data_dir_argument, apply_data_dir

HELP = "list the model zoo: dataset, parameters, MACs per sample, FP32 test accuracy"

_FORMATS = ("table", "json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=_args.seed, default=0, help="training seed (default: 0)")
    parser.add_argument(
        "--no-train",
        action="store_true",
        help="do not train missing checkpoints (their accuracy is shown as '-' / null)",
    )
    parser.add_argument("--format", choices=_FORMATS, default="table", help="default: table")
    add_data_dir_argument(parser)


def run(args: argparse.Namespace) -> int:
    apply_data_dir(args)
    rows = zoo_rows(seed=args.seed, train=not args.no_train)
    if args.format == "json":
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    table = [
        [
            row["name"],
            row["dataset"],
            f"{row['params']:,}",
            f"{row['macs']:,}",
            "-" if row["fp32_test_accuracy"] is None else f"{row['fp32_test_accuracy']:.2%}",
            row["description"],
        ]
        for row in rows
    ]
    headers = ["model", "dataset", "params", "MACs", "FP32 test acc", "architecture"]
    sys.stdout.write(format_table(headers, table))
    return 0


def zoo_rows(*, seed: int, train: bool) -> list[dict]:
    """One dict per zoo model: name, dataset, description, params, macs, fp32_test_accuracy,
    seed. MACs are per sample (batch 1, hwsim's count of the dense model)."""
    from lowbit.models.bridge import to_workload
    from lowbit.models.train import load_checkpoint
    from lowbit.models.train import train as train_model
    from lowbit.models.zoo import ZOO, build

    rows = []
    for name, entry in ZOO.items():
        cached = load_checkpoint(name, seed=seed)
        if cached is None and train:
            cached = train_model(name, seed=seed)
        model = cached.model if cached is not None else build(name, seed=seed)
        rows.append(
            {
                "name": name,
                "dataset": entry.dataset,
                "description": entry.description,
                "params": sum(p.numel() for p in model.parameters()),
                "macs": to_workload(model).macs,
                "fp32_test_accuracy": cached.metrics["test_accuracy"] if cached else None,
                "seed": seed,
            }
        )
    return rows


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned text columns separated by two spaces, with a rule under the header."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return (
            "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip() + "\n"
        )

    return line(headers) + line(["-" * w for w in widths]) + "".join(line(r) for r in rows)
