"""Vela on the exported TFLite model (the ``edge`` extra, installed by the ``dev`` extra) and
``lowbit export --format tflite`` for an Ethos-U config: files, deploy.json, firmware.json."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

from lowbit.cli import main
from lowbit.hwsim.profiles import load_profile
from lowbit.models.export.firmware import load_firmware_config, validate_firmware_config
from lowbit.models.export.vela import layer_of, vela_target
from lowbit.search.testing import example_config

PLAN = {
    "version": 1,
    "pin_first_last": True,
    "layers": {
        "_default": {"w_bits": 4, "a_bits": 8},
        "fc1": {"w_bits": 4, "a_bits": 8, "rank": 16},
    },
}


def _config(run_dir: Path, hardware: str) -> Path:
    """A deployment config for digits-cnn as a search on ``hardware`` writes it."""
    cfg = example_config(
        hardware=hardware, hardware_hash=load_profile(hardware).content_hash(), plan=PLAN
    )
    return cfg.write(run_dir / "configs" / "joint-00001.json")


def test_vela_target_of_profiles():
    assert vela_target(load_profile("npu-ethos-u55")).accelerator == "ethos-u55-256"
    assert vela_target(load_profile("npu-bitfusion")) is None


def test_vela_layer_names_map_to_lowbit_layers():
    assert layer_of("conv2.clip_max") == "conv2"
    assert layer_of("fc1.second") == "fc1"
    assert layer_of("pool3") == "pool3" and layer_of("pool_intermediate") == "pool"


def test_export_tflite_for_ethos_u(tmp_path, trained, capsys):
    trained("digits-cnn")  # trained once per session, in the session cache
    out = tmp_path / "export"
    config = _config(tmp_path / "run", "npu-ethos-u55")
    assert main(["export", "--config", str(config), "--out", str(out), "--format", "tflite"]) == 0
    text = capsys.readouterr().out
    assert "TFLite (LiteRT) on test" in text and "Vela ethos-u55-256" in text
    deploy = json.loads((out / "deploy.json").read_text())
    vela = deploy["vela"]
    for rel in (deploy["files"]["tflite"], *vela["files"].values()):
        assert (out / rel).is_file()
    # Vela's compiled model: the NPU part is one ethos-u custom operator
    from ai_edge_litert import schema_py_generated as schema

    compiled = (out / vela["files"]["tflite"]).read_bytes()
    model = schema.ModelT.InitFromPackedBuf(compiled, 0)
    assert [c.customCode for c in model.operatorCodes] == [b"ethos-u"]
    assert vela["cpu_operators"] == 0 and vela["npu_operators"] > 0
    assert vela["cycles"] == sum(row["cycles"] for row in vela["layers"])
    assert vela["sram_bytes"] > 0 and vela["flash_bytes"] >= vela["weights_bytes_encoded"]
    sim = vela["lowbit"]
    assert sim["profile"] == "npu-ethos-u55" and sim["cycles"] == sum(sim["layers"].values())
    # every Vela operator counts to a simulated layer (fc1's two factors to fc1)
    assert set(vela["cycles_by_layer"]) == set(sim["layers"])
    check = deploy["tflite"]["check"]
    assert abs(check["accuracy_diff_pt"]) <= 0.5
    # firmware.json points at every artifact, with its hash
    firmware = load_firmware_config(out / "firmware.json")
    artifacts = firmware["artifacts"]
    assert {"int8", "tflite", "vela", "deploy"} <= set(artifacts)
    for entry in artifacts.values():
        data = (out / entry["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"] and len(data) == entry["bytes"]
    firmware["artifacts"]["tflite"]["sha256"] = "xyz"
    assert validate_firmware_config(firmware) == [
        "artifacts.tflite.sha256: must be 64 hex digits, got 'xyz'"
    ]


def test_no_vela_for_other_targets_and_missing_extra_is_one_line(
    tmp_path, trained, monkeypatch, capsys
):
    trained("digits-cnn")
    config = _config(tmp_path / "run", "npu-bitfusion")
    out = tmp_path / "export"
    argv = [
        "export",
        "--config",
        str(config),
        "--out",
        str(out),
        "--format",
        "tflite",
        "--no-check",
    ]
    assert main(argv) == 0
    deploy = json.loads((out / "deploy.json").read_text())
    assert "vela" not in deploy and deploy["files"]["tflite"] == "model.int8.tflite"
    capsys.readouterr()
    monkeypatch.setitem(sys.modules, "ai_edge_litert.schema_py_generated", None)
    assert main([*argv[:4], str(tmp_path / "other"), *argv[5:]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'lowbit[edge]'" in err[0]


def test_vela_missing_is_one_line(tmp_path, monkeypatch):
    from lowbit.models.export.tflite import EdgeExtraMissing
    from lowbit.models.export.vela import run_vela

    monkeypatch.setitem(sys.modules, "ethosu.vela", None)
    with pytest.raises(EdgeExtraMissing, match=r"ethos-u-vela .*pip install 'lowbit\[edge\]'"):
        run_vela(b"", target=vela_target(load_profile("npu-ethos-u55")))
