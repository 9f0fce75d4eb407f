"""Single INT8 linear layers as ONNX Runtime runs them (:mod:`lowbit.models.hostcal.gemm`): a
Gemm with its bias as QGemm, a bare MatMul as QLinearMatMul -- and hwsim's importer marks
the first as applying its bias itself (``Linear.fused_bias``), the second not."""

from __future__ import annotations

import onnx
import pytest

from lowbit.hwsim.onnx_workload import import_onnx
from lowbit.hwsim.workload import Linear
from lowbit.models.hostcal import gemm


def test_each_form_runs_the_kernel_it_names():
    # gemm_sweep raises if ONNX Runtime ran another kernel than FORMS names
    rows = gemm.gemm_sweep(((2, 64, 32), (3, 32, 64)), repeats=10, passes=1)
    assert [(r["rows"], r["in_features"], r["out_features"], r["form"]) for r in rows] == [
        (2, 64, 32, "gemm"),
        (2, 64, 32, "matmul"),
        (3, 32, 64, "gemm"),
        (3, 32, 64, "matmul"),
    ]
    for row in rows:  # the profiler's own time (0 here) taken off: never more than reported
        assert 0 < row["kernel_s"] <= row["profiled_kernel_s"]


@pytest.mark.parametrize("form", sorted(gemm.FORMS))
def test_the_importer_sees_what_the_runtime_fuses(tmp_path, form):
    path = tmp_path / f"{form}.onnx"
    onnx.save(gemm.gemm_model(4, 48, 24, form=form), path)
    (layer,) = [x for x in import_onnx(path).workload.layers if isinstance(x, Linear)]
    assert (layer.tokens, layer.in_features, layer.out_features) == (4, 48, 24)
    assert layer.fused_bias == (gemm.FORMS[form][1] == "QGemm")


def test_no_sweep_shape_is_square_only():
    """The sweep exists to tell the per-column cost from the per-output one: it needs
    shapes of unequal sides, both ways round."""
    sides = {(k, n) for _, k, n in gemm.GEMM_SWEEP}
    assert any(k > n for k, n in sides) and any(k < n for k, n in sides)
