"""lowbit installs under one import name: a user project with its own ``models`` package
can import lowbit from an installed wheel (no editable install hiding the problem)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

USER_SCRIPT = """
import sys
from pathlib import Path

from models import TinyNet          # the user's own package named "models"
import torch

import lowbit
from lowbit.search.user import user_space

assert "site-packages" in lowbit.__file__, lowbit.__file__
space, info = user_space(TinyNet(), torch.zeros(1, 1, 8, 8), "npu-bitfusion")
assert sys.modules["models"].__file__ == str(Path("models/__init__.py").resolve())
assert [layer.name for layer in info.layers] == ["conv", "fc"], info.layers
for top in ("hwsim", "search", "reports", "hardware_profiles"):
    try:
        __import__(top)
    except ModuleNotFoundError:
        pass
    else:
        raise SystemExit(f"lowbit installed the generic top-level name {top!r}")
print("ok")
"""

USER_MODELS = """
from torch import nn


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x):
        return self.fc(self.conv(x).relu().flatten(1))
"""


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_beside_a_user_models_package(tmp_path):
    # built from a copy: an in-tree build leaves build/ and egg-info in the checkout
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(
        REPO / "lowbit", source / "lowbit", ignore=shutil.ignore_patterns("__pycache__")
    )
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = wheels.glob("lowbit-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = Path(
        subprocess.check_output(
            [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
        ).strip()
    )
    # the wheel's files go into the fresh venv; its dependencies (torch, onnx, ...) are
    # borrowed from the test's environment by a path entry (whose .pth files, among them
    # the editable install of lowbit, are not processed)
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            "--target",
            str(site),
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr
    (site / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    project = tmp_path / "user-project"
    (project / "models").mkdir(parents=True)
    (project / "models" / "__init__.py").write_text(textwrap.dedent(USER_MODELS))
    (project / "train.py").write_text(textwrap.dedent(USER_SCRIPT))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # only the venv's paths
    out = subprocess.run(
        [py, "train.py"], cwd=project, capture_output=True, text=True, timeout=300, env=env
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")
