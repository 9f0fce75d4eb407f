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
#: the toy models: the tests train them (seconds each); edge models take minutes and are
#: measured by benchmarks/accuracy_table.py instead
TOYS = [name for name in NAMES if ZOO[name].tier == "toy"]
EDGE = [name for name in NAMES if ZOO[name].tier == "edge"]
#: FP32 test-accuracy targets of the toy zoo (the project's stated goals for each recipe)
TARGETS = {
    "digits-cnn": (0.97, 1.0),
    "digits-mlp": (0.95, 1.0),
    "digits-vit": (0.93, 1.0),
    "mnist1d-cnn": (0.85, 1.0),
    "mnist1d-mlp": (0.60, 0.75),
}
#: edge-scale models: MACs per image (millions), from the architectures' shapes
EDGE_MMAC = {
    "fashion-resnet": (10, 40),
    "fashion-resnet-demo": (10, 40),
    "fashion-mobilenet": (3, 10),
    "fashion-vit": (3, 20),
}
_COMPUTE = (nn.Conv1d, nn.Conv2d, nn.Linear)


def test_registry_lists_toys_and_edge_models_and_rejects_unknown_names():
    assert TOYS == list(TARGETS)
    assert EDGE == list(EDGE_MMAC)
    assert {ZOO[name].dataset for name in EDGE} == {"fashion-mnist"}
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


@pytest.mark.parametrize("name", TOYS)
def test_toy_models_are_small(name):
    params = sum(p.numel() for p in build(name).parameters())
    assert 5_000 < params < 50_000, params  # "a few 10k parameters"


@pytest.mark.parametrize("name", EDGE)
def test_edge_models_have_edge_scale(name):
    from lowbit.models.bridge import to_workload

    low, high = EDGE_MMAC[name]
    assert low * 1e6 <= to_workload(build(name)).macs <= high * 1e6
    params = sum(p.numel() for p in build(name).parameters())
    assert 50_000 < params < 1_000_000, params


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
        for coupled_name in group.coupled:  # a residual stream: same channels
            assert modules[coupled_name].weight.shape[0] == n
        for follower_name in group.followers:
            follower = modules[follower_name]
            if isinstance(follower, nn.Conv2d):  # depthwise: one filter per channel
                assert follower.groups == follower.in_channels == follower.out_channels == n
            else:
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
@pytest.mark.parametrize("name", TOYS)
def test_fp32_accuracy_targets(name, trained):
    low, high = TARGETS[name]
    assert low <= evaluate(trained(name), split="test") <= high


def test_evaluate_rejects_models_without_dataset():
    with pytest.raises(ValueError, match="dataset"):
        evaluate(nn.Linear(64, 10), split="val")
    assert 0.0 <= evaluate(nn.Flatten(), split="val", dataset="digits") <= 1.0


def test_recipe_fields_added_later_leave_old_checkpoint_keys_alone():
    old = TrainRecipe(epochs=20, lr=3e-3)
    assert set(old.to_dict()) == {
        "epochs",
        "batch_size",
        "lr",
        "weight_decay",
        "warmup_epochs",
        "label_smoothing",
        "max_shift",
    }
    new = TrainRecipe(epochs=20, lr=3e-3, optimizer="sgd", hflip=True, threads=2)
    assert {k: new.to_dict()[k] for k in ("optimizer", "hflip", "threads")} == {
        "optimizer": "sgd",
        "hflip": True,
        "threads": 2,
    }
    assert train.checkpoint_key("digits-cnn", recipe=new) != train.checkpoint_key("digits-cnn")


def test_recipe_rejects_bad_fields_all_at_once():
    with pytest.raises(ValueError) as info:
        TrainRecipe(epochs=1, optimizer="lion", momentum=1.5, threads=0, train_subset=-1)
    for key in ("optimizer", "momentum", "threads", "train_subset"):
        assert f"{key}:" in str(info.value)


class _Recorder:
    def __init__(self):
        self.steps, self.epochs = [], []

    def step(self, epoch, step, steps, loss):
        self.steps.append((epoch, step, steps))

    def epoch(self, epoch, loss, val_accuracy):
        self.epochs.append((epoch, loss, val_accuracy))


def test_sgd_flips_and_two_threads_train_deterministically_with_progress():
    recipe = TrainRecipe(
        epochs=2, lr=0.05, optimizer="sgd", hflip=True, max_shift=1, threads=2, train_subset=640
    )
    recorder = _Recorder()
    first = train.train("digits-cnn", seed=3, recipe=recipe, progress=recorder)
    again = train.train("digits-cnn", seed=3, recipe=recipe).model.state_dict()
    assert all(torch.equal(v, again[k]) for k, v in first.model.state_dict().items())
    # 640 of the 1,078 training images per epoch, batches of 64: 10 steps, reported every 20
    assert recorder.steps == []
    assert [e for e, _, _ in recorder.epochs] == [1, 2]
    assert all(loss > 0 and 0 <= acc <= 1 for _, loss, acc in recorder.epochs)
    assert recorder.epochs[-1][2] == pytest.approx(first.metrics["val_accuracy"])


def test_console_progress_prints_one_line_per_epoch_off_a_terminal():
    import io

    stream = io.StringIO()
    progress = train.ConsoleProgress("net", 3, stream=stream)
    progress.step(1, 20, 40, 1.5)  # not a terminal: no bar
    progress.epoch(1, 1.25, 0.875)
    line = stream.getvalue()
    assert (
        line.startswith("net epoch 1/3: loss 1.250, val accuracy 87.50% (")
        and line.count("\n") == 1
    )
