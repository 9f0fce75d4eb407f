"""Export to real INT8 ONNX: the QDQ pass on hand-built graphs, and whole zoo models.

Tolerance of INT8 vs fake quantization (stated once): the fake-quant inference computes the
integer kernels' accumulators and int32 biases (models._intbias), so activation codes agree
code for code but for requantization ties; test_export_codes.py states that tolerance (1 code
in 10,000 per layer, teacher forced) and it is asserted on the mixed export below too. The
older, looser
bounds stay as a floor: argmax agreement >= 99% on the test split and logits within 5% of
the logit range; the exported weights must be exactly the fake-quant grid codes (checked in
the pass itself and below).
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from tiny_nets import TinyInvertedResidual, TinyResNet, seeded

from lowbit.models.compression.plan import CompressionPlan, LayerSpec
from lowbit.models.export.deploy import (
    act_grid,
    deploy_copy,
    export_compressed,
    export_plan,
    resolve_weight_type,
)
from lowbit.models.export.onnx_quant import (
    ActGrid,
    ExportError,
    LayerQuant,
    WeightGrid,
    quantize_graph,
)
from lowbit.models.export.ort import ort_session

RNG = np.random.default_rng(0)


def _float_graph() -> onnx.ModelProto:
    """input -> /a/Conv (4->8, 3x3) -> Relu -> MaxPool -> /b/Conv (8->8, 1x1) -> output,
    named like the TorchScript exporter names module scopes (same weights every call)."""
    rng = np.random.default_rng(7)
    w1 = rng.integers(-7, 8, size=(8, 4, 3, 3)).astype(np.float32) * 0.1
    w2 = rng.integers(-2, 2, size=(8, 8, 1, 1)).astype(np.float32) * 0.05
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="/a/Conv", pads=[1] * 4),
        helper.make_node("Relu", ["c1"], ["r1"], name="/Relu"),
        helper.make_node(
            "MaxPool", ["r1"], ["p1"], name="/pool/MaxPool", kernel_shape=[2, 2], strides=[2, 2]
        ),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["output"], name="/b/Conv"),
    ]
    inits = [
        numpy_helper.from_array(w1, "w1"),
        numpy_helper.from_array(np.zeros(8, np.float32), "b1"),
        numpy_helper.from_array(w2, "w2"),
        numpy_helper.from_array(np.full(8, 0.1, np.float32), "b2"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 4, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", 8, 4, 4])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _layers(b_grid: ActGrid) -> list[LayerQuant]:
    model = _float_graph()
    w = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return [
        LayerQuant(
            "a",
            "conv",
            (ActGrid(0.02, 128),),
            WeightGrid(np.round(w["w1"] / 0.1).astype(np.int64), np.full(8, 0.1), 4),
        ),
        LayerQuant(
            "b",
            "conv",
            (b_grid,),
            WeightGrid(np.round(w["w2"] / 0.05).astype(np.int64), np.full(8, 0.05), 2),
        ),
    ]


def _ops(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]


def test_qdq_pass_moves_the_quantizer_before_relu_and_pool():
    # a 4-bit unsigned grid (codes 0..15, zero point 0) at the input of /b/Conv
    grid = ActGrid(0.1, 0, 0, 15)
    model, storage = quantize_graph(_float_graph(), _layers(grid))
    ops = _ops(model)
    assert "Relu" not in ops  # Q clamps at the zero point = qmin: the Relu is a no-op
    assert ops.count("Clip") == 1  # the sub-8-bit grid is enforced once, on uint8 codes
    clip = next(n for n in model.graph.node if n.op_type == "Clip")
    conv_a = next(n for n in model.graph.node if n.name == "/a/Conv")
    producer_of_clip = next(n for n in model.graph.node if clip.input[0] in n.output)
    assert producer_of_clip.op_type == "QuantizeLinear"
    assert producer_of_clip.input[0] == conv_a.output[0]  # quantized right at /a/Conv's output
    assert storage == {"a": "s8", "b": "s8"}
    kinds = {t.name: t.data_type for t in model.graph.initializer}
    assert sum(1 for v in kinds.values() if v == TensorProto.INT32) == 4  # 2 biases + 2 zps


def test_qdq_model_computes_the_fake_quant_function():
    """ONNX Runtime on the QDQ graph = a numpy emulation of the grids, up to 1 output code."""
    grid = ActGrid(0.1, 0, 0, 15)
    model, _ = quantize_graph(_float_graph(), _layers(grid))
    x = RNG.normal(size=(2, 4, 8, 8)).astype(np.float32)
    out = ort_session(model).run(None, {"input": x})[0]
    ref_model = _float_graph()
    w = {t.name: numpy_helper.to_array(t).copy() for t in ref_model.graph.initializer}
    xq = (np.clip(np.round(x / 0.02) + 128, 0, 255) - 128) * 0.02
    c1 = torch.nn.functional.conv2d(torch.from_numpy(xq), torch.from_numpy(w["w1"]), padding=1)
    p1 = torch.nn.functional.max_pool2d(torch.relu(c1), 2).numpy()
    p1q = np.clip(np.round(p1 / 0.1), 0, 15) * 0.1
    ref = (
        torch.nn.functional.conv2d(
            torch.from_numpy(p1q.astype(np.float32)), torch.from_numpy(w["w2"])
        ).numpy()
        + 0.1
    )
    # one 4-bit input code (0.1) times the largest |weight| sum of a filter bounds the error
    bound = 0.1 * np.abs(w["w2"]).reshape(8, -1).sum(1).max()
    assert np.abs(out - ref).max() <= bound
    assert np.abs(out - ref).mean() < 0.1 * bound


def test_qdq_pass_rejects_weights_off_the_grid_and_missing_layers():
    layers = _layers(ActGrid(0.1, 0))
    bad = LayerQuant(
        "a",
        "conv",
        layers[0].inputs,
        WeightGrid(layers[0].weight.codes + 1, layers[0].weight.scales, 4),
    )
    with pytest.raises(ExportError, match="not on the layer's grid"):
        quantize_graph(_float_graph(), [bad])
    with pytest.raises(ExportError, match="'nope'"):
        quantize_graph(_float_graph(), [LayerQuant("nope", "conv", (ActGrid(0.1, 0),))])
    with pytest.raises(ValueError, match="zero_point"):
        ActGrid(0.1, 300)
    with pytest.raises(ValueError, match="weight_type"):
        quantize_graph(_float_graph(), layers, weight_type="s4")


def test_act_grid_maps_signed_grids_to_uint8():
    # signed symmetric 8-bit grid -128..127 (zero point 0) = uint8 0..255, zero point 128
    assert act_grid(torch.tensor(0.5), torch.tensor(0), -128, 127) == ActGrid(0.5, 128, 0, 255)
    # signed 4-bit grid -8..7 is clipped to codes 120..135 around 128
    assert act_grid(torch.tensor(0.5), torch.tensor(0), -8, 7) == ActGrid(0.5, 128, 120, 135)
    assert act_grid(torch.tensor(0.5), torch.tensor(3), 0, 15).clipped


MIXED = CompressionPlan(
    layers={
        "_default": LayerSpec(w_bits=4, a_bits=8),
        "conv2": LayerSpec(w_bits=4, a_bits=8, keep=0.5),
        "conv3": LayerSpec(w_bits=2, a_bits=6, rank=8),
        "fc1": LayerSpec(w_bits=8, a_bits=8, rank=16),
    },
    pin_first_last=True,
)


@pytest.fixture(scope="module")
def mixed_export(tmp_path_factory, lowbit_cache):
    return export_plan("digits-cnn", MIXED, out_dir=tmp_path_factory.mktemp("mixed"))


def _initializers(path) -> dict[str, np.ndarray]:
    model = onnx.load(path)
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _codes(path, layer: str) -> np.ndarray:
    """A layer's stored weight codes (int8 or uint8) as in the ONNX file."""
    found = [v for k, v in _initializers(path).items() if k.startswith(f"{layer}.weight_quantized")]
    assert len(found) == 1, layer
    return found[0]


def _levels(path, layer: str) -> np.ndarray:
    """Stored codes minus their zero points, output channels first."""
    model = onnx.load(path)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    dq = next(
        n
        for n in model.graph.node
        if n.op_type == "DequantizeLinear" and n.input[0].startswith(f"{layer}.weight_quantized")
    )
    axis = next(a.i for a in dq.attribute if a.name == "axis")
    codes = np.moveaxis(inits[dq.input[0]].astype(np.int64), axis, 0)
    zero = inits[dq.input[2]].astype(np.int64)
    return codes - zero.reshape((-1,) + (1,) * (codes.ndim - 1))


@pytest.mark.slow
def test_int8_outputs_match_fake_quant(mixed_export):
    check = mixed_export.deploy["check"]
    assert check["split"] == "test" and check["samples"] == 360
    assert check["code_check_samples"] == 360  # the whole split: fewer than CODE_CHECK_SAMPLES
    assert check["argmax_agreement"] >= 0.99
    assert check["max_abs_logit_diff"] <= 0.05 * check["logit_range"]
    assert abs(check["accuracy_int8"] - check["accuracy_fake_quant"]) <= 2 / 360


@pytest.mark.slow
def test_int8_codes_equal_fake_quant_codes(mixed_export):
    check = mixed_export.deploy["check"]
    layers = {"conv1", "conv2", "conv3.first", "conv3.second", "fc1.first", "fc1.second", "fc2"}
    assert set(check["code_agreement"]) == set(check["code_agreement_forced"]) == layers
    assert check["min_code_agreement_forced"] >= 0.9999  # test_export_codes.CNN_AGREEMENT
    # end to end, one requantization tie upstream moves many 8-bit codes downstream
    # (measured: 2 of 368,640 conv2 input codes -> 99.83 % of fc2's)
    assert check["min_code_agreement"] >= 0.99
    assert check["argmax_agreement"] >= 0.995


@pytest.mark.slow
def test_pruned_and_low_rank_shapes_are_real(mixed_export):
    # the FP32 model has the compressed shapes exactly
    fp32 = [v.shape for v in _initializers(mixed_export.fp32_path).values()]
    for shape in ((16, 1, 3, 3), (16, 16, 3, 3), (8, 16, 3, 3), (32, 8, 1, 1)):
        assert shape in fp32  # pinned stem; keep 0.5 of 32 filters; rank 8 with 16 inputs left
    # the INT8 model pads them to ONNX Runtime's direct kernel (multiples of 4, >= 16 out)
    # with zero codes: the 1-channel stem's input to 4, conv3's rank 8 to 16
    path = mixed_export.int8_path
    assert mixed_export.deploy["padded_channels"] == {
        "/conv1/Conv:in": [1, 4],
        "/conv3/first/Conv": [8, 16],
    }
    # levels (codes less their zero points: 128 for 8-bit weights stored as u8)
    conv1, first, second = (_levels(path, n) for n in ("conv1", "conv3.first", "conv3.second"))
    assert conv1.shape == (16, 4, 3, 3) and not conv1[:, 1:].any()
    assert _codes(path, "conv2").shape == (16, 16, 3, 3)
    assert first.shape == (16, 16, 3, 3) and not first[8:].any()
    assert second.shape == (32, 16, 1, 1) and not second[:, 8:].any()
    # fc1's input = 32 channels x 4 positions; rank 16 (out, in): levels are out-first
    assert _levels(path, "fc1.first").shape == (16, 128)
    assert _levels(path, "fc1.second").shape == (64, 16)


@pytest.mark.slow
def test_low_bit_codes_stay_on_their_grid(mixed_export):
    """Stored codes are k times the grid codes (a finer integer scale for the int32 bias):
    divided by their per-channel gcd they take at most 2^b levels within ±2^(b-1)."""
    path = mixed_export.int8_path
    for layer, bits in (("conv2", 4), ("conv3.first", 2), ("fc1.first", 8), ("conv1", 8)):
        levels = _levels(path, layer)
        for row in levels.reshape(levels.shape[0], -1):
            step = np.gcd.reduce(np.abs(row))
            if step == 0:
                continue  # a channel whose weights are all zero
            grid = row // step
            assert len(np.unique(grid)) <= 2**bits
            # a folded BatchNorm may negate a channel: -2^(b-1) becomes +2^(b-1)
            assert np.abs(grid).max() <= 2 ** (bits - 1)
        assert np.abs(levels).max() <= (127 if bits < 8 else 128)


@pytest.mark.slow
def test_deploy_json_describes_the_model(mixed_export):
    deploy = json.loads(mixed_export.deploy_path.read_text())
    assert deploy == mixed_export.deploy
    assert deploy["inputs"] == [{"name": "input", "dtype": "float32", "shape": ["batch", 1, 8, 8]}]
    assert deploy["plan"] == MIXED.to_dict()
    layers = {row["name"]: row for row in deploy["layers"]}
    assert layers["conv3.first"]["w_bits"] == 2 and layers["conv3.first"]["a_bits"] == 6
    assert all(row["runs_as"] == "int8" for row in deploy["layers"])
    kernels = deploy["ort_kernels"]["int8"]
    assert kernels.get("QLinearConv", 0) == 4 and "Conv" not in kernels
    assert kernels.get("Clip", 0) >= 1  # the 6-bit activations of conv3's factors


@pytest.mark.slow
def test_float_layers_stay_float_and_u8_weights_are_exact(tmp_path, lowbit_cache):
    plan = CompressionPlan(
        layers={"_default": LayerSpec(w_bits=8, a_bits=8), "fc1": LayerSpec()},
        pin_first_last=False,
    )
    # s8 computes exactly only where the export would pick it (VNNI; without it u8·s8 pairs
    # saturate: test_export_codes), so its check runs only there
    s8_exact = resolve_weight_type("auto") == "s8"
    s8 = export_plan("digits-cnn", plan, out_dir=tmp_path / "s8", weight_type="s8", check=s8_exact)
    u8 = export_plan("digits-cnn", plan, out_dir=tmp_path / "u8", weight_type="u8")
    assert u8.deploy["check"]["min_code_agreement_forced"] >= 0.9999  # exact on every CPU
    rows = {row["name"]: row for row in s8.deploy["layers"]}
    assert rows["fc1"]["runs_as"] == "float" and rows["fc2"]["runs_as"] == "int8"
    assert not any(k.startswith("fc1.weight_quantized") for k in _initializers(s8.int8_path))
    assert _codes(u8.int8_path, "conv2").dtype == np.uint8
    assert _codes(s8.int8_path, "conv2").dtype == np.int8
    x = np.random.default_rng(1).uniform(size=(16, 1, 8, 8)).astype(np.float32)
    out = [ort_session(str(r.int8_path)).run(None, {"input": x})[0] for r in (s8, u8)]
    if s8_exact:
        np.testing.assert_allclose(out[0], out[1], atol=1e-5)


@pytest.mark.slow
def test_deploy_copy_folds_batchnorm_exactly(digits_cnn):
    from lowbit.models.compression.quant import QuantLayer
    from lowbit.models.data import load_split

    x, _ = load_split("digits", "val")
    plan = CompressionPlan.from_bits_string("W4A8", pin_first_last=False)
    from lowbit.models import compress

    small = compress(digits_cnn, plan, calib=x)
    for m in small.modules():  # float activations: compare the folded float network
        if isinstance(m, QuantLayer):
            m.a_bits = None
    deploy, quants, _ = deploy_copy(small)
    with torch.no_grad():
        np.testing.assert_allclose(deploy(x[:64]).numpy(), small(x[:64]).numpy(), atol=1e-4)
    for lq in quants:
        assert lq.weight is not None and lq.weight.bits == 4


#: conv outputs the export pads (channels, padded): only convs read by plain convs; a conv
#: read by a residual add or a depthwise conv (and the depthwise conv) is left alone. The
#: 1-channel stem runs as QLinearConv (its output is quantized for the add and the next
#: conv), so its input is padded to 4 channels as on digits-cnn
RESIDUAL_PADDING = {
    TinyResNet: {
        "/stem/Conv:in": [1, 4],
        "/block1/conv1/Conv": [4, 16],
        "/block2/conv1/Conv": [8, 16],
    },
    TinyInvertedResidual: {"/stem/Conv:in": [1, 4]},
}


@pytest.mark.slow
@pytest.mark.parametrize("cls", [TinyResNet, TinyInvertedResidual])
def test_pruned_residual_and_depthwise_nets_export_exactly(cls, tmp_path, lowbit_cache):
    from lowbit.models import compress
    from lowbit.models.data import load_split

    x, _ = load_split("digits", "val")
    plan = CompressionPlan(
        layers={
            "_default": LayerSpec(w_bits=8, a_bits=8, keep=0.5),
            "re:block1\\..*": LayerSpec(w_bits=4, a_bits=8, keep=0.5),
        },
        pin_first_last=False,
    )
    small = compress(seeded(cls), plan, calib=x)
    result = export_compressed(small, out_dir=tmp_path, source={"plan": plan.to_dict()})
    # _check raised if the padded, channels-last INT8 graph were not bit-identical to the
    # QDQ graph; the codes agree as on the zoo CNN (test_export_codes.CNN_AGREEMENT)
    check = result.deploy["check"]
    assert check["min_code_agreement_forced"] >= 0.9999 and check["min_code_agreement"] >= 0.99
    assert check["argmax_agreement"] >= 0.99
    assert check["max_abs_logit_diff"] <= 0.05 * check["logit_range"]
    assert result.deploy["padded_channels"] == RESIDUAL_PADDING[cls]
    # the FP32 graph has the pruned shapes (streams 8 -> 4; a depthwise conv of 12 groups)
    shapes = {tuple(v.shape) for v in _initializers(result.fp32_path).values()}
    assert (4, 1, 3, 3) in shapes and (10, 8) in shapes
    if cls is TinyInvertedResidual:
        dw = next(n for n in onnx.load(result.fp32_path).graph.node if n.name == "/block1/dw/Conv")
        assert next(a.i for a in dw.attribute if a.name == "group") == 12
        assert _codes(result.int8_path, "block1.dw").shape == (12, 1, 3, 3)
    logits = ort_session(str(result.int8_path)).run(None, {"input": x[:8].numpy()})[0]
    assert logits.shape == (8, 10)


def test_an_export_that_fails_its_check_writes_nothing(tmp_path, lowbit_cache, monkeypatch):
    """The check runs on the graphs in memory; files are written only after it passes
    (deploy.json last), so a failing export leaves no half-written directory."""
    from lowbit.models.export import deploy

    def failing(*args, **kwargs):
        raise ExportError("simulated ONNX Runtime failure")

    monkeypatch.setattr(deploy, "check_export", failing)
    out = tmp_path / "export"
    with pytest.raises(ExportError, match="simulated"):
        export_plan("digits-cnn", CompressionPlan.from_bits_string("W8A8"), out_dir=out)
    assert not out.exists() or not any(out.iterdir())
