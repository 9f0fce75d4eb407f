"""``lowbit train``: train a zoo model with fixed seeds and cache its checkpoint."""

from __future__ import annotations

import argparse
import json
import sys

from . import _args
from ._data_dir import add_data_dir_argument, apply_data_dir
from .models_cmd import format_table

HELP = "train a zoo model (deterministic) and cache the checkpoint under $LOWBIT_CACHE"

_FORMATS = ("table", "json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="NAME", help="zoo model name")
    parser.add_argument("--seed", type=_args.seed, default=0, help="training seed (default: 0)")
    parser.add_argument(
        "--force", action="store_true", help="retrain even if a checkpoint is cached"
    )
    parser.add_argument("--format", choices=_FORMATS, default="table", help="default: table")
    add_data_dir_argument(parser)


def run(args: argparse.Namespace) -> int:
    apply_data_dir(args)
    from lowbit.models.train import load_checkpoint, train

    trained = None if args.force else load_checkpoint(args.model, seed=args.seed)
    cached = trained is not None
    if trained is None:
        trained = train(args.model, seed=args.seed, progress=True)
    result = {
        "model": trained.name,
        "seed": trained.seed,
        "cached": cached,
        "checkpoint": str(trained.path),
        **trained.metrics,
    }
    if args.format == "json":
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    rows = [
        ["model", result["model"]],
        ["seed", str(result["seed"])],
        ["FP32 val accuracy", f"{result['val_accuracy']:.2%}"],
        ["FP32 test accuracy", f"{result['test_accuracy']:.2%}"],
        ["training time", f"{result['train_seconds']:.1f} s"],
        ["checkpoint", result["checkpoint"] + (" (cached)" if cached else "")],
    ]
    sys.stdout.write(format_table(["", "value"], rows))
    return 0
