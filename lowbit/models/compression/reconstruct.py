"""Data-aware recovery without training: least-squares reconstruction after structured
pruning, and activation-whitened low rank.

Removing channels or rank from a trained network loses accuracy mostly because the next
layer still expects the old inputs. Both fixes below use a small batch of calibration
inputs (``RECOVERY_SAMPLES`` images, at most ``POSITIONS`` sampled output positions each) and
closed-form solves, so they cost under a second for a 21-MMAC ResNet, where QAT costs minutes:

* **Reconstruction after pruning** (the least-squares step of He et al., "Channel Pruning for
  Accelerating Very Deep Neural Networks", ICCV 2017, and ThiNet, Luo et al. 2017): each
  consumer of a pruned group gets the weights W' that best reproduce its outputs before
  pruning from the inputs it now receives, ``W' = argmin ‖W'·X' − W·X‖² + λ‖W'‖²``, where
  X' are the consumer's im2col inputs in the pruned model and X those before pruning.
  Consumers are solved in forward order within one forward pass, so each one also absorbs
  the errors of the consumers before it.
* **Whitened low rank** (data-aware SVD as in ASVD / SVD-LLM): the rank-r factors minimise
  the *output* error ‖(W − W_r)·X‖ instead of ‖W − W_r‖: with the input Gram matrix
  ``XᵀX = L·Lᵀ``, the truncated SVD of ``W·L`` gives ``W_r = U_r S_r V_rᵀ L⁻¹``.

λ is ``RIDGE`` times the mean diagonal of the Gram matrix (keeps the solve well posed when
a layer has more inputs than sampled rows). Positions are drawn by a generator seeded per
layer, so the result is deterministic for a given model, plan and calibration batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lowbit.models.compression.lowrank import LOWRANK_LAYERS, RIDGE, ridge

__all__ = [
    "RECOVERY_SAMPLES",
    "POSITIONS",
    "RIDGE",
    "layer_rows",
    "input_grams",
    "reconstruct_consumers",
]

#: calibration inputs the fixes use (the first ones of the calibration batch)
RECOVERY_SAMPLES = 128
#: output positions sampled per input image (im2col rows)
POSITIONS = 64


def _patches(layer: nn.Conv1d | nn.Conv2d, x: torch.Tensor, pick: torch.Tensor) -> torch.Tensor:
    """The im2col columns of output positions ``pick`` (batch × P flat indices) of a conv:
    (batch, P, in·k·k) in the weight's (channel, kernel) order, without unfolding the rest."""
    if isinstance(layer, nn.Conv1d):  # as a 2-D conv of height 1
        x = x.unsqueeze(2)
        kernel, stride, padding, dilation = (
            (1, layer.kernel_size[0]),
            (1, layer.stride[0]),
            (0, layer.padding[0]),
            (1, layer.dilation[0]),
        )
    else:
        kernel, stride, padding, dilation = (
            layer.kernel_size,
            layer.stride,
            layer.padding,
            layer.dilation,
        )
    out_w = _out_size(x.shape[3], kernel[1], stride[1], padding[1], dilation[1])
    padded = F.pad(x, (padding[1], padding[1], padding[0], padding[0])).permute(0, 2, 3, 1)
    rows = (pick // out_w)[:, :, None, None] * stride[0] + (torch.arange(kernel[0]) * dilation[0])[
        None, None, :, None
    ]
    cols = (pick % out_w)[:, :, None, None] * stride[1] + (torch.arange(kernel[1]) * dilation[1])[
        None, None, None, :
    ]
    batch = torch.arange(len(x))[:, None, None, None]
    patches = padded[batch, rows, cols]  # (batch, P, kh, kw, C)
    return patches.permute(0, 1, 4, 2, 3).reshape(len(x), pick.shape[1], -1)


def _out_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def layer_rows(layer: nn.Module, x: torch.Tensor, *, seed: int) -> torch.Tensor:
    """Sampled im2col rows (float32, one per sampled output position) of ``layer``'s input
    ``x``: at most :data:`POSITIONS` per image, the same positions for the same ``seed`` and
    input geometry whatever the channel count."""
    if isinstance(layer, nn.Linear):  # (..., in): every leading position is a row
        x = x.reshape(x.shape[0], -1, x.shape[-1])
        positions = x.shape[1]
        if positions > POSITIONS:
            pick = _pick(len(x), positions, seed)
            x = torch.gather(x, 1, pick[:, :, None].expand(-1, -1, x.shape[2]))
        return x.reshape(-1, x.shape[-1]).float()
    if not isinstance(layer, (nn.Conv1d, nn.Conv2d)):
        raise TypeError(f"cannot reconstruct a {type(layer).__name__}")
    if isinstance(layer, nn.Conv1d):
        k, s, p, d = layer.kernel_size[0], layer.stride[0], layer.padding[0], layer.dilation[0]
        positions = _out_size(x.shape[-1], k, s, p, d)
    else:
        positions = 1
        for axis in (0, 1):
            positions *= _out_size(
                x.shape[2 + axis],
                layer.kernel_size[axis],
                layer.stride[axis],
                layer.padding[axis],
                layer.dilation[axis],
            )
    if positions > POSITIONS:
        pick = _pick(len(x), positions, seed)
    else:
        pick = torch.arange(positions).expand(len(x), -1)
    return _patches(layer, x, pick).reshape(-1, layer.weight[0].numel()).float()


def _pick(batch: int, positions: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, positions, (batch, POSITIONS), generator=generator)


def _matrix(module: nn.Module) -> torch.Tensor:
    """The (out × in·k·k) matrix of a layer, or of a low-rank pair's product."""
    if isinstance(module, LOWRANK_LAYERS):
        return _matrix(module.second) @ _matrix(module.first)
    weight = module.weight.detach()
    return weight.reshape(weight.shape[0], -1).double()


def _input_side(module: nn.Module) -> nn.Module:
    return module.first if isinstance(module, LOWRANK_LAYERS) else module


@torch.no_grad()
def input_grams(model: nn.Module, names: Sequence[str], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Gram matrix ``XᵀX`` (float64) of the sampled input rows of each layer in ``names``,
    from one eval-mode forward pass of ``model`` on ``x``."""
    grams: dict[str, torch.Tensor] = {}
    hooks = []
    for index, name in enumerate(names):
        layer = _input_side(model.get_submodule(name))

        def hook(module, args, name=name, index=index):
            rows = layer_rows(module, args[0], seed=index)
            grams[name] = (rows.T @ rows).double()

        hooks.append(layer.register_forward_pre_hook(hook))
    _forward(model, x, hooks)
    return grams


@torch.no_grad()
def reconstruct_consumers(
    model: nn.Module, reference: nn.Module, names: Sequence[str], x: torch.Tensor
) -> None:
    """Refit the input side of each layer in ``names`` (pruned consumers of ``model``) so that
    it reproduces ``reference``'s output of the same layer (module docstring); in place.

    ``reference`` is the model before pruning (same layer names). A consumer whose own output
    channels were pruned too matches the kept ones (``kept_out_channels``); a low-rank
    consumer refits its first factor to the reference's first factor.
    """
    order = [n for n, _ in model.named_modules() if n in set(names)]
    targets: dict[str, torch.Tensor] = {}
    hooks = []
    for index, name in enumerate(order):
        layer = _input_side(reference.get_submodule(name))

        def capture(module, args, name=name, index=index):
            targets[name] = layer_rows(module, args[0], seed=index)

        hooks.append(layer.register_forward_pre_hook(capture))
    _forward(reference, x, hooks)

    hooks = []
    for index, name in enumerate(order):
        module = model.get_submodule(name)
        ref = reference.get_submodule(name)
        if isinstance(module, LOWRANK_LAYERS):
            target = _matrix(ref.first)  # the rank dimension is never pruned
        else:
            target = _matrix(ref)
            kept = getattr(module, "kept_out_channels", None)
            before = getattr(ref, "kept_out_channels", None)
            if kept is not None:
                # indices into the reference's (possibly already pruned) rows
                if before is not None:
                    position = {int(c): i for i, c in enumerate(before)}
                    kept = torch.tensor([position[int(c)] for c in kept])
                target = target[kept]

        def solve(layer, args, name=name, index=index, target=target):
            rows = layer_rows(layer, args[0], seed=index)
            wanted = targets.pop(name) @ target.T.float()  # reference outputs (rows × out)
            gram, cross = (rows.T @ rows).double(), (rows.T @ wanted).double()
            fitted = torch.linalg.solve(ridge(gram), cross).T
            layer.weight.copy_(fitted.reshape(layer.weight.shape).to(layer.weight.dtype))

        hooks.append(_input_side(module).register_forward_pre_hook(solve))
    _forward(model, x, hooks)


def _forward(model: nn.Module, x: torch.Tensor, hooks: list) -> None:
    """One eval-mode forward pass of ``model`` on ``x``; then remove ``hooks``."""
    training = model.training
    try:
        model.eval()
        model(x)
    finally:
        for handle in hooks:
            handle.remove()
        model.train(training)
