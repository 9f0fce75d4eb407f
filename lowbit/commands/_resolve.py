"""Shared wiring for commands that simulate: turn ``--hardware``, ``--workload``,
``--bits``, ``--plan`` and ``--set`` into a profile and a (compressed) workload.

Every bad input becomes a :class:`~lowbit.hwsim.errors.LowbitError` (one line, exit code 2).
"""

from __future__ import annotations

import argparse
import re
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from lowbit.hwsim.errors import LowbitError, WorkloadError

if TYPE_CHECKING:
    from lowbit.hwsim.profile import HardwareProfile
    from lowbit.hwsim.workload import Workload

__all__ = [
    "add_compression_arguments",
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

_BITS = re.compile(r"^W(\d+)A(\d+)$", re.IGNORECASE)
_COMPUTE_OPS = ("conv2d", "linear", "matmul")


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
    workload = resolve_workload(args.workload, allow_unmapped=args.allow_unmapped)
    return profile, apply_compression(workload, bits=args.bits, plan=args.plan)


def resolve_profile(
    spec: str, *, sets: list[str] | None = None, overrides: dict[str, object] | None = None
) -> HardwareProfile:
    """Load a profile by name or path; ``sets`` are ``key=value`` strings, ``overrides`` an
    already parsed mapping applied after them."""
    from lowbit.hwsim.profiles import load_profile, parse_set

    merged: dict[str, object] = dict(parse_set(list(sets))) if sets else {}
    merged.update(overrides or {})
    return load_profile(spec, overrides=merged or None)


def resolve_workload(spec: str, *, allow_unmapped: bool = False) -> Workload:
    """A built-in (or registered) workload name, a SCALE-Sim topology CSV path or an ONNX
    model (``.onnx``, read by :mod:`lowbit.models.onnx_workload`). An ONNX op hwsim cannot map is an
    error naming it; with ``allow_unmapped`` the rest is simulated and one warning line on
    stderr lists what was left out."""
    from lowbit.hwsim.workloads import BUILTIN_WORKLOADS, builtin_workload

    if spec.lower().endswith(".csv"):
        from lowbit.hwsim.topology import load_topology

        return load_topology(spec)
    if spec.lower().endswith(".onnx"):
        try:
            from lowbit.models.onnx_workload import import_onnx
        except ImportError as exc:
            raise LowbitError(
                f"{spec}: ONNX workloads need the models package and onnx ({exc})"
            ) from None
        imported = import_onnx(spec, allow_unmapped=allow_unmapped)
        if imported.unmapped:
            import sys

            listed = ", ".join(f"{name} ({op})" for name, op, _ in imported.unmapped)
            print(
                f"warning: {spec}: {len(imported.unmapped)} op(s) not simulated: {listed}",
                file=sys.stderr,
            )
        return imported.workload
    if spec not in BUILTIN_WORKLOADS and Path(spec).suffix:
        raise WorkloadError(
            f"{spec}: unsupported workload file type {Path(spec).suffix!r} "
            "(use a SCALE-Sim topology .csv, an ONNX model .onnx or a built-in name)"
        )
    if spec not in BUILTIN_WORKLOADS:
        _register_zoo()
    return builtin_workload(spec)


def _register_zoo() -> None:
    """Add the model zoo's networks as workloads, when the models package is installed."""
    try:
        from lowbit.models.bridge import register_zoo_workloads
    except ImportError:
        return
    register_zoo_workloads()


def parse_bits(text: str) -> tuple[int, int]:
    """``"W4A8"`` -> ``(4, 8)``; bits 1-16, or 32 for float."""
    from lowbit.hwsim.workload import FLOAT_BITS

    match = _BITS.match(text.strip())
    if not match:
        raise LowbitError(f"--bits: expected WxAy like W4A8, got {text!r}")
    w_bits, a_bits = int(match[1]), int(match[2])
    for label, bits in (("weight", w_bits), ("activation", a_bits)):
        if not (1 <= bits <= 16 or bits == FLOAT_BITS):
            raise LowbitError(
                f"--bits: {label} bits must be 1-16 or {FLOAT_BITS} (float), got {bits}"
            )
    return w_bits, a_bits


def apply_compression(workload: Workload, *, bits: str | None, plan: str | None) -> Workload:
    """``workload`` at the uniform ``bits`` (``"W4A8"``) or under the ``plan`` file; as it is
    when neither is given."""
    if bits:
        w_bits, a_bits = parse_bits(bits)
        return apply_bits(workload, w_bits=w_bits, a_bits=a_bits)
    if plan:
        return apply_plan(workload, plan)
    return workload


def apply_bits(workload: Workload, *, w_bits: int, a_bits: int) -> Workload:
    """Every compute layer at (w_bits, a_bits), other compression settings kept.
    Matmul layers run both operands at a_bits (see hwsim.workload.MatMul)."""
    by_name = {
        layer.name: replace(layer.compression, w_bits=w_bits, a_bits=a_bits)
        for layer in workload.layers
        if layer.op in _COMPUTE_OPS
    }
    return workload.with_compression(by_name)


def apply_plan(workload: Workload, path: str) -> Workload:
    """Apply a compression plan file (models.plan.CompressionPlan JSON) layer by layer.

    For a generic workload the plan is resolved per layer name (exact > ``re:`` > _default)
    and ``pin_first_last`` pins the first and last conv/linear layer. Structured pruning sets
    ``out_keep`` only: a consumer's ``in_keep`` needs the model's graph. For a model-zoo
    workload the plan is checked against the model and models.bridge.compressions gives
    every layer's compression (pinning, in_keep and integer ranks included).
    """
    try:
        from lowbit.models.plan import CompressionPlan
    except ImportError as exc:
        raise LowbitError(
            f"--plan needs the models package (models.plan), which is not available: {exc}; "
            "use --bits for a uniform bit-width"
        ) from None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise LowbitError(f"{path}: cannot read plan: {exc.strerror or exc}") from None
    try:
        plan = CompressionPlan.from_json(text)
    except LowbitError as exc:
        raise LowbitError(f"{path}: {exc}") from None
    except (ValueError, TypeError, KeyError) as exc:
        raise LowbitError(f"{path}: not a valid compression plan: {exc}") from None
    zoo = _zoo_compressions(workload, plan)
    if zoo is not None:
        return workload.with_compression(zoo)
    compute = [layer for layer in workload.layers if layer.op in _COMPUTE_OPS]
    weighted = [layer for layer in compute if layer.op != "matmul"]
    pinned = {weighted[0].name, weighted[-1].name} if plan.pin_first_last and weighted else set()
    by_name = {
        layer.name: _compression_from_spec(layer, plan.resolve(layer.name), layer.name in pinned)
        for layer in compute
    }
    return workload.with_compression(by_name)


def _zoo_compressions(workload: Workload, plan) -> dict | None:
    """Per-layer compressions from the models package when ``workload`` is a zoo model."""
    from lowbit.models.bridge import compressions
    from lowbit.models.zoo import ZOO, build

    if workload.name not in ZOO:
        return None
    model = build(workload.name)
    plan.check(model)
    names = {layer.name for layer in workload.layers}
    return {name: c for name, c in compressions(model, plan).items() if name in names}


def _compression_from_spec(layer, spec, pinned: bool):
    """hwsim Compression for one layer from a models.plan.LayerSpec, following the plan's
    rules: a pinned (first/last) layer runs W8A8 (float stays float), dense, full rank;
    ``rank_fraction`` f gives rank max(1, round(f * min(N, K))) and a rank that would not
    reduce the layer (or a grouped conv) stays full rank (models.plan.rank_for)."""
    from lowbit.hwsim.workload import FLOAT_BITS, Compression, Conv2d

    def bits(value: int | None) -> int:
        return FLOAT_BITS if value is None else value

    if pinned:
        w_bits = FLOAT_BITS if spec.w_bits is None else 8
        a_bits = FLOAT_BITS if spec.a_bits is None else 8
        return Compression(w_bits=w_bits, a_bits=a_bits)
    rank = None
    grouped = isinstance(layer, Conv2d) and layer.groups > 1
    if layer.op != "matmul" and not grouped and (spec.rank or spec.rank_fraction):
        (dense,) = layer.with_compression(Compression()).gemms()
        full = min(dense.N, dense.K)
        rank = spec.rank if spec.rank is not None else max(1, round(spec.rank_fraction * full))
        rank = rank if rank < full else None
    try:
        return Compression(
            w_bits=bits(spec.w_bits),
            a_bits=bits(spec.a_bits),
            out_keep=1.0 if layer.op == "matmul" else spec.keep,
            nm=tuple(spec.nm) if spec.nm and layer.op != "matmul" else None,
            density=1.0 if layer.op == "matmul" else spec.density,
            rank=rank,
        )
    except ValueError as exc:
        raise LowbitError(f"plan for layer {layer.name!r}: {exc}") from None
