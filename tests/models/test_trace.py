"""models.trace: prune groups derived by tracing equal the zoo's and the tiny nets' hand-written
ones (residual streams, depthwise followers), follow the producer rules, and drive compress /
to_workload on a user's module."""

from __future__ import annotations

import copy
import pickle

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
from torch.nn import functional as F

from lowbit import models
from lowbit.models.compression.plan import CompressionPlan, LayerSpec
from lowbit.models.graph import PruneGroup, prune_groups_of
from lowbit.models.trace import analyse_prune_groups, derive_prune_groups, prepare_model
from lowbit.models.zoo import build, zoo_names


def _unordered(group: PruneGroup) -> tuple:
    """A group up to the order of its consumers, followers and coupled producers (which only
    name modules to slice: their order means nothing)."""
    return (
        group.producer,
        frozenset(group.consumers),
        frozenset(group.followers),
        group.consumer_repeat,
        frozenset(group.coupled),
    )


@pytest.mark.parametrize("name", zoo_names())
def test_traced_groups_equal_the_zoo_declarations(name):
    model = build(name)
    traced = derive_prune_groups(model, torch.zeros(2, *model.input_shape))
    # the zoo's groups are written by hand
    assert {_unordered(g) for g in traced} == {_unordered(g) for g in model.prune_groups()}
    assert len(traced) == len(model.prune_groups())


@pytest.mark.parametrize("cls", [TinyCNN, TinyMLP, TinyAttention, TinyResNet, TinyInvertedResidual])
def test_traced_groups_equal_the_tiny_nets_declarations(cls):
    """Exactly, in order: residual streams (coupled producers, the stem coupled rather than
    the key), depthwise convs as followers, consumers and followers in execution order."""
    model = seeded(cls)
    analysis = analyse_prune_groups(model, example_input(model, n=2))
    assert analysis.groups == model.prune_groups()
    last = {TinyCNN: "fc2", TinyMLP: "fc3"}.get(cls, "fc")
    if cls is not TinyAttention:  # only the classifier cannot be pruned
        assert analysis.rejected == ((last, "its output is a model output"),)


class UserCNN(nn.Module):
    """conv1 → bn1 → relu → conv2 → relu → maxpool → view(n, -1) → dropout → fc1 → fc2."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 12, 3, padding=1)
        self.fc1, self.fc2 = nn.Linear(12 * 4 * 4, 20), nn.Linear(20, 10)
        self.drop = nn.Dropout(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = self.drop(x.view(x.size(0), -1))
        return self.fc2(F.relu(self.fc1(x)))


class Awkward(nn.Module):
    """Every disqualifying pattern: concat, a depthwise conv whose consumer is shared, a
    LayerNorm, a reshape that is not a flatten, the model output; and a residual add whose
    branch conv reads the stream it adds to."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.res = nn.Conv2d(8, 8, 3, padding=1)
        self.left, self.right = nn.Conv2d(8, 4, 1), nn.Conv2d(8, 4, 1)
        self.pre_dw = nn.Conv2d(8, 8, 1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.shared = nn.Conv2d(8, 8, 1)
        self.to_tokens = nn.Conv2d(8, 8, 1)
        self.norm = nn.LayerNorm(8)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        x = x + torch.relu(self.res(x))
        x = torch.cat([self.left(x), self.right(x)], dim=1)
        x = self.dw(self.pre_dw(x))
        x = self.shared(self.shared(x))
        tokens = self.to_tokens(x).reshape(x.size(0), -1, 8)  # not (n, positions, channels)
        return self.fc(self.norm(tokens).mean(1))


def test_producer_rules():
    model = UserCNN()
    analysis = analyse_prune_groups(model, torch.zeros(1, 1, 8, 8))
    assert analysis.groups == (
        PruneGroup("conv1", ("conv2",), followers=("bn1",)),
        PruneGroup("conv2", ("fc1",), consumer_repeat=16),  # 4·4 positions per channel
        PruneGroup("fc1", ("fc2",)),
    )
    assert analysis.rejected == (("fc2", "its output is a model output"),)
    analysis = analyse_prune_groups(Awkward(), torch.zeros(1, 3, 8, 8))
    # x + relu(res(x)): res reads the stream and writes into it; the stem is coupled
    assert analysis.groups == (PruneGroup("res", ("res", "left", "right"), coupled=("stem",)),)
    reasons = dict(analysis.rejected)
    assert set(reasons) == {"left", "right", "pre_dw", "dw", "shared", "to_tokens", "fc"}
    assert "concatenated with other tensors in 'cat'" in reasons["left"]
    assert reasons["pre_dw"] == reasons["dw"] == "its consumer 'shared' is called more than once"
    assert reasons["shared"] == "it is called more than once"
    assert "beyond a channel-major flatten" in reasons["to_tokens"]


class TorchvisionBlock(nn.Module):
    """A basic block written as torchvision writes it: one ReLU module called twice, an
    in-place ``out += identity``, a ``downsample`` Sequential."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        identity = x if self.downsample is None else self.downsample(x)
        out += identity
        return self.relu(out)


class UserResNet(nn.Module):
    """conv1 → two identity blocks → a strided block with a 1×1 downsample → mean → fc."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.layer1 = nn.Sequential(TorchvisionBlock(8, 8, 1), TorchvisionBlock(8, 8, 1))
        self.layer2 = nn.Sequential(TorchvisionBlock(8, 16, 2))
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(F.relu(self.bn1(self.conv1(x)))))
        return self.fc(x.mean((2, 3)))


def test_residual_streams_of_a_user_resnet():
    analysis = analyse_prune_groups(UserResNet(), torch.zeros(2, 1, 8, 8))
    blocks = [f"layer1.{i}" for i in (0, 1)] + ["layer2.0"]
    assert analysis.groups == (
        # one stream through layer1: conv1 (the stem) and both blocks' conv2, read by every
        # conv of layer1 and by layer2's first conv and downsample
        PruneGroup(
            "layer1.0.conv2",
            ("layer1.0.conv1", "layer1.1.conv1", "layer2.0.conv1", "layer2.0.downsample.0"),
            followers=("bn1", "layer1.0.bn2", "layer1.1.bn2"),
            coupled=("conv1", "layer1.1.conv2"),
        ),
        *(PruneGroup(f"{b}.conv1", (f"{b}.conv2",), (f"{b}.bn1",)) for b in blocks),
        PruneGroup(
            "layer2.0.conv2",
            ("fc",),
            ("layer2.0.bn2", "layer2.0.downsample.1"),
            coupled=("layer2.0.downsample.0",),
        ),  # through x.mean((2, 3))
    )
    assert analysis.rejected == (("fc", "its output is a model output"),)


class _Stem(nn.Module):
    """A 3×3 conv + BN on 8 channels, as the first layer of the rule probes below."""

    def __init__(self, c_in: int = 8) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(c_in, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)


class InputResidual(_Stem):
    def forward(self, x):
        return F.adaptive_avg_pool2d(x + self.bn(self.conv(x)), 1).flatten(1)


class GroupedBranch(_Stem):
    def __init__(self) -> None:
        super().__init__(c_in=2)
        self.grouped = nn.Conv2d(2, 8, 3, padding=1, groups=2)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        y = torch.relu(self.bn(self.conv(x)) + self.grouped(x))
        return self.head(y).mean((2, 3))


class DepthwiseOnInput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.dw, self.pw = nn.Conv2d(4, 4, 3, padding=1, groups=4), nn.Conv2d(4, 8, 1)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        pooled = F.adaptive_avg_pool2d(F.relu6(self.pw(self.dw(x))), 1)
        return self.fc(pooled.squeeze(-1).squeeze(-1))


def test_streams_that_cannot_be_pruned_say_why():
    reasons = dict(analyse_prune_groups(InputResidual(), torch.zeros(1, 8, 4, 4)).rejected)
    assert reasons == {"conv": "it is combined with another tensor in 'add': the model input"}
    analysis = analyse_prune_groups(GroupedBranch(), torch.zeros(1, 2, 4, 4))
    assert analysis.groups == ()
    assert dict(analysis.rejected) == {
        "conv": "it is combined with another tensor in 'add': the output of grouped "
        "convolution 'grouped'",
        "grouped": "it is a grouped convolution",
        "head": "its output (after mean) is a model output",
    }
    analysis = analyse_prune_groups(DepthwiseOnInput(), torch.zeros(1, 4, 4, 4))
    assert analysis.groups == (PruneGroup("pw", ("fc",)),)  # through relu6, pool, squeeze
    assert dict(analysis.rejected) == {
        "dw": "its input channels come from no prunable Conv/Linear",
        "fc": "its output is a model output",
    }


def test_untraceable_model_gets_no_groups_and_the_reason():
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x):
            h = self.fc1(x)
            return self.fc2(h if h.sum() > 0 else -h)

    model = Branchy()
    analysis = prepare_model(model, torch.ones(1, 4))
    assert analysis.groups == () and "control flow" in analysis.trace_error
    assert prune_groups_of(model) == () and model.input_shape == (4,)


def test_prepared_user_model_compresses_and_simulates_with_equal_shapes():
    torch.manual_seed(0)
    model = UserCNN().eval()
    x = torch.randn(16, 1, 8, 8)
    prepare_model(model, x[:1])
    assert model.input_shape == (1, 8, 8)
    plan = CompressionPlan(
        layers={
            "conv1": LayerSpec(w_bits=4, a_bits=8, keep=0.5),
            "conv2": LayerSpec(w_bits=4, a_bits=8, keep=0.25),
        },
        pin_first_last=False,
    )
    small = models.compress(model, plan, calib=x)
    assert small.conv1.weight.shape[0] == 4 and small.bn1.num_features == 4
    assert small.conv2.weight.shape[:2] == (3, 4)  # kept_channels(12, 0.25) = 3
    assert small.fc1.weight.shape[1] == 3 * 16
    assert small(x).shape == (16, 10)
    workload = models.to_workload(model, plan)
    (conv2,) = workload.layer("conv2").gemms()
    (fc1,) = workload.layer("fc1").gemms()
    assert (conv2.N, conv2.K) == (3, 9 * 4) and fc1.K == 3 * 16  # simulated = real shapes
    # the groups live on the instance and survive deepcopy and pickling (Ray ships models)
    for copied in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert prune_groups_of(copied) == prune_groups_of(model)


def test_prepare_keeps_declared_groups_and_checks_input_shape():
    zoo = build("digits-cnn")
    declared = zoo.prune_groups()
    assert prepare_model(zoo, torch.zeros(1, 1, 8, 8)).groups == declared
    assert zoo.prune_groups() == declared  # the class method is kept
    with pytest.raises(ValueError, match=r"input_shape is \(1, 8, 8\)"):
        prepare_model(zoo, torch.zeros(1, 64))
