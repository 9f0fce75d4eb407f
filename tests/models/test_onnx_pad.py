"""pad_conv_channels: pruned convs get zero filters up to ONNX Runtime's direct INT8 kernel
(channels in multiples of 4, >= 16 outputs), a 1-channel stem a zero-padded input; the INT8
outputs are bit-identical (padded channels are exact zeros that every reader weighs by 0)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from lowbit.models.compression.plan import CompressionPlan, LayerSpec
from lowbit.models.export._onnx_pad import aligned_channels, pad_conv_channels
from lowbit.models.export.deploy import build_compressed, deploy_copy, resolve_weight_type, to_onnx
from lowbit.models.export.onnx_quant import quantize_graph
from lowbit.models.export.ort import kernel_census, ort_session

#: 8-bit weights as the export stores them on this CPU: u8 where ONNX Runtime's u8·s8 kernels
#: saturate (AVX2 without VNNI), whose pairs of products the reordered or padded channels
#: would regroup (test_export_codes.test_s8_weights_saturate_exactly_where_the_export_avoids_them)
HOST_WEIGHT_TYPE = resolve_weight_type("auto")


def _weights(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Conv node -> the shape of its weight codes (the DQ's constant input)."""
    inits = {t.name: t for t in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    return {
        n.name: tuple(numpy_helper.to_array(inits[producers[n.input[1]].input[0]]).shape)
        for n in model.graph.node
        if n.op_type == "Conv"
    }


@pytest.fixture(scope="module")
def pruned(lowbit_cache):
    """digits-cnn pruned to 4 / 12 / 24 channels, 4-bit weights and activations (the
    narrow activations add Clips on the padded tensors), 8 / 4-bit stem."""
    spec = {"w_bits": 4, "a_bits": 4}
    plan = CompressionPlan(
        layers={
            "conv1": LayerSpec(w_bits=8, a_bits=8, keep=0.25),
            "conv2": LayerSpec(keep=0.375, **spec),
            "conv3": LayerSpec(keep=0.75, **spec),
            "fc1": LayerSpec(**spec),
            "fc2": LayerSpec(w_bits=8, a_bits=8),
        },
        pin_first_last=False,
    )
    _, compressed = build_compressed("digits-cnn", plan)
    deploy, quants, _ = deploy_copy(compressed)
    fp32 = to_onnx(deploy, input_shape=tuple(compressed.input_shape))
    qdq, _ = quantize_graph(fp32, quants, weight_type=HOST_WEIGHT_TYPE)
    x = np.random.default_rng(0).random((48, *compressed.input_shape), np.float32)
    return qdq, x


def test_aligned_channel_counts():
    assert [aligned_channels(c, multiple=4, minimum=16) for c in (1, 4, 12, 16, 17, 24)] == [
        16, 16, 16, 16, 20, 24,
    ]  # fmt: skip
    assert [aligned_channels(c, multiple=4) for c in (1, 3, 4, 6)] == [4, 4, 4, 8]


def test_padded_network_is_bit_identical_and_aligned(pruned):
    qdq, x = pruned
    padded, record = pad_conv_channels(qdq)
    before = ort_session(qdq).run(None, {"input": x})[0]
    assert np.array_equal(ort_session(padded).run(None, {"input": x})[0], before)
    # 1 -> 4 -> 12 -> 24 channels become 4 -> 16 -> 16 -> 24
    assert record == {"/conv1/Conv:in": (1, 4), "/conv1/Conv": (4, 16), "/conv2/Conv": (12, 16)}
    shapes = _weights(padded)
    assert [shapes[n][:2] for n in ("/conv1/Conv", "/conv2/Conv", "/conv3/Conv")] == [
        (16, 4), (16, 16), (24, 16),
    ]  # fmt: skip
    for out_c, in_c, *_ in shapes.values():
        assert out_c % 4 == 0 and out_c >= 16 and in_c % 4 == 0
    assert kernel_census(padded).get("Pad") == 1  # the stem's input


def test_a_conv_whose_output_leaves_the_graph_keeps_its_channels(pruned):
    qdq, _ = pruned
    cut = onnx.ModelProto.FromString(qdq.SerializeToString())
    conv2 = next(n for n in cut.graph.node if n.name == "/conv2/Conv")
    cut.graph.output.append(
        onnx.helper.make_tensor_value_info(conv2.output[0], onnx.TensorProto.FLOAT, ["b", 12, 8, 8])
    )
    _, record = pad_conv_channels(cut)
    assert "/conv2/Conv" not in record and "/conv1/Conv" in record


def test_a_conv_onnx_runtime_runs_in_float_is_not_padded(lowbit_cache):
    """digits-vit's patch embedding feeds float ops (no requantizer after it): ONNX Runtime
    runs it as a float Conv, where padding would only add work."""
    _, vit = build_compressed("digits-vit", CompressionPlan.from_bits_string("W4A8"))
    deploy, quants, _ = deploy_copy(vit)
    qdq, _ = quantize_graph(
        to_onnx(deploy, input_shape=tuple(vit.input_shape)), quants, weight_type=HOST_WEIGHT_TYPE
    )
    padded, record = pad_conv_channels(qdq)
    assert record == {} and kernel_census(padded).get("Pad") is None


def test_a_conv_with_a_float_bias_is_left_alone(pruned):
    """A graph lowbit does not write (conv2's bias a float constant, not int32 codes): the
    pass skips that conv rather than failing."""
    qdq, x = pruned
    odd = onnx.ModelProto.FromString(qdq.SerializeToString())
    conv2 = next(n for n in odd.graph.node if n.name == "/conv2/Conv")
    odd.graph.initializer.append(numpy_helper.from_array(np.zeros(12, np.float32), "float_bias"))
    conv2.input[2] = "float_bias"
    padded, record = pad_conv_channels(odd)
    assert "/conv2/Conv" not in record and "/conv1/Conv" in record
    assert np.array_equal(
        ort_session(padded).run(None, {"input": x})[0], ort_session(odd).run(None, {"input": x})[0]
    )


def test_a_conv_pruned_to_one_channel_is_padded_with_its_bias(lowbit_cache):
    """A 1-output conv keeps 1-D per-channel scales, zero points and bias codes of length 1:
    they are padded like any other (ONNX Runtime refused the unpadded bias: "bias must be a
    1D tensor of size output_channels")."""
    plan = CompressionPlan(
        layers={
            "_default": LayerSpec(w_bits=8, a_bits=8),
            "conv1": LayerSpec(w_bits=8, a_bits=8, keep=0.01),
        },
        pin_first_last=False,
    )
    _, compressed = build_compressed("digits-cnn", plan)
    assert compressed.conv1.out_channels == 1
    deploy, quants, _ = deploy_copy(compressed)
    qdq, _ = quantize_graph(
        to_onnx(deploy, input_shape=tuple(compressed.input_shape)),
        quants,
        weight_type=HOST_WEIGHT_TYPE,
    )
    padded, record = pad_conv_channels(qdq)
    assert record.get("/conv1/Conv") == (1, 16), record
    x = np.random.default_rng(1).random((16, *compressed.input_shape), np.float32)
    before = ort_session(qdq).run(None, {"input": x})[0]
    assert np.array_equal(ort_session(padded).run(None, {"input": x})[0], before)
