"""The search's workload charges the float round trip of a tensor quantized onto two grids
exactly where hwsim's importer finds one in the exported graph (which ONNX Runtime runs)."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace

import pytest
import torch

from lowbit import hwsim
from lowbit.hwsim.onnx_workload import import_onnx
from lowbit.hwsim.workload import Elementwise
from lowbit.models.bridge import to_workload
from lowbit.models.compression._grid_split import split_outputs
from lowbit.models.compression.compress import compress
from lowbit.models.compression.plan import CompressionPlan
from lowbit.models.export.deploy import export_compressed
from lowbit.models.zoo import build

_MOVEMENT = ("quantize", "dequantize", "transpose", "relu")


def _plan(default_bits: int, **layers: int) -> CompressionPlan:
    """A plan of ``default_bits`` everywhere but ``layers`` (name with '__' for '.')."""
    spec = {"_default": {"w_bits": default_bits, "a_bits": default_bits}}
    for name, bits in layers.items():
        spec[name.replace("__", ".")] = {"w_bits": bits, "a_bits": bits}
    return CompressionPlan.from_dict(
        {"version": 2, "pin_first_last": True, "recovery": "lsq", "layers": spec}
    )


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    model = build("fashion-resnet", seed=0).eval()
    return model, torch.rand(64, *model.input_shape)


@pytest.mark.parametrize(
    ("plan", "splits"),
    [
        # the first block's output: read at 4 bits by layer2.conv1, at 8 by its shortcut
        (_plan(8, layer2__conv1=4), {"layer1.add": "add"}),
        # the stem's output (through BatchNorm and ReLU) too: the stem conv runs float
        (_plan(8, layer1__conv1=4, layer3__conv1=4), {"stem": "conv", "layer2.add": "add"}),
        (_plan(8), {}),  # one grid per tensor: nothing to charge
    ],
    ids=["add", "conv-and-add", "uniform"],
)
def test_the_bridge_charges_what_the_exported_graph_runs(resnet, plan, splits, tmp_path):
    model, calib = resnet
    found = split_outputs(model, plan.effective(model))
    assert {name: s.kind for name, s in found.items()} == splits
    assert all(s.grids == 2 for s in found.values())
    ours = _compare(model, calib, plan, tmp_path, floats=len(splits))
    # add: dequantize, ReLU, a quantize per grid; conv: two before it (the input's quantize
    # and dequantize, or dequantize and layout), the weights' dequantize, the float conv, a
    # quantize per grid and a layout change per grid a conv reads
    expected = sum(
        2 + s.grids if s.kind == "add" else 4 + s.grids + s.conv_grids for s in found.values()
    )
    assert len(ours) == expected


def test_a_low_rank_writer_runs_only_its_second_factor_in_float(tmp_path):
    """A rank-4 1x1 projection whose output is read at 8 bits by the residual add and at 4
    by the next block: deployed, its first factor stays integer and its second -- on the
    export's padded inner channels -- runs float."""
    torch.manual_seed(0)
    model = build("fashion-mobilenet", seed=0).eval()
    calib = torch.rand(64, *model.input_shape)
    plan = CompressionPlan.from_dict(
        {
            "version": 2,
            "pin_first_last": True,
            "recovery": "lsq",
            "layers": {
                "_default": {"w_bits": 8, "a_bits": 8},
                "blocks.1.project": {"w_bits": 8, "a_bits": 8, "rank": 4},
                "blocks.2.expand": {"w_bits": 4, "a_bits": 4},
            },
        }
    )
    ours = _compare(model, calib, plan, tmp_path, floats=1)
    (second,) = (x for x in ours if x.compression.a_bits is None)
    assert second.name == "blocks.1.project.second" and (second.k_h, second.in_c) == (1, 16)


def _input_border(layer) -> bool:
    """The quantizer and layout change of an integer stem's padded input: the bridge's and
    the importer's names for them."""
    return layer.name.startswith("input:") or layer.name.endswith("input__channel_padded")


def _border(workload) -> list:
    """The memory-only layers before a workload's first compute layer."""
    layers = workload.layers
    return list(layers[: next(i for i, x in enumerate(layers) if not isinstance(x, Elementwise))])


def _compare(model, calib, plan, tmp_path, *, floats: int) -> list:
    """The bridge's round-trip layers, checked against hwsim's import of the exported graph:
    the same float layers, the same movement layers and float ReLUs element for element (the
    Flatten's layout change aside: both price it), the same cost on a CPU profile."""
    exported = export_compressed(compress(model, plan, calib=calib), out_dir=tmp_path, check=False)
    imported = import_onnx(exported.int8_path)
    assert len(imported.float_ops) == floats  # the ops ONNX Runtime runs in float
    bridge = to_workload(model, plan, round_trip=True)

    def round_trip(workload):  # not the padded input's border (a test of its own)
        return [
            x
            for x in workload.layers
            if not _input_border(x)
            and (
                x.compression.a_bits is None
                or (isinstance(x, Elementwise) and x.kind in _MOVEMENT and ":" in x.name)
            )
        ]

    def moved(layers):  # a layout change back to NCHW with its channels (they price it)
        return Counter(
            (x.kind, x.elements, x.channels) for x in layers if isinstance(x, Elementwise)
        )

    ours, theirs = round_trip(bridge), round_trip(imported.workload)
    theirs = [
        x
        for x in theirs
        if not (isinstance(x, Elementwise) and x.kind == "transpose" and "Flatten" in x.name)
    ]
    assert len(ours) == len(theirs) and moved(ours) == moved(theirs)
    profile = hwsim.load_profile("cpu-x86-avx2")

    def cycles(workload, layers):
        names = {x.name for x in layers}
        return sum(
            r.total_cycles for r in hwsim.simulate(workload, profile).layers if r.name in names
        )

    assert cycles(bridge, ours) == pytest.approx(cycles(imported.workload, theirs), rel=0.02)
    return ours


def test_a_target_that_requantizes_in_integer_pays_no_round_trip(resnet):
    """Without ``two_grid_round_trip`` (an NPU, TFLite) the same plan keeps every layer at
    its bits: an NPU without a float mode can simulate it."""
    model, _ = resnet
    plan = _plan(8, layer1__conv1=4, layer3__conv1=4)
    npu = hwsim.load_profile("npu-bitfusion")
    assert not npu.overheads.two_grid_round_trip
    workload = to_workload(model, plan, round_trip=npu.overheads.two_grid_round_trip)
    assert all(layer.compression.a_bits is not None for layer in workload.layers)
    assert len(workload.layers) == len(to_workload(model, plan).layers)
    hwsim.simulate(workload, npu)  # no UnsupportedPrecision
    with pytest.raises(hwsim.UnsupportedPrecision):  # the float round trip needs float
        hwsim.simulate(to_workload(model, plan, round_trip=True), npu)


def test_a_plan_applied_to_a_zoo_workload_charges_it_as_the_search_does(tmp_path):
    """``lowbit simulate fashion-resnet --plan ... --hardware <host profile>`` prices a
    mixed-precision plan as the search does: the zoo workload with the round trip, on a
    target that needs it, and without it on one that does not."""
    from lowbit.models.workloads import apply_plan, resolve_workload

    model = build("fashion-resnet")
    plan = _plan(8, layer2__conv1=4)
    workload = resolve_workload("fashion-resnet")
    with_trip = apply_plan(workload, plan, round_trip=True)
    assert with_trip.layers == to_workload(model, plan, round_trip=True).layers
    assert any(x.name == "layer1.add:relu" for x in with_trip.layers)
    assert apply_plan(workload, plan).layers == to_workload(model, plan).layers
    # a workload changed from the zoo's (here: one layer fewer) keeps its own layers
    trimmed = replace(workload, layers=workload.layers[:-1])
    assert len(apply_plan(trimmed, plan, round_trip=True).layers) == len(trimmed.layers)


#: the border each zoo model's exported graph has: a quantize, and the layout change before
#: a conv on an image (a 1-D conv's input stays as it is)
_BORDERS = {
    "digits-cnn": ["quantize", "transpose"],
    "digits-mlp": ["quantize"],
    "digits-vit": ["quantize", "transpose"],
    "mnist1d-cnn": ["quantize"],
    "mnist1d-mlp": ["quantize"],
    "fashion-resnet": ["quantize", "transpose"],
    "fashion-resnet-demo": ["quantize", "transpose"],
    "fashion-mobilenet": ["quantize", "transpose"],
    "fashion-vit": ["quantize", "transpose"],
}


def test_every_zoo_model_has_its_border_listed():
    from lowbit.models.zoo import ZOO

    assert set(_BORDERS) == set(ZOO)


@pytest.mark.parametrize("name", sorted(_BORDERS))
def test_the_bridge_quantizes_the_input_as_the_exported_graph_does(name, tmp_path):
    """ONNX Runtime quantizes the float input with an operator of its own and, before a conv
    on an image, makes it channels-last: the bridge of an ONNX Runtime deployment
    (``round_trip``) charges the operators hwsim's importer finds in the exported graph, on
    the input's elements (the export pads some stems' input channels to 4 first: the
    bridge leaves that out); other targets' workloads have no such layers."""
    torch.manual_seed(0)
    model = build(name, seed=0).eval()
    plan = _plan(8)
    calib = torch.rand(16, *model.input_shape)
    exported = export_compressed(compress(model, plan, calib=calib), out_dir=tmp_path, check=False)
    imported = [  # an MLP's Flatten of its input is a layout change of the importer's own
        x
        for x in _border(import_onnx(exported.int8_path, allow_unmapped=True).workload)
        if "Flatten" not in x.name
    ]
    ours = _border(to_workload(model, plan, round_trip=True))
    assert [x.kind for x in ours] == [x.kind for x in imported] == _BORDERS[name]
    channels = model.input_shape[0]
    padded = -(-channels // 4) * 4  # a stem's input channels, padded to the kernel's step
    for mine, theirs in zip(ours, imported, strict=True):
        assert mine.elements == math.prod(model.input_shape)
        assert theirs.elements in (mine.elements, mine.elements // channels * padded)
    assert not _border(to_workload(model, plan))


@pytest.mark.parametrize(("name", "first"), [("digits-cnn", "conv1"), ("digits-mlp", "fc1")])
def test_a_float_first_layer_reads_the_float_input(name, first):
    """Nothing to quantize before a first layer the plan leaves in float."""
    model = build(name, seed=0).eval()
    floating = _plan(8, **{first: 32})
    assert not _border(to_workload(model, floating, round_trip=True))
