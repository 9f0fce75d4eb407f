"""models.firmware: the firmware team's deployment config — content read from the compressed
model and the simulator, integer tensors in their deployed form (BatchNorm folded, int32
bias; equal to the exported INT8 ONNX model's initializers), JSON round trip, every schema
problem reported by key path, other schema versions refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tiny_nets import TinyAttention, example_input, seeded
from torch import nn

from lowbit import hwsim, models
from lowbit.hwsim.profiles import load_profile
from lowbit.models.compression._intbias import integer_layer
from lowbit.models.compression.plan import CompressionPlan, LayerSpec
from lowbit.models.export.firmware import (
    FIRMWARE_SCHEMA_VERSION,
    FirmwareConfigError,
    add_target,
    firmware_config,
    load_firmware_config,
    validate_firmware_config,
    write_firmware_config,
)
from lowbit.models.trace import prepare_model


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
    assert tensor["runs_as"] == "int8" and tensor["folded_batchnorm"] == "bn2"
    grid = tensor["weight"]
    assert grid["granularity"] == "per_channel" and len(grid["scale"]) == 8
    assert grid["bits"] == 4 and (grid["qmin"], grid["qmax"]) == (-128, 127)  # stored as int8
    assert tensor["input"]["scale"] == pytest.approx(float(small.conv2.act_scale))
    fc1 = layers["fc1"]
    rank = round(0.25 * 32)  # rank_fraction × full rank min(32, 16·4·4)
    assert fc1["low_rank"] == {"rank": rank}
    assert fc1["kept_in_channels"] == small.fc1.kept_in_channels.tolist()  # conv2 was pruned
    assert [t["name"] for t in fc1["tensors"]] == ["fc1.first", "fc1.second"]
    assert [t["weight_shape"] for t in fc1["tensors"]] == [[rank, 8 * 16], [32, rank]]
    assert all(t["input"]["bits"] == 4 for t in fc1["tensors"])
    assert layers["conv1"]["kept_in_channels"] is None and layers["fc2"]["sparsity"]["nm"] is None


def _parts(model: nn.Module, name: str) -> list[tuple[str, nn.Module]]:
    module = model.get_submodule(name)
    if hasattr(module, "first"):
        return [(f"{name}.first", module.first), (f"{name}.second", module.second)]
    return [(name, module)]


def _bn_affine(bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(f, shift) with eval-mode bn(y) = f·y + shift, from nn.BatchNorm's definition."""
    f = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
    return f, bn.bias.detach().double() - bn.running_mean.double() * f


def test_integer_tensors_are_described_as_deployed(deployed):
    """Every tensor of the W4A8/W8A8 Net runs int8: its grid and bias are the integer form
    (models._intbias.integer_layer), and they reproduce the folded float layer: the weight
    codes are round(W_folded / scale) and fit int8 with the zero point, the int32 bias is
    the folded float bias rounded to the accumulator grid s_x·s_w[c]."""
    _, small, _, _, config = deployed
    tensors = {t["name"]: t for layer in config["layers"] for t in layer["tensors"]}
    assert list(tensors) == ["conv1", "conv2", "fc1.first", "fc1.second", "fc2"]
    bns = {"conv1": small.bn1, "conv2": small.bn2}
    for name, part in [
        p for layer in ("conv1", "conv2", "fc1", "fc2") for p in _parts(small, layer)
    ]:
        entry = tensors[name]
        assert entry["runs_as"] == "int8"
        assert entry["folded_batchnorm"] == {"conv1": "bn1", "conv2": "bn2"}.get(name)
        form = integer_layer(part, batchnorm=part.folded_batchnorm)
        scale = torch.tensor(entry["weight"]["scale"], dtype=torch.float64)
        assert torch.equal(scale.float(), form.weight_scales)  # float32 values, exactly
        view = (-1,) + (1,) * (part.weight.dim() - 1)
        weight = part.weight.detach().double() * getattr(part, "weight_mask", 1.0)
        bias = torch.zeros(weight.shape[0], dtype=torch.float64)
        if part.bias is not None:
            bias = part.bias.detach().double()
        if name in bns:
            f, shift = _bn_affine(bns[name])
            weight, bias = weight * f.reshape(view), bias * f + shift
        codes = torch.round(weight / scale.reshape(view))
        assert torch.equal(codes.long(), form.codes)
        zero_point = torch.tensor(entry["weight"]["zero_point"]).reshape(view)
        assert -128 <= int((codes + zero_point).min()) and int((codes + zero_point).max()) <= 127
        if entry["bias"] is None:  # fc1.first: a factor without bias, no BatchNorm after it
            assert name == "fc1.first" and form.bias_codes is None
            continue
        step = torch.tensor(entry["bias"]["scale"], dtype=torch.float64)
        s_x = float(np.float32(entry["input"]["scale"]))
        assert torch.equal(step.float(), (s_x * scale).float())  # s_x·s_w[c] in float32
        bias_codes = torch.tensor(entry["bias"]["codes"])
        assert torch.equal(bias_codes, form.bias_codes)
        assert torch.all((bias_codes * step - bias).abs() <= step / 2 * (1 + 1e-6))


def test_float_tensors_keep_their_trained_grid():
    """Weight-only quantization and float layers run float: trained grid, no int32 bias, no
    folded BatchNorm; still a valid config."""
    torch.manual_seed(1)
    base = Net().eval()
    x = torch.randn(16, 1, 8, 8)
    prepare_model(base, x[:1])
    plan = CompressionPlan(
        layers={
            "_default": LayerSpec(w_bits=8, a_bits=8),
            "conv2": LayerSpec(w_bits=4),
            "fc1": LayerSpec(),
        },
        pin_first_last=False,
    )
    small = models.compress(base, plan, calib=x)
    cpu = load_profile("cpu-x86-avx2")  # runs float layers (an NPU would not)
    sim = hwsim.simulate(models.to_workload(base, plan), cpu)
    config = firmware_config(small, plan=plan, profile=cpu, sim_result=sim, model_name="net")
    assert validate_firmware_config(config) == []
    tensors = {t["name"]: t for layer in config["layers"] for t in layer["tensors"]}
    conv2, fc1 = tensors["conv2"], tensors["fc1"]
    assert [tensors[n]["runs_as"] for n in tensors] == ["int8", "float", "float", "int8"]
    assert conv2["bias"] is None and conv2["folded_batchnorm"] is None and conv2["input"] is None
    assert (conv2["weight"]["qmin"], conv2["weight"]["qmax"]) == (-8, 7)  # the 4-bit grid
    assert conv2["weight"]["scale"] == small.conv2.weight_scale.tolist()
    assert fc1["weight"] is None and fc1["bias"] is None and fc1["input"] is None
    assert tensors["conv1"]["folded_batchnorm"] == "bn1"


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


def test_attention_matmuls_and_linears():
    """Activation × activation MatMuls carry both operand grids and run int8 when both are
    quantized; Linear layers without BatchNorm get their bias as int32 codes."""
    base = seeded(TinyAttention)
    x = example_input(base)
    prepare_model(base, x[:1])
    plan = CompressionPlan.from_bits_string("W8A8")
    small = models.compress(base, plan, calib=x)
    cpu = load_profile("cpu-x86-avx2")
    sim = hwsim.simulate(models.to_workload(base, plan), cpu)
    config = firmware_config(small, plan=plan, profile=cpu, sim_result=sim, model_name="attn")
    assert validate_firmware_config(config) == []
    layers = {layer["name"]: layer for layer in config["layers"]}
    for name in ("qk", "av"):
        (tensor,) = layers[name]["tensors"]
        assert layers[name]["kind"] == "matmul" and tensor["runs_as"] == "int8"
        assert tensor["input"]["scale"] == pytest.approx(float(small.get_submodule(name).act_scale))
        assert tensor["input_b"]["bits"] == 8
    (q,) = layers["q"]["tensors"]
    assert q["runs_as"] == "int8" and q["folded_batchnorm"] is None
    assert q["bias"]["codes"] == integer_layer(small.q).bias_codes.tolist()


def test_round_trip(deployed, tmp_path):
    _, small, plan, sim, config = deployed
    path = write_firmware_config(
        tmp_path / "fw" / "net.json",
        small,
        plan=plan,
        profile=load_profile("fpga-zcu102-dsp"),
        sim_result=sim,
        model_name="net",
    )
    assert load_firmware_config(path) == config
    assert json.loads(path.read_text()) == config
    assert [p.name for p in path.parent.iterdir()] == ["net.json"]  # no temp file left


def test_schema_problems_are_listed_by_key_path(deployed, tmp_path):
    config = json.loads(json.dumps(deployed[4]))
    del config["layers"][0]["tensors"][0]["bias"]
    del config["layers"][1]["kept_out_channels"]
    config["layers"][1]["tensors"][0]["bias"]["codes"].pop()
    config["layers"][2]["tensors"][0]["weight"]["scale"] = "0.1"
    config["layers"][2]["tensors"][1]["runs_as"] = "int4"
    config["layers"][3]["tensors"][0]["bias"]["scale"][2] = -1.0
    config["targets"]["fpga"]["fpga-zcu102-dsp"]["total"]["cycles"] = "many"
    config["plan"]["layers"]["conv2"]["w_bits"] = 12
    problems = validate_firmware_config(config)
    assert problems == [
        'plan.layers["conv2"].w_bits: must be an integer 2-8 or null (float), got 12',
        "layers[0].tensors[0].bias: missing",
        "layers[1].kept_out_channels: missing",
        "layers[1].tensors[0].bias.codes: must have 8 entries (one per output channel), got 7",
        "layers[2].tensors[0].weight.scale: must be list, got '0.1'",
        "layers[2].tensors[1].runs_as: must be one of int8, float, got 'int4'",
        "layers[3].tensors[0].bias.scale[2]: must be a finite number > 0.0, got -1.0",
        "targets.fpga.fpga-zcu102-dsp.total.cycles: must be float, got 'many'",
    ]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(config))
    with pytest.raises(FirmwareConfigError) as info:
        load_firmware_config(path)
    assert str(info.value).startswith(f"{path}: plan.layers") and len(info.value.problems) == 8
    path.write_text("{not json")
    with pytest.raises(FirmwareConfigError, match="not valid JSON"):
        load_firmware_config(path)
    with pytest.raises(FirmwareConfigError, match="firmware config not found"):
        load_firmware_config(tmp_path / "missing.json")


def test_float_tensors_must_not_claim_integer_fields(deployed):
    config = json.loads(json.dumps(deployed[4]))
    tensor = config["layers"][0]["tensors"][0]
    tensor["runs_as"] = "float"  # but still with its int32 bias and folded BatchNorm
    int8 = config["layers"][1]["tensors"][0]
    int8["input"] = None
    assert validate_firmware_config(config) == [
        "layers[0].tensors[0].bias: a float tensor keeps its float bias: must be null",
        "layers[0].tensors[0].folded_batchnorm: must be null for a float tensor",
        "layers[1].tensors[0].input: an int8 tensor needs its input grid, got null",
    ]


def test_other_schema_versions_are_refused_with_one_clear_problem(deployed, tmp_path):
    """A version-1 file (scales before BatchNorm folding, no bias) must not be misread as the
    deployed model: refused with the reason and what to do, not with a list of v2 fields it
    lacks; an unknown version likewise."""
    v1 = json.loads(json.dumps(deployed[4]))
    v1["schema_version"] = 1
    for layer in v1["layers"]:  # what a v1 writer wrote: no v2 tensor fields
        for tensor in layer["tensors"]:
            for key in ("runs_as", "folded_batchnorm", "bias"):
                tensor.pop(key, None)
    (problem,) = validate_firmware_config(v1)
    assert problem.startswith("schema_version: unsupported 1 (written by an older lowbit")
    assert "write_firmware_config" in problem and problem.endswith("supported: 2)")
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(v1))
    with pytest.raises(FirmwareConfigError, match="before BatchNorm folding"):
        load_firmware_config(path)
    future = dict(deployed[4], schema_version=FIRMWARE_SCHEMA_VERSION + 1)
    assert validate_firmware_config(future) == [
        f"schema_version: unsupported {FIRMWARE_SCHEMA_VERSION + 1} (unknown version; "
        f"supported: {FIRMWARE_SCHEMA_VERSION})"
    ]


@pytest.mark.slow
def test_zoo_config_as_lowbit_export_writes_it(trained, tmp_path):
    """``lowbit export`` writes firmware.json through write_zoo_firmware_config: the zoo model
    built and simulated as the search did."""
    from lowbit.models.export.firmware import write_zoo_firmware_config

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


#: a digits-cnn mixed plan with channel pruning, N:M sparsity, low rank and 2/4/8-bit layers
MIXED = CompressionPlan(
    layers={
        "_default": LayerSpec(w_bits=4, a_bits=8),
        "conv2": LayerSpec(w_bits=4, a_bits=8, keep=0.5, nm=(2, 4)),
        "conv3": LayerSpec(w_bits=2, a_bits=6, rank=8),
        "fc1": LayerSpec(w_bits=8, a_bits=8, rank=16),
    },
    pin_first_last=True,
)


def _dequantizers(path) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, int]]:
    """``<tensor>.weight`` / ``<tensor>.bias`` -> (stored, scale, zero point, axis) of each
    DequantizeLinear on an initializer in an INT8 ONNX model (models.onnx_quant's names)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(path)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    out = {}
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            stem = node.input[0].split("_quantized__lowbit")[0]
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            out[stem] = (*(inits[name] for name in node.input), axis)
    return out


@pytest.mark.slow
def test_zoo_config_equals_the_exported_int8_model(tmp_path, lowbit_cache):
    """Round trip through the INT8 ONNX model of the same plan (models.export.export_plan):
    per int8 tensor the config's weight scales and zero points are the stored DequantizeLinear
    ones, its int32 bias codes and scales the stored bias, and the FP32 ONNX weights divided by
    the config's scales give the INT8 model's weight codes."""
    import onnx
    from onnx import numpy_helper

    from lowbit.models.export.deploy import export_plan
    from lowbit.models.export.firmware import write_zoo_firmware_config

    # unpadded: the firmware config describes the compressed layers, not ONNX Runtime's
    # channel padding (models._onnx_pad)
    export = export_plan(
        "digits-cnn",
        MIXED,
        out_dir=tmp_path / "onnx",
        weight_type="s8",
        check=False,
        pad_channels=False,
    )
    config = load_firmware_config(
        write_zoo_firmware_config(
            tmp_path / "firmware.json",
            model="digits-cnn",
            plan=MIXED,
            profile=load_profile("npu-bitfusion"),
        )
    )
    stored = _dequantizers(export.int8_path)
    fp32 = {t.name: numpy_helper.to_array(t) for t in onnx.load(export.fp32_path).graph.initializer}
    tensors = {t["name"]: t for layer in config["layers"] for t in layer["tensors"]}
    integer = {name for name, t in tensors.items() if t["runs_as"] == "int8"}
    assert integer == set(tensors)  # every layer quantized, calibrated: all int8
    assert {k.rsplit(".", 1)[0] for k in stored if k.endswith(".weight")} == integer
    assert {
        n: tensors[n]["folded_batchnorm"]
        for n in ("conv1", "conv2", "conv3.first", "conv3.second", "fc2")
    } == {"conv1": "bn1", "conv2": "bn2", "conv3.first": None, "conv3.second": "bn3", "fc2": None}
    compared = 0
    for name in sorted(integer):
        entry = tensors[name]
        codes, scale, zero_point, axis = stored[f"{name}.weight"]
        assert codes.dtype == np.int8 and scale.dtype == np.float32
        assert entry["weight"]["scale"] == scale.tolist()  # float32 values, bit for bit
        assert entry["weight"]["zero_point"] == zero_point.tolist()
        levels = np.moveaxis(codes.astype(np.int64), axis, 0)
        levels = levels - zero_point.astype(np.int64).reshape((-1,) + (1,) * (levels.ndim - 1))
        weight = fp32.get(f"{name}.weight")
        if weight is not None:  # convs and Gemm (a MatMul's weight has an anonymous name)
            view = (-1,) + (1,) * (weight.ndim - 1)
            recomputed = np.round(weight / np.asarray(entry["weight"]["scale"]).reshape(view))
            np.testing.assert_array_equal(recomputed.astype(np.int64), levels)
            compared += 1
        if entry["bias"] is None:
            assert f"{name}.bias" not in stored
            continue
        bias_codes, bias_scale, bias_zero, _ = stored[f"{name}.bias"]
        assert bias_codes.dtype == np.int32 and not bias_zero.any()
        assert entry["bias"]["codes"] == bias_codes.tolist()
        assert entry["bias"]["scale"] == bias_scale.tolist()
    assert compared == 6  # all but fc1.first (a MatMul)
    shapes = {name: t["weight_shape"] for name, t in tensors.items()}
    assert shapes["conv2"] == [16, 16, 3, 3] and shapes["conv3.first"] == [8, 16, 3, 3]
