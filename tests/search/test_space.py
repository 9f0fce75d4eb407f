"""The search space respects the target's bit-widths and the model's structure."""

from __future__ import annotations

import json
import random

import optuna
import pytest
from search_testkit import SYNTHETIC_LAYERS, make_profile

from lowbit.search.space import SearchSpace, build_space, target_bits


def test_bits_bit_flexible_target(bitfusion_like):
    # BitFusion-style: every 2/4/8 mode is native
    assert target_bits(bitfusion_like) == ((2, 4, 8), (2, 4, 8))


def test_bits_int8_cpu_with_packed_weights(int8_cpu_like):
    # INT8-only compute: activations stay 8 bits; packed storage still makes W2/W4 cut traffic
    assert target_bits(int8_cpu_like) == ((2, 4, 8), (8,))


def test_bits_ethos_u55_weight_encoder():
    # int8-only compute, but Vela's weight encoder stores W4/W2 codes in fewer bits
    profiles = pytest.importorskip("lowbit.hwsim.profiles")
    ethos = profiles.load_profile("npu-ethos-u55")
    assert ethos.weight_storage == "compressed"
    assert target_bits(ethos) == ((2, 4, 8), (8,))


def test_bits_int8_npu_promoting_weights():
    npu = make_profile("int8-npu", [(8, 8, 1.0)], weight_storage="promoted")
    assert target_bits(npu) == ((8,), (8,))


def test_bits_bitserial_target(bitserial_like):
    assert target_bits(bitserial_like) == (tuple(range(2, 9)), tuple(range(2, 9)))


def test_every_offered_bit_pair_runs_on_its_target(bitfusion_like, int8_cpu_like, bitserial_like):
    for profile in (bitfusion_like, int8_cpu_like, bitserial_like):
        space = build_space(SYNTHETIC_LAYERS, profile, model="m")
        native_w = {p.w_bits for p in profile.compute.precisions}
        for layer in space.layers:
            for w in layer.w_bits:
                for a in layer.a_bits:
                    profile.compute.resolve(w, a)  # raises if the target cannot run it
                # a weight width is offered only if native, or packed storage makes it cheaper
                assert w in native_w or profile.weight_storage == "packed"
            assert set(layer.a_bits) <= {p.a_bits for p in profile.compute.precisions}


def test_builtin_profiles_spaces_run():
    profiles = pytest.importorskip("lowbit.hwsim.profiles")
    for name in profiles.builtin_profile_names():
        profile = profiles.load_profile(name)
        w_bits, a_bits = target_bits(profile)
        assert 8 in w_bits and 8 in a_bits
        for w in w_bits:
            for a in a_bits:
                profile.compute.resolve(w, a)


def test_structure_choices(synthetic_space, int8_cpu_like):
    by_name = {layer.name: layer for layer in synthetic_space.layers}
    # pruning only for producers; fc2 (the classifier) is not one
    assert len(by_name["conv1"].keep) > 1 and by_name["fc2"].keep == (1.0,)
    # N:M 2:4 only where the reduction length (9 for conv1) is a multiple of 4
    assert by_name["conv1"].nm == ("dense",) and by_name["conv2"].nm == ("dense", "2:4")
    # rank fractions offered only where r·(N + K) < N·K (conv1: N=16, K=9, full rank 9)
    for layer, info in zip(synthetic_space.layers, SYNTHETIC_LAYERS, strict=True):
        for f in layer.rank_fraction:
            if f < 1.0:
                r = max(1, round(f * info.full_rank))
                assert r * (info.out_channels + info.reduction) < info.out_channels * info.reduction
    assert by_name["conv1"].rank_fraction == (0.25, 0.5, 1.0)  # r = 2, 4 (7 would not pay)
    # no N:M where the target has no N:M support
    cpu = build_space(SYNTHETIC_LAYERS, int8_cpu_like, model="m")
    assert all(layer.nm == ("dense",) for layer in cpu.layers)


def test_pinning_removes_first_and_last(bitfusion_like):
    space = build_space(SYNTHETIC_LAYERS, bitfusion_like, model="m", pin_first_last=True)
    assert space.pinned == ("conv1", "fc2")
    assert [layer.name for layer in space.layers] == ["conv2", "fc1"]


def test_json_round_trip(synthetic_space):
    again = SearchSpace.from_json(synthetic_space.to_json())
    assert again == synthetic_space
    assert json.loads(synthetic_space.to_json())["size"] == synthetic_space.size


def test_suggest_and_settings(synthetic_space):
    study = optuna.create_study(
        directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=0)
    )
    for _ in range(20):
        trial = study.ask()
        params = synthetic_space.suggest(trial)
        assert set(params) == set(synthetic_space.distributions())
        settings = synthetic_space.settings(params)
        assert set(settings) == {layer.name for layer in synthetic_space.layers}
        for name, kw in settings.items():
            assert kw["w_bits"] == params[f"{name}.w_bits"]
            assert (kw["nm"] is None) == (params.get(f"{name}.nm", "dense") == "dense")
        study.tell(trial, [0.0, 0.0])


def test_settings_rejects_foreign_params(synthetic_space):
    params = synthetic_space.uniform_params(8, 8)
    with pytest.raises(ValueError, match="unknown"):
        synthetic_space.settings({**params, "conv9.w_bits": 8})
    with pytest.raises(ValueError, match="invalid"):
        synthetic_space.settings({**params, "conv1.w_bits": 3})


def test_uniform_and_quant_only(synthetic_space, int8_cpu_like):
    settings = synthetic_space.settings(synthetic_space.uniform_params(4, 4))
    assert all(
        kw["w_bits"] == 4 and kw["a_bits"] == 4 and kw["keep"] == 1.0 for kw in settings.values()
    )
    cpu = build_space(SYNTHETIC_LAYERS, int8_cpu_like, model="m")
    assert cpu.supports_uniform(4, 8) and not cpu.supports_uniform(4, 4)
    with pytest.raises(ValueError, match="W4A4"):
        cpu.uniform_params(4, 4)
    bits = synthetic_space.quant_only().distributions()
    assert bits and all(name.endswith(("w_bits", "a_bits")) for name in bits)


def test_zoo_space_plans_pass_the_model_check():
    """Every sampled configuration of a real zoo model is a valid CompressionPlan for it."""
    from lowbit.models.zoo import build
    from lowbit.search.zoo import zoo_space

    profile = make_profile(
        "zoo-bitfusion", [(w, a, 1.0) for w in (2, 4, 8) for a in (2, 4, 8)], nm_patterns=((2, 4),)
    )
    for model_name in ("digits-cnn", "digits-vit"):
        model = build(model_name)
        space = zoo_space(model_name, profile)
        rng = random.Random(0)
        for _ in range(10):
            params = {n: rng.choice(d.choices) for n, d in space.distributions().items()}
            space.plan(params).check(model)  # raises PlanError naming the field


def test_residual_streams_get_one_keep_knob_on_their_key():
    """A traced residual net: the stream's key (not the stem, which pin_first_last pins) gets
    the keep knob, its coupled producers and the depthwise conv none; pinning the stem
    freezes the stream (its channels are the stem's) but not the other groups."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    from lowbit.models.trace import prepare_model
    from lowbit.search.space import describe_model

    class ResidualNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(1, 8, 3, padding=1)
            self.conv1, self.conv2 = nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
            self.expand, self.project = nn.Conv2d(8, 16, 1), nn.Conv2d(16, 8, 1)
            self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
            self.fc = nn.Linear(8, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = F.relu(self.stem(x))
            x = x + self.conv2(F.relu(self.conv1(x)))
            x = x + self.project(F.relu6(self.dw(F.relu6(self.expand(x)))))
            return self.fc(x.mean((2, 3)))

    model = ResidualNet()
    prepare_model(model, torch.zeros(1, 1, 8, 8))
    profile = make_profile("resnet-bitfusion", [(w, 8, 1.0) for w in (4, 8)])
    layers = describe_model(model)
    assert {layer.name: layer.coupled for layer in layers if layer.producer} == {
        "conv1": (),
        "conv2": ("stem", "project"),
        "expand": ("dw",),
    }
    for pin, knobs in ((False, {"conv1", "conv2", "expand"}), (True, {"conv1", "expand"})):
        space = build_space(layers, profile, model="residual", pin_first_last=pin)
        assert {layer.name for layer in space.layers if len(layer.keep) > 1} == knobs
        rng = random.Random(0)
        for _ in range(5):  # every sampled configuration is a valid plan for the model
            params = {n: rng.choice(d.choices) for n, d in space.distributions().items()}
            space.plan(params).check(model)


def test_the_space_hands_out_the_shared_typed_spec():
    """``compressions`` is one Compression per layer, ``settings`` its wire form (spelled as
    the spec's knobs), and the plan's LayerSpecs carry the same knobs: one spec from the
    search space through the models (attention layers included: digits-vit's matmuls)."""
    from lowbit.hwsim.compression import KNOBS, Compression
    from lowbit.search.zoo import zoo_space

    profile = make_profile(
        "zoo-bitfusion", [(w, a, 1.0) for w in (2, 4, 8) for a in (2, 4, 8)], nm_patterns=((2, 4),)
    )
    space = zoo_space("digits-vit", profile)
    rng = random.Random(1)
    for _ in range(10):
        params = {n: rng.choice(d.choices) for n, d in space.distributions().items()}
        settings = space.settings(params)
        typed = space.compressions(params)
        plan = space.plan(params)
        assert set(typed) == set(settings) == set(plan.layers)
        for name, spec in typed.items():
            assert type(spec) is Compression
            assert set(settings[name]) <= set(KNOBS)  # one spelling per knob
            assert {k: getattr(spec, k) for k in settings[name]} == settings[name]
            assert plan.layers[name].knobs() == spec
