"""Least-squares recovery: sampled im2col rows, whitened low rank, consumer reconstruction,
and the plan's ``recovery`` setting end to end."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lowbit.models.compression import reconstruct
from lowbit.models.compression.compress import compress
from lowbit.models.compression.lowrank import factorize
from lowbit.models.compression.plan import CompressionPlan, LayerSpec, PlanError
from lowbit.models.compression.prune import prune_group
from lowbit.models.data import load_split
from lowbit.models.graph import PruneGroup

CONVS = {
    "strided": (lambda: nn.Conv2d(3, 5, 3, stride=2, padding=1), (2, 3, 9, 7)),
    "dilated": (lambda: nn.Conv2d(3, 4, (3, 1), dilation=2, padding=(2, 0)), (2, 3, 8, 8)),
    "conv1d": (lambda: nn.Conv1d(3, 4, 5, stride=2, padding=2), (2, 3, 11)),
}


@pytest.mark.parametrize("kind", CONVS)
def test_rows_are_the_im2col_rows_when_every_position_is_kept(kind, monkeypatch) -> None:
    monkeypatch.setattr(reconstruct, "POSITIONS", 10**6)
    make, shape = CONVS[kind]
    conv, x = make(), torch.randn(shape)
    rows = reconstruct.layer_rows(conv, x, seed=0)
    if isinstance(conv, nn.Conv1d):  # golden: torch's own unfold
        cols = F.unfold(x.unsqueeze(2), (1, 5), stride=(1, 2), padding=(0, 2))
    else:
        geometry = dict(dilation=conv.dilation, padding=conv.padding, stride=conv.stride)
        cols = F.unfold(x, conv.kernel_size, **geometry)
    assert torch.equal(rows, cols.transpose(1, 2).reshape(-1, cols.shape[1]))
    # a row times the weight matrix is the conv's output at that position (bias aside)
    out = conv(x) - conv.bias.view(1, -1, *([1] * (x.dim() - 2)))
    flat = out.flatten(2).transpose(1, 2).reshape(-1, out.shape[1])
    assert torch.allclose(rows @ conv.weight.reshape(len(conv.weight), -1).T, flat, atol=1e-5)


def test_sampled_rows_are_the_same_positions_whatever_the_channels() -> None:
    x = torch.randn(4, 6, 20, 20)
    wide, narrow = nn.Conv2d(6, 2, 3, padding=1), nn.Conv2d(4, 2, 3, padding=1)
    rows_wide = reconstruct.layer_rows(wide, x, seed=3)
    rows_narrow = reconstruct.layer_rows(narrow, x[:, :4], seed=3)
    assert rows_wide.shape == (4 * reconstruct.POSITIONS, 6 * 9)
    # (channel, kh, kw) order: the first 4 channels' columns are the narrow layer's rows
    assert torch.equal(rows_wide[:, : 4 * 9], rows_narrow)
    assert not torch.equal(rows_wide, reconstruct.layer_rows(wide, x, seed=4))


def _correlated(n: int, k: int) -> torch.Tensor:
    """Inputs with a few strong directions, as real activations have."""
    generator = torch.Generator().manual_seed(0)
    basis = torch.randn(k, k, generator=generator) * torch.logspace(0, -2, k)[:, None]
    return torch.randn(n, k, generator=generator) @ basis


@pytest.mark.parametrize("rank", [2, 5])
def test_whitened_low_rank_has_the_smaller_output_error(rank: int) -> None:
    torch.manual_seed(0)
    layer, x = nn.Linear(16, 12), _correlated(400, 16)
    gram = (x.T @ x).double()
    plain, whitened = factorize(layer, rank=rank), factorize(layer, rank=rank, gram=gram)
    with torch.no_grad():
        error_plain = (plain(x) - layer(x)).norm()
        error_whitened = (whitened(x) - layer(x)).norm()
    # whitened SVD is the optimum of the output error (up to the ridge): strictly better here
    assert error_whitened < 0.9 * error_plain
    full = factorize(layer, rank=12, gram=gram)
    with torch.no_grad():
        assert (full(x) - layer(x)).abs().max() < 1e-3


def test_gram_of_the_wrong_size_is_refused() -> None:
    with pytest.raises(ValueError, match="gram must be 16×16"):
        factorize(nn.Linear(16, 12), rank=2, gram=torch.eye(5))


class _Chain(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(8, 6, 3, padding=1)
        self.fc = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(torch.relu(self.conv1(x)))
        return self.fc(torch.relu(y).mean((2, 3)))

    def prune_groups(self):
        return (PruneGroup("conv1", ("conv2",)), PruneGroup("conv2", ("fc",)))


def test_reconstruction_lowers_the_consumer_output_error() -> None:
    torch.manual_seed(0)
    model, x = _Chain().eval(), torch.randn(32, 3, 10, 10)
    with torch.no_grad():  # correlated channels, as trained layers have: near-copies, smaller
        weight = model.conv1.weight
        weight[4:] = 0.8 * weight[:4] + 0.05 * torch.randn_like(weight[:4])
    pruned = copy.deepcopy(model)
    prune_group(pruned, model.prune_groups()[0], keep=0.5)
    prune_group(pruned, model.prune_groups()[1], keep=0.5)  # conv2 loses outputs too
    fitted = copy.deepcopy(pruned)
    reconstruct.reconstruct_consumers(fitted, model, ["conv2", "fc"], x)

    def conv2_error(candidate) -> float:
        kept = candidate.conv2.kept_out_channels
        with torch.no_grad():
            want = model.conv2(torch.relu(model.conv1(x)))[:, kept]
            got = candidate.conv2(torch.relu(candidate.conv1(x)))
        return float((got - want).norm())

    assert conv2_error(fitted) < 0.7 * conv2_error(pruned)
    assert fitted.conv2.weight.shape == pruned.conv2.weight.shape
    assert not torch.equal(fitted.fc.weight, pruned.fc.weight)  # refitted on its new inputs


def test_plan_versions_and_recovery_round_trip() -> None:
    plan = CompressionPlan.uniform(w_bits=4, a_bits=8)
    assert plan.recovery == "lsq" and plan.to_dict()["recovery"] == "lsq"
    assert CompressionPlan.from_json(plan.to_json()) == plan
    old = CompressionPlan.from_dict({"version": 1, "layers": {"_default": {"w_bits": 4}}})
    assert old.recovery == "bn" and "recovery" not in old.to_dict()  # what v1 meant
    assert CompressionPlan.from_dict(old.to_dict()) == old
    with pytest.raises(PlanError, match="recovery: not a field of version 1"):
        CompressionPlan.from_dict({"version": 1, "recovery": "lsq", "layers": {}})
    with pytest.raises(PlanError, match="recovery: must be one of"):
        CompressionPlan.from_dict({"recovery": "magic", "layers": {}})


@pytest.mark.slow
def test_recovery_recovers_a_pruned_trained_model(trained) -> None:
    """digits-cnn with half its channels pruned: BN re-estimation alone loses most of the
    accuracy (measured 39 % val); least-squares recovery keeps it near FP32 (measured 97 %)."""
    from lowbit.models.accuracy import accuracy

    model = trained("digits-cnn")
    x_val, y_val = load_split("digits", "val")
    fp32 = accuracy(model, x_val, y_val)

    def measured(recovery: str) -> float:
        spec = LayerSpec(w_bits=8, a_bits=8, keep=0.5)
        plan = CompressionPlan(layers={"_default": spec}, pin_first_last=False, recovery=recovery)
        return accuracy(compress(model, plan, calib=x_val), x_val, y_val)

    bn, lsq = measured("bn"), measured("lsq")
    assert lsq > bn + 0.2
    assert lsq > fp32 - 0.05
    assert measured("lsq") == lsq  # deterministic
