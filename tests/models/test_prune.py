"""Structured channel pruning, N:M and magnitude masks."""

from __future__ import annotations

import pytest
import torch
from tiny_nets import TinyAttention, TinyCNN, TinyMLP, example_input, seeded
from torch import nn

from lowbit.hwsim.workload import _kept
from lowbit.models.compression.lowrank import factorize
from lowbit.models.compression.prune import (
    apply_mask,
    filter_importance,
    kept_channels,
    magnitude_mask,
    nm_mask,
    prune_group,
)
from lowbit.models.graph import PruneGroup


def test_kept_channels_matches_the_simulator() -> None:
    assert kept_channels(16, 0.5) == 8
    assert kept_channels(10, 0.01) == 1  # at least one
    assert kept_channels(12, 0.3) == 4  # round(3.6)
    for n in range(1, 70):
        for keep in (0.01, 0.1, 0.25, 0.33, 0.5, 0.66, 0.75, 0.9, 1.0):
            assert kept_channels(n, keep) == _kept(n, keep)


@pytest.mark.parametrize("cls", [TinyCNN, TinyMLP, TinyAttention])
def test_keep_one_is_the_identity(cls) -> None:
    model = seeded(cls)
    x = example_input(model)
    before = model(x)
    for group in model.prune_groups():
        prune_group(model, group, keep=1.0)
    assert torch.equal(model(x), before)


def test_shapes_propagate_to_consumers() -> None:
    model = seeded(TinyCNN)
    groups = {g.producer: g for g in model.prune_groups()}
    prune_group(model, groups["conv1"], keep=0.5)  # 8 → 4
    prune_group(model, groups["conv2"], keep=0.25)  # 12 → 3
    prune_group(model, groups["fc1"], keep=0.5)  # 16 → 8
    assert model.conv1.weight.shape == (4, 1, 3, 3)
    assert model.bn1.num_features == 4 and model.bn1.running_mean.shape == (4,)
    assert model.conv2.weight.shape == (3, 4, 3, 3) and model.conv2.bias.shape == (3,)
    assert model.bn2.num_features == 3
    assert model.fc1.weight.shape == (8, 3 * 16)  # 16 spatial positions per channel
    assert model.fc2.weight.shape == (10, 8)
    assert model(example_input(model)).shape == (16, 10)


def test_keeps_the_largest_filters_in_order_and_their_weights() -> None:
    model = seeded(TinyCNN)
    original = model.conv1.weight.detach().clone()
    scores = filter_importance(model.conv1)
    assert torch.allclose(scores, original.abs().sum(dim=(1, 2, 3)))  # L1 norm per filter
    prune_group(model, model.prune_groups()[0], keep=0.5)
    kept = model.conv1.kept_out_channels
    assert kept.tolist() == sorted(kept.tolist())
    assert set(kept.tolist()) == set(scores.topk(4).indices.tolist())
    assert torch.equal(model.conv1.weight, original[kept])
    assert model.conv2.kept_in_channels.tolist() == kept.tolist()


def test_removing_dead_channels_is_exact() -> None:
    model = seeded(TinyMLP)
    dead = [1, 4, 5, 9, 20, 30, 31, 0]  # 8 of fc1's 32 units output relu(0) = 0
    with torch.no_grad():
        model.fc1.weight[dead] = 0.0
        model.fc1.bias[dead] = 0.0
    x = example_input(model)
    before = model(x)
    prune_group(model, model.prune_groups()[0], keep=0.75)  # keeps 24
    assert sorted(set(range(32)) - set(model.fc1.kept_out_channels.tolist())) == sorted(dead)
    assert torch.allclose(model(x), before, atol=1e-6)


def test_flatten_consumer_drops_whole_channel_blocks() -> None:
    model = seeded(TinyCNN)
    fc1 = model.fc1.weight.detach().clone()
    prune_group(model, model.prune_groups()[1], keep=0.5)  # conv2: 12 → 6
    kept = model.conv2.kept_out_channels
    columns = (kept[:, None] * 16 + torch.arange(16)).reshape(-1)
    assert torch.equal(model.fc1.weight, fc1[:, columns])


def test_low_rank_producer_and_consumer() -> None:
    model = seeded(TinyMLP)
    x = example_input(model)
    model.fc2 = factorize(model.fc2, rank=8)
    model.fc1 = factorize(model.fc1, rank=10)
    prune_group(model, model.prune_groups()[0], keep=0.5)  # fc1 (low-rank) → fc2 (low-rank)
    assert model.fc1.second.weight.shape == (16, 10)
    assert model.fc2.first.weight.shape == (8, 16)
    assert model.fc1.kept_out_channels.shape == (16,)
    assert model(x).shape == (16, 10)


def test_layernorm_follower_and_unsupported_follower() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.LayerNorm(32), nn.Linear(32, 10))
    with torch.no_grad():
        model[1].weight.uniform_(0.5, 1.5)
    ln_weight = model[1].weight.detach().clone()
    prune_group(model, PruneGroup("0", ("2",), ("1",)), keep=0.25)
    kept = model[0].kept_out_channels
    assert model[1].normalized_shape == (8,)
    assert torch.equal(model[1].weight, ln_weight[kept])
    assert model[2].in_features == 8
    assert model(torch.randn(3, 16)).shape == (3, 10)
    attention = seeded(TinyAttention)
    with pytest.raises(ValueError, match="follower 'head'"):
        prune_group(attention, PruneGroup("fc1", ("fc2",), ("head",)), keep=0.5)


@pytest.mark.parametrize(("n", "m"), [(1, 4), (2, 4), (2, 8), (4, 8), (3, 3)])
def test_nm_mask_exactly_n_per_group_of_m(n: int, m: int) -> None:
    g = torch.Generator().manual_seed(0)
    linear = torch.randn(6, 24, generator=g)
    mask = nm_mask(linear, n=n, m=m)
    assert torch.all(mask.reshape(6, -1, m).sum(dim=-1) == n)
    # the kept weights are the n largest of each group
    groups = (linear.abs() * mask).reshape(6, -1, m)
    dropped = (linear.abs() * (1 - mask)).reshape(6, -1, m)
    kept_min = groups.masked_fill(groups == 0, float("inf")).amin(dim=-1)
    assert torch.all(kept_min >= dropped.amax(dim=-1))
    conv = torch.randn(5, 8, 3, 3, generator=g)  # reduction order (kh, kw, C): groups along C
    cmask = nm_mask(conv, n=n, m=m) if 8 % m == 0 else None
    if cmask is not None:
        per_group = cmask.movedim(1, -1).reshape(5, 3, 3, 8 // m, m).sum(dim=-1)
        assert torch.all(per_group == n)


def test_nm_mask_partial_trailing_group() -> None:
    mask = nm_mask(torch.randn(3, 10), n=2, m=4)  # groups of 4, 4, 2
    assert mask.sum(dim=1).tolist() == [6.0, 6.0, 6.0]
    with pytest.raises(ValueError):
        nm_mask(torch.randn(3, 8), n=5, m=4)


def test_magnitude_mask_density_and_within() -> None:
    w = torch.randn(8, 16, generator=torch.Generator().manual_seed(0))
    mask = magnitude_mask(w, density=0.3)
    assert int(mask.sum()) == round(0.3 * 128)
    assert (w.abs() * mask).min() >= 0
    assert w.abs()[mask == 0].max() <= w.abs()[mask == 1].min()
    nm = nm_mask(w, n=2, m=4)
    both = magnitude_mask(w, density=0.5, within=nm)
    assert int(both.sum()) == 32 and torch.all(both <= nm)


def test_apply_mask_zeroes_and_combines() -> None:
    layer = nn.Linear(8, 4)
    apply_mask(layer, nm_mask(layer.weight, n=2, m=4))
    apply_mask(layer, magnitude_mask(layer.weight, density=0.5, within=layer.weight_mask))
    assert int(layer.weight_mask.sum()) == 8
    assert torch.all(layer.weight[layer.weight_mask == 0] == 0)
    assert int((layer.weight != 0).sum()) == 8
