"""The zoo: contract of every model, prune groups, training cache, determinism, accuracy."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lowbit.models import data, train
from lowbit.models.accuracy import evaluate
from lowbit.models.graph import MatMulSite
from lowbit.models.zoo import ZOO, TrainRecipe, ZooError, build, zoo_names

NAMES = zoo_names()
#: FP32 test-accuracy targets of the zoo (the project's stated goals for each recipe)
TARGETS = {
    "digits-cnn": (0.97, 1.0),
    "digits-mlp": (0.95, 1.0),
    "digits-vit": (0.93, 1.0),
    "mnist1d-cnn": (0.85, 1.0),
    "mnist1d-mlp": (0.60, 0.75),
}
_COMPUTE = (nn.Conv1d, nn.Conv2d, nn.Linear)


def test_registry_lists_five_models_and_rejects_unknown_names():
    assert NAMES == list(TARGETS)
    with pytest.raises(ZooError, match="valid names: digits-cnn, digits-mlp"):
        build("resnet18")


@pytest.mark.parametrize("name", NAMES)
def test_contract_attributes_and_forward_shape(name):
    model = build(name)
    info = data.dataset_info(model.dataset)
    assert model.dataset == ZOO[name].dataset and model.zoo_name == name
    assert model.num_classes == info.num_classes
    assert math.prod(model.input_shape) == math.prod(info.input_shape)
    model.eval()
    assert model(torch.zeros(3, *model.input_shape)).shape == (3, model.num_classes)
    x, _ = data.load_split(model.dataset, "val")  # the dataset's own sample shape works too
    assert model(x[:5]).shape == (5, model.num_classes)


@pytest.mark.parametrize("name", NAMES)
def test_models_are_small(name):
    params = sum(p.numel() for p in build(name).parameters())
    assert 5_000 < params < 50_000, params  # "a few 10k parameters"


@pytest.mark.parametrize("name", NAMES)
def test_prune_groups_refer_to_matching_modules(name):
    model = build(name)
    modules = dict(model.named_modules())
    compute = [n for n, m in modules.items() if isinstance(m, _COMPUTE)]
    groups = model.prune_groups()
    assert groups, "every zoo model has structurally prunable layers"
    for group in groups:
        producer = modules[group.producer]
        assert isinstance(producer, _COMPUTE)
        assert group.producer != compute[-1], "the logits are never pruned"
        n = producer.weight.shape[0]
        for consumer_name in group.consumers:
            consumer = modules[consumer_name]
            assert isinstance(consumer, _COMPUTE)
            assert consumer.weight.shape[1] == n * group.consumer_repeat
        for follower_name in group.followers:
            follower = modules[follower_name]
            assert getattr(follower, "num_features", None) == n


def test_vit_has_attention_sites():
    names = {n for n, m in build("digits-vit").named_modules() if isinstance(m, MatMulSite)}
    assert names == {f"blocks.{i}.attn.{op}" for i in range(2) for op in ("qk", "av")}


def test_build_is_seeded_and_leaves_the_global_generator_alone():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    a, b, c = build("digits-cnn", seed=1), build("digits-cnn", seed=1), build("digits-cnn", seed=2)
    assert torch.equal(torch.rand(3), expected)
    assert torch.equal(a.conv1.weight, b.conv1.weight)
    assert not torch.equal(a.conv1.weight, c.conv1.weight)


def test_checkpoint_key_tracks_what_determines_the_weights():
    key = train.checkpoint_key("digits-mlp", seed=0)
    assert train.checkpoint_key("digits-mlp", seed=0) == key
    assert train.checkpoint_key("digits-mlp", seed=1) != key
    assert train.checkpoint_key("digits-mlp", seed=0, recipe=TrainRecipe(epochs=1)) != key
    assert train.checkpoint_key("digits-cnn", seed=0) != key


def test_training_is_deterministic():
    recipe = TrainRecipe(epochs=2)  # short: determinism does not need the full recipe
    first = train.train("digits-mlp", seed=3, recipe=recipe).model.state_dict()
    again = train.train("digits-mlp", seed=3, recipe=recipe).model.state_dict()
    other = train.train("digits-mlp", seed=4, recipe=recipe).model.state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_load_trained_uses_the_cache(monkeypatch, trained):
    model = trained("digits-cnn")  # trained (once per session) and cached
    path = train.checkpoint_path("digits-cnn")
    mtime = path.stat().st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("load_trained retrained a cached model")

    monkeypatch.setattr(train, "_fit", no_training)
    again = train.load_trained("digits-cnn")
    assert path.stat().st_mtime_ns == mtime
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())
    assert not any(p.name.endswith(".tmp") for p in path.parent.iterdir())  # atomic write


def test_unreadable_checkpoint_is_retrained():
    recipe = TrainRecipe(epochs=1)
    path = train.checkpoint_path("digits-mlp", seed=5, recipe=recipe)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"torn file")
    model = train.load_trained("digits-mlp", seed=5, recipe=recipe)
    assert train.load_checkpoint("digits-mlp", seed=5, recipe=recipe) is not None
    assert 0.0 <= evaluate(model, split="val") <= 1.0


def test_digits_cnn_accuracy_and_recorded_metrics(digits_cnn):
    test_accuracy = evaluate(digits_cnn, split="test")
    assert 0.95 <= test_accuracy <= 1.0
    metrics = train.load_checkpoint("digits-cnn").metrics
    assert metrics["test_accuracy"] == test_accuracy
    assert metrics["val_accuracy"] == evaluate(digits_cnn, split="val")


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_fp32_accuracy_targets(name, trained):
    low, high = TARGETS[name]
    assert low <= evaluate(trained(name), split="test") <= high


def test_evaluate_rejects_models_without_dataset():
    with pytest.raises(ValueError, match="dataset"):
        evaluate(nn.Linear(64, 10), split="val")
    assert 0.0 <= evaluate(nn.Flatten(), split="val", dataset="digits") <= 1.0
