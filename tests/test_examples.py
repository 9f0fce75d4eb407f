"""The scripts in examples/ run as a user runs them (small budgets through their flags)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_example(name: str):
    """Import ``examples/<name>.py`` as a module (the scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # so Ray can pickle its classes by value
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_onnx_across_targets(tmp_path, capsys):
    from lowbit.hwsim.profiles import builtin_profile_names, load_profile

    example = load_example("onnx_across_targets")
    assert example.main(["--out", str(tmp_path / "cnn.onnx"), "--bits", "W8A8"]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "cnn.onnx").is_file()
    # stem: 16·16 outputs × 16 filters × 3·3·3; depthwise: 16·16 × 16 × 3·3; pointwise:
    # 16·16 × 32 × 16; head: 32 × 10 — 278,848 MACs in all; the sixth layer: ONNX Runtime's
    # reorder out of its blocked float layout before the pool's ReduceMean (free at W8A8)
    assert "6 layers, 278,848 MACs, W8A8" in out
    assert re.search(r"^  elementwise reorder:\S+\s+0$", out, re.M)
    for name in builtin_profile_names():
        row = re.search(rf"^{name}\s+(\w+)\s+([\d.]+)\s+([\d.]+)\s+([\d,]+)\s+\w+$", out, re.M)
        assert row, f"no table row for {name}"
        assert row[1] == load_profile(name).family and float(row[2]) > 0


@pytest.mark.slow
def test_user_cnn_digits_fpga(tmp_path, capsys):
    from lowbit.models.export.firmware import load_firmware_config
    from lowbit.search import load_config

    example = load_example("user_cnn_digits_fpga")
    out_dir = tmp_path / "run"
    argv = ["--out", str(out_dir), "--trials", "6", "--epochs", "3", "--workers", "2"]
    assert example.main(argv) == 0
    out = capsys.readouterr().out
    assert "Pareto set on fpga-zcu102-dsp" in out
    rows = re.findall(r"^(joint-\d{5})\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", out, re.M)
    assert rows and all(0 <= float(val) <= 1 for _, val, *_ in rows)
    config_path = Path(re.search(r"^deployment config: (.+)$", out, re.M)[1])
    config = load_config(config_path)
    assert config.hardware == "fpga-zcu102-dsp" and config.id in {r[0] for r in rows}
    firmware = load_firmware_config(re.search(r"^firmware config: (.+)$", out, re.M)[1])
    assert firmware["plan"] == config.plan
    assert "fpga-zcu102-dsp" in firmware["targets"]["fpga"]
    total = firmware["targets"]["fpga"]["fpga-zcu102-dsp"]["total"]["latency_ms"]
    assert total == pytest.approx(config.latency_ms)  # the search simulated the same plan
