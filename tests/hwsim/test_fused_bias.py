"""A Gemm node's own costs (:class:`lowbit.hwsim._fused_bias.FusedBiasGemm`): per output
column and per output of an integer linear layer whose GEMM applies its bias itself (an
ONNX Gemm), not of a bare MatMul; convolutions, attention matmuls and float GEMMs pay
neither."""

from __future__ import annotations

from dataclasses import replace

import pytest

from lowbit import hwsim
from lowbit.hwsim.profile import Precision
from lowbit.hwsim.workload import Compression, Conv2d, Linear, MatMul

MODES = (Precision(8, 8, 1.0, 0.2), Precision(32, 32, 0.5, 1.0))
COSTS = {"fused_bias_cycles_per_column": 10.0, "fused_bias_cycles_per_output": 0.25}


def _cpu(make_target, **overheads):
    base = make_target(kind="vector", rows=1, cols=32, dataflow="vector", precisions=MODES)
    return replace(base, overheads=replace(base.overheads, **overheads))


def _extra(layer, make_target, engine) -> int:
    """Compute cycles ``layer`` costs with :data:`COSTS` over without them."""
    costly, plain = _cpu(make_target, **COSTS), _cpu(make_target)
    return (
        hwsim.simulate_layer(layer, costly, engine=engine).compute_cycles
        - hwsim.simulate_layer(layer, plain, engine=engine).compute_cycles
    )


@pytest.mark.parametrize("engine", hwsim.engine_names())
def test_a_gemm_pays_per_column_and_output_a_bare_matmul_does_not(make_target, engine):
    for rows, fan_in, out in ((1, 256, 128), (8, 64, 512), (40, 512, 64)):
        gemm = Linear(name="fc", in_features=fan_in, out_features=out, tokens=rows)
        assert _extra(gemm, make_target, engine) == out * (10.0 + 0.25 * rows)
        # the same layer as a bare MatMul (its bias an Add of its own)
        assert _extra(replace(gemm, fused_bias=False), make_target, engine) == 0


@pytest.mark.parametrize("engine", hwsim.engine_names())
def test_convolutions_attention_and_float_gemms_pay_neither(make_target, engine):
    conv = Conv2d(
        name="c", in_h=8, in_w=8, in_c=16, out_c=32, k_h=3, k_w=3, out_h=8, out_w=8, batch=1
    )
    fc = Linear(name="fc", in_features=64, out_features=32, tokens=3)
    attention = MatMul(name="qk", M=32, N=48, K=16, heads=4)
    for layer in (conv, attention, fc.with_compression(Compression(w_bits=None, a_bits=None))):
        assert _extra(layer, make_target, engine) == 0


def test_the_onnx_importer_marks_a_matmul_as_a_bare_product(tmp_path):
    """A Gemm node (ONNX Runtime's QGemm) applies its bias itself, a MatMul does not."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from lowbit.hwsim.onnx_workload import import_onnx

    w = numpy_helper.from_array(np.ones((8, 4), np.float32), "w")
    nodes = [
        helper.make_node("Gemm", ["x", "w"], ["g"]),
        helper.make_node("MatMul", ["g", "v"], ["y"]),
    ]
    v = numpy_helper.from_array(np.ones((4, 2), np.float32), "v")
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 2])],
        [w, v],
    )
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    layers = [x for x in import_onnx(path).workload.layers if isinstance(x, Linear)]
    assert [(x.in_features, x.out_features, x.fused_bias) for x in layers] == [
        (8, 4, True),
        (4, 2, False),
    ]


def test_a_profile_sets_the_keys_and_bad_values_are_named():
    from lowbit.hwsim.errors import ProfileError
    from lowbit.hwsim.profiles import load_profile_data, profile_from_dict

    data = load_profile_data("cpu-x86-avx2")
    data.setdefault("overheads", {}).update(COSTS)
    o = profile_from_dict(data, source="test").overheads
    assert {key: getattr(o, key) for key in COSTS} == COSTS
    data["overheads"].update(fused_bias_cycles_per_column=-1.0, fused_bias_cycles_per_output="x")
    with pytest.raises(ProfileError) as err:
        profile_from_dict(data, source="mine.toml")
    assert "overheads.fused_bias_cycles_per_column" in str(err.value)
    assert "overheads.fused_bias_cycles_per_output" in str(err.value)


def test_fused_bias_must_be_a_bool():
    with pytest.raises(ValueError, match="fused_bias"):
        Linear(name="fc", in_features=4, out_features=4, fused_bias="yes")
