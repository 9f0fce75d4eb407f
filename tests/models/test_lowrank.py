"""Truncated-SVD factorisation of Linear and convolution layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lowbit.models.compression.lowrank import LowRankConv, LowRankLinear, factorize, to_dense

# Full-rank factors multiply back to W up to float32 rounding of the SVD factors: on these
# unit-scale layers the output differs by far less than this (stated tolerance).
FULL_RANK_ATOL = 1e-4

LAYERS = {
    "linear": (lambda: nn.Linear(24, 10), (7, 24)),
    "conv2d": (lambda: nn.Conv2d(4, 6, 3, stride=2, padding=1, dilation=1), (3, 4, 9, 9)),
    "conv2d-dilated": (lambda: nn.Conv2d(3, 8, 3, padding=2, dilation=2, bias=False), (2, 3, 7, 7)),
    "conv1d": (lambda: nn.Conv1d(5, 7, 5, stride=2, padding=2), (3, 5, 40)),
}


@pytest.mark.parametrize("kind", LAYERS)
def test_full_rank_reproduces_the_layer(kind: str) -> None:
    torch.manual_seed(0)
    make, shape = LAYERS[kind]
    layer = make()
    full = min(layer.weight.shape[0], layer.weight[0].numel())
    pair = factorize(layer, rank=full)
    x = torch.randn(shape)
    assert (pair(x) - layer(x)).abs().max() < FULL_RANK_ATOL
    assert pair.rank == full


@pytest.mark.parametrize("kind", LAYERS)
def test_truncated_shapes_and_eckart_young(kind: str) -> None:
    torch.manual_seed(0)
    make, shape = LAYERS[kind]
    layer = make()
    pair = factorize(layer, rank=2)
    assert isinstance(pair, LowRankLinear if kind == "linear" else LowRankConv)
    assert pair.first.bias is None
    assert (pair.second.bias is None) == (layer.bias is None)
    if kind != "linear":
        assert pair.first.stride == layer.stride and pair.first.padding == layer.padding
        assert pair.first.dilation == layer.dilation
        assert set(pair.second.kernel_size) == {1}
    assert pair(torch.randn(shape)).shape == layer(torch.randn(shape)).shape
    # the factor product is the best rank-2 approximation: its error is the tail singular values
    w = layer.weight.detach().reshape(layer.weight.shape[0], -1).double()
    product = to_dense(pair).weight.detach().reshape(w.shape).double()
    s = torch.linalg.svdvals(w)
    assert torch.linalg.matrix_norm(w - product) == pytest.approx(s[2:].norm().item(), rel=1e-4)


def test_singular_values_split_evenly() -> None:
    torch.manual_seed(0)
    pair = factorize(nn.Linear(16, 8), rank=4)
    # √S on both sides: the factors' row/column norms are equal (both = √σ_i)
    assert torch.allclose(pair.first.weight.norm(dim=1), pair.second.weight.norm(dim=0), rtol=1e-4)


def test_to_dense_reproduces_the_pair() -> None:
    torch.manual_seed(0)
    layer = nn.Conv2d(3, 5, 3, padding=1)
    pair = factorize(layer, rank=2)
    x = torch.randn(2, 3, 6, 6)
    assert torch.allclose(to_dense(pair)(x), pair(x), atol=1e-5)


def test_ineligible_layers_name_the_layer() -> None:
    with pytest.raises(ValueError, match="'blocks.dw'.*grouped"):
        factorize(nn.Conv2d(4, 4, 3, groups=4), rank=1, name="blocks.dw")
    with pytest.raises(ValueError, match="rank must be"):
        factorize(nn.Linear(4, 3), rank=4, name="fc")
    with pytest.raises(ValueError, match="only Linear"):
        factorize(nn.BatchNorm2d(3), rank=1)
