"""The figures front-ends write beside their results: sweep.png (``lowbit sweep``, from a
:class:`~lowbit.hwsim.sweep.Sweep`) and validation.png (``lowbit validate``)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from lowbit.hwsim.sweep import run_sweep
from lowbit.hwsim.workloads import builtin_workload
from lowbit.reports.sweep import sweep_png
from lowbit.reports.validation import _latency_series, validation_scatter_png


@pytest.mark.parametrize(
    ("names", "axes", "size"),
    [
        (["bert-base"], [("compute.rows", [16, 32, 64]), ("clock_hz", [5e8, 1e9])], (640, 400)),
        (["bert-base", "resnet18"], [("compute.rows", [16, 32, 64])], (720, 440)),
        (
            ["bert-base", "resnet18"],
            [("compute.dataflow", ["os", "ws"]), ("clock_hz", [5e8])],
            (720, 440),
        ),
    ],
)
def test_sweep_png_is_a_png_of_the_figure_size(names, axes, size):
    sweep = run_sweep(
        hardware="npu-systolic-32", workloads=[builtin_workload(n) for n in names], axes=axes
    )
    png = sweep_png(sweep, title="t")
    assert Image.open(io.BytesIO(png)).size == size  # figsize in inches x 100 dpi


def _validation(spearman_b1: float | None) -> dict:
    """validation.json's shape: two configs at batch 1 and 64, one latency missing."""
    configs = [
        {
            "config_id": "a",
            "simulated_ms_b1": 1.0,
            "measured_int8_ms_b1": 1.1,
            "simulated_ms_b64": 30.0,
            "measured_int8_ms_b64": 33.0,
        },
        {
            "config_id": "b",
            "simulated_ms_b1": 2.0,
            "measured_int8_ms_b1": 1.9,
            "simulated_ms_b64": 60.0,
            "measured_int8_ms_b64": None,
        },
    ]
    metrics = {"b1": {"spearman": spearman_b1}, "b64": {"spearman": 1.0}}
    return {"configs": configs, "metrics": metrics}


def test_validation_series_are_per_batch_with_their_spearman():
    series = _latency_series(_validation(0.5), with_spearman=True)
    assert [name for name, _ in series] == ["batch 1 (Spearman 0.50)", "batch 64 (Spearman 1.00)"]
    assert series[0][1] == [("a", 1.0, 1.1), ("b", 2.0, 1.9)]
    assert series[1][1] == [("a", 30.0, 33.0)]  # b has no measured latency at batch 64
    # one config: no rank correlation; the report's section never shows it
    assert _latency_series(_validation(None), with_spearman=True)[0][0] == "batch 1"
    assert _latency_series(_validation(0.5))[0][0] == "batch 1"


def test_validation_scatter_png_is_the_reports_figure():
    png = validation_scatter_png(_validation(0.5))
    assert Image.open(io.BytesIO(png)).size == (770, 572)  # 7.0 x 5.2 in at 110 dpi
