"""Search on a user's own model with a custom metric: end to end on Ray (2 workers), failing
metrics, bad inputs, and the dry-run space (untouched modules listed)."""

from __future__ import annotations

import copy
import csv
import json

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from lowbit import models
from lowbit.hwsim.errors import LowbitError
from lowbit.models.compression.plan import CompressionPlan
from lowbit.search import SearchSetup, UserModel, load_config, run_search
from lowbit.search.user import describe_user_model, user_space


class SignalNet(nn.Module):
    """A user's 1-D CNN (defined in this test module, which Ray workers cannot import)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(2, 8, 3)
        self.bn = nn.BatchNorm1d(8)
        self.fc1 = nn.Linear(8 * 14, 16)
        self.fc2 = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.conv(x)))
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


class Tagger(nn.Module):
    """Tokens → attention (nn.MultiheadAttention) → MLP → classes, with an embedding."""

    def __init__(self) -> None:
        super().__init__()
        self.pos = nn.Embedding(4, 8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos.weight
        x = x + self.attn(x, x, x, need_weights=False)[0]
        x = x + self.fc2(F.gelu(self.fc1(x)))
        return self.head(x.mean(1))


class Branchy(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 8), nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc1(x))
        return self.fc2(h) if h.sum() > 0 else self.fc2(-h)


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(240, 2, 16, generator=g)
    y = (x[:, 0, :4].sum(1) > 0).long() + (x[:, 1, :4].sum(1) > 1).long()
    return x, y


@pytest.fixture(scope="module")
def trained_net() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    x, y = _data()
    model = SignalNet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval(), x, y


def agreement_with(reference: nn.Module, x: torch.Tensor):
    """A custom metric: fraction of inputs where the model agrees with ``reference``."""
    with torch.no_grad():
        target = reference(x).argmax(1)

    def agreement(model: nn.Module) -> float:
        with torch.no_grad():
            return (model(x).argmax(1) == target).float().mean().item()

    return agreement


def run_search_user(*, model, example_input, evaluate, calib, calib_samples=512, **setup):
    """One user-model search: the model's arguments to UserModel, the rest to SearchSetup."""
    user = UserModel(
        module=model,
        example_input=example_input,
        evaluate=evaluate,
        calib=calib,
        calib_samples=calib_samples,
    )
    return run_search(SearchSetup(model=user, **setup))


def _rows(path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_user_search_end_to_end(ray_session, bitfusion_like, trained_net, tmp_path):
    model, x, _ = trained_net
    before = {k: v.clone() for k, v in model.state_dict().items()}
    metric = agreement_with(model, x)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x[:, 0, 0]), 32)
    result = run_search_user(
        model=model,
        example_input=x[:1],
        evaluate=metric,
        calib=loader,
        hardware=bitfusion_like,
        n_trials=10,
        out_dir=tmp_path / "run",
        workers=2,
        calib_samples=96,
        progress=False,
    )
    joint = result.summary["methods"]["joint"]
    assert joint["completed"] == 10 and joint["failed"] == 0
    assert result.summary["reference"]["fp32_val"] == 1.0  # the model agrees with itself
    assert result.summary["user_model"]["prune_groups"][0]["producer"] == "conv"
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())  # never modified
    assert not hasattr(model, "prune_groups")
    # every Pareto config reproduces its metric when its plan is applied again
    base = copy.deepcopy(model)
    describe_user_model(base, x[:1])  # attaches the traced prune groups, as the search did
    for cid in joint["pareto"]:
        config = load_config(tmp_path / "run" / "configs" / f"{cid}.json")
        plan = CompressionPlan.from_dict(config.plan)
        small = models.compress(base, plan, calib=x[:96])
        assert metric(small) == pytest.approx(config.accuracy_val)
        assert config.latency_ms > 0 and config.hardware == "test-bitfusion"
    saved = json.loads((tmp_path / "run" / "user_model.json").read_text())
    assert [layer["name"] for layer in saved["layers"]] == ["conv", "fc1", "fc2"]
    assert len(_rows(tmp_path / "run" / "trials.csv")) == 10


@pytest.mark.slow
def test_failing_metric_fails_trials_not_the_study(
    ray_session, bitfusion_like, trained_net, tmp_path
):
    model, x, _ = trained_net
    metric = agreement_with(model, x)

    def picky(compressed: nn.Module) -> float:
        if getattr(compressed.fc1, "w_bits", 8) == 2:
            raise ValueError("2-bit fc1 is not allowed by the product team")
        return metric(compressed)

    result = run_search_user(
        model=model,
        example_input=x[:1],
        evaluate=picky,
        calib=x[:64],
        hardware=bitfusion_like,
        n_trials=16,
        out_dir=tmp_path / "run",
        workers=2,
        progress=False,
        seed=3,
    )
    rows = _rows(tmp_path / "run" / "trials.csv")
    failed = [r for r in rows if r["state"] == "FAIL"]
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    assert len(complete) == 16  # the study went on to its budget
    assert failed, "the sampler should have tried a 2-bit fc1"
    assert all("2-bit fc1 is not allowed" in r["fail_reason"] for r in failed)
    assert all(json.loads(r["params"]).get("fc1.w_bits") == 2 for r in failed)
    assert result.summary["methods"]["joint"]["failed"] == len(failed)


def test_metric_failing_on_the_base_model_stops_before_anything_starts(trained_net, tmp_path):
    model, x, _ = trained_net

    def broken(m: nn.Module) -> float:
        raise RuntimeError("labels file not found")

    with pytest.raises(LowbitError, match="nothing was started.*labels file not found"):
        run_search_user(
            model=model,
            example_input=x[:1],
            evaluate=broken,
            calib=x[:8],
            hardware="npu-bitfusion",
            n_trials=2,
            out_dir=tmp_path / "run",
        )
    assert not (tmp_path / "run").exists()
    with pytest.raises(LowbitError, match="must return a number"):
        run_search_user(
            model=model,
            example_input=x[:1],
            evaluate=lambda m: "good",
            calib=x[:8],
            hardware="npu-bitfusion",
            n_trials=2,
            out_dir=tmp_path / "run",
        )


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"model": [nn.Linear(2, 2)]}, "model must be a torch.nn.Module, got list"),
        ({"evaluate": 0.5}, "evaluate must be callable"),
        ({"methods": ("joint", "hawq")}, "'hawq' is not available for user models"),
        ({"calib": "data.csv"}, "calib must be a tensor or a DataLoader"),
        ({"example_input": torch.zeros(16)}, "example_input must be a batch tensor"),
        ({"example_input": torch.zeros(1, 3, 16)}, "the model fails on example_input"),
        ({"hardware": "npu-nonexistent"}, "npu-nonexistent"),
    ],
)
def test_bad_arguments_are_clear_errors(trained_net, tmp_path, kwargs, expected):
    model, x, _ = trained_net
    args = dict(
        model=model,
        example_input=x[:1],
        evaluate=agreement_with(model, x),
        calib=x[:8],
        hardware="npu-bitfusion",
        n_trials=2,
        out_dir=tmp_path / "run",
    )
    with pytest.raises(LowbitError, match=expected):
        run_search_user(**{**args, **kwargs})
    assert not (tmp_path / "run").exists()


def test_dry_run_lists_untouched_modules():
    space, info = user_space(Tagger(), torch.zeros(1, 4, 8), "npu-bitfusion")
    untouched = {u.name: u.type for u in info.untouched}
    assert untouched == {"pos": "Embedding", "attn": "MultiheadAttention"}
    searched = [layer.name for layer in space.layers]
    assert searched == ["fc1", "fc2", "head"]  # attn.out_proj stays inside attn, untouched
    assert [g["producer"] for g in info.prune_groups] == ["fc1"]
    assert "untouched: attn (MultiheadAttention)" in info.describe()
    assert dict(info.not_prunable)["fc2"].startswith("it is combined with another tensor")


def test_untraceable_model_is_searched_without_pruning():
    space, info = user_space(Branchy(), torch.ones(1, 4), "npu-bitfusion", pin_first_last=True)
    assert info.trace_error and "control flow" in info.trace_error
    assert info.prune_groups == () and not any(layer.producer for layer in info.layers)
    assert space.pinned == ("fc1", "fc2") and space.layers == ()


def test_model_and_data_travel_once_through_the_object_store(ray_session, trained_net):
    """Actors receive a small spec holding an object-store reference, fetched once when the
    evaluator is built; trial requests carry only per-layer settings."""
    from ray import cloudpickle

    from lowbit.hwsim.profiles import load_profile
    from lowbit.search.evaluator import TrialRequest
    from lowbit.search.user_evaluator import UserEvaluatorSpec, ship

    model, x, _ = trained_net
    metric = agreement_with(model, x)
    model = copy.deepcopy(model)
    describe_user_model(model, x[:1])  # input_shape and traced prune groups, as the search does
    shipped = len(cloudpickle.dumps((model, x, metric, None)))
    with ship(model, x, metric, None) as ref:
        spec = UserEvaluatorSpec(
            payload=ref,
            profile=load_profile("npu-bitfusion"),
            name="signalnet",
            pinned=(),
            fp32=(1.0, 1.0),
        )
        assert len(cloudpickle.dumps(spec)) < shipped / 10
        evaluator = spec.build()
    assert evaluator.base is not model and torch.equal(evaluator.calib, x)
    settings = {name: {"w_bits": 8, "a_bits": 8} for name in ("conv", "fc1", "fc2")}
    request = TrialRequest(0, {**settings, "fc1": {"w_bits": 4, "a_bits": 8}})
    assert len(cloudpickle.dumps(request)) < 1000
    outcome = evaluator.evaluate(request)
    assert outcome.error is None and 0 <= outcome.accuracy <= 1 and outcome.latency_ms > 0


def test_pinned_layers_run_w8a8_and_untouched_stay_float(trained_net):
    from lowbit.hwsim.profiles import load_profile
    from lowbit.search.evaluator import TrialRequest
    from lowbit.search.user_evaluator import UserEvaluatorSpec

    model, x, _ = trained_net
    profile = load_profile("npu-bitfusion")
    space, info = user_space(copy.deepcopy(model), x[:1], profile, pin_first_last=True)
    assert space.pinned == ("conv", "fc2") and [c.name for c in space.layers] == ["fc1"]
    base = copy.deepcopy(model)
    describe_user_model(base, x[:1])
    spec = UserEvaluatorSpec(
        payload=(base, x, agreement_with(model, x), None),
        profile=profile,
        name="signalnet",
        pinned=space.pinned,
        fp32=(1.0, 1.0),
    )
    params = {name: dist.choices[0] for name, dist in space.distributions().items()}
    outcome = spec.build().evaluate(TrialRequest(0, space.settings(params), detail=True))
    bits = {layer.name: (layer.w_bits, layer.a_bits) for layer in outcome.layers}
    assert bits["conv"] == bits["fc2"] == (8, 8)
    plan = json.loads(outcome.plan_json)
    assert plan["pin_first_last"] is False and plan["layers"]["conv"]["w_bits"] == 8
