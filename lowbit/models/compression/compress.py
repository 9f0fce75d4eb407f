"""compress(): apply a CompressionPlan to a model — low rank → prune → sparsify → quantize.

Each stage is a transform registered under a kind in :data:`TRANSFORMS` and run in
:data:`ORDER` on a deep copy of the model with the plan's effective per-layer settings
(:meth:`CompressionPlan.effective`, pinning applied):

1. ``lowrank``: truncated SVD of layers with a rank (the module keeps its name and becomes a
   LowRankLinear/LowRankConv with ``.first`` and ``.second``); with the plan's
   ``recovery = "lsq"`` the SVD is whitened by the layer's calibration inputs
   (:mod:`lowbit.models.compression.reconstruct`).
2. ``prune``: structured pruning of each prune-group producer with keep < 1 (with a residual
   stream's coupled producers, BatchNorms and depthwise convolutions, the same channels); a
   low-ranked producer loses output channels of its second factor, a low-ranked consumer
   input channels of its first. A low-rank pair whose rank is then ≥ min(out, in·k·k) is
   multiplied back into one dense layer, as the simulator (hwsim) treats it, so real and
   simulated shapes agree. With ``recovery = "lsq"`` every consumer of a pruned group is then
   refitted by least squares to reproduce its outputs before pruning.
3. ``sparsify``: N:M then unstructured magnitude masks (both factors of a low-rank layer).
4. ``bn_recalibrate``: if steps 1-3 changed any weights, BatchNorm running statistics are
   re-estimated on ``calib`` (one forward pass, cumulative average). Removing channels or
   weights shifts the statistics every later BatchNorm saw in training; re-estimating them
   is the cheap "adaptive BN" fix of EagleEye (Li et al., ECCV 2020), which makes pruned
   candidates' accuracy without finetuning track their finetuned accuracy.
5. ``quantize``: Conv/Linear (each factor) → QuantConv*/QuantLinear, MatMulSite → QuantMatMul;
   a residual Add or global average pool whose output quantized layers read
   (:mod:`lowbit.models.compression._residual_sites`) → QuantAdd / QuantGlobalAvgPool with
   their readers' activation settings, so it runs as ONNX Runtime's integer kernel and the
   layers before it keep integer outputs.
6. ``fold_bn``: a BatchNorm reading a quantized conv's output is folded into it as deployment
   folds it (:mod:`lowbit.models.compression._bn_fold`): the folded bias is rounded to the
   int32 grid the
   integer kernel adds it on, so the measured accuracy is the INT8 model's.
7. ``calibrate``: activation ranges from ``calib`` (float activations, quantized weights);
   then each integer layer whose output only quantized inputs read is told who they are
   (:func:`lowbit.models.compression._dataflow.output_readers`), so it rounds its output
   onto their grid as the fused integer kernel does.

Every step is deterministic (stable sorts, SVD on CPU), so the same plan and model give the
same compressed model.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from lowbit.models.compression._bn_fold import fold_batchnorms
from lowbit.models.compression._dataflow import output_readers, quant_sites
from lowbit.models.compression.lowrank import LOWRANK_LAYERS, factorize, to_dense
from lowbit.models.compression.plan import CompressionPlan, LayerSpec, PlanError
from lowbit.models.compression.prune import apply_mask, magnitude_mask, nm_mask, prune_group
from lowbit.models.compression.quant import (
    QuantAdd,
    QuantConv1d,
    QuantConv2d,
    QuantGlobalAvgPool,
    QuantLinear,
    QuantMatMul,
    calibrate_model,
)
from lowbit.models.compression.reconstruct import (
    RECOVERY_SAMPLES,
    input_grams,
    reconstruct_consumers,
)
from lowbit.models.graph import MatMulSite, prune_groups_of

__all__ = ["compress", "register_transform", "Step", "TRANSFORMS", "ORDER"]


@dataclass(frozen=True, slots=True)
class Step:
    """What every transform is given besides the model and its specs."""

    #: calibration inputs
    calib: torch.Tensor
    #: the plan's recovery mode (:data:`lowbit.models.compression.plan.RECOVERY_MODES`)
    recovery: str = "bn"


Transform = Callable[[nn.Module, dict[str, LayerSpec], Step], None]
#: kind → transform(model, effective specs, step); each modifies the (copied) model in place.
TRANSFORMS: dict[str, Transform] = {}
#: the order compress() runs the transforms in.
ORDER = ("lowrank", "prune", "sparsify", "bn_recalibrate", "quantize", "fold_bn", "calibrate")

_QUANT_TYPES = {nn.Linear: QuantLinear, nn.Conv1d: QuantConv1d, nn.Conv2d: QuantConv2d}


def register_transform(kind: str) -> Callable[[Transform], Transform]:
    """Register ``fn(model, specs, step)`` as the transform for ``kind`` (one per kind)."""

    def decorate(fn: Transform) -> Transform:
        if kind in TRANSFORMS:
            raise ValueError(f"transform {kind!r} is already registered")
        TRANSFORMS[kind] = fn
        return fn

    return decorate


def _parts(module: nn.Module, name: str) -> list[tuple[str, nn.Module]]:
    """The weighted layers behind a plan layer: itself, or both factors if low-ranked."""
    if isinstance(module, LOWRANK_LAYERS):
        return [(f"{name}.first", module.first), (f"{name}.second", module.second)]
    return [(name, module)]


@register_transform("lowrank")
def _lowrank(model: nn.Module, specs: dict[str, LayerSpec], step: Step) -> None:
    ranked = [name for name, spec in specs.items() if spec.rank is not None]
    grams = {}
    if ranked and step.recovery == "lsq":
        grams = input_grams(model, ranked, step.calib[:RECOVERY_SAMPLES])
    for name in ranked:
        layer = model.get_submodule(name)
        pair = factorize(layer, rank=specs[name].rank, name=name, gram=grams.get(name))
        model.set_submodule(name, pair)


@register_transform("prune")
def _prune(model: nn.Module, specs: dict[str, LayerSpec], step: Step) -> None:
    pruned = [
        group
        for group in prune_groups_of(model)
        if (specs[group.producer].keep if group.producer in specs else 1.0) < 1.0
    ]
    reference = copy.deepcopy(model) if pruned and step.recovery == "lsq" else None
    for group in pruned:
        prune_group(model, group, keep=specs[group.producer].keep)
    for name in specs:
        module = model.get_submodule(name)
        if isinstance(module, LOWRANK_LAYERS):
            out = module.second.weight.shape[0]
            reduction = module.first.weight[0].numel()
            if module.rank >= min(out, reduction):  # same rule as hwsim.workload._factor
                model.set_submodule(name, to_dense(module))
    if reference is not None:
        consumers = {name for group in pruned for name in group.consumers}
        reconstruct_consumers(model, reference, sorted(consumers), step.calib[:RECOVERY_SAMPLES])


@register_transform("sparsify")
def _sparsify(model: nn.Module, specs: dict[str, LayerSpec], step: Step) -> None:
    for name, spec in specs.items():
        if spec.nm is None and spec.density >= 1.0:
            continue
        for _, layer in _parts(model.get_submodule(name), name):
            if spec.nm is not None:
                apply_mask(layer, nm_mask(layer.weight, n=spec.nm[0], m=spec.nm[1]))
            if spec.density < 1.0:
                within = getattr(layer, "weight_mask", None)
                apply_mask(layer, magnitude_mask(layer.weight, density=spec.density, within=within))


def _changes_weights(spec: LayerSpec) -> bool:
    return spec.keep < 1.0 or spec.rank is not None or spec.nm is not None or spec.density < 1.0


@register_transform("bn_recalibrate")
@torch.no_grad()
def _bn_recalibrate(model: nn.Module, specs: dict[str, LayerSpec], step: Step) -> None:
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    norms = [m for m in norms if m.track_running_stats]
    if not norms or not any(_changes_weights(s) for s in specs.values()):
        return
    model.eval()
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration forward pass
        m.train()
    try:
        model(step.calib)
    finally:
        for m, momentum in zip(norms, saved, strict=True):
            m.momentum = momentum
            m.eval()


def _quant_type(layer: nn.Module, name: str) -> type:
    for base, wrapper in _QUANT_TYPES.items():
        if isinstance(layer, base):
            return wrapper
    raise PlanError([f'layers["{name}"]: cannot quantize a {type(layer).__name__}'])


@register_transform("quantize")
def _quantize(model: nn.Module, specs: dict[str, LayerSpec], step: Step) -> None:
    for name, site in quant_sites(model, specs).items():
        settings = dict(a_bits=site.a_bits, symmetric=site.symmetric, calibration=site.calibration)
        if site.kind == "add":
            model.set_submodule(name, QuantAdd(relu=site.relu, **settings))
        else:
            size = model.get_submodule(name).output_size
            model.set_submodule(name, QuantGlobalAvgPool(size, **settings))
    for name, spec in specs.items():
        if spec.w_bits is None and spec.a_bits is None:
            continue
        module = model.get_submodule(name)
        if isinstance(module, MatMulSite):
            if spec.a_bits is not None:
                model.set_submodule(name, QuantMatMul(a_bits=spec.a_bits, symmetric=spec.symmetric))
            continue
        for part_name, layer in _parts(module, name):
            wrapper = _quant_type(layer, part_name).from_float(
                layer,
                w_bits=spec.w_bits,
                a_bits=spec.a_bits,
                symmetric=spec.symmetric,
                per_channel=spec.weight_granularity == "per_channel",
            )
            model.set_submodule(part_name, wrapper)


@register_transform("fold_bn")
def _fold_bn(model: nn.Module, specs: dict[str, LayerSpec], step: Step) -> None:
    fold_batchnorms(model, step.calib[:1])


@register_transform("calibrate")
def _calibrate(model: nn.Module, specs: dict[str, LayerSpec], step: Step) -> None:
    methods = {}
    for name, spec in specs.items():
        for part_name, _ in _parts(model.get_submodule(name), name):
            methods[part_name] = spec.calibration
    if any(s.a_bits is not None for s in specs.values()):
        calibrate_model(model, step.calib, methods=methods)
        for name, readers in output_readers(model).items():
            model.get_submodule(name).set_output_readers(readers)


def compress(
    model: nn.Module, plan: CompressionPlan, *, calib: torch.Tensor, recalibrate_bn: bool = True
) -> nn.Module:
    """A compressed copy of ``model`` (left untouched), in eval mode.

    Args:
        model: a base (uncompressed) model; zoo models declare their prune groups.
        plan: the compression plan; checked against ``model`` first (PlanError on problems).
        calib: a batch of inputs for activation range calibration (e.g. the val split).
        recalibrate_bn: re-estimate BatchNorm statistics on ``calib`` after pruning, low rank
            or sparsity (see step 4 above); no effect on quantization-only plans.
    Returns:
        The compressed model; quantized layers expose their scales and zero points.

    Example:
        >>> small = compress(model, CompressionPlan.from_bits_string("W4A8"), calib=x_val)
    """
    specs = plan.effective(model)  # runs plan.check(model)
    if not isinstance(calib, torch.Tensor) or calib.numel() == 0:
        raise PlanError(["calib: need a non-empty batch of inputs (e.g. the val split)"])
    new = copy.deepcopy(model)
    step = Step(calib=calib, recovery=plan.recovery)
    for kind in ORDER:
        if kind == "bn_recalibrate" and not recalibrate_bn:
            continue
        TRANSFORMS[kind](new, specs, step)
    return new.eval()
