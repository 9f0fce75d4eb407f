"""models.trace: prune groups derived by tracing equal the zoo's hand-written ones, follow the
producer rules, and drive compress / to_workload on a user's module."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from lowbit import models
from lowbit.models.compression.plan import CompressionPlan, LayerSpec
from lowbit.models.graph import PruneGroup, prune_groups_of
from lowbit.models.trace import analyse_prune_groups, derive_prune_groups, prepare_model
from lowbit.models.zoo import build, zoo_names


@pytest.mark.parametrize("name", zoo_names())
def test_traced_groups_equal_the_zoo_declarations(name):
    model = build(name)
    traced = derive_prune_groups(model, torch.zeros(2, *model.input_shape))
    assert set(traced) == set(model.prune_groups())  # the zoo's groups are written by hand


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
    """Every disqualifying pattern: residual add, concat, depthwise consumer, shared layer,
    a LayerNorm, a reshape that is not a flatten, the model output."""

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
        tokens = self.to_tokens(x).flatten(2).transpose(1, 2)  # (n, positions, channels)
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
    reasons = dict(analyse_prune_groups(Awkward(), torch.zeros(1, 3, 8, 8)).rejected)
    assert set(reasons) == {"stem", "res", "left", "right", "pre_dw", "dw", "shared",
                            "to_tokens", "fc"}  # fmt: skip
    assert "used by 2 operations" in reasons["stem"]  # feeds res and the residual add
    assert "residual/concat" in reasons["res"] and "residual/concat" in reasons["left"]
    assert "grouped convolution" in reasons["pre_dw"] and "grouped" in reasons["dw"]
    assert "called more than once" in reasons["shared"]
    assert "beyond a channel-major flatten" in reasons["to_tokens"]


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
        },  # fmt: skip
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
