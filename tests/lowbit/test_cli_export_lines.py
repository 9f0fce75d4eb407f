"""`lowbit export`'s summary lines of the edge formats: each prints what deploy.json's check of
that format holds (accuracy, its difference to the INT8 ONNX model, argmax and code
agreement, the layer with the lowest code agreement)."""

from __future__ import annotations

import re

import pytest

from lowbit import models
from lowbit.commands.export import _edge_lines
from lowbit.models.compression.plan import CompressionPlan
from lowbit.models.export.deploy import export_compressed


@pytest.fixture(scope="module")
def deploy(tmp_path_factory):
    """deploy.json of an untrained digits-mlp at W4A8 exported as ONNX, TFLite and QONNX,
    each checked in its runtime on digits' test split."""
    from lowbit.models.zoo import build

    net = build("digits-mlp", seed=0).eval()
    x_val, _ = models.load_split("digits", "val")
    small = models.compress(net, CompressionPlan.from_bits_string("W4A8"), calib=x_val).eval()
    out = tmp_path_factory.mktemp("export")
    return export_compressed(small, out_dir=out, formats=("tflite", "qonnx")).deploy


def _line(lines: list[str], prefix: str) -> str:
    found = [line for line in lines if line.startswith(prefix)]
    assert len(found) == 1, lines
    return found[0]


def _pct(value: float) -> str:
    return f"{value:.2%}"


def test_the_qonnx_line_prints_its_check(deploy):
    check = deploy["qonnx"]["check"]
    line = _line(_edge_lines(deploy), "QONNX (qonnx executor)")
    int8 = deploy["check"]["accuracy_int8"]
    assert f"on test ({check['samples']} images)" in line
    assert f"accuracy {_pct(check['accuracy_qonnx'])} vs INT8 ONNX {_pct(int8)}" in line
    diff = float(re.search(r"\(([+-]\d+\.\d\d) pt\)", line).group(1))
    assert diff == pytest.approx(100 * (check["accuracy_qonnx"] - int8), abs=0.005)
    lowest = min(check["code_agreement"], key=check["code_agreement"].get)
    assert f"min code agreement {_pct(check['min_code_agreement'])} ({lowest})" in line
    assert f"argmax agreement {_pct(check['argmax_agreement'])} with the fake-quant" in line


def test_the_tflite_line_prints_its_check_in_the_same_style(deploy):
    check = deploy["tflite"]["check"]
    line = _line(_edge_lines(deploy), "TFLite (LiteRT)")
    assert f"({check['accuracy_diff_pt']:+.2f} pt)" in line
    lowest = min(check["code_agreement"], key=check["code_agreement"].get)
    assert f"min code agreement {_pct(check['min_code_agreement'])} ({lowest})" in line


def test_a_check_without_the_onnx_accuracy_prints_what_it_has(deploy):
    """An export whose INT8 ONNX check is absent (an older deploy.json): no difference."""
    partial = {"qonnx": deploy["qonnx"]}
    line = _line(_edge_lines(partial), "QONNX (qonnx executor)")
    assert "vs INT8 ONNX" not in line and "pt)" not in line
    assert f"accuracy {_pct(deploy['qonnx']['check']['accuracy_qonnx'])}," in line
