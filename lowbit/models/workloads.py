"""Simulator workloads from what a user names, and a compression applied to them.

One place for the CLI and the HTTP service: a workload spec (a built-in network, a zoo
model, a SCALE-Sim topology ``.csv`` or an ONNX model) becomes an hwsim
:class:`~lowbit.hwsim.workload.Workload`; uniform bit-widths (``"W4A8"``) or a
:class:`~lowbit.models.compression.plan.CompressionPlan` set its per-layer compression;
:func:`simulate` runs it with precision problems as one-line user errors.

Every bad input becomes a :class:`~lowbit.hwsim.errors.LowbitError`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from lowbit.hwsim.errors import LowbitError, WorkloadError
from lowbit.hwsim.fileio import read_json
from lowbit.hwsim.workload import FLOAT_ONLY_KINDS

if TYPE_CHECKING:
    from lowbit.hwsim.profile import HardwareProfile
    from lowbit.hwsim.result import SimResult
    from lowbit.hwsim.workload import Workload
    from lowbit.models.compression.plan import CompressionPlan

__all__ = [
    "apply_bits",
    "apply_plan",
    "parse_bits",
    "read_plan",
    "resolve_workload",
    "runs_unquantized_as_float",
    "simulate",
]

# ASCII digits without leading zeros: "W٤A٨" and "W04A08" are typos, not W4A8
_BITS = re.compile(r"W(0|[1-9][0-9]?)A(0|[1-9][0-9]?)", re.IGNORECASE | re.ASCII)
_COMPUTE_OPS = ("conv2d", "linear", "matmul")


def resolve_workload(
    spec: str,
    *,
    allow_unmapped: bool = False,
    warn: Callable[[str], None] | None = None,
    float_unquantized: bool = False,
) -> Workload:
    """A built-in (or registered) workload name, a SCALE-Sim topology CSV path or an ONNX
    model (``.onnx``, read by :mod:`lowbit.hwsim.onnx_workload`). An ONNX op hwsim cannot map is an
    error naming it; with ``allow_unmapped`` the rest is simulated and ``warn`` (if given)
    receives one line listing what was left out; ``warn`` also receives one line naming the
    ops of a quantized graph that ONNX Runtime runs in float. With ``float_unquantized``
    (:func:`runs_unquantized_as_float` of the target) an ONNX graph without quantization
    ops comes back float in every layer, and ``warn`` receives a note saying so."""
    from lowbit.hwsim.workloads import BUILTIN_WORKLOADS, builtin_workload

    if spec.lower().endswith(".csv"):
        from lowbit.hwsim.topology import load_topology

        return load_topology(spec)
    if spec.lower().endswith(".onnx"):
        try:
            from lowbit.hwsim.onnx_workload import import_onnx
        except ImportError as exc:
            raise LowbitError(
                f"{spec}: ONNX workloads need the models package and onnx ({exc})"
            ) from None
        imported = import_onnx(spec, allow_unmapped=allow_unmapped)
        if imported.unmapped and warn is not None:
            listed = ", ".join(f"{name} ({op})" for name, op, _ in imported.unmapped)
            warn(f"warning: {spec}: {len(imported.unmapped)} op(s) not simulated: {listed}")
        if imported.float_ops and warn is not None:
            listed = "; ".join(f"{name} ({op}): {why}" for name, op, why in imported.float_ops)
            warn(
                f"note: {spec}: ONNX Runtime runs {len(imported.float_ops)} op(s) of this "
                f"quantized graph in float (simulated so): {listed}"
            )
        if float_unquantized and not imported.quantized:
            if warn is not None:
                warn(
                    f"note: {spec} has no quantization ops: simulated as the float (FP32) "
                    "model ONNX Runtime runs; --bits or --plan choose bit-widths"
                )
            return apply_bits(imported.workload, w_bits=None, a_bits=None)
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


def parse_bits(text: str) -> tuple[int | None, int | None]:
    """``"W4A8"`` -> ``(4, 8)``; bits 1-16, or 32 for float (returned as None, the spec's
    spelling of float: :mod:`lowbit.hwsim.compression`)."""
    from lowbit.hwsim.compression import FLOAT_BITS, spec_bits

    match = _BITS.fullmatch(text.strip())
    if not match:
        raise LowbitError(f"--bits: expected WxAy like W4A8, got {text!r}")
    w_bits, a_bits = int(match[1]), int(match[2])
    for label, bits in (("weight", w_bits), ("activation", a_bits)):
        if not (1 <= bits <= 16 or bits == FLOAT_BITS):
            raise LowbitError(
                f"--bits: {label} bits must be 1-16 or {FLOAT_BITS} (float), got {bits}"
            )
    return spec_bits(w_bits), spec_bits(a_bits)


def apply_bits(workload: Workload, *, w_bits: int | None, a_bits: int | None) -> Workload:
    """Every compute layer (and a float conv's own activation pass) at (w_bits, a_bits) (None
    = float; 32 is read as float too), other compression settings kept. Matmul layers run
    both operands at a_bits (see hwsim.workload.MatMul). With float activations (``a_bits``
    None) the data-movement layers (concats, transposes, pools …) move float tensors too,
    so they are set to float as well; with integer activations they keep their own bits."""
    by_name = {
        layer.name: replace(layer.compression, w_bits=w_bits, a_bits=a_bits)
        for layer in workload.layers
        # a float kernel's own pass (a fused ReLU6's) and the float layout's reorders run at
        # the convs' precision
        if a_bits is None
        or layer.op in _COMPUTE_OPS
        or getattr(layer, "kind", "") in FLOAT_ONLY_KINDS
    }
    return workload.with_compression(by_name)


def runs_unquantized_as_float(profile: HardwareProfile) -> bool:
    """Whether an ONNX graph without quantization ops is simulated as the float model it is on
    ``profile``: a CPU target with a float mode runs it so (ONNX Runtime executes the graph
    as given). On other targets the graph describes shapes only and takes hwsim's default
    compression (W8A8), which ``--bits`` or a plan change."""
    from lowbit.hwsim.compression import FLOAT_BITS

    return profile.family == "cpu" and any(
        mode.w_bits >= FLOAT_BITS and mode.a_bits >= FLOAT_BITS
        for mode in profile.compute.precisions
    )


def read_plan(path: str | Path) -> CompressionPlan:
    """The compression plan in the JSON file ``path`` (errors name the file)."""
    try:
        from lowbit.models.compression.plan import CompressionPlan
    except ImportError as exc:
        raise LowbitError(
            f"{path}: a compression plan needs lowbit.models.compression (and torch), which "
            f"could not be imported ({exc}); use --bits for a uniform bit-width"
        ) from None
    data = read_json(path, what="compression plan")
    try:
        return CompressionPlan.from_dict(data)
    except LowbitError as exc:
        raise LowbitError(f"{path}: {exc}") from None
    except (ValueError, TypeError, KeyError) as exc:
        raise LowbitError(f"{path}: not a valid compression plan: {exc}") from None


def apply_plan(workload: Workload, plan: CompressionPlan, *, round_trip: bool = False) -> Workload:
    """Apply a compression plan layer by layer.

    For a generic workload the plan is resolved per layer name (exact > ``re:`` > _default)
    and ``pin_first_last`` pins the first and last conv/linear layer. Structured pruning sets
    ``keep`` only: a consumer's ``in_keep`` needs the model's graph. For a model-zoo
    workload the plan is checked against the model and models.bridge.compressions gives
    every layer's compression (pinning, in_keep and integer ranks included); with
    ``round_trip`` (the target's ``overheads.two_grid_round_trip``) the workload is the
    search's (``models.bridge.to_workload(round_trip=True)``: a tensor on two grids costs
    its float round trip), unless the workload was changed from the zoo's.
    """
    zoo = _zoo_compressions(workload, plan)
    if zoo is not None:
        applied = workload.with_compression(zoo)
        if round_trip:
            from lowbit.models.bridge import to_workload
            from lowbit.models.zoo import build

            model = build(workload.name)
            if to_workload(model, plan, name=workload.name).layers == applied.layers:
                return to_workload(model, plan, name=workload.name, round_trip=True)
        return applied
    compute = [layer for layer in workload.layers if layer.op in _COMPUTE_OPS]
    weighted = [layer for layer in compute if layer.op != "matmul"]
    pinned = {weighted[0].name, weighted[-1].name} if plan.pin_first_last and weighted else set()
    by_name = {
        layer.name: _layer_compression(layer, plan.resolve(layer.name), layer.name in pinned)
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


def _layer_compression(layer, spec, pinned: bool):
    """The hwsim Compression of one layer under a plan's LayerSpec, by the shared rules of
    :mod:`lowbit.hwsim.compression`: a pinned (first/last) layer is ``spec.pinned()``, a
    matmul ``spec.for_matmul()``; a rank (or ``rank_fraction`` of ``min(N, K)``) that would
    not reduce the layer, or a grouped conv's, stays full rank (``Compression.rank_of``, as
    models.plan.rank_for)."""
    if pinned:
        return spec.pinned().knobs()
    if layer.op == "matmul":
        return spec.for_matmul().knobs()
    return spec.knobs(rank=spec.rank_of(layer.full_rank), rank_fraction=None)


def simulate(workload: Workload, profile: HardwareProfile, *, engine: str) -> SimResult:
    """hwsim.simulate with precision problems turned into one-line user errors."""
    from lowbit import hwsim
    from lowbit.hwsim.profile import UnsupportedPrecision

    try:
        return hwsim.simulate(workload, profile, engine=engine)
    except UnsupportedPrecision as exc:
        if isinstance(exc, LowbitError):
            raise
        raise LowbitError(f"{profile.name}: {exc}") from None
