"""`lowbit simulate` and `lowbit sweep` as a user runs them (through lowbit.cli.main)."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import pytest
from cli_testkit import error_of

from lowbit import hwsim
from lowbit.cli import main
from lowbit.hwsim.profiles import load_profile
from lowbit.hwsim.workloads import builtin_workload

REFERENCE = json.loads(
    (Path(__file__).parents[1] / "hwsim" / "data" / "scalesim_reference.json").read_text()
)
LAYER_KEYS = {
    "name",
    "op",
    "macs",
    "w_bits",
    "a_bits",
    "compute_cycles",
    "stall_cycles",
    "total_cycles",
    "dram_read_bytes",
    "dram_write_bytes",
    "peak_macs_per_cycle",
    "dram_bytes_per_cycle",
    "utilization",
    "bound",
}


def run_json(capsys, *argv: str) -> dict:
    assert main(["simulate", *argv, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_is_the_sim_result(capsys):
    data = run_json(capsys, "--hardware", "npu-systolic-32", "--workload", "resnet18")
    expected = hwsim.simulate(builtin_workload("resnet18"), load_profile("npu-systolic-32"))
    assert data == json.loads(json.dumps(expected.to_dict()))
    assert {"hardware", "workload", "engine", "clock_hz", "total_cycles", "latency_s"} <= set(data)
    assert all(LAYER_KEYS <= set(layer) for layer in data["layers"])
    assert data["total_cycles"] == sum(layer["total_cycles"] for layer in data["layers"])


def test_table(capsys):
    assert main(["simulate", "--hardware", "npu-systolic-32", "--workload", "resnet18"]) == 0
    out = capsys.readouterr().out
    result = hwsim.simulate(builtin_workload("resnet18"), load_profile("npu-systolic-32"))
    for name in ("conv1", "layer4.1.conv2", "fc", "TOTAL (", "latency", "energy", "bound"):
        assert name in out
    assert f"{result.total_cycles:,}" in out
    assert f"{result.latency_s * 1e3:.4g} ms" in out


def test_csv_one_row_per_layer(capsys):
    argv = ["simulate", "--hardware", "npu-systolic-32", "--workload", "mobilenetv2"]
    assert main([*argv, "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == len(builtin_workload("mobilenetv2").layers)
    assert LAYER_KEYS <= set(rows[0])


def test_bits_apply_to_every_compute_layer(capsys):
    data = run_json(
        capsys, "--hardware", "npu-bitfusion", "--workload", "bert-base", "--bits", "W4A8"
    )
    compute = [layer for layer in data["layers"] if layer["macs"]]
    assert {layer["a_bits"] for layer in compute} == {8}
    assert {layer["w_bits"] for layer in compute if layer["op"] == "linear"} == {4}
    w8 = run_json(capsys, "--hardware", "npu-bitfusion", "--workload", "bert-base")
    # BitFusion runs 4-bit weights at twice the 8-bit rate: never slower
    assert data["total_cycles"] <= w8["total_cycles"]


def test_set_and_engine(capsys):
    base = run_json(capsys, "--hardware", "npu-systolic-32", "--workload", "bert-base")
    bigger = run_json(
        capsys,
        "--hardware",
        "npu-systolic-32",
        "--workload",
        "bert-base",
        "--set",
        "compute.rows=64",
        "--set",
        "compute.cols=64",
    )
    compute = sum(layer["compute_cycles"] for layer in base["layers"])
    assert sum(layer["compute_cycles"] for layer in bigger["layers"]) < compute
    event = run_json(
        capsys, "--hardware", "npu-systolic-32", "--workload", "bert-base", "--engine", "event"
    )
    assert event["engine"] == "event"
    assert event["total_cycles"] == pytest.approx(base["total_cycles"], rel=0.01)


def test_scalesim_files(capsys, tmp_path):
    run = next(r for r in REFERENCE["runs"] if r["topology"] == "gemm")
    cfg = tmp_path / "ref.cfg"
    cfg.write_text(run["cfg"])
    topology = tmp_path / "gemm.csv"
    topology.write_text(REFERENCE["topologies"]["gemm"])
    data = run_json(capsys, "--hardware", str(cfg), "--workload", str(topology))
    ours = {layer["name"]: layer["compute_cycles"] for layer in data["layers"]}
    # SCALE-Sim 3.0.0's own numbers (tests/hwsim/data/scalesim_reference.json)
    for ref in run["layers"]:
        assert ours[ref["name"]] == pytest.approx(ref["compute_cycles"], rel=0.02)


def test_plan(capsys, tmp_path):
    plan = tmp_path / "plan.json"
    plan.write_text(
        json.dumps(
            {
                "version": 1,
                "pin_first_last": True,
                "layers": {
                    "_default": {"w_bits": 4, "a_bits": 8},
                    "layer1.0.conv1": {"w_bits": 2, "a_bits": 8, "keep": 0.5},
                },
            }
        )
    )
    argv = ("--hardware", "npu-bitfusion", "--workload", "resnet18", "--plan", str(plan))
    layers = {layer["name"]: layer for layer in run_json(capsys, *argv)["layers"]}
    assert (layers["conv1"]["w_bits"], layers["fc"]["w_bits"]) == (8, 8)  # pinned first/last
    assert layers["layer2.0.conv1"]["w_bits"] == 4
    full = builtin_workload("resnet18").layer("layer1.0.conv1").macs
    assert layers["layer1.0.conv1"]["macs"] == full // 2  # 32 of 64 filters kept
    assert layers["layer1.0.conv1"]["w_bits"] == 2  # the exact name wins over _default


def test_plan_on_a_zoo_model_uses_the_model_graph(capsys, tmp_path):
    from lowbit.models.bridge import compressions, register_zoo_workloads
    from lowbit.models.compression.plan import CompressionPlan
    from lowbit.models.zoo import build

    plan = CompressionPlan.uniform(w_bits=4, a_bits=8, keep=0.5)
    path = tmp_path / "plan.json"
    path.write_text(plan.to_json())
    argv = ("--hardware", "npu-bitfusion", "--workload", "digits-cnn", "--plan", str(path))
    layers = {layer["name"]: layer for layer in run_json(capsys, *argv)["layers"]}
    expected = compressions(build("digits-cnn"), plan)
    register_zoo_workloads()
    # consumers of pruned producers see fewer input channels: MACs shrink by in_keep too
    workload = hwsim.simulate(
        builtin_workload("digits-cnn").with_compression(expected), load_profile("npu-bitfusion")
    )
    assert {x.name: x.macs for x in workload.layers} == {n: x["macs"] for n, x in layers.items()}
    assert any(c.in_keep < 1 for c in expected.values())


def test_plan_without_models_package(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "lowbit.models.compression.plan", None)  # import fails
    path = tmp_path / "plan.json"
    path.write_text("{}")
    line = error_of(
        capsys,
        "simulate",
        "--hardware",
        "npu-systolic-32",
        "--workload",
        "resnet18",
        "--plan",
        str(path),
    )
    assert f"{path}: a compression plan needs lowbit.models.compression" in line
    assert "use --bits" in line


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--workload", "resnet19"], "unknown workload 'resnet19'"),
        (["--hardware", "npu-nonexistent"], "npu-nonexistent"),
        (["--bits", "W4"], "--bits: expected WxAy like W4A8, got 'W4'"),
        (["--bits", "W0A8"], "--bits: weight bits must be 1-16 or 32"),
        (["--set", "compute.rowz=3"], "compute.rowz"),
        (["--workload", "missing.csv"], "missing.csv: cannot read topology file"),
        (["--workload", "net.onnx"], "net.onnx: no such file"),
        (["--plan", "missing-plan.json"], "missing-plan.json: compression plan not found"),
    ],
)
def test_user_errors_are_one_line(capsys, argv, expected):
    base = {"--hardware": "npu-systolic-32", "--workload": "resnet18"}
    for flag, value in zip(argv[::2], argv[1::2], strict=True):
        base[flag] = value
    line = error_of(capsys, "simulate", *[x for kv in base.items() for x in kv])
    assert expected in line


def test_unsupported_precision_is_a_user_error(capsys):
    line = error_of(
        capsys,
        "simulate",
        "--hardware",
        "npu-systolic-32",
        "--workload",
        "resnet18",
        "--bits",
        "W32A32",
    )
    assert "W32A32" in line


# --- sweep ---------------------------------------------------------------------------------


def test_sweep_grid(capsys, tmp_path):
    out = tmp_path / "sw"
    argv = ["sweep", "--hardware", "npu-systolic-32", "--workload", "bert-base", "--out", str(out)]
    argv += ["--vary", "compute.rows=16,32,64", "--vary", "clock_hz=5e8,1e9"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    assert len(rows) == 6
    assert {(r["compute.rows"], r["clock_hz"]) for r in rows} == {
        (rows_, clock) for rows_ in ("16", "32", "64") for clock in ("500000000.0", "1000000000.0")
    }
    by_key = {(int(r["compute.rows"]), float(r["clock_hz"])): r for r in rows}
    # the profile as given is 32 rows at its own clock: speed-up 1 there
    given = load_profile("npu-systolic-32")
    assert float(by_key[(32, given.clock_hz)]["speedup"]) == pytest.approx(1.0)
    # more rows never slower; a faster clock never slower in seconds
    assert float(by_key[(64, 1e9)]["latency_s"]) <= float(by_key[(16, 1e9)]["latency_s"])
    assert float(by_key[(32, 1e9)]["latency_s"]) < float(by_key[(32, 5e8)]["latency_s"])
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "speed-up" in printed and "sweep.csv" in printed
    assert not list(out.glob("*.tmp"))


def test_sweep_default_out_dir(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["sweep", "--hardware", "npu-systolic-32", "--workload", "bert-base"]
    assert main([*argv, "--vary", "compute.cols=16,32"]) == 0
    assert (tmp_path / "sweep-npu-systolic-32-bert-base" / "sweep.csv").exists()


@pytest.mark.parametrize(
    ("vary", "expected"),
    [
        ("compute.rows", "--vary: expected KEY=V1,V2"),
        ("compute.rowz=1,2", "compute.rowz"),
        ("compute.rows=-4", "compute.rows"),
    ],
)
def test_sweep_errors(capsys, tmp_path, vary, expected):
    argv = ["sweep", "--hardware", "npu-systolic-32", "--workload", "bert-base"]
    line = error_of(capsys, *argv, "--out", str(tmp_path), "--vary", vary)
    assert expected in line


# --- unquantized ONNX graphs -----------------------------------------------------------------


@pytest.fixture(scope="module")
def float_graph(tmp_path_factory) -> str:
    """A float ONNX graph with a channel split, a concat and a channel shuffle (data-movement
    layers between the convs), as ShuffleNetV2's units are."""
    onnx = pytest.importorskip("onnx")
    from lowbit.models.hostcal.graphs import GraphBuilder

    n = GraphBuilder("split-concat", (8, 16, 16), seed=0)
    left, right = n.split2(n.conv("x", 16, 3))
    x = n.shuffle(n.concat([left, n.conv(right, 8, 1)]))
    path = tmp_path_factory.mktemp("onnx") / "float.onnx"
    onnx.save(n.model(n.head(x, classes=10)), str(path))
    return str(path)


def test_an_unquantized_graph_is_float_on_a_cpu(capsys, float_graph):
    argv = ["--hardware", "cpu-x86-avx2", "--workload", float_graph]
    assert main(["simulate", *argv, "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert "no quantization ops: simulated as the float (FP32) model" in captured.err
    default = json.loads(captured.out)
    wide = run_json(capsys, *argv, "--bits", "W32A32")
    # every layer float, the data-movement layers too (a float concat moves 4-byte elements)
    assert {(layer["w_bits"], layer["a_bits"]) for layer in default["layers"]} == {(32, 32)}
    assert default == wide
    # the same workload as the library's all-float route (the host check's FP32 side)
    from lowbit.hwsim.onnx_workload import import_onnx
    from lowbit.hwsim.workload import Compression

    workload = import_onnx(float_graph).workload
    workload = workload.with_compression(
        {layer.name: Compression(w_bits=None, a_bits=None) for layer in workload.layers}
    )
    expected = hwsim.simulate(workload, load_profile("cpu-x86-avx2"))
    assert default["total_cycles"] == expected.total_cycles
    int8 = run_json(capsys, *argv, "--bits", "W8A8")
    assert default["total_cycles"] != int8["total_cycles"]


def test_an_unquantized_graph_keeps_the_shapes_default_off_a_cpu(capsys, float_graph):
    argv = ["--hardware", "npu-systolic-32", "--workload", float_graph]
    assert main(["simulate", *argv, "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert "no quantization ops" not in captured.err
    default = json.loads(captured.out)
    assert default == run_json(capsys, *argv, "--bits", "W8A8")
    assert "W32A32" in error_of(capsys, "simulate", *argv, "--bits", "W32A32")
