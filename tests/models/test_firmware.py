"""models.firmware: the firmware team's deployment config — content read from the compressed
model and the simulator, JSON round trip, every schema problem reported by key path."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import hwsim
import models
from hwsim.profiles import load_profile
from models.firmware import (
    FIRMWARE_SCHEMA_VERSION,
    FirmwareConfigError,
    add_target,
    firmware_config,
    load_firmware_config,
    validate_firmware_config,
    write_firmware_config,
)
from models.plan import CompressionPlan, LayerSpec
from models.trace import prepare_model


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.pool = nn.MaxPool2d(2)
        self.fc1, self.fc2 = nn.Linear(16 * 4 * 4, 32), nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.pool(torch.relu(self.bn2(self.conv2(x))))
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


@pytest.fixture(scope="module")
def deployed():
    """A pruned (N:M too), low-rank, mixed-precision Net with its simulation on an FPGA."""
    torch.manual_seed(0)
    base = Net().eval()
    x = torch.randn(32, 1, 8, 8)
    prepare_model(base, x[:1])
    plan = CompressionPlan(
        layers={
            "_default": LayerSpec(w_bits=4, a_bits=8),
            "conv2": LayerSpec(w_bits=4, a_bits=8, keep=0.5, nm=(2, 4)),
            "fc1": LayerSpec(w_bits=4, a_bits=4, rank_fraction=0.25),
        }
    )
    small = models.compress(base, plan, calib=x)
    fpga = load_profile("fpga-zcu102-dsp")
    sim = hwsim.simulate(models.to_workload(base, plan), fpga)
    config = firmware_config(small, plan=plan, profile=fpga, sim_result=sim, model_name="net")
    return base, small, plan, sim, config


def test_layer_table_reads_the_compressed_model(deployed):
    _, small, plan, _, config = deployed
    assert config["schema_version"] == FIRMWARE_SCHEMA_VERSION
    layers = {layer["name"]: layer for layer in config["layers"]}
    assert list(layers) == ["conv1", "conv2", "fc1", "fc2"]
    # pinned first/last layers run W8A8; the others as planned
    assert [(v["w_bits"], v["a_bits"]) for v in layers.values()] == [(8, 8), (4, 8), (4, 4), (8, 8)]
    conv2 = layers["conv2"]
    assert conv2["kept_out_channels"] == small.conv2.kept_out_channels.tolist()
    assert len(conv2["kept_out_channels"]) == conv2["out_channels"] == 8  # keep 0.5 of 16
    assert conv2["sparsity"] == {"nm": [2, 4], "density": 0.5}
    (tensor,) = conv2["tensors"]
    assert tensor["weight_shape"] == [8, 8, 3, 3]
    grid = tensor["weight"]
    assert grid["granularity"] == "per_channel" and len(grid["scale"]) == 8
    assert (grid["qmin"], grid["qmax"]) == (-8, 7)  # 4-bit signed levels
    assert tensor["input"]["scale"] == pytest.approx(float(small.conv2.act_scale))
    fc1 = layers["fc1"]
    rank = round(0.25 * 32)  # rank_fraction × full rank min(32, 16·4·4)
    assert fc1["low_rank"] == {"rank": rank}
    assert fc1["kept_in_channels"] == small.fc1.kept_in_channels.tolist()  # conv2 was pruned
    assert [t["name"] for t in fc1["tensors"]] == ["fc1.first", "fc1.second"]
    assert [t["weight_shape"] for t in fc1["tensors"]] == [[rank, 8 * 16], [32, rank]]
    assert all(t["input"]["bits"] == 4 for t in fc1["tensors"])
    assert layers["conv1"]["kept_in_channels"] is None and layers["fc2"]["sparsity"]["nm"] is None


def test_targets_carry_the_simulated_costs(deployed):
    base, _, plan, sim, config = deployed
    fpga = config["targets"]["fpga"]["fpga-zcu102-dsp"]
    assert fpga["total"]["cycles"] == sim.total_cycles
    assert fpga["total"]["latency_ms"] == pytest.approx(sim.latency_s * 1e3)
    assert sum(row["cycles"] for row in fpga["layers"]) == sim.total_cycles
    assert sum(row["energy_mj"] for row in fpga["layers"]) == pytest.approx(sim.energy_j * 1e3)
    npu = load_profile("npu-bitfusion")
    both = add_target(
        config, profile=npu, sim_result=hwsim.simulate(models.to_workload(base, plan), npu)
    )
    assert set(both["targets"]) == {"fpga", "npu"} and set(config["targets"]) == {"fpga"}
    with pytest.raises(ValueError, match="not the profile 'npu-bitfusion'"):
        add_target(config, profile=npu, sim_result=sim)


def test_round_trip(deployed, tmp_path):
    _, small, plan, sim, config = deployed
    path = write_firmware_config(
        tmp_path / "fw" / "net.json", small, plan=plan, profile=load_profile("fpga-zcu102-dsp"),
        sim_result=sim, model_name="net",
    )  # fmt: skip
    assert load_firmware_config(path) == config
    assert json.loads(path.read_text()) == config
    assert [p.name for p in path.parent.iterdir()] == ["net.json"]  # no temp file left


def test_schema_problems_are_listed_by_key_path(deployed, tmp_path):
    config = json.loads(json.dumps(deployed[4]))
    config["schema_version"] = 2
    del config["layers"][1]["kept_out_channels"]
    config["layers"][2]["tensors"][0]["weight"]["scale"] = "0.1"
    config["targets"]["fpga"]["fpga-zcu102-dsp"]["total"]["cycles"] = "many"
    config["plan"]["layers"]["conv2"]["w_bits"] = 12
    problems = validate_firmware_config(config)
    assert problems == [
        "schema_version: unsupported 2 (supported: 1)",
        'plan.layers["conv2"].w_bits: must be an integer 2-8 or null (float), got 12',
        "layers[1].kept_out_channels: missing",
        "layers[2].tensors[0].weight.scale: must be list, got '0.1'",
        "targets.fpga.fpga-zcu102-dsp.total.cycles: must be float, got 'many'",
    ]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(config))
    with pytest.raises(FirmwareConfigError) as info:
        load_firmware_config(path)
    assert str(info.value).startswith(f"{path}: schema_version") and len(info.value.problems) == 5
    path.write_text("{not json")
    with pytest.raises(FirmwareConfigError, match="not valid JSON"):
        load_firmware_config(path)
    with pytest.raises(FirmwareConfigError, match="cannot read"):
        load_firmware_config(tmp_path / "missing.json")


@pytest.mark.slow
def test_zoo_config_as_lowbit_export_writes_it(trained, tmp_path):
    """``lowbit export`` writes firmware.json through write_zoo_firmware_config: the zoo model
    built and simulated as the search did."""
    from models.firmware import write_zoo_firmware_config

    trained("digits-cnn")  # trains into the session cache the builder reads
    plan = CompressionPlan(layers={"_default": LayerSpec(w_bits=4, a_bits=8, keep=0.75)})
    npu = load_profile("npu-bitfusion")
    path = write_zoo_firmware_config(
        tmp_path / "firmware.json", model="digits-cnn", plan=plan, profile=npu
    )
    config = load_firmware_config(path)
    expected = hwsim.simulate(models.to_workload(models.build("digits-cnn"), plan), npu)
    assert config["targets"]["npu"]["npu-bitfusion"]["total"]["cycles"] == expected.total_cycles
    kept = {layer["name"]: layer["kept_out_channels"] for layer in config["layers"]}
    assert kept["conv1"] is None and len(kept["conv2"]) == round(32 * 0.75)  # conv1 pinned
