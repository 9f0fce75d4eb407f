"""BatchNorm folded into the quantized conv before it, in the fake-quant model as in deployment.

The exporter folds a BatchNorm that reads a conv's output into that conv (weights · f,
bias · f + shift) and the integer kernel adds the folded bias as an int32 on its accumulator
grid (:mod:`lowbit.models.compression._intbias`). The fake-quant model keeps the BatchNorm as a
module, so its
statistics and affine parameters keep their names and QAT trains them as before; after
:func:`fold_batchnorms` it is a :class:`FoldedBatchNorm1d`/:class:`FoldedBatchNorm2d` linked
to its conv (both ways, outside the module tree). In inference the conv then computes conv
and BatchNorm together as the integer kernel does and the BatchNorm passes its input on; in
eval mode with gradients the BatchNorm adds the rounding of the folded bias. (The weight
codes need nothing: folding multiplies a channel's scale by |f| and flips the sign of its
codes, the same values.)
"""

from __future__ import annotations

import torch
from torch import nn

from lowbit.models.compression._intbias import (
    batchnorm_affine,
    bias_rounded,
    integer_inference,
    integer_layer,
)
from lowbit.models.compression.quant import QuantConv
from lowbit.models.graph import run_hooked

__all__ = [
    "FoldedBatchNorm",
    "FoldedBatchNorm1d",
    "FoldedBatchNorm2d",
    "conv_bn_pairs",
    "fold_batchnorm_float",
    "fold_batchnorms",
]


@torch.no_grad()
def conv_bn_pairs(model: nn.Module, example: torch.Tensor) -> dict[str, str]:
    """conv name -> BatchNorm name where the BatchNorm reads the conv's output directly.

    Found by one eval-mode forward pass of ``example`` (the model's mode is restored). A conv
    or BatchNorm called more than once (a shared module) is never paired: one fold could not
    serve every call.
    """
    # the outputs are kept alive during the pass, so no other tensor can reuse their ids
    outputs: dict[int, tuple[str, torch.Tensor]] = {}
    pairs: dict[str, str] = {}
    calls: dict[str, int] = {}
    handles = []
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):

            def post(mod, args, out, n=name):
                calls[n] = calls.get(n, 0) + 1
                outputs[id(out)] = (n, out)

            handles.append(m.register_forward_hook(post))
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):

            def pre(mod, args, n=name):
                calls[n] = calls.get(n, 0) + 1
                src = outputs.get(id(args[0]))
                if src is not None and src[1] is args[0]:
                    pairs[src[0]] = n

            handles.append(m.register_forward_pre_hook(pre))
    run_hooked(model, example, handles=handles)
    return {conv: bn for conv, bn in pairs.items() if calls[conv] == calls[bn] == 1}


class FoldedBatchNorm:
    """Mixin: a BatchNorm folded into the quantized conv ``producer`` when deployed.

    In inference the producer computes conv and BatchNorm together as the integer kernel
    does (:meth:`lowbit.models.compression.quant.QuantLayer._integer_forward`) and this module
    passes its input
    on; in eval mode with gradients it adds (deployed bias − float folded bias) per channel;
    otherwise (batch statistics: nothing to fold; the producer training, calibrating or not
    running on integer kernels, see :func:`lowbit.models.compression._intbias.bias_rounded`) it is
    the plain
    BatchNorm.
    ``producer`` is kept outside the module tree (it is registered where it was), so names
    and state dicts are unchanged.
    """

    @property
    def producer(self) -> nn.Module | None:
        return self.__dict__.get("_producer")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.producer
        if conv is not None and integer_inference(conv):
            return x  # the conv computed conv + this BatchNorm as the integer kernel does
        y = super().forward(x)
        if self.training or conv is None or not bias_rounded(conv):
            return y
        form = integer_layer(conv, batchnorm=self)
        delta = (form.bias - form.float_bias).to(y.dtype)
        return y + delta.reshape((1, -1) + (1,) * (y.dim() - 2))

    @classmethod
    def of(cls, bn: nn.modules.batchnorm._BatchNorm, *, producer: nn.Module) -> FoldedBatchNorm:
        """A copy of ``bn`` (parameters, statistics, mode, public attributes) folded into
        ``producer``."""
        new = nn.utils.skip_init(
            cls,
            bn.num_features,
            eps=bn.eps,
            momentum=bn.momentum,
            affine=bn.affine,
            track_running_stats=bn.track_running_stats,
        )
        new.load_state_dict(bn.state_dict())
        for key, value in vars(bn).items():  # e.g. attributes set by pruning
            if not key.startswith("_") and key not in vars(new):
                setattr(new, key, value)
        new.train(bn.training)
        object.__setattr__(new, "_producer", producer)  # not a submodule
        return new


class FoldedBatchNorm1d(FoldedBatchNorm, nn.BatchNorm1d):
    """nn.BatchNorm1d folded into the quantized conv before it."""


class FoldedBatchNorm2d(FoldedBatchNorm, nn.BatchNorm2d):
    """nn.BatchNorm2d folded into the quantized conv before it."""


_FOLDED = {nn.BatchNorm1d: FoldedBatchNorm1d, nn.BatchNorm2d: FoldedBatchNorm2d}


def fold_batchnorms(model: nn.Module, example: torch.Tensor) -> dict[str, str]:
    """Fold every BatchNorm that reads a quantized conv's output into it (in place).

    Returns the folded pairs (conv name -> BatchNorm name). A model without BatchNorm costs
    nothing; otherwise one forward pass of ``example`` finds the pairs.
    """
    if not any(type(m) in _FOLDED for m in model.modules()):
        return {}
    folded = {}
    for conv_name, bn_name in conv_bn_pairs(model, example).items():
        conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
        if isinstance(conv, QuantConv) and type(bn) in _FOLDED:
            model.set_submodule(bn_name, _FOLDED[type(bn)].of(bn, producer=conv))
            object.__setattr__(conv, "_folded_batchnorm", model.get_submodule(bn_name))
            folded[conv_name] = bn_name
    return folded


@torch.no_grad()
def fold_batchnorm_float(conv: nn.Module, bn: nn.modules.batchnorm._BatchNorm) -> None:
    """Fold ``bn`` into float ``conv`` in place (``conv`` has a bias)."""
    factor, shift = batchnorm_affine(bn)
    shape = (-1,) + (1,) * (conv.weight.dim() - 1)
    conv.weight.copy_((conv.weight.double() * factor.reshape(shape)).float())
    conv.bias.copy_((conv.bias.double() * factor + shift).float())
