"""Search compression for your own PyTorch model, scored by your own metric.

:func:`lowbit.search.run_search` with a :class:`lowbit.search.setup.UserModel` searches a
model that is not in the zoo: the layer space comes from the module itself (every
``nn.Conv1d``, ``nn.Conv2d`` and ``nn.Linear``, attention projections included), prune groups
from tracing it (:mod:`lowbit.models.trace`), accuracy from ``evaluate(model) -> float`` — any
higher-is-better number: accuracy, mAP, negative loss. It runs on Ray like the built-in
search (the model, the calibration batch and the functions are shipped to the workers once),
writes the same run directory (``summary.json``, ``pareto.csv``, ``trials.csv``,
``configs/*.json``) and ``user_model.json``, which lists the layers searched, the prune
groups, the layers that cannot be pruned (and why), and the modules left **untouched**:

- ``nn.MultiheadAttention`` and PyTorch's fused ``nn.Transformer*Layer`` modules: their
  projections run inside fused kernels that bypass submodules, so they stay in float;
- any other module with weights of a type the transforms do not handle (``nn.Embedding``,
  ``nn.LSTM``, ``nn.ConvTranspose2d``, ``nn.Conv3d`` …): left in float. The simulator sees
  only Conv/Linear modules and the memory passes of :mod:`lowbit.models.bridge`, so untouched
  modules are not simulated either.

In the run files the ``accuracy`` columns hold your metric. ``evaluate`` is called on the
uncompressed model first (on the driver): if it fails there, nothing starts. A trial whose
``evaluate`` raises or returns a non-finite value is recorded as failed with the reason and
the study goes on. ``evaluate_test`` (optional) scores the final Pareto set on held-out data;
without it the Pareto set is re-scored with ``evaluate``.

Example (starts a local Ray)::

    from lowbit.search import SearchSetup, UserModel, run_search

    def accuracy(model):
        with torch.no_grad():
            return (model(x_val).argmax(1) == y_val).float().mean().item()

    user = UserModel(module=net, example_input=x_val[:1], evaluate=accuracy, calib=x_val[:256])
    result = run_search(SearchSetup(model=user, hardware="fpga-zcu102-dsp", n_trials=40,
                                    out_dir="runs/my-net", workers=2))
    print(result.summary["methods"]["joint"]["pareto"])
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lowbit.hwsim.errors import LowbitError
from lowbit.hwsim.profile import HardwareProfile

from . import results
from .setup import PreparedSearch, SearchSetup, UserModel, resolve_profile
from .space import LayerInfo, SearchSpace, build_space, describe_model
from .user_evaluator import UserEvaluatorSpec, score, ship

__all__ = ["UntouchedModule", "UserModelInfo", "describe_user_model", "prepare_user", "user_space"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class UntouchedModule:
    """A module the compression transforms leave in float, and why."""

    name: str
    type: str
    reason: str


@dataclass(frozen=True, slots=True)
class UserModelInfo:
    """What the search knows about a user model (written to ``user_model.json``)."""

    name: str
    input_shape: tuple[int, ...]
    layers: tuple[LayerInfo, ...]
    untouched: tuple[UntouchedModule, ...]
    prune_groups: tuple[dict[str, Any], ...]
    not_prunable: tuple[tuple[str, str], ...]
    trace_error: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "layers": [asdict(layer) for layer in self.layers],
            "untouched": [asdict(u) for u in self.untouched],
            "prune_groups": list(self.prune_groups),
            "not_prunable": [{"layer": n, "reason": r} for n, r in self.not_prunable],
            "trace_error": self.trace_error,
        }

    def describe(self) -> str:
        """A short human-readable account (what a dry run prints)."""
        lines = [
            f"model {self.name}: input {tuple(self.input_shape)}, "
            f"{len(self.layers)} layers searched"
        ]
        for layer in self.layers:
            prune = "prunable" if layer.producer else "-"
            lines.append(f"  {layer.name:<28} {layer.kind:<7} out={layer.out_channels:<5} {prune}")
        for name, reason in self.not_prunable:
            lines.append(f"  not prunable: {name}: {reason}")
        if self.trace_error:
            lines.append(f"  torch.fx could not trace the model (no pruning): {self.trace_error}")
        for u in self.untouched:
            lines.append(f"  untouched: {u.name} ({u.type}): {u.reason}")
        return "\n".join(lines)


def _untouched(model) -> tuple[UntouchedModule, ...]:
    from torch import nn

    fused = (
        nn.MultiheadAttention,
        nn.TransformerEncoderLayer,
        nn.TransformerDecoderLayer,
        nn.TransformerEncoder,
        nn.TransformerDecoder,
        nn.Transformer,
    )
    handled = (
        nn.Conv1d,
        nn.Conv2d,
        nn.Linear,
        nn.modules.batchnorm._BatchNorm,
        nn.LayerNorm,
        nn.GroupNorm,
        nn.modules.instancenorm._InstanceNorm,
    )
    out: list[UntouchedModule] = []
    for name, module in model.named_modules():
        if not name or any(name.startswith(u.name + ".") for u in out):
            continue
        kind = type(module).__name__
        if isinstance(module, fused):
            reason = "fused PyTorch attention/transformer kernel (bypasses its submodules)"
        elif isinstance(module, handled) or all(p is None for p in module._parameters.values()):
            continue
        else:
            reason = f"no compression transform for {kind}"
        out.append(UntouchedModule(name, kind, reason + "; left in float, not simulated"))
    return tuple(out)


def describe_user_model(model, example_input, *, name: str | None = None) -> UserModelInfo:
    """Prepare ``model`` in place (``models.trace.prepare_model``: ``input_shape`` and traced
    ``prune_groups``) and describe what the search will do with it.

    Raises:
        LowbitError: ``model`` is not a module, ``example_input`` not a batch tensor, or
            the model cannot be run on it.
    """
    import torch
    from torch import nn

    from lowbit.models.trace import prepare_model

    if not isinstance(model, nn.Module):
        raise LowbitError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(example_input, torch.Tensor) or example_input.dim() < 2:
        raise LowbitError("example_input must be a batch tensor shaped (n, *sample_shape)")
    try:
        with torch.no_grad():
            model.eval()(example_input)
    except Exception as exc:
        raise LowbitError(
            f"the model fails on example_input {tuple(example_input.shape)}: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    try:
        analysis = prepare_model(model, example_input[:1])
    except ValueError as exc:
        raise LowbitError(str(exc)) from None
    untouched = _untouched(model)
    inside = tuple(u.name + "." for u in untouched)
    layers = tuple(layer for layer in describe_model(model) if not layer.name.startswith(inside))
    if not layers:
        raise LowbitError(f"{type(model).__name__} has no Conv1d/Conv2d/Linear layer to compress")
    return UserModelInfo(
        name=name or type(model).__name__.lower(),
        input_shape=tuple(model.input_shape),
        layers=layers,
        untouched=untouched,
        prune_groups=tuple(asdict(g) for g in analysis.groups),
        not_prunable=tuple(analysis.rejected),
        trace_error=analysis.trace_error,
    )


def user_space(
    model,
    example_input,
    hardware: str | Path | HardwareProfile,
    *,
    pin_first_last: bool = False,
    name: str | None = None,
) -> tuple[SearchSpace, UserModelInfo]:
    """The search space of a user model on ``hardware`` and its description (a dry run:
    no Ray, no evaluation). ``model`` is prepared in place (see :func:`describe_user_model`)."""
    info = describe_user_model(model, example_input, name=name)
    try:
        space = build_space(
            info.layers, resolve_profile(hardware), model=info.name, pin_first_last=pin_first_last
        )
    except ValueError as exc:
        raise LowbitError(str(exc)) from None
    return space, info


def _calib_tensor(calib, *, samples: int):
    """A calibration batch from a tensor or an iterable of batches (``x`` or ``(x, y, ...)``)."""
    import torch

    if isinstance(calib, torch.Tensor):
        batch = calib
    elif isinstance(calib, Iterable) and not isinstance(calib, (str, bytes)):
        parts, count = [], 0
        for item in calib:
            x = item[0] if isinstance(item, (tuple, list)) else item
            if not isinstance(x, torch.Tensor):
                raise LowbitError(f"calib: batches must be tensors, got {type(x).__name__}")
            parts.append(x)
            count += len(x)
            if count >= samples:
                break
        batch = torch.cat(parts) if parts else torch.empty(0)
    else:
        raise LowbitError(f"calib must be a tensor or a DataLoader, got {type(calib).__name__}")
    if batch.numel() == 0:
        raise LowbitError("calib: need at least one calibration sample")
    return batch[:samples].detach().clone()


def prepare_user(setup: SearchSetup) -> PreparedSearch:
    """The space, default study name and evaluator spec of ``setup`` (a :class:`UserModel`):
    the model is copied and traced, its metric scored on the uncompressed copy (on the
    driver), and ``user_model.json`` written; nothing is started when any of it fails.

    Raises:
        LowbitError: a bad argument, a model that cannot be traced into a workload, or an
            ``evaluate`` that fails on the uncompressed model.
    """
    user = setup.model
    if not isinstance(user, UserModel) or setup.hardware is None:
        raise LowbitError("prepare_user: the setup needs a UserModel and a hardware target")
    model = user.module
    base = copy.deepcopy(model) if hasattr(model, "modules") else model
    space, info = user_space(
        base,
        user.example_input,
        setup.hardware,
        pin_first_last=setup.pin_first_last,
        name=user.name,
    )
    profile = resolve_profile(setup.hardware)
    _check_workload(base, info)
    calib_batch = _calib_tensor(user.calib, samples=user.calib_samples)
    fp32 = _fp32_scores(base, user.evaluate, user.evaluate_test)
    results.write_json(setup.out_dir / "user_model.json", info.to_dict())
    sections = {
        "evaluator": {
            "type": "UserEvaluatorSpec",
            "metric": getattr(user.evaluate, "__name__", type(user.evaluate).__name__),
            "pinned": list(space.pinned),
        },
        "user_model": info.to_dict(),
    }

    @contextmanager
    def evaluator() -> Iterator[UserEvaluatorSpec]:
        with ship(base, calib_batch, user.evaluate, user.evaluate_test) as payload:
            yield UserEvaluatorSpec(
                payload=payload,
                profile=profile,
                name=info.name,
                pinned=space.pinned,
                fp32=fp32,
                summary_sections=sections,
            )

    return PreparedSearch(
        space=space, study_name=f"{info.name}-{profile.name}-s{setup.seed}", evaluator=evaluator
    )


def _check_workload(model, info: UserModelInfo) -> None:
    """The simulator bridge must trace the model (before any Ray worker starts)."""
    from lowbit.hwsim.errors import WorkloadError
    from lowbit.models.bridge import to_workload

    try:
        to_workload(model, name=info.name)
    except WorkloadError as exc:
        raise LowbitError(f"{info.name}: the simulator cannot trace this model: {exc}") from None


def _fp32_scores(model, evaluate, evaluate_test) -> tuple[float, float]:
    try:
        val = score(evaluate, model, what="uncompressed model")
        test = val if evaluate_test is None else score(evaluate_test, model, what="model")
    except Exception as exc:
        raise LowbitError(
            f"evaluate(model) failed on the uncompressed model, nothing was started: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    return val, test
