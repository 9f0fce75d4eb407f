"""The search's workload charges the float round trip of a tensor quantized onto two grids
exactly where hwsim's importer finds one in the exported graph (which ONNX Runtime runs)."""

from __future__ import annotations

from collections import Counter

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
#: the layout change of fashion-resnet's Flatten, which both workloads price
_FLAT = ("transpose", 96)


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
    exported = export_compressed(compress(model, plan, calib=calib), out_dir=tmp_path, check=False)
    imported = import_onnx(exported.int8_path)
    assert len(imported.float_ops) == len(splits)  # the importer names the same ops float

    bridge = to_workload(model, plan, round_trip=True)

    # the same float layers (the split conv) and the same movement layers and float ReLUs,
    # element for element (the importer's Flatten layout change aside: both price it)
    def round_trip(workload):
        return [
            x
            for x in workload.layers
            if x.compression.a_bits is None
            or (isinstance(x, Elementwise) and x.kind in _MOVEMENT and ":" in x.name)
        ]

    def moved(layers):
        return Counter((x.kind, x.elements) for x in layers if isinstance(x, Elementwise))

    ours, theirs = round_trip(bridge), round_trip(imported.workload)
    theirs = [x for x in theirs if (getattr(x, "kind", ""), getattr(x, "elements", 0)) != _FLAT]
    assert len(ours) == len(theirs) and moved(ours) == moved(theirs)
    # add: dequantize, ReLU, a quantize per grid; conv: two before it (the input's quantize
    # and dequantize, or dequantize and layout), the weights' dequantize, the float conv, a
    # quantize per grid and a layout change per grid a conv reads
    expected = sum(
        2 + s.grids if s.kind == "add" else 4 + s.grids + s.conv_grids for s in found.values()
    )
    assert len(ours) == expected
    # and the same cost, on a CPU profile
    profile = hwsim.load_profile("cpu-x86-avx2")

    def cycles(layers):
        names = {x.name for x in layers}
        result = hwsim.simulate(bridge if layers is ours else imported.workload, profile)
        return sum(r.total_cycles for r in result.layers if r.name in names)

    assert cycles(ours) == pytest.approx(cycles(theirs), rel=0.02)


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
