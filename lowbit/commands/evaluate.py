"""``lowbit evaluate``: compress a trained zoo model with a plan and measure its accuracy."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from lowbit.hwsim.errors import LowbitError

from ._data_dir import add_data_dir_argument, apply_data_dir
from .models_cmd import format_table

if TYPE_CHECKING:
    from lowbit.models.compression.plan import CompressionPlan

HELP = "compress a zoo model (--plan or --bits; calibrated on val) and measure its accuracy"

_FORMATS = ("table", "json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="NAME", help="zoo model name")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--plan", metavar="PLAN.json", help="per-layer compression plan (JSON)")
    group.add_argument(
        "--bits", metavar="WxAy", help="uniform bit-widths, e.g. W4A8 (FP for float: WFPA8)"
    )
    parser.add_argument("--split", choices=("val", "test"), default="test", help="default: test")
    parser.add_argument("--seed", type=int, default=0, help="training seed (default: 0)")
    parser.add_argument("--format", choices=_FORMATS, default="table", help="default: table")
    add_data_dir_argument(parser)


def load_plan(args: argparse.Namespace) -> CompressionPlan:
    """The CompressionPlan from ``--plan FILE`` or ``--bits WxAy``."""
    from lowbit.models.compression.plan import CompressionPlan

    if args.bits:
        return CompressionPlan.from_bits_string(args.bits)
    try:
        text = Path(args.plan).read_text(encoding="utf-8")
    except OSError as exc:
        raise LowbitError(f"{args.plan}: cannot read plan: {exc.strerror or exc}") from None
    try:
        return CompressionPlan.from_json(text)
    except LowbitError as exc:
        raise LowbitError(f"{args.plan}: {exc}") from None


def run(args: argparse.Namespace) -> int:
    apply_data_dir(args)
    from lowbit.models import compress, evaluate, load_split, load_trained
    from lowbit.models.accuracy import as_model_input

    plan = load_plan(args)
    base = load_trained(args.model, seed=args.seed)
    calib, _ = load_split(base.dataset, "val")
    small = compress(base, plan, calib=as_model_input(base, calib))
    _, labels = load_split(base.dataset, args.split)
    result = {
        "model": args.model,
        "seed": args.seed,
        "split": args.split,
        "n": len(labels),
        "accuracy": evaluate(small, split=args.split),
        "fp32_accuracy": evaluate(base, split=args.split),
        "plan": plan.to_dict(),
    }
    if args.format == "json":
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    rows = [
        ["model", f"{args.model} (seed {args.seed})"],
        ["plan", args.bits or args.plan],
        ["split", f"{args.split} ({result['n']} samples)"],
        ["FP32 accuracy", f"{result['fp32_accuracy']:.2%}"],
        ["compressed accuracy", f"{result['accuracy']:.2%}"],
        ["change", f"{(result['accuracy'] - result['fp32_accuracy']) * 100:+.2f} points"],
    ]
    sys.stdout.write(format_table(["", "value"], rows))
    return 0
