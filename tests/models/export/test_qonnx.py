"""QONNX export of a compressed digits-cnn: Quant nodes at each layer's bits, run by qonnx's
own executor against the fake-quant model (a float graph computing lowbit's grids: the
logits agree to float rounding on a network without residual adds)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from onnx import numpy_helper

from lowbit import models
from lowbit.models.compression.plan import CompressionPlan
from lowbit.models.export.deploy import deploy_copy, to_onnx
from lowbit.models.export.qonnx import QONNX_DOMAIN, build_qonnx, check_qonnx, run_qonnx
from lowbit.models.export.tflite import EdgeExtraMissing

PLAN = {
    "version": 1,
    "pin_first_last": True,
    "layers": {
        "_default": {"w_bits": 4, "a_bits": 8},
        "conv2": {"w_bits": 2, "a_bits": 4, "keep": 0.5},
        "fc1": {"w_bits": 3, "a_bits": 6, "rank": 16},
    },
}


@pytest.fixture(scope="module")
def exported(trained):
    base = trained("digits-cnn")
    x_val, _ = models.load_split("digits", "val")
    small = models.compress(base, CompressionPlan.from_dict(PLAN), calib=x_val).eval()
    plain, quants, _ = deploy_copy(small)
    return small, build_qonnx(fp32=to_onnx(plain, input_shape=small.input_shape), quants=quants)


def _quants(model):
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Quant":
            assert node.domain == QONNX_DOMAIN
            yield node, inits


def test_quant_nodes_carry_each_layers_bits(exported):
    small, model = exported
    bits = {}
    for node, inits in _quants(model):
        bits[node.name] = int(inits[node.input[3]])
    expected = {
        "conv1": (8, 8),
        "conv2": (2, 4),
        "conv3": (4, 8),
        "fc1.first": (3, 6),
        "fc1.second": (3, 6),
        "fc2": (8, 8),
    }
    for layer, (w, a) in expected.items():
        assert bits[f"/{layer}.weight/Quant"] == w
        assert bits[f"/{layer}.input0/Quant"] == a


def test_weights_lie_on_their_quant_grid(exported):
    from qonnx.custom_op.general.quant import quant

    _, model = exported
    checked = 0
    for node, inits in _quants(model):
        if node.input[0] not in inits:
            continue  # an activation
        w = inits[node.input[0]]
        attrs = {a.name: a for a in node.attribute}
        q = quant(
            w,
            inits[node.input[1]],
            inits[node.input[2]],
            inits[node.input[3]],
            attrs["signed"].i,
            attrs["narrow"].i,
            "ROUND",
        )
        assert np.allclose(q, w, rtol=0, atol=1e-6 * np.abs(w).max())
        checked += 1
    assert checked == 6


#: the quantized layers of PLAN's digits-cnn, as the fake-quant model names them
LAYERS = {"conv1", "conv2", "conv3", "fc1.first", "fc1.second", "fc2"}


def test_qonnx_executor_computes_the_fake_quant_model(exported):
    small, model = exported
    check = check_qonnx(compressed=small, model=model, batch_size=64)
    assert check["samples"] == len(models.load_split("digits", "test")[1])  # the whole split
    assert check["argmax_agreement"] == 1.0
    assert check["max_abs_logit_diff"] <= 1e-4 * check["logit_range"]
    assert check["accuracy_qonnx"] == check["accuracy_fake_quant"]
    assert set(check["code_agreement"]) == LAYERS
    assert check["min_code_agreement"] >= 0.999


def test_batched_execution_is_per_image_execution(exported):
    """qonnx's executor on batches (the last one short) computes what it computes image by
    image: every activation code identical; the float logits up to the classifier GEMM's
    summation order (ONNX Runtime has a kernel for one row and one for many)."""
    _, model = exported
    x = models.load_split("digits", "test")[0][:12].numpy()
    one, codes_one = run_qonnx(model, x, batch_size=1, codes=True)
    many, codes_many = run_qonnx(model, x, batch_size=5, codes=True)
    assert set(codes_one) == set(codes_many) == LAYERS
    for name, codes in codes_one.items():
        assert codes.shape[0] == len(x)
        np.testing.assert_array_equal(codes_many[name], codes, err_msg=name)
    assert many.shape == one.shape == (len(x), 10)
    np.testing.assert_allclose(many, one, rtol=0, atol=1e-5 * np.abs(one).max())
    np.testing.assert_array_equal(many.argmax(1), one.argmax(1))


def test_missing_qonnx_is_one_line(exported, monkeypatch):
    small, model = exported
    monkeypatch.setitem(sys.modules, "qonnx.core.onnx_exec", None)
    with pytest.raises(EdgeExtraMissing) as info:
        check_qonnx(compressed=small, model=model)
    assert "\n" not in str(info.value) and "pip install 'lowbit[edge]'" in str(info.value)
