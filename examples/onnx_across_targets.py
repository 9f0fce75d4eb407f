"""One ONNX file, every built-in target: export a small CNN from PyTorch, simulate it everywhere.

A user's flow for a model that lives in ONNX: ``torch.onnx.export`` (or any exporter) writes
the file, :func:`lowbit.hwsim.onnx_workload.load_onnx_workload` turns its graph into an hwsim
workload, and ``hwsim.simulate`` runs it on each built-in hardware profile at W8A8 (a float
ONNX file describes shapes; ``--bits`` picks other widths). The same file works from the
command line: ``lowbit simulate --hardware npu-bitfusion --workload cnn.onnx``.

Run::

    python examples/onnx_across_targets.py --out cnn.onnx --bits W8A8
"""

from __future__ import annotations

import argparse
import re
import warnings
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn


class SmallCNN(nn.Module):
    """A MobileNet-like block stack for 3×32×32 images: conv, depthwise + pointwise, head."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU())
        self.dw = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.ReLU())
        self.pw = nn.Sequential(nn.Conv2d(16, 32, 1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(32, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pw(self.dw(self.stem(x)))
        return self.head(torch.flatten(self.pool(x), 1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="small_cnn.onnx", help="where to write the ONNX file")
    parser.add_argument("--bits", default="W8A8", help="uniform bit-widths, e.g. W8A8 or W4A8")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    from lowbit import hwsim
    from lowbit.hwsim.onnx_workload import load_onnx_workload
    from lowbit.hwsim.profile import UnsupportedPrecision
    from lowbit.hwsim.profiles import builtin_profile_names, load_profile

    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(SmallCNN().eval(), (torch.zeros(1, 3, 32, 32),), str(path), verbose=False)
    match = re.fullmatch(r"W(\d+)A(\d+)", args.bits.upper())
    if match is None:
        parser.error(f"--bits: expected WxAy like W8A8, got {args.bits!r}")
    workload = load_onnx_workload(path)
    workload = workload.with_compression(
        {
            layer.name: replace(layer.compression, w_bits=int(match[1]), a_bits=int(match[2]))
            for layer in workload.layers
            if layer.op in ("conv2d", "linear", "matmul")
        }
    )
    print(f"{path}: {len(workload.layers)} layers, {workload.macs:,} MACs, {args.bits}")
    for layer in workload.layers:
        print(f"  {layer.op:<12}{layer.name:<24}{layer.macs:>12,}")
    header = f"{'profile':<18}{'family':<7}{'latency ms':>12}{'energy uJ':>11}{'cycles':>10}"
    print(f"\n{header}  bound")
    for name in builtin_profile_names():
        profile = load_profile(name)
        try:
            sim = hwsim.simulate(workload, profile)
        except UnsupportedPrecision as exc:
            print(f"{name:<18}{profile.family:<7}  cannot run {args.bits}: {exc}")
            continue
        cycles: dict[str, int] = {}
        for layer in sim.layers:
            cycles[layer.bound] = cycles.get(layer.bound, 0) + layer.total_cycles
        print(
            f"{name:<18}{profile.family:<7}{sim.latency_s * 1e3:>12.4f}"
            f"{sim.energy_j * 1e6:>11.3f}{sim.total_cycles:>10,}  "
            f"{max(cycles, key=cycles.__getitem__)}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
