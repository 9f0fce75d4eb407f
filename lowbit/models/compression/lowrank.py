"""Low-rank factorisation of Linear and convolution layers by truncated SVD.

A layer with weight W viewed as an (out × in·k·k) matrix, W ≈ U_r S_r V_rᵀ, becomes two layers:
``first`` = V_rᵀ scaled by √S_r (in → r, no bias; a k×k conv with r filters and the original
stride/padding/dilation for a conv) and ``second`` = U_r scaled by √S_r (r → out, with the
original bias; a 1×1 conv). Splitting √S to both factors keeps their weight ranges similar,
which matters when both are quantized afterwards. Eckart–Young: the truncated SVD is the best
rank-r approximation in Frobenius norm. Grouped convolutions are not eligible.

Example:
    >>> layer = nn.Linear(32, 16)
    >>> factorize(layer, rank=4).first.weight.shape
    torch.Size([4, 32])
"""

from __future__ import annotations

import torch
from torch import nn

from lowbit.models.graph import COMPUTE_LAYERS

__all__ = [
    "LOWRANK_LAYERS",
    "RIDGE",
    "LowRankLinear",
    "LowRankConv",
    "factorize",
    "ridge",
    "to_dense",
    "whitened_factors",
]

#: ridge weight of data-aware solves, relative to the mean diagonal of the Gram matrix
RIDGE = 1e-3


class LowRankLinear(nn.Module):
    """``second(first(x))``: Linear(in → rank, no bias) then Linear(rank → out, bias)."""

    def __init__(self, first: nn.Linear, second: nn.Linear):
        super().__init__()
        self.first, self.second = first, second

    @property
    def in_features(self) -> int:
        return self.first.in_features

    @property
    def out_features(self) -> int:
        return self.second.out_features

    @property
    def rank(self) -> int:
        return self.first.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))


class LowRankConv(nn.Module):
    """``second(first(x))``: k×k conv with ``rank`` filters, then a 1×1 conv rank → out."""

    def __init__(self, first: nn.Conv1d | nn.Conv2d, second: nn.Conv1d | nn.Conv2d):
        super().__init__()
        self.first, self.second = first, second

    @property
    def in_channels(self) -> int:
        return self.first.in_channels

    @property
    def out_channels(self) -> int:
        return self.second.out_channels

    @property
    def rank(self) -> int:
        return self.first.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))


#: the factorised layer types (each holds ``.first`` then ``.second``)
LOWRANK_LAYERS = (LowRankLinear, LowRankConv)


def _conv_like(conv: nn.Conv1d | nn.Conv2d, in_c: int, out_c: int, *, pointwise: bool, bias: bool):
    """A conv of the same dimensionality: ``conv``'s geometry, or 1×1 if ``pointwise``."""
    if pointwise:
        return nn.utils.skip_init(type(conv), in_c, out_c, 1, bias=bias)
    return nn.utils.skip_init(
        type(conv),
        in_c,
        out_c,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        bias=bias,
        padding_mode=conv.padding_mode,
    )


def ridge(gram: torch.Tensor) -> torch.Tensor:
    """``gram`` + λ·I, λ = :data:`RIDGE` × its mean diagonal (a well-posed solve)."""
    scale = float(gram.diagonal().mean()) or 1.0
    return gram + RIDGE * scale * torch.eye(len(gram), dtype=gram.dtype)


def whitened_factors(
    matrix: torch.Tensor, gram: torch.Tensor, *, rank: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(first, second) with ``second @ first`` the rank-``rank`` matrix closest to ``matrix``
    (out × K) in output error over inputs of Gram ``gram`` (K × K); both get √S, as
    :func:`lowbit.models.compression.lowrank.factorize` splits it."""
    chol = torch.linalg.cholesky(ridge(gram.double()))  # XᵀX = L·Lᵀ
    u, s, vh = torch.linalg.svd(matrix.double() @ chol, full_matrices=False)
    root = s[:rank].sqrt()
    # V_rᵀ·L⁻¹ = (L⁻ᵀ·V_r)ᵀ: one triangular solve
    right = torch.linalg.solve_triangular(chol.T, vh[:rank].T, upper=True).T
    return root[:, None] * right, u[:, :rank] * root[None, :]


@torch.no_grad()
def factorize(
    module: nn.Module, *, rank: int, name: str = "", gram: torch.Tensor | None = None
) -> LowRankLinear | LowRankConv:
    """Replace-ready rank-``rank`` factorisation of a Linear or ungrouped Conv1d/Conv2d.

    Args:
        module: the dense layer (left unchanged).
        rank: target rank, 1 ≤ rank ≤ min(out, in·k·k); at the full rank the pair reproduces
            the layer up to float rounding.
        name: the layer's name, for error messages.
        gram: the Gram matrix ``XᵀX`` (in·k·k square) of the layer's im2col inputs: the
            factors then minimise the output error on such inputs (:func:`whitened_factors`)
            instead of the weight error.
    Raises:
        ValueError: grouped convolution, other layer types, or a rank out of range.
    """
    label = f"layer {name!r}" if name else type(module).__name__
    if isinstance(module, (nn.Conv1d, nn.Conv2d)) and module.groups != 1:
        raise ValueError(
            f"{label}: grouped convolution (groups={module.groups}) cannot be low-ranked"
        )
    if not isinstance(module, COMPUTE_LAYERS):
        raise ValueError(f"{label}: only Linear, Conv1d and Conv2d can be low-ranked")
    weight = module.weight
    out = weight.shape[0]
    matrix = weight.reshape(out, -1).double()
    full = min(matrix.shape)
    if not (isinstance(rank, int) and 1 <= rank <= full):
        raise ValueError(f"{label}: rank must be an integer in [1, {full}], got {rank!r}")
    if gram is not None:
        if tuple(gram.shape) != (matrix.shape[1],) * 2:
            raise ValueError(
                f"{label}: gram must be {matrix.shape[1]}×{matrix.shape[1]}, "
                f"got {tuple(gram.shape)}"
            )
        first_w, second_w = whitened_factors(matrix, gram, rank=rank)
    else:
        u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
        root = s[:rank].sqrt()
        first_w, second_w = root[:, None] * vh[:rank], u[:, :rank] * root[None, :]
    first_w, second_w = first_w.to(weight.dtype), second_w.to(weight.dtype)  # (r, K), (out, r)
    has_bias = module.bias is not None
    if isinstance(module, nn.Linear):
        first = nn.utils.skip_init(nn.Linear, module.in_features, rank, bias=False)
        second = nn.utils.skip_init(nn.Linear, rank, out, bias=has_bias)
        pair: LowRankLinear | LowRankConv = LowRankLinear(first, second)
    else:
        first = _conv_like(module, module.in_channels, rank, pointwise=False, bias=False)
        second = _conv_like(module, rank, out, pointwise=True, bias=has_bias)
        pair = LowRankConv(first, second)
    first.weight.copy_(first_w.reshape(first.weight.shape))
    second.weight.copy_(second_w.reshape(second.weight.shape))
    if has_bias:
        second.bias.copy_(module.bias)
    pair.train(module.training)
    return pair


@torch.no_grad()
def to_dense(pair: LowRankLinear | LowRankConv) -> nn.Linear | nn.Conv1d | nn.Conv2d:
    """The single layer computing the same function (W = W_second · W_first).

    Used when pruning leaves the rank at or above min(out, in·k·k): the factorisation would no
    longer save work, and the simulator (hwsim) treats such a layer as dense too.
    """
    first, second = pair.first, pair.second
    w1 = first.weight.reshape(first.weight.shape[0], -1)  # (r, in·k·k)
    w2 = second.weight.reshape(second.weight.shape[0], -1)  # (out, r)
    has_bias = second.bias is not None
    if isinstance(pair, LowRankLinear):
        dense = nn.utils.skip_init(nn.Linear, first.in_features, second.out_features, bias=has_bias)
    else:
        dense = _conv_like(
            first, first.in_channels, second.out_channels, pointwise=False, bias=has_bias
        )
    dense.weight.copy_((w2 @ w1).reshape(dense.weight.shape))
    if has_bias:
        dense.bias.copy_(second.bias)
    for key, value in vars(pair).items():  # e.g. kept_out_channels from pruning
        if not key.startswith("_") and key not in vars(dense) and key != "training":
            setattr(dense, key, value)
    dense.train(pair.training)
    return dense
