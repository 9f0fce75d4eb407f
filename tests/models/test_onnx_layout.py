"""flatten_channels_last: the INT8 CNN stays NHWC up to its classifier, computing the same
function (INT8: bit-identical outputs, since an integer kernel sums the same products)."""

from __future__ import annotations

import numpy as np
import pytest

from lowbit.models.compression.plan import CompressionPlan
from lowbit.models.export._onnx_layout import flatten_channels_last
from lowbit.models.export.deploy import build_compressed, deploy_copy, resolve_weight_type, to_onnx
from lowbit.models.export.onnx_quant import quantize_graph
from lowbit.models.export.ort import kernel_census, ort_session

#: 8-bit weights as the export stores them on this CPU: u8 where ONNX Runtime's u8·s8 kernels
#: saturate (AVX2 without VNNI), whose pairs of products the reordered or padded channels
#: would regroup (test_export_codes.test_s8_weights_saturate_exactly_where_the_export_avoids_them)
HOST_WEIGHT_TYPE = resolve_weight_type("auto")


@pytest.fixture(scope="module")
def w4a4_graphs(lowbit_cache):
    """digits-cnn at W4A4 (a sub-8-bit activation's Clip sits before the last MaxPool):
    its FP32 and INT8 ONNX graphs as the export builds them."""
    _, compressed = build_compressed("digits-cnn", CompressionPlan.from_bits_string("W4A4"))
    deploy, quants, _ = deploy_copy(compressed)
    fp32 = to_onnx(deploy, input_shape=tuple(compressed.input_shape))
    int8, _ = quantize_graph(fp32, quants, weight_type=HOST_WEIGHT_TYPE)
    x = np.random.default_rng(0).random((32, *compressed.input_shape), np.float32)
    return fp32, int8, x


def _run(model, x):
    return ort_session(model).run(None, {"input": x})[0]


def test_int8_outputs_are_bit_identical_and_the_pools_stay_nhwc(w4a4_graphs):
    _, int8, x = w4a4_graphs
    nhwc = flatten_channels_last(int8)
    assert np.array_equal(_run(int8, x), _run(nhwc, x))
    before, after = kernel_census(int8), kernel_census(nhwc)
    # without the pass ONNX Runtime moves its NCHW transpose above the Clip and runs one
    # pool as the plain NCHW MaxPool; with it, both pools are NhwcMaxPool
    assert after.get("NhwcMaxPool") == 2 and "MaxPool" not in after
    # one Transpose fewer: only the input's (1 channel -> NHWC) is left
    assert after.get("Transpose", 0) == before.get("Transpose", 0) - 1 == 1
    assert sum(after.values()) < sum(before.values())
    # idempotent: a second pass changes nothing
    assert flatten_channels_last(nhwc).SerializeToString() == nhwc.SerializeToString()


def test_float_graph_computes_the_same_function(w4a4_graphs):
    fp32, _, x = w4a4_graphs
    out, ref = _run(flatten_channels_last(fp32), x), _run(fp32, x)
    # float sums in another order: equal to float32 rounding
    assert np.allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_graphs_without_a_map_flatten_are_unchanged(lowbit_cache):
    _, mlp = build_compressed("digits-mlp", CompressionPlan.from_bits_string("W8A8"))
    deploy, _, _ = deploy_copy(mlp)
    graph = to_onnx(deploy, input_shape=tuple(mlp.input_shape))
    assert flatten_channels_last(graph).SerializeToString() == graph.SerializeToString()


def test_a_1d_cnn_stays_channels_last_too(lowbit_cache):
    """mnist1d-cnn (Conv1d): the (N, C, L) map is flattened (L, C)-major, bit-identically,
    and both pools run as NhwcMaxPool."""
    _, cnn = build_compressed("mnist1d-cnn", CompressionPlan.from_bits_string("W8A8"))
    deploy, quants, _ = deploy_copy(cnn)
    fp32 = to_onnx(deploy, input_shape=tuple(cnn.input_shape))
    int8, _ = quantize_graph(fp32, quants, weight_type=HOST_WEIGHT_TYPE)
    x = np.random.default_rng(1).normal(size=(16, *cnn.input_shape)).astype(np.float32)
    nhwc = flatten_channels_last(int8)
    assert np.array_equal(_run(int8, x), _run(nhwc, x))
    after = kernel_census(nhwc)
    assert after.get("NhwcMaxPool") == 2 and "MaxPool" not in after


def test_a_float_classifier_is_left_alone(lowbit_cache):
    """Weight-only quantization (W4AFP): fc1 is a float Gemm, where summing its products in
    another order would change the last bits, so the pass leaves the graph as it is."""
    _, cnn = build_compressed("digits-cnn", CompressionPlan.from_bits_string("W4AFP"))
    deploy, quants, _ = deploy_copy(cnn)
    qdq, _ = quantize_graph(
        to_onnx(deploy, input_shape=tuple(cnn.input_shape)), quants, weight_type=HOST_WEIGHT_TYPE
    )
    assert flatten_channels_last(qdq).SerializeToString() == qdq.SerializeToString()
