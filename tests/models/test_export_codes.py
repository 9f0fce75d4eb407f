"""The INT8 ONNX model computes what the fake-quant model measured, code for code (issue 5).

Each integer layer's input codes in ONNX Runtime (exposed intermediate tensors of the QDQ
model) are compared with the codes the fake-quant model rounds to, on mixed 2/4/8-bit plans
with pruning, low rank, asymmetric and per-tensor grids: teacher forced (every layer fed
ONNX Runtime's input codes, so each layer is judged on its own computation) and end to end.

Tolerance (stated once): the fake-quant inference computes the integer kernels'
accumulators exactly and rounds its bias as they do, so one rounding remains different:
ONNX Runtime requantizes with one float32 multiplier fl32(s_x·s_w)/s_y, the fake-quant model
multiplies by s_x·s_w and divides by s_y, which differs for a value within ~1e-7 of a
rounding boundary (measured: 2 of 368,640 codes on the mixed export of test_export.py, none
in 24 random digits-cnn / mnist1d-cnn plans). We allow 1 code in 10,000 per layer, teacher
forced; end to end one such tie can move many codes of later 8-bit layers (99.83 % there),
so end to end we require 99 % on the zoo models. Between the integer layers of an attention
net, float operations (LayerNorm, softmax, GELU, residual adds) run in different float
kernels in torch and ONNX Runtime: 1 code in 1,000 there (measured worst on 12 random
digits-vit plans: 1 in 100,000 forced, 4 in 10,000 end to end). Argmax agreement must be
>= 99.5 % (fewer than 2 of 360 test samples) and the accuracy gap at most 0.5 points, issue
5's target.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_nets import TinyAttention, TinyCNN, seeded

from lowbit.models.compression.compress import compress
from lowbit.models.compression.plan import CompressionPlan, LayerSpec
from lowbit.models.data import load_split
from lowbit.models.export._codecheck import code_agreement
from lowbit.models.export.deploy import deploy_copy, export_plan, resolve_weight_type, to_onnx
from lowbit.models.export.onnx_quant import quantize_graph
from lowbit.models.export.ort import ort_session

#: 1 code in 10,000 per layer for conv/linear networks, 1 in 1,000 with float ops between
#: integer layers (module docstring)
CNN_AGREEMENT, ATTENTION_AGREEMENT = 0.9999, 0.999
#: the 8-bit weight storages ONNX Runtime computes exactly on this CPU: u8 everywhere, s8 where
#: the export would pick it (VNNI, or not x86; on AVX2 without VNNI u8·s8 products are added
#: in pairs into a saturating int16: test_s8_weights_saturate_exactly_where_the_export_avoids_them)
EXACT_WEIGHT_TYPES = ("s8", "u8") if resolve_weight_type("auto") == "s8" else ("u8",)

TINY_CNN_PLAN = CompressionPlan(
    layers={
        "conv1": LayerSpec(w_bits=8, a_bits=8, keep=0.75),
        "conv2": LayerSpec(w_bits=4, a_bits=2, rank=4),
        "fc1": LayerSpec(w_bits=2, a_bits=4, keep=0.5, symmetric=False),
        "fc2": LayerSpec(w_bits=4, a_bits=4, weight_granularity="per_tensor"),
    },
    pin_first_last=False,
)


def _int8(small: torch.nn.Module, *, weight_type: str = "auto"):
    deploy, quants, _ = deploy_copy(small)
    fp32 = to_onnx(deploy, input_shape=tuple(small.input_shape))
    return quantize_graph(fp32, quants, weight_type=resolve_weight_type(weight_type))[0]


def _agreement(small: torch.nn.Module, int8, x: torch.Tensor) -> tuple[dict, dict, float, float]:
    """(codes agreement per layer teacher forced, end to end, argmax agreement, max |logit
    diff|) on ``x``."""
    with torch.no_grad():
        fake = small(x).numpy()
    real = ort_session(int8).run(None, {"input": x.numpy()})[0]
    agree = float((fake.argmax(-1) == real.argmax(-1)).mean())
    forced = code_agreement(small, int8, x, teacher_forced=True)
    return forced, code_agreement(small, int8, x), agree, float(np.abs(fake - real).max())


@pytest.mark.parametrize("weight_type", EXACT_WEIGHT_TYPES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tiny_cnn_codes_match_onnx_runtime(seed: int, weight_type: str) -> None:
    # digits inputs: their zero background gives whole regions the value of a layer's bias,
    # where rounding the bias differently once moved many codes (seed 1: 3.3 % of fc2's
    # input codes and 1.1 % of the argmaxes before the fix)
    model = seeded(TinyCNN, seed)
    x_val, _ = load_split("digits", "val")
    x_test, _ = load_split("digits", "test")
    small = compress(model, TINY_CNN_PLAN, calib=x_val)
    forced, codes, agree, diff = _agreement(small, _int8(small, weight_type=weight_type), x_test)
    assert set(forced) == set(codes) == {"conv1", "conv2.first", "conv2.second", "fc1", "fc2"}
    assert min(forced.values()) >= CNN_AGREEMENT, forced
    assert min(codes.values()) >= CNN_AGREEMENT, codes  # measured: all equal
    assert agree >= 0.995
    # the logits come from an integer layer with float output: bit-exact when codes agree
    assert diff <= 1e-5 * float(np.abs(small(x_test).detach().numpy()).max())


def _matmul_integer(a: np.ndarray, w: np.ndarray, w_zero: np.ndarray) -> np.ndarray:
    """ONNX Runtime's MatMulInteger of uint8 ``a`` and weights ``w`` (int32 out): its u8·s8
    or u8·u8 GEMM kernel, the one QLinearConv / QGemm run."""
    from onnx import TensorProto, helper, numpy_helper

    inits = [
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array(np.array(0, np.uint8), "a_zero"),
        numpy_helper.from_array(w_zero, "w_zero"),
    ]
    node = helper.make_node("MatMulInteger", ["a", "w", "a_zero", "w_zero"], ["y"])
    graph = helper.make_graph(
        [node],
        "matmul_integer",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, list(a.shape))],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [a.shape[0], w.shape[1]])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return ort_session(model).run(None, {"a": a})[0]


def test_s8_weights_saturate_exactly_where_the_export_avoids_them() -> None:
    # 32 products 255 x 127 = 1,036,320; AVX2 without VNNI adds them in pairs into a
    # saturating int16 (2 x 32,385 > 32,767): 16 x 32,767 = 524,272 (measured on a Zen 3)
    a = np.full((4, 32), 255, np.uint8)
    exact = 255 * 127 * 32
    s8 = _matmul_integer(a, np.full((32, 8), 127, np.int8), np.array(0, np.int8))
    u8 = _matmul_integer(a, np.full((32, 8), 255, np.uint8), np.array(128, np.uint8))
    assert (u8 == exact).all()  # the u8·u8 kernels widen to int16 first: exact on every CPU
    if resolve_weight_type("auto") == "s8":  # VNNI (or not x86): int32 accumulation
        assert (s8 == exact).all()
    else:
        assert (s8 == 16 * 32767).all()


def test_tiny_attention_codes_match_onnx_runtime() -> None:
    model = seeded(TinyAttention)
    g = torch.Generator().manual_seed(3)
    x_val, x_test = torch.randn(256, 5, 16, generator=g), torch.randn(360, 5, 16, generator=g)
    plan = CompressionPlan(
        layers={
            "_default": LayerSpec(w_bits=4, a_bits=8),
            "re:q|k|v": LayerSpec(w_bits=2, a_bits=4, symmetric=False),
            "fc1": LayerSpec(w_bits=8, a_bits=6, keep=0.5, rank=4),
            "qk": LayerSpec(a_bits=8),
            "av": LayerSpec(a_bits=4),
        },
        pin_first_last=False,
    )
    small = compress(model, plan, calib=x_val)
    forced, codes, agree, _ = _agreement(small, _int8(small), x_test)
    assert {"q", "qk", "qk:b", "av", "av:b", "fc1.first", "head"} <= set(forced)
    assert min(forced.values()) >= ATTENTION_AGREEMENT, forced
    assert min(codes.values()) >= ATTENTION_AGREEMENT, codes
    assert agree >= 0.995


#: issue 5's config (demo run, joint-00031): 4-bit weights, 2-bit activations, pruned,
#: fc2 low-ranked, 50 QAT steps; before the fix: argmax agreement 98.6 %, logit diff 0.95
ISSUE5_PLAN = CompressionPlan(
    layers={
        "conv1": LayerSpec(w_bits=4, a_bits=8, keep=0.25),
        "conv2": LayerSpec(w_bits=4, a_bits=2, keep=0.25),
        "conv3": LayerSpec(w_bits=4, a_bits=2, keep=0.5),
        "fc1": LayerSpec(w_bits=2, a_bits=2, keep=0.5, rank_fraction=0.5),
        "fc2": LayerSpec(w_bits=4, a_bits=4, rank_fraction=0.75),
    },
    pin_first_last=False,
)


@pytest.mark.slow
def test_issue5_config_int8_accuracy_equals_fake_quant(tmp_path, lowbit_cache):
    check = export_plan("digits-cnn", ISSUE5_PLAN, out_dir=tmp_path, finetune_steps=50).deploy[
        "check"
    ]
    assert set(check["code_agreement"]) >= {"conv1", "conv2", "conv3", "fc2.first", "fc2.second"}
    assert check["min_code_agreement_forced"] >= CNN_AGREEMENT, check["code_agreement_forced"]
    assert check["min_code_agreement"] >= 0.99, check["code_agreement"]  # measured: 1.0
    assert check["argmax_agreement"] >= 0.995
    assert abs(check["accuracy_int8"] - check["accuracy_fake_quant"]) <= 0.005
