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


def _row(shape, form, seconds):
    rows, fan_in, out = shape
    return {
        "rows": rows,
        "in_features": fan_in,
        "out_features": out,
        "form": form,
        "kernel_s": seconds,
        "profiled_kernel_s": seconds,
    }


def test_middle_mean_leaves_a_quarter_out_at_each_end():
    # eight rounds, one slowed 5x and one oddly fast: the middle four averaged
    assert gemm.middle_mean([10, 50, 11, 12, 2, 13, 11, 12]) == pytest.approx(11.5)
    assert gemm.middle_mean([1, 2, 3, 4, 100]) == pytest.approx(3.0)  # cut 1: 2, 3, 4
    # fewer than four: the median, the lower middle of an even count
    assert gemm.middle_mean([3.0, 1.0, 100.0]) == 3.0
    assert gemm.middle_mean([5.0, 1.0]) == 1.0
    assert gemm.middle_mean([7.0]) == 7.0
    with pytest.raises(ValueError):
        gemm.middle_mean([])


def test_rounds_merge_to_each_gemms_middle_mean_less_the_profiler():
    """A slow spell in one round (5x) moves no row; the profiler's time comes off the
    middle half's mean, and every round's time is kept."""
    shapes = [((1, 256, 1024), "gemm"), ((1, 256, 1024), "matmul")]
    times = [(10e-6, 20e-6), (11e-6, 100e-6), (12e-6, 21e-6), (50e-6, 22e-6)]
    rounds = [[_row(s, f, t) for (s, f), t in zip(shapes, each, strict=True)] for each in times]
    merged = gemm.merged_rounds(rounds, profiler_s=2e-6)
    # four rounds: the fastest and the slowest left out, the middle two averaged
    assert [r["profiled_kernel_s"] for r in merged] == pytest.approx([11.5e-6, 21.5e-6])
    assert [r["kernel_s"] for r in merged] == pytest.approx([9.5e-6, 19.5e-6])
    assert merged[1]["rounds_profiled_kernel_s"] == [20e-6, 100e-6, 21e-6, 22e-6]
    assert [(r["rows"], r["form"]) for r in merged] == [(1, "gemm"), (1, "matmul")]
    assert gemm.merged_rounds([]) == []


def test_rounds_of_different_gemms_are_refused():
    one = [_row((1, 256, 1024), "gemm", 1e-5)]
    other = [_row((1, 1024, 256), "gemm", 1e-5)]
    with pytest.raises(ValueError, match="different GEMMs"):
        gemm.merged_rounds([one, other])
