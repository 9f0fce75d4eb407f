"""Structured channel pruning (plain, residual streams, depthwise), N:M and magnitude masks."""

from __future__ import annotations

import copy

import pytest
import torch
from tiny_nets import (
    TinyAttention,
    TinyCNN,
    TinyInvertedResidual,
    TinyMLP,
    TinyResNet,
    example_input,
    seeded,
)
from torch import nn

from lowbit.hwsim.workload import Compression, Linear
from lowbit.models.compression.lowrank import LOWRANK_LAYERS, factorize
from lowbit.models.compression.plan import CompressionPlan, LayerSpec
from lowbit.models.compression.prune import (
    apply_mask,
    filter_importance,
    group_importance,
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
            fc = Linear(name="fc", in_features=4, out_features=n)
            (gemm,) = fc.with_compression(Compression(keep=keep)).gemms()
            assert kept_channels(n, keep) == gemm.N


@pytest.mark.parametrize("cls", [TinyCNN, TinyMLP, TinyAttention, TinyResNet, TinyInvertedResidual])
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


def masked_reference(dense: nn.Module, pruned: nn.Module) -> nn.Module:
    """``dense`` with the channels ``pruned`` removed silenced instead: the producers' filters
    and bias, the depthwise followers' filters and the BatchNorms' affine parameters of those
    channels set to zero, so they carry exact zeros (ReLU/ReLU6/pooling/adds keep 0) and
    contribute nothing to any consumer."""
    ref = copy.deepcopy(dense)
    for group in dense.prune_groups():
        kept = pruned.get_submodule(group.producer).kept_out_channels.tolist()
        n = ref.get_submodule(group.producer).weight.shape[0]
        removed = [c for c in range(n) if c not in kept]
        with torch.no_grad():
            for name in (*group.producers, *group.followers):
                module = ref.get_submodule(name)
                module.weight[removed] = 0.0
                if module.bias is not None:
                    module.bias[removed] = 0.0
    return ref


#: layer -> weight shape after pruning every group at keep 0.5 (stream 8 -> 4, 16 -> 8)
PRUNED_SHAPES = {
    TinyResNet: {
        "stem": (4, 1, 3, 3),
        "block1.conv1": (4, 4, 3, 3),
        "block1.conv2": (4, 4, 3, 3),
        "block2.conv1": (8, 4, 3, 3),
        "block2.conv2": (8, 8, 3, 3),
        "block2.shortcut": (8, 4, 1, 1),
        "fc": (10, 8),
    },
    TinyInvertedResidual: {
        "stem": (4, 1, 3, 3),
        "block1.expand": (12, 4, 1, 1),
        "block1.dw": (12, 1, 3, 3),
        "block1.project": (4, 12, 1, 1),
        "block2.expand": (12, 4, 1, 1),
        "block2.dw": (12, 1, 3, 3),
        "block2.project": (4, 12, 1, 1),
        "head": (8, 4, 1, 1),
        "fc": (10, 8),
    },
}


@pytest.mark.parametrize("cls", [TinyResNet, TinyInvertedResidual])
def test_residual_and_depthwise_pruning_equals_masking(cls) -> None:
    dense = seeded(cls)
    x = example_input(dense)
    pruned = copy.deepcopy(dense)
    for group in pruned.prune_groups():
        prune_group(pruned, group, keep=0.5)
    for name, shape in PRUNED_SHAPES[cls].items():
        assert tuple(pruned.get_submodule(name).weight.shape) == shape, name
    for name, module in pruned.named_modules():
        if isinstance(module, nn.BatchNorm2d):  # every BN has its conv's channels
            assert module.running_mean.shape == (module.num_features,)
        if isinstance(module, nn.Conv2d) and module.weight.shape[1] == 1 and name != "stem":
            assert module.groups == module.in_channels == module.out_channels == 12  # depthwise
    assert torch.allclose(pruned(x), masked_reference(dense, pruned)(x), atol=1e-5)
    assert not torch.allclose(pruned(x), dense(x), atol=1e-3)  # channels really went


def test_coupled_producers_lose_the_same_channels_by_summed_importance() -> None:
    model = seeded(TinyInvertedResidual)
    stream = model.prune_groups()[0]
    scores = group_importance(model, stream)
    # each producer's filter norms count by their share of that producer's total
    expected = sum(
        filter_importance(model.get_submodule(n)) / filter_importance(model.get_submodule(n)).sum()
        for n in stream.producers
    )
    assert torch.allclose(scores, expected)
    # scaling one producer's weights (BN after it absorbs such scales) changes nothing
    scaled = copy.deepcopy(model)
    with torch.no_grad():
        scaled.block1.project.weight.mul_(1000.0)
    assert torch.allclose(group_importance(scaled, stream), scores)
    prune_group(model, stream, keep=0.5)
    kept = model.stem.kept_out_channels
    assert set(kept.tolist()) == set(scores.topk(4).indices.tolist())
    for name in stream.coupled:
        assert torch.equal(model.get_submodule(name).kept_out_channels, kept)
    for name in stream.consumers[:-1]:  # the expansions read the stream
        assert torch.equal(model.get_submodule(name).kept_in_channels, kept)
    inner = model.prune_groups()[1]
    prune_group(model, inner, keep=0.25)  # 24 -> 6: the depthwise conv keeps the same 6
    dw = model.block1.dw
    assert torch.equal(dw.kept_out_channels, model.block1.expand.kept_out_channels)
    assert dw.groups == dw.in_channels == dw.out_channels == 6


@pytest.mark.parametrize("cls", [TinyResNet, TinyInvertedResidual])
def test_compress_and_finetune_keep_pruned_residual_nets_consistent(cls) -> None:
    """low rank -> prune (streams, depthwise) -> quantize, BN re-estimated, then QAT."""
    from lowbit.models import compress, finetune

    base = seeded(cls)
    x = example_input(base, n=64)
    plan = CompressionPlan(
        layers={"_default": LayerSpec(w_bits=4, a_bits=8, keep=0.5, rank_fraction=0.5)},
        pin_first_last=False,
    )
    small = compress(base, plan, calib=x)
    lowranked = [n for n, m in small.named_modules() if isinstance(m, LOWRANK_LAYERS)]
    assert lowranked, "the plan low-ranks some layers before pruning them"
    for group in base.prune_groups():  # every producer of a group keeps the same channels
        kept = [small.get_submodule(n).kept_out_channels.tolist() for n in group.producers]
        assert (
            all(k == kept[0] for k in kept)
            and len(kept[0]) == PRUNED_SHAPES[cls][group.producer][0]
        )
    for name, module in small.named_modules():
        if isinstance(module, nn.BatchNorm2d):  # re-estimated on x, not the seeded statistics
            assert not torch.equal(module.running_mean, base.get_submodule(name).running_mean)
    tuned = finetune(small, steps=3, batch_size=16)
    shapes = {k: v.shape for k, v in small.state_dict().items()}
    assert {k: v.shape for k, v in tuned.state_dict().items()} == shapes
    assert tuned(x).shape == (64, 10) and torch.isfinite(tuned(x)).all()


def test_unprunable_structures_are_clear_errors() -> None:
    grouped = nn.Sequential(nn.Conv2d(4, 8, 1), nn.Conv2d(8, 8, 3, groups=2), nn.Conv2d(8, 4, 1))
    with pytest.raises(ValueError, match="groups=2.*only per-channel"):
        prune_group(grouped, PruneGroup("0", ("2",), followers=("1",)), keep=0.5)
    with pytest.raises(ValueError, match="'1' is a grouped convolution whose inputs"):
        prune_group(copy.deepcopy(grouped), PruneGroup("0", ("1",)), keep=0.5)
    with pytest.raises(ValueError, match="must be distinct layers"):
        PruneGroup("block1.conv2", ("fc",), coupled=("stem", "block1.conv2"))
    model = seeded(TinyResNet)
    wrong = PruneGroup("block1.conv1", ("block1.conv2",), coupled=("block2.conv2",))
    with pytest.raises(ValueError, match="'block2.conv2' has 16 output channels"):
        prune_group(model, wrong, keep=0.5)


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
