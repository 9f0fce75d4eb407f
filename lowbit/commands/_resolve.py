"""Shared wiring for commands that simulate: turn ``--hardware``, ``--workload``,
``--bits``, ``--plan`` and ``--set`` into a profile and a (compressed) workload.

Every bad input becomes a :class:`~lowbit.hwsim.errors.LowbitError` (one line, exit code 2).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from lowbit.hwsim import DEFAULT_ENGINE, engine_names
from lowbit.models.workloads import (
    apply_bits,
    apply_plan,
    parse_bits,
    read_plan,
    resolve_workload,
    runs_unquantized_as_float,
)

if TYPE_CHECKING:
    from lowbit.hwsim.profile import HardwareProfile
    from lowbit.hwsim.workload import Workload

__all__ = [
    "add_compression_arguments",
    "add_engine_argument",
    "add_hardware_argument",
    "add_set_argument",
    "add_target_arguments",
    "apply_bits",
    "apply_compression",
    "apply_plan",
    "parse_bits",
    "resolve_profile",
    "resolve_target",
    "resolve_workload",
]


def _print_warning(line: str) -> None:
    print(line, file=sys.stderr)


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --hardware, --workload, --bits/--plan and --set to ``parser``."""
    add_hardware_argument(parser)
    parser.add_argument(
        "--workload",
        required=True,
        metavar="NAME|FILE.csv|FILE.onnx",
        help="built-in workload name (resnet18, bert-base, a zoo model, ...), a SCALE-Sim "
        "topology CSV or an ONNX model",
    )
    parser.add_argument(
        "--allow-unmapped",
        action="store_true",
        help="ONNX: simulate the ops hwsim can map and list the others (default: an error)",
    )
    add_compression_arguments(parser)
    add_set_argument(parser)


def add_hardware_argument(parser: argparse.ArgumentParser) -> None:
    """Add the required --hardware (a profile name or file) to ``parser``."""
    parser.add_argument(
        "--hardware",
        required=True,
        metavar="NAME|FILE",
        help="built-in profile name, a profile .toml or a SCALE-Sim .cfg",
    )


def add_compression_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --bits and --plan (one or the other; read by :func:`apply_compression`)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--bits",
        metavar="WxAy",
        help="uniform bit-widths for every compute layer, e.g. W4A8 (matmuls use the A bits)",
    )
    group.add_argument("--plan", metavar="PLAN.json", help="per-layer compression plan (JSON)")


def add_engine_argument(parser: argparse.ArgumentParser) -> None:
    """Add --engine: one of hwsim's engines, hwsim's default by default."""
    parser.add_argument(
        "--engine",
        choices=engine_names(),
        default=DEFAULT_ENGINE,
        help=f"default: {DEFAULT_ENGINE}",
    )


def add_set_argument(parser: argparse.ArgumentParser) -> None:
    """Add the repeatable --set KEY=VALUE profile override (``args.sets``) to ``parser``."""
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a profile key, e.g. --set compute.rows=64 (repeatable)",
    )


def resolve_target(args: argparse.Namespace) -> tuple[HardwareProfile, Workload]:
    """The profile and the compressed workload the common arguments describe."""
    profile = resolve_profile(args.hardware, sets=args.sets)
    workload = resolve_workload(
        args.workload,
        allow_unmapped=args.allow_unmapped,
        warn=_print_warning,
        float_unquantized=args.bits is None
        and not args.plan
        and runs_unquantized_as_float(profile),
    )
    return profile, apply_compression(
        workload,
        bits=args.bits,
        plan=args.plan,
        round_trip=profile.overheads.two_grid_round_trip,
    )


def resolve_profile(
    spec: str, *, sets: list[str] | None = None, overrides: dict[str, object] | None = None
) -> HardwareProfile:
    """Load a profile by name or path; ``sets`` are ``key=value`` strings, ``overrides`` an
    already parsed mapping applied after them."""
    from lowbit.hwsim.profiles import load_profile, parse_set

    merged: dict[str, object] = dict(parse_set(list(sets))) if sets else {}
    merged.update(overrides or {})
    return load_profile(spec, overrides=merged or None)


def apply_compression(
    workload: Workload, *, bits: str | None, plan: str | None, round_trip: bool = False
) -> Workload:
    """``workload`` at the uniform ``bits`` (``"W4A8"``) or under the ``plan`` file (with
    ``round_trip``: the target's two-grid round trip, ``apply_plan``); as
    it is when neither is given."""
    if bits is not None:  # "" is a mistake, not "no --bits"
        w_bits, a_bits = parse_bits(bits)
        return apply_bits(workload, w_bits=w_bits, a_bits=a_bits)
    if plan:
        return apply_plan(workload, read_plan(plan), round_trip=round_trip)
    return workload
