"""``lowbit evaluate``: compress a trained zoo model with a plan and measure its accuracy.

``--config CONFIG.json`` evaluates exactly what a search's deployment config describes: its
model and training seed, plan, QAT steps and seed, and calibration subset, on the worker's
torch thread count, so ``--split val`` gives the config's recorded val accuracy again (the
config may have been copied anywhere: it needs nothing from its run directory).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lowbit.hwsim.errors import LowbitError

from . import _args
from ._data_dir import add_data_dir_argument, apply_data_dir
from .models_cmd import format_table

if TYPE_CHECKING:
    from lowbit.models.compression.plan import CompressionPlan

HELP = "compress a zoo model (--plan, --bits or a search's --config) and measure its accuracy"

_FORMATS = ("table", "json")
#: options a --config fixes itself
_FIXED_BY_CONFIG = ("model", "seed", "qat_steps", "calib_samples")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", metavar="NAME", help="zoo model name (with --plan/--bits)")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--plan", metavar="PLAN.json", help="per-layer compression plan (JSON)")
    group.add_argument(
        "--bits", metavar="WxAy", help="uniform bit-widths, e.g. W4A8 (FP for float: WFPA8)"
    )
    group.add_argument(
        "--config",
        metavar="CONFIG.json",
        help="a search's deployment config: evaluate exactly what it describes (model, seed, "
        "plan, QAT, calibration subset)",
    )
    parser.add_argument("--split", choices=("val", "test"), default="test", help="default: test")
    parser.add_argument("--seed", type=_args.seed, help="training seed (default: 0)")
    parser.add_argument(
        "--qat-steps",
        type=_args.steps,
        metavar="N",
        help="QAT steps after compression, seeded with --seed (default: 0)",
    )
    parser.add_argument(
        "--calib-samples",
        type=_args.bounded_int(1, 10**9),
        metavar="N",
        help="calibrate on a stratified subset of N val images, seed 0, as a search does "
        "(default: all of val)",
    )
    parser.add_argument("--format", choices=_FORMATS, default="table", help="default: table")
    add_data_dir_argument(parser)


def load_plan(args: argparse.Namespace) -> CompressionPlan:
    """The CompressionPlan from ``--plan FILE`` or ``--bits WxAy``."""
    from lowbit.models.compression.plan import CompressionPlan
    from lowbit.models.workloads import read_plan

    if args.bits is not None:
        return CompressionPlan.from_bits_string(args.bits)
    return read_plan(args.plan)


def _from_config(args: argparse.Namespace) -> tuple[Any, CompressionPlan, dict[str, Any]]:
    """(config, plan, build_compressed keyword arguments) of ``--config``."""
    from lowbit.models.compression.plan import CompressionPlan
    from lowbit.search.config import load_config

    given = [f"--{k.replace('_', '-')}" for k in _FIXED_BY_CONFIG if getattr(args, k) is not None]
    if given:
        raise LowbitError(f"--config fixes {', '.join(given)} itself: drop them")
    path = Path(args.config)
    cfg = load_config(path)
    steps = 0
    if cfg.qat_steps is None:  # schema 1: the QAT steps are in the run's summary.json
        from .export import finetune_steps_of

        steps = finetune_steps_of(path)
    return cfg, CompressionPlan.from_dict(cfg.plan), cfg.build_kwargs(qat_steps=steps)


def _check_calibration(cfg: Any, dataset: str) -> None:
    """The config's calibration subset must be the one this val split gives."""
    if cfg.calib_sha256 is None or cfg.calib_samples is None:
        return
    from lowbit.models.data import load_split
    from lowbit.models.export.calib_subset import stratified_subset, subset_sha256

    _, labels = load_split(dataset, "val")
    seed = cfg.calib_seed if cfg.calib_seed is not None else 0
    index = stratified_subset(labels.numpy(), samples=cfg.calib_samples, seed=seed)
    if subset_sha256(index) != cfg.calib_sha256:
        raise LowbitError(
            f"config {cfg.id}: its calibration subset ({cfg.calib_samples} val images, seed "
            f"{seed}) is not the one this {dataset} val split gives: the data differ"
        )


def run(args: argparse.Namespace) -> int:
    apply_data_dir(args)
    import torch

    threads = torch.get_num_threads()
    try:
        return _run(args)
    finally:
        torch.set_num_threads(threads)


def _run(args: argparse.Namespace) -> int:
    import torch

    from lowbit.models.accuracy import accuracy, as_model_input
    from lowbit.models.data import load_split
    from lowbit.models.export.deploy import build_compressed

    cfg = None
    if args.config:
        cfg, plan, kwargs = _from_config(args)
        model = cfg.model
        if cfg.threads:
            torch.set_num_threads(cfg.threads)  # the search worker's float reduction order
    else:
        if args.model is None:
            raise LowbitError("--model is required with --plan or --bits")
        for key in ("qat_steps", "calib_samples"):
            value = getattr(args, key)
            if value is not None and value < (0 if key == "qat_steps" else 1):
                flag = "--" + key.replace("_", "-")
                raise LowbitError(f"{flag} must be >= {0 if key == 'qat_steps' else 1}")
        plan, model = load_plan(args), args.model
        kwargs = {
            "seed": args.seed or 0,
            "finetune_steps": args.qat_steps or 0,
            "calib_samples": args.calib_samples,
        }
    base, small = build_compressed(model, plan, **kwargs)
    if cfg is not None:
        _check_calibration(cfg, base.dataset)
    x, labels = load_split(base.dataset, args.split)
    x = as_model_input(base, x)
    result = {
        "model": model,
        "seed": kwargs["seed"],
        "split": args.split,
        "n": len(labels),
        "accuracy": accuracy(small, x, labels),
        "fp32_accuracy": accuracy(base, x, labels),
        "qat_steps": kwargs["finetune_steps"],
        "calib_samples": kwargs["calib_samples"],
        "plan": plan.to_dict(),
    }
    if cfg is not None:
        recorded = cfg.accuracy_val if args.split == "val" else cfg.accuracy_test
        result.update(
            config_id=cfg.id, recorded_accuracy=recorded, reproduces=result["accuracy"] == recorded
        )
    if args.format == "json":
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    calib = kwargs["calib_samples"]
    rows = [
        ["model", f"{model} (seed {kwargs['seed']})"],
        ["plan", args.bits or args.plan or f"{args.config} ({cfg.id})"],
        ["QAT steps", str(kwargs["finetune_steps"])],
        ["calibration", "all of val" if calib is None else f"{calib} val images"],
        ["split", f"{args.split} ({result['n']} samples)"],
        ["FP32 accuracy", f"{result['fp32_accuracy']:.2%}"],
        ["compressed accuracy", f"{result['accuracy']:.2%}"],
        ["change", f"{(result['accuracy'] - result['fp32_accuracy']) * 100:+.2f} points"],
    ]
    if cfg is not None:
        same = "reproduced exactly" if result["reproduces"] else "DIFFERS"
        rows.append(["recorded by the search", f"{result['recorded_accuracy']:.4%} ({same})"])
    sys.stdout.write(format_table(["", "value"], rows))
    return 0
