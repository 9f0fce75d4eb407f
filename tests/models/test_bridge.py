"""models.bridge.to_workload: simulated shapes equal the real compressed model's shapes."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from tiny_nets import TinyInvertedResidual, TinyResNet, example_input, seeded
from torch import nn

from lowbit import models
from lowbit.hwsim.errors import WorkloadError
from lowbit.hwsim.workload import Compression, Conv2d, Elementwise, MatMul, Pool
from lowbit.hwsim.workloads import BUILTIN_WORKLOADS, builtin_workload
from lowbit.models.bridge import compressions, register_zoo_workloads, to_workload
from lowbit.models.compression.plan import CompressionPlan, LayerSpec, PlanError
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
    """(M, N, K) of every weight GEMM hwsim derives; factor names as compress() names them.
    A grouped (depthwise) conv's ``count`` GEMMs of N filters each are ``N · count`` filters,
    as the real layer counts them."""
    rename = {".lr0": ".first", ".lr1": ".second"}
    out = {}
    for layer in workload.layers:
        for gemm in layer.gemms():
            if not gemm.weights_are_activations:
                name = gemm.name
                for old, new in rename.items():
                    name = name.removesuffix(old) + new if name.endswith(old) else name
                out[name] = (gemm.M, gemm.N * gemm.count, gemm.K)
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
    "fashion-resnet": CompressionPlan(
        layers={
            "layer1.conv1": LayerSpec(w_bits=4, a_bits=8, rank=8),
            "layer2.conv1": LayerSpec(keep=0.5, rank_fraction=0.5),
            "layer2.conv2": LayerSpec(keep=0.75),  # a residual stream: conv2 + down
            "layer3.conv2": LayerSpec(keep=0.5, nm=(2, 4)),
            "_default": LayerSpec(w_bits=4, a_bits=8),
        }
    ),
    "fashion-mobilenet": CompressionPlan(
        layers={
            "blocks.1.expand": LayerSpec(keep=0.5),  # through the depthwise conv
            "blocks.3.project": LayerSpec(keep=0.5),  # a stream of two projections
            "head": LayerSpec(rank_fraction=0.25),
        },
        pin_first_last=False,
    ),
    "fashion-vit": CompressionPlan(
        layers={
            "re:.*mlp.fc1": LayerSpec(w_bits=4, a_bits=8, keep=0.5, rank=16),
            "re:.*attn.v": LayerSpec(rank=8),
        }
    ),
}
PLANS["fashion-resnet-demo"] = PLANS["fashion-resnet"]  # the same network


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
    assert softmax.rows == 4 * 17  # a row per head and query token
    norms = [layer for layer in vit.layers if getattr(layer, "kind", "") == "layernorm"]
    assert norms and all(n.rows == 17 and n.elements == 17 * 32 for n in norms)  # per token
    add = vit.layer("blocks.1.add2")
    assert isinstance(add, Elementwise) and add.inputs == 2 and add.elements == 17 * 32
    names = [layer.name for layer in vit.layers]  # execution order: qk, softmax, av
    qk = names.index("blocks.0.attn.qk")
    assert names[qk + 1 : qk + 3] == ["blocks.0.attn.softmax", "blocks.0.attn.av"]


@pytest.mark.parametrize("name", zoo_names())
def test_memory_only_layers_name_their_operator(name):
    """Every memory-only layer carries the kind the host profile prices per element, and
    it is the module's operator (LayerNorm -> layernorm, MaxPool -> maxpool...)."""
    expected = {
        nn.LayerNorm: "layernorm",
        nn.Softmax: "softmax",
        nn.GELU: "gelu",
        nn.MaxPool1d: "maxpool",
        nn.MaxPool2d: "maxpool",
    }
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
    bits = {
        layer.name: (layer.compression.w_bits, layer.compression.a_bits)
        for layer in workload.layers
    }
    # first and last layer are pinned to W8A8 (pin_first_last defaults to true); a pool moves
    # the tensor at the a_bits of the layer that wrote it
    assert bits == {
        "conv1": (8, 8),
        "conv2": (4, 6),
        "pool2": (6, 6),
        "conv3": (4, 6),
        "pool3": (6, 6),
        "fc1": (4, 6),
        "fc2": (8, 8),
    }
    fp = to_workload(model, CompressionPlan.from_bits_string("WFPAFP"))
    assert {layer.compression.w_bits for layer in fp.layers} == {None}  # float
    vit = to_workload(build("digits-vit"), CompressionPlan.from_bits_string("W4A6"))
    assert vit.layer("blocks.0.attn.qk").compression == Compression(w_bits=6, a_bits=6)
    # no plan: hwsim's default compression, as for the built-in workloads
    assert {layer.compression for layer in to_workload(model).layers} == {Compression()}


def test_pruning_propagates_to_consumers_and_memory_layers():
    model = build("digits-cnn")
    plan = CompressionPlan(layers={"conv2": LayerSpec(keep=0.5), "conv3": LayerSpec(keep=0.25)})
    workload = to_workload(model, plan)
    assert workload.layer("conv2").compression.keep == 16 / 32
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


def real_macs(model: nn.Module, x: torch.Tensor) -> dict[str, int]:
    """MACs of every Conv/Linear the (compressed) model runs, by plan layer (a low-rank
    layer's two factors summed): output elements x (inputs per group x window)."""
    macs: dict[str, int] = {}

    def hook(name, module, args, output):
        layer = name.removesuffix(".first").removesuffix(".second")
        macs[layer] = macs.get(layer, 0) + output.numel() * module.weight[0].numel()

    handles = [
        module.register_forward_hook(lambda m, a, o, name=name: hook(name, m, a, o))
        for name, module in model.named_modules()
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d))
    ]
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    return macs


#: every group at keep 0.5 (the residual streams through their producer's key), low rank on
#: a block conv and on the head
RESIDUAL_PLANS = {
    TinyResNet: CompressionPlan(
        layers={
            "_default": LayerSpec(w_bits=8, a_bits=8, keep=0.5),
            "block2.conv1": LayerSpec(w_bits=4, a_bits=8, keep=0.5, rank=6),
        },
        pin_first_last=False,
    ),
    TinyInvertedResidual: CompressionPlan(
        layers={
            "_default": LayerSpec(w_bits=8, a_bits=8, keep=0.5),
            "head": LayerSpec(w_bits=8, a_bits=8, keep=0.75, rank=2),
        },
        pin_first_last=False,
    ),
}


@pytest.mark.parametrize("cls", [TinyResNet, TinyInvertedResidual])
def test_residual_and_depthwise_macs_equal_the_compressed_model(cls):
    base = seeded(cls)
    plan, batch = RESIDUAL_PLANS[cls], 3
    small = models.compress(base, plan, calib=example_input(base, n=32))
    workload = to_workload(base, plan, batch=batch)
    simulated = {layer.name: layer.macs for layer in workload.layers if layer.macs}
    assert simulated == real_macs(small, example_input(base, n=batch))
    assert workload.macs < to_workload(base, batch=batch).macs
    # residual adds and the pool move the kept channels of their stream only
    second = (8, 16) if cls is TinyResNet else (4, 64)  # (kept channels, positions)
    for name, (kept, positions) in {"block1.add": (4, 64), "block2.add": second}.items():
        add = workload.layer(name)
        assert isinstance(add, Elementwise) and add.kind == "add" and add.inputs == 2
        assert add.elements == batch * kept * positions
    pool = workload.layer("pool")
    kept = 8 if cls is TinyResNet else 12  # the last stream (16 -> 8), the head (16 -> 12)
    assert isinstance(pool, Pool) and pool.channels == small.fc.in_features == kept
    if cls is TinyInvertedResidual:  # the depthwise conv runs its 12 kept channels
        dw = workload.layer("block1.dw")
        assert dw.depthwise and dw.compression.keep == dw.compression.in_keep == 0.5
        (gemm,) = dw.gemms()
        assert (gemm.count, gemm.N, gemm.K) == (12, 1, 9) == (small.block1.dw.groups, 1, 9)


def test_coupled_producers_follow_their_group_and_pinning_freezes_a_stream():
    model = seeded(TinyResNet)
    plan = CompressionPlan(layers={"_default": LayerSpec(keep=0.5)}, pin_first_last=False)
    by_name = compressions(model, plan)
    # stream 1 (block1.conv2 + the stem): 8 -> 4; its readers lose the same inputs
    assert by_name["stem"].keep == by_name["block1.conv2"].keep == 0.5
    assert by_name["block2.shortcut"].in_keep == by_name["block2.conv1"].in_keep == 0.5
    assert by_name["block2.shortcut"].keep == by_name["block2.conv2"].keep == 0.5
    # pinning the stem (the first layer) keeps every channel of its stream
    pinned = compressions(model, replace(plan, pin_first_last=True))
    assert pinned["stem"].keep == pinned["block1.conv2"].keep == 1.0
    assert pinned["block1.conv1"].in_keep == 1.0 and pinned["block1.conv1"].keep == 0.5
    # a coupled producer has no keep of its own: the error names the group's key
    with pytest.raises(PlanError, match=r"set keep on 'block1.conv2'") as error:
        to_workload(model, CompressionPlan(layers={"stem": LayerSpec(keep=0.5)}))
    assert error.value.problems == [
        "layers[\"stem\"].keep: 0.5 but 'stem' is pruned with the prune group of producer "
        "'block1.conv2' and has no keep ratio of its own: set keep on 'block1.conv2'"
    ]
    # nor has a depthwise follower (its channels are its expansion conv's)
    with pytest.raises(PlanError, match=r"'block1.dw' is pruned .* set keep on 'block1.expand'"):
        CompressionPlan(layers={"block1.dw": LayerSpec(keep=0.5)}).check(
            seeded(TinyInvertedResidual)
        )


@pytest.mark.parametrize("keep", [1.0, 0.5, 0.75, 0.3])
def test_a_pruned_layernorm_keeps_its_rows(keep):
    """Pruning a LayerNorm's producer narrows the normalized axis, not the rows (one per
    token): the per-row cost stays, whatever the kept share."""
    from lowbit.models.graph import PruneGroup

    class Net(nn.Module):
        input_shape = (17, 16)

        def __init__(self):
            super().__init__()
            self.fc0, self.fc1 = nn.Linear(16, 32), nn.Linear(32, 64)
            self.ln, self.fc2 = nn.LayerNorm(64), nn.Linear(64, 10)

        def forward(self, x):
            return self.fc2(self.ln(self.fc1(self.fc0(x))))

        def prune_groups(self):
            return [PruneGroup(producer="fc1", consumers=("fc2",), followers=("ln",))]

    plan = CompressionPlan(layers={"fc1": LayerSpec(keep=keep)}) if keep < 1 else None
    ln = to_workload(Net(), plan).layer("ln")
    assert ln.rows == 17 and ln.elements == 17 * round(64 * keep)
