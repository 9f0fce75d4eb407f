"""Built-in workloads: published MAC counts, shape chaining, registry behaviour."""

from __future__ import annotations

import pytest

from lowbit.hwsim.errors import WorkloadError
from lowbit.hwsim.workload import Conv2d, Elementwise, Linear, MatMul, Pool, Workload
from lowbit.hwsim.workloads import (
    BUILTIN_WORKLOADS,
    builtin_workload,
    register_workload,
    workload_names,
)

# Published MAC counts. torchvision's model docs ("GFLOPS" column of the classification
# weights table, https://pytorch.org/vision/stable/models.html) count one multiply-add as
# one FLOP, i.e. they list MACs: ResNet-18 1.81, ResNet-50 4.09, MobileNet_V2 0.30,
# ViT_B_16 17.56. BERT-base per encoder layer at seq 128: 4·s·h² + 2·s·h·f + 2·s²·h =
# 0.931 G (Devlin et al. 2019 dimensions); 12 layers = 11.2 GMACs, the usual quoted figure.
# Tolerance 1%: torchvision rounds to two decimals.
PUBLISHED_GMACS = {
    "resnet18": 1.81,
    "resnet50": 4.09,
    "mobilenetv2": 0.30,
    "vit-b16": 17.56,
    "bert-base": 0.931,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED_GMACS))
def test_macs_match_published(name):
    assert builtin_workload(name).macs / 1e9 == pytest.approx(PUBLISHED_GMACS[name], rel=0.01)


def test_every_builtin_has_a_published_number():
    assert set(PUBLISHED_GMACS) <= set(BUILTIN_WORKLOADS)


@pytest.mark.parametrize("name", sorted(PUBLISHED_GMACS))
def test_workload_is_named_and_unique(name):
    workload = builtin_workload(name)
    assert workload.name == name
    names = [layer.name for layer in workload.layers]
    assert len(names) == len(set(names))


def _convs(workload: Workload) -> list[Conv2d]:
    return [layer for layer in workload.layers if isinstance(layer, Conv2d)]


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "mobilenetv2"])
def test_conv_output_sizes_follow_pytorch(name):
    # Every conv's stored output size is PyTorch's floor formula for some padding 0..k//2.
    for conv in _convs(builtin_workload(name)):
        sizes = {Conv2d.out_size(conv.in_h, conv.k_h, conv.stride, p) for p in range(conv.k_h)}
        assert conv.out_h in sizes and conv.out_w == conv.out_h


def test_resnet18_known_shapes():
    w = builtin_workload("resnet18")
    conv1 = w.layer("conv1")
    assert (conv1.out_h, conv1.out_c, conv1.k_h, conv1.stride) == (112, 64, 7, 2)
    assert w.layer("maxpool").out_elements == 56 * 56 * 64
    last = w.layer("layer4.1.conv2")
    assert (last.out_h, last.out_c) == (7, 512)
    down = w.layer("layer2.0.downsample.0")
    assert (down.in_c, down.out_c, down.k_h, down.stride, down.out_h) == (64, 128, 1, 2, 28)
    fc = w.layer("fc")
    assert isinstance(fc, Linear) and (fc.in_features, fc.out_features) == (512, 1000)
    assert len([x for x in w.layers if x.name.endswith(".downsample.0")]) == 3
    assert len([x for x in w.layers if x.name.endswith(".add")]) == 8


def test_resnet50_bottleneck_shapes():
    w = builtin_workload("resnet50")
    # torchvision v1.5: the stride sits on conv2 (3x3) of the first block of a stage
    assert w.layer("layer3.0.conv1").stride == 1
    assert w.layer("layer3.0.conv2").stride == 2
    assert w.layer("layer1.0.downsample.0").out_c == 256  # 64 -> 256, stride 1
    assert w.layer("fc").in_features == 2048
    assert len(_convs(w)) == 53  # 1 stem + 16 blocks x 3 + 4 downsample


def test_mobilenetv2_depthwise():
    w = builtin_workload("mobilenetv2")
    dws = [c for c in _convs(w) if c.depthwise]
    assert len(dws) == 17  # one per inverted-residual block
    dw = w.layer("features.2.conv.1.0")
    assert (dw.in_c, dw.groups, dw.stride, dw.out_h) == (96, 96, 2, 56)
    assert w.layer("features.18.0").out_c == 1280
    assert len([x for x in w.layers if x.name.endswith(".add")]) == 10


def test_bert_layer_structure():
    w = builtin_workload("bert-base")
    query = w.layer("encoder.layer.0.attention.self.query")
    assert (query.tokens, query.in_features, query.out_features) == (128, 768, 768)
    scores = w.layer("encoder.layer.0.attention.self.scores")
    assert isinstance(scores, MatMul) and (scores.M, scores.N, scores.K, scores.heads) == (
        128,
        128,
        64,
        12,
    )
    context = w.layer("encoder.layer.0.attention.self.context")
    assert (context.M, context.N, context.K) == (128, 64, 128)
    assert w.layer("encoder.layer.0.attention.self.softmax").elements == 12 * 128 * 128
    assert w.layer("encoder.layer.0.intermediate.dense").out_features == 3072
    assert sum(isinstance(x, Linear) for x in w.layers) == 6
    assert sum(isinstance(x, Elementwise) for x in w.layers) == 6


def test_vit_structure():
    w = builtin_workload("vit-b16")
    patch = w.layer("conv_proj")
    assert (patch.k_h, patch.stride, patch.out_h * patch.out_w, patch.out_c) == (16, 16, 196, 768)
    q = w.layer("encoder.layers.encoder_layer_11.self_attention.q_proj")
    assert q.tokens == 197
    assert sum(isinstance(x, MatMul) for x in w.layers) == 24
    assert w.layer("heads.head").tokens == 1


def test_memory_layers_have_traffic():
    for name in workload_names():
        for layer in builtin_workload(name).layers:
            if isinstance(layer, (Elementwise, Pool)):
                read, written = layer.memory_elements()
                assert read >= written > 0


def test_unknown_name_lists_valid_names():
    with pytest.raises(WorkloadError) as info:
        builtin_workload("resnet19")
    for name in PUBLISHED_GMACS:
        assert name in str(info.value)


def test_register_workload(monkeypatch):
    monkeypatch.setattr("lowbit.hwsim.workloads.BUILTIN_WORKLOADS", dict(BUILTIN_WORKLOADS))
    tiny = Workload("tiny", (Linear(name="fc", in_features=4, out_features=2),))
    register_workload("tiny", lambda: tiny)
    assert builtin_workload("tiny") is tiny
    assert "tiny" in workload_names()
    with pytest.raises(ValueError, match="already registered"):
        register_workload("tiny", lambda: tiny)
    register_workload("tiny", lambda: builtin_workload("resnet18"), replace=True)
    assert builtin_workload("tiny").name == "resnet18"
    with pytest.raises(ValueError, match="not callable"):
        register_workload("bad", tiny)  # type: ignore[arg-type]
