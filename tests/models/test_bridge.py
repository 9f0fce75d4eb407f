"""models.bridge.to_workload: simulated shapes equal the real compressed model's shapes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lowbit import models
from lowbit.hwsim.errors import WorkloadError
from lowbit.hwsim.workload import FLOAT_BITS, Compression, Conv2d, Elementwise, MatMul, Pool
from lowbit.hwsim.workloads import BUILTIN_WORKLOADS, builtin_workload
from lowbit.models.bridge import register_zoo_workloads, to_workload
from lowbit.models.compression.plan import CompressionPlan, LayerSpec
from lowbit.models.zoo import build, zoo_names


def real_gemms(model: nn.Module, x: torch.Tensor) -> dict[str, tuple[int, int, int]]:
    """(M, N, K) of every Conv/Linear the (compressed) model really runs, seen with hooks."""
    shapes: dict[str, tuple[int, int, int]] = {}

    def hook(name, module, args, output):
        if isinstance(module, nn.Linear):
            shapes[name] = (args[0].shape[:-1].numel(), module.out_features, module.in_features)
        else:  # conv: output pixels x filters x window
            weight = module.weight
            shapes[name] = (output[0, 0].numel() * len(output), weight.shape[0], weight[0].numel())

    handles = [
        module.register_forward_hook(lambda m, a, o, name=name: hook(name, m, a, o))
        for name, module in model.named_modules()
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d))
    ]
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    return shapes


def simulated_gemms(workload) -> dict[str, tuple[int, int, int]]:
    """(M, N, K) of every weight GEMM hwsim derives; factor names as compress() names them."""
    rename = {".lr0": ".first", ".lr1": ".second"}
    out = {}
    for layer in workload.layers:
        for gemm in layer.gemms():
            if not gemm.weights_are_activations:
                name = gemm.name
                for old, new in rename.items():
                    name = name.removesuffix(old) + new if name.endswith(old) else name
                out[name] = (gemm.M, gemm.N, gemm.K)
    return out


PLANS = {
    "digits-cnn": CompressionPlan(
        layers={
            "conv1": LayerSpec(w_bits=4, a_bits=8, keep=0.5),
            "conv2": LayerSpec(w_bits=4, a_bits=8, keep=0.6, rank=8),
            "conv3": LayerSpec(keep=0.4, rank_fraction=0.5),
            "fc1": LayerSpec(keep=0.5, rank=10, nm=(2, 4)),
        },
        pin_first_last=False,
    ),
    "digits-mlp": CompressionPlan(
        layers={"fc1": LayerSpec(keep=0.3), "fc2": LayerSpec(keep=0.75, rank_fraction=0.25)},
        pin_first_last=False,
    ),
    "digits-vit": CompressionPlan(
        layers={
            "re:.*mlp.fc1": LayerSpec(w_bits=4, a_bits=8, keep=0.5, rank=8),
            "re:.*attn.(q|k)": LayerSpec(rank=4),
            "_default": LayerSpec(w_bits=8, a_bits=8, density=0.5),
        }
    ),
    "mnist1d-cnn": CompressionPlan(
        layers={
            "conv2": LayerSpec(keep=0.3, rank=6),
            "conv3": LayerSpec(keep=0.5),
            "fc1": LayerSpec(keep=0.25, rank_fraction=0.1),
            "_default": LayerSpec(w_bits=4, a_bits=8),
        }
    ),
    "mnist1d-mlp": CompressionPlan(layers={"re:fc[12]": LayerSpec(keep=0.5, rank=20)}),
}


@pytest.mark.parametrize("name", zoo_names())
def test_effective_gemms_equal_the_compressed_model(name):
    base = build(name)
    batch = 3
    x = torch.randn(batch, *base.input_shape)
    small = models.compress(base, PLANS[name], calib=torch.randn(8, *base.input_shape))
    simulated = simulated_gemms(to_workload(base, PLANS[name], batch=batch))
    assert simulated == real_gemms(small, x)
    assert any(k.endswith(".second") for k in simulated), "the plan exercises low rank"
    assert simulated != simulated_gemms(to_workload(base, batch=batch)), "and pruning/rank"


def test_mac_counts_by_hand():
    # Conv2d: digits-cnn conv2, 3x3, 16 -> 32 channels on 8x8 ("same" padding):
    # 8*8 output pixels * 32 filters * 3*3*16 window = 294,912
    cnn = to_workload(build("digits-cnn"))
    assert cnn.layer("conv2").macs == 8 * 8 * 32 * 3 * 3 * 16 == 294_912
    # Conv1d as Conv2d of height 1: mnist1d-cnn conv1, kernel 5, 1 -> 32 on length 40:
    # 40 positions * 32 filters * 5 taps = 6,400; conv3 after pooling to 20: 20*32*3*32
    conv1d = to_workload(build("mnist1d-cnn"))
    layer = conv1d.layer("conv1")
    assert isinstance(layer, Conv2d) and (layer.in_h, layer.k_h, layer.out_h) == (1, 1, 1)
    assert layer.macs == 40 * 32 * 5 == 6_400
    assert conv1d.layer("conv3").macs == 20 * 32 * 3 * 32 == 61_440
    # Linear: digits-mlp 64->128->64->10, one token each: 8192 + 8192 + 640
    assert to_workload(build("digits-mlp")).macs == 64 * 128 + 128 * 64 + 64 * 10 == 17_024
    # MatMul: digits-vit q·kᵀ per head: 17 tokens (16 patches + class) x 17 x head dim 8, 4 heads
    vit = to_workload(build("digits-vit"))
    assert vit.layer("blocks.0.attn.qk").macs == 4 * 17 * 17 * 8 == 9_248
    assert vit.layer("blocks.0.attn.av").macs == 4 * 17 * 8 * 17
    # whole ViT: patch conv 16*32*4, per block 4 projections 17*32*32 + 2 attention
    # products + MLP 2*17*32*64, two blocks, head 32*10
    block = 4 * 17 * 32 * 32 + 2 * 9_248 + 2 * 17 * 32 * 64
    assert vit.macs == 16 * 32 * 4 + 2 * block + 32 * 10 == 317_888


def test_vit_attention_and_memory_layers():
    vit = to_workload(build("digits-vit"))
    matmuls = [layer for layer in vit.layers if isinstance(layer, MatMul)]
    assert [m.name for m in matmuls] == [
        f"blocks.{i}.attn.{op}" for i in range(2) for op in ("qk", "av")
    ]
    assert all(m.heads == 4 and m.gemms()[0].weights_are_activations for m in matmuls)
    softmax = vit.layer("blocks.0.attn.softmax")
    assert isinstance(softmax, Elementwise) and softmax.elements == 4 * 17 * 17
    add = vit.layer("blocks.1.add2")
    assert isinstance(add, Elementwise) and add.inputs == 2 and add.elements == 17 * 32
    names = [layer.name for layer in vit.layers]  # execution order: qk, softmax, av
    qk = names.index("blocks.0.attn.qk")
    assert names[qk + 1 : qk + 3] == ["blocks.0.attn.softmax", "blocks.0.attn.av"]


@pytest.mark.parametrize("name", zoo_names())
def test_memory_only_layers_name_their_operator(name):
    """Every memory-only layer carries the kind the host profile prices per element, and
    it is the module's operator (LayerNorm -> layernorm, MaxPool -> maxpool...)."""
    expected = {nn.LayerNorm: "layernorm", nn.Softmax: "softmax", nn.GELU: "gelu",
                nn.MaxPool1d: "maxpool", nn.MaxPool2d: "maxpool"}  # fmt: skip
    model = build(name)
    modules = dict(model.named_modules())
    for layer in to_workload(model).layers:
        if isinstance(layer, (Elementwise, Pool)):
            module = modules[layer.name.split("#")[0]]
            want = next((k for t, k in expected.items() if isinstance(module, t)), None)
            assert layer.kind == (want or layer.kind) and layer.kind, layer.name


def test_compression_settings_follow_the_plan():
    model = build("digits-cnn")
    workload = to_workload(model, CompressionPlan.from_bits_string("W4A6"))
    bits = {layer.name: (layer.compression.w_bits, layer.compression.a_bits)
            for layer in workload.layers}  # fmt: skip
    # first and last layer are pinned to W8A8 (pin_first_last defaults to true); a pool moves
    # the tensor at the a_bits of the layer that wrote it
    assert bits == {
        "conv1": (8, 8), "conv2": (4, 6), "pool2": (6, 6), "conv3": (4, 6), "pool3": (6, 6),
        "fc1": (4, 6), "fc2": (8, 8),
    }  # fmt: skip
    fp = to_workload(model, CompressionPlan.from_bits_string("WFPAFP"))
    assert {layer.compression.w_bits for layer in fp.layers} == {FLOAT_BITS}
    vit = to_workload(build("digits-vit"), CompressionPlan.from_bits_string("W4A6"))
    assert vit.layer("blocks.0.attn.qk").compression == Compression(w_bits=6, a_bits=6)
    # no plan: hwsim's default compression, as for the built-in workloads
    assert {layer.compression for layer in to_workload(model).layers} == {Compression()}


def test_pruning_propagates_to_consumers_and_memory_layers():
    model = build("digits-cnn")
    plan = CompressionPlan(layers={"conv2": LayerSpec(keep=0.5), "conv3": LayerSpec(keep=0.25)})
    workload = to_workload(model, plan)
    assert workload.layer("conv2").compression.out_keep == 16 / 32
    assert workload.layer("conv3").compression.in_keep == 16 / 32
    # fc1 reads conv3's 32 channels x 4 positions; 8 channels are kept -> K = 32
    assert workload.layer("fc1").compression.in_keep == 8 / 32
    assert workload.layer("fc1").gemms()[0].K == 8 * 4
    # pools after pruned convs move only the kept channels
    assert isinstance(workload.layer("pool2"), Pool)
    assert workload.layer("pool2").memory_elements() == (16 * 8 * 8, 16 * 4 * 4)
    assert workload.layer("pool3").memory_elements() == (8 * 4 * 4, 8 * 2 * 2)
    # and know their kept channel count (hwsim's SIMD channel blocks)
    assert (workload.layer("pool2").channels, workload.layer("pool3").channels) == (16, 8)
    assert to_workload(model).layer("pool2").channels == 32


def test_batch_scales_every_gemm():
    model = build("digits-vit")
    assert to_workload(model, batch=4).macs == 4 * to_workload(model).macs


def test_zoo_models_are_registered_as_hwsim_workloads():
    assert register_zoo_workloads() == zoo_names()
    register_zoo_workloads()  # idempotent
    for name in zoo_names():
        assert name in BUILTIN_WORKLOADS
        workload = builtin_workload(name)
        assert workload.name == name
        assert workload == to_workload(build(name))


def test_untraceable_models_raise_a_workload_error():
    with pytest.raises(WorkloadError, match="input_shape"):
        to_workload(nn.Linear(4, 2))


def test_trained_and_untrained_models_give_the_same_workload(digits_cnn):
    plan = PLANS["digits-cnn"]
    assert to_workload(digits_cnn, plan) == to_workload(build("digits-cnn"), plan)
