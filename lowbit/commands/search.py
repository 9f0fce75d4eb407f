"""``lowbit search``: multi-objective search of per-layer bits, pruning and rank on Ray."""

from __future__ import annotations

import argparse
import re
import sys

from lowbit.hwsim.errors import LowbitError
from lowbit.search.registry import (
    BASELINE_NAMES,
    DEFAULT_FIDELITY,
    DEFAULT_OBJECTIVES,
    DEFAULT_SAMPLER,
    DEFAULT_SCREEN,
    FIDELITY_MODES,
    OBJECTIVE_NAMES,
    SAMPLER_NAMES,
    SCREEN_MODES,
)

from . import _args
from ._data_dir import add_data_dir_argument, apply_data_dir

HELP = "search per-layer compression (accuracy vs simulated latency) with Optuna on Ray"

#: "accuracy,latency[,energy][,size]": the defaults, then each optional objective
_OBJECTIVES_HELP = ",".join(DEFAULT_OBJECTIVES) + "".join(
    f"[,{name}]" for name in OBJECTIVE_NAMES if name not in DEFAULT_OBJECTIVES
)
_STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,199}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="NAME", help="zoo model name")
    parser.add_argument(
        "--hardware", required=True, metavar="NAME|FILE", help="built-in profile or a .toml"
    )
    parser.add_argument(
        "--trials",
        type=_args.bounded_int(1, 10**6),
        default=100,
        help="completed trials (default 100)",
    )
    parser.add_argument(
        "--workers", type=_args.bounded_int(1, 4096), default=1, help="Ray workers (default 1)"
    )
    parser.add_argument(
        "--study",
        metavar="NAME",
        help="study name (default MODEL-HW-sSEED); one driver per study and storage at a "
        "time (a second one is refused; a killed one's lock is taken over)",
    )
    parser.add_argument(
        "--storage",
        metavar="URL",
        help="sqlite:///x.db, postgresql://..., or a .journal file (default: OUT/study.journal)",
    )
    parser.add_argument(
        "--sampler",
        choices=SAMPLER_NAMES,
        default=DEFAULT_SAMPLER,
        help=f"default {DEFAULT_SAMPLER}",
    )
    parser.add_argument("--seed", type=_args.seed, default=0, help="training and sampler seed")
    parser.add_argument("--out", metavar="DIR", help="run directory (default runs/STUDY)")
    parser.add_argument(
        "--ray-address", metavar="ADDR", help="connect to this Ray cluster (default: local)"
    )
    parser.add_argument("--max-latency-ms", type=float, metavar="X", help="latency constraint")
    parser.add_argument(
        "--min-accuracy", type=float, metavar="Y", help="accuracy constraint (fraction, 0-1)"
    )
    parser.add_argument(
        "--screen",
        choices=SCREEN_MODES,
        default=DEFAULT_SCREEN,
        help="sensitivity screen: drop each layer's choices that alone fall below the "
        "accuracy floor before searching (default auto: when --min-accuracy is given)",
    )
    parser.add_argument(
        "--objectives",
        default=",".join(DEFAULT_OBJECTIVES),
        metavar="LIST",
        help=f"{_OBJECTIVES_HELP} (default {','.join(DEFAULT_OBJECTIVES)})",
    )
    parser.add_argument(
        "--baselines",
        default="",
        metavar="LIST",
        help=f"comma list of {', '.join(BASELINE_NAMES)} or 'all' (same budget, same run dir)",
    )
    parser.add_argument(
        "--pin-first-last", action="store_true", help="keep the first/last layer at W8A8"
    )
    parser.add_argument(
        "--finetune-steps",
        type=_args.steps,
        default=0,
        metavar="N",
        help="QAT recovery steps per trial before measuring accuracy (default 0)",
    )
    parser.add_argument(
        "--trial-timeout", type=float, metavar="S", help="fail a trial after S seconds"
    )
    parser.add_argument(
        "--fidelity",
        choices=FIDELITY_MODES,
        default=DEFAULT_FIDELITY,
        help="multi: every trial on a cheap val subset first, the promising ones promoted to "
        "all of val (+ QAT); full: every trial on all of val; auto (default): multi when val "
        "has more than 2,000 images",
    )
    parser.add_argument(
        "--cheap-val",
        type=int,
        default=1000,
        metavar="N",
        help="val images of the cheap rung (stratified, fixed; default 1000)",
    )
    parser.add_argument(
        "--calib-samples",
        type=int,
        default=512,
        metavar="N",
        help="val images activations are calibrated on, at every rung (stratified, fixed; "
        "default 512, all of val when it is smaller)",
    )
    parser.add_argument(
        "--promote-margin",
        type=float,
        default=2.0,
        metavar="Z",
        help="promote a cheap trial unless one as fast is more accurate by more than Z "
        "standard errors of the cheap subset's accuracy (default 2)",
    )
    parser.add_argument(
        "--co-design",
        action="store_true",
        help="also search the profile's [[tunables]] (array size, SRAMs, bandwidth, ...)",
    )
    parser.add_argument(
        "--area-budget",
        type=float,
        metavar="MM2",
        help="with --co-design: silicon area limit in mm2 (the profile's [area] model)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the search space as JSON and exit"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    add_data_dir_argument(parser)


def parse_list(text: str, valid: tuple[str, ...], what: str) -> tuple[str, ...]:
    """Comma list -> names (``all`` = every valid name); unknown names are an error."""
    items = tuple(t.strip() for t in text.split(",") if t.strip())
    if items == ("all",):
        return valid
    bad = [t for t in items if t not in valid]
    if bad:
        raise LowbitError(f"--{what}: unknown {', '.join(bad)} (valid: {', '.join(valid)}, all)")
    return items


def check_study_name(name: str) -> None:
    """A study name is one plain path component: it names the run directory runs/NAME."""
    if not _STUDY_NAME.fullmatch(name):
        raise LowbitError(
            f"--study: {name!r} must start with a letter or digit and hold only letters, "
            "digits and . _ + - (it names the run directory runs/NAME)"
        )


def run(args: argparse.Namespace) -> int:
    apply_data_dir(args)
    import optuna

    from lowbit.search.run import run_search
    from lowbit.search.setup import SearchSetup, ZooModel
    from lowbit.search.zoo import zoo_space

    if not getattr(args, "verbose", False):
        optuna.logging.set_verbosity(optuna.logging.WARNING)

    if args.area_budget is not None and not args.co_design:
        raise LowbitError("--area-budget needs --co-design")
    if args.area_budget is not None and not args.area_budget > 0:
        raise LowbitError(f"--area-budget: must be > 0 mm2, got {args.area_budget:g}")
    if args.dry_run:
        codesign = None
        if args.co_design:
            from lowbit.search.codesign import build_codesign

            codesign, _ = build_codesign(args.hardware, area_budget_mm2=args.area_budget)
        space = zoo_space(
            args.model, args.hardware, pin_first_last=args.pin_first_last, codesign=codesign
        )
        sys.stdout.write(space.to_json() + "\n")
        return 0
    baselines = parse_list(args.baselines, BASELINE_NAMES, "baselines")
    objectives = parse_list(args.objectives, OBJECTIVE_NAMES, "objectives")
    from pathlib import Path

    from lowbit.hwsim.fileio import check_output_dir
    from lowbit.hwsim.profiles import load_profile
    from lowbit.search.storage import check_driver_lock, check_storage

    if args.study is not None:
        check_study_name(args.study)
    profile = load_profile(args.hardware)
    suffix = "-codesign" if args.co_design else ""
    study = args.study or f"{args.model}-{profile.name}-s{args.seed}{suffix}"
    out = check_output_dir(args.out, flag="--out") if args.out is not None else None
    out = out or Path("runs") / study
    try:  # before training the model and starting Ray
        check_storage(args.storage, run_dir=out)
        check_driver_lock(args.storage, run_dir=out, study=study)
    except ValueError as exc:
        raise LowbitError(str(exc)) from None
    try:
        setup = SearchSetup(
            model=ZooModel(
                name=args.model,
                finetune_steps=args.finetune_steps,
                fidelity=args.fidelity,
                cheap_val_samples=args.cheap_val,
                calib_samples=args.calib_samples,
                promote_margin_se=args.promote_margin,
            ),
            hardware=args.hardware if args.co_design else profile,
            n_trials=args.trials,
            out_dir=out,
            workers=args.workers,
            study_name=study,
            storage=args.storage,
            sampler=args.sampler,
            seed=args.seed,
            ray_address=args.ray_address,
            max_latency_ms=args.max_latency_ms,
            min_accuracy=args.min_accuracy,
            methods=("joint", *baselines),
            objectives=objectives,
            pin_first_last=args.pin_first_last,
            trial_timeout_s=args.trial_timeout,
            progress=not args.quiet,
            co_design=args.co_design,
            area_budget_mm2=args.area_budget,
            screen=args.screen,
        )
        result = run_search(setup)
    except ValueError as exc:  # bad storage URL and similar settings
        raise LowbitError(str(exc)) from None
    sys.stdout.write(format_summary(result.summary))
    return 0


def format_summary(summary: dict) -> str:
    """A plain-text table of the methods of a run."""
    ref = summary["reference"]
    lines = [
        f"{summary['model']} on {summary['hardware']['name']}: FP32 val {ref['fp32_val']:.2%} "
        f"test {ref['fp32_test']:.2%}, W8A8 latency {ref['w8a8_latency_ms']:.4g} ms",
        f"hypervolume: accuracy vs latency/W8A8, reference point "
        f"{tuple(summary['hypervolume']['reference_point'])} (max 2.0)",
        "",
        f"{'method':<12} {'done':>5} {'failed':>6} {'HV val':>7} {'HV test':>7} "
        f"{'best ms @-1pt':>13} {'speed-up':>8} {'test acc':>8}",
    ]
    fidelity = summary.get("fidelity") or {}
    if "cheap" in (fidelity.get("rungs") or []):
        lines.insert(
            2,
            f"rungs: cheap ({fidelity['cheap_val']} val images, no QAT) -> full "
            f"({fidelity.get('val_samples')} val images); HV and Pareto from full-rung trials",
        )
    for name, m in summary["methods"].items():
        best = m["best_within_1pt"]
        ms = f"{best['latency_ms']:.4g}" if best else "-"
        speed = f"{m['speedup_vs_w8a8']:.2f}x" if m["speedup_vs_w8a8"] else "-"
        acc = f"{best['accuracy_test']:.2%}" if best else "-"
        lines.append(
            f"{name:<12} {m['completed']:>5} {m['failed']:>6} {m['hypervolume_val']:>7.4f} "
            f"{m['hypervolume_test']:>7.4f} {ms:>13} {speed:>8} {acc:>8}"
        )
    counts = [
        f"{name} {m['rungs']['full']}/{m['completed']}"
        for name, m in summary["methods"].items()
        if m.get("rungs") and "cheap" in (fidelity.get("rungs") or [])
    ]
    if counts:
        lines.append("trials at the full rung (the rest kept cheap): " + ", ".join(counts))
    screen = summary.get("screen")
    if screen:
        dropped = sum(len(v) for v in screen["dropped"].values())
        lines.append(
            f"sensitivity screen: {screen['evaluations']} one-at-a-time evaluations "
            f"({screen['seconds']:.0f} s) dropped {dropped} choices below the floor "
            f"{screen['floor']:.2%}; searched space {screen['size_after']:.3g} of "
            f"{screen['size_before']:.3g} configurations ({screen['file']})"
        )
    codesign = summary.get("co_design")
    if codesign:
        budget = codesign["area_budget_mm2"]
        lines.append("")
        lines.append(
            f"co-design: {len(codesign['tunables'])} hardware parameters, area budget "
            + (f"{budget:g} mm2" if budget else "none")
            + f" (the profile as given: {codesign['base_area_mm2']:.3g} mm2)"
        )
    lines.append("")
    lines.append(f"run directory: {summary.get('run_dir', '')}")
    return "\n".join(lines) + "\n"
