"""What least-squares recovery buys: test accuracy of pruned and low-rank zoo models with the
plan's ``recovery = "bn"`` (BatchNorm re-estimation only) and ``"lsq"`` (also least-squares
reconstruction of pruned consumers and whitened low rank), no finetuning.

Every setting is applied on top of W4A8 to every layer that has it (first and last layers
pinned at W8A8, as the search does): ``keep`` to every prune-group producer, ``rank`` to
every factorisable layer. Activations are calibrated on the search's calibration subset
(512 stratified val images, seed 0); accuracy is on the whole test split. Also reports the
seconds compress() takes (1 thread), the part of a trial that recovery adds to.

Usage::

    .venv/bin/python benchmarks/bench_recovery.py [--models A,B] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from lowbit.models import compress, load_split, load_trained
from lowbit.models.accuracy import accuracy, as_model_input
from lowbit.models.compression.plan import CompressionPlan, LayerSpec
from lowbit.models.export.calib_subset import stratified_subset
from lowbit.models.hostcal.isa import cpu_info
from lowbit.search.space import describe_model

SETTINGS = (
    ("W4A8", {}),
    ("keep 0.875", {"keep": 0.875}),
    ("keep 0.75", {"keep": 0.75}),
    ("keep 0.5", {"keep": 0.5}),
    ("rank 0.75", {"rank_fraction": 0.75}),
    ("rank 0.5", {"rank_fraction": 0.5}),
    ("keep 0.75 + rank 0.75", {"keep": 0.75, "rank_fraction": 0.75}),
)


def _plan(base, setting: dict, recovery: str) -> CompressionPlan:
    layers = {"_default": LayerSpec(w_bits=4, a_bits=8)}
    for info in describe_model(base):
        spec = {}
        if "keep" in setting and info.producer:
            spec["keep"] = setting["keep"]
        if "rank_fraction" in setting and info.full_rank:
            spec["rank_fraction"] = setting["rank_fraction"]
        if spec:
            layers[info.name] = LayerSpec(w_bits=4, a_bits=8, **spec)
    return CompressionPlan(layers=layers, pin_first_last=True, recovery=recovery)


def rows(name: str) -> list[dict]:
    base = load_trained(name, seed=0, progress=True)
    x_val, y_val = load_split(base.dataset, "val")
    calib = as_model_input(base, x_val)[
        torch.from_numpy(stratified_subset(y_val.numpy(), samples=512, seed=0))
    ]
    x_test, y_test = load_split(base.dataset, "test")
    x_test = as_model_input(base, x_test)
    fp32 = accuracy(base, x_test, y_test)
    out = []
    for label, setting in SETTINGS:
        row = {"model": name, "setting": label, "fp32_test": fp32}
        for recovery in ("bn", "lsq"):
            start = time.perf_counter()
            model = compress(base, _plan(base, setting, recovery), calib=calib)
            row[f"compress_s_{recovery}"] = time.perf_counter() - start
            row[f"test_{recovery}"] = accuracy(model, x_test, y_test)
        out.append(row)
        print(
            f"{name:<18} {label:<22} bn {row['test_bn'] * 100:6.2f} %   lsq "
            f"{row['test_lsq'] * 100:6.2f} %   compress {row['compress_s_bn']:.2f} s / "
            f"{row['compress_s_lsq']:.2f} s",
            flush=True,
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="fashion-resnet,fashion-mobilenet,digits-cnn")
    parser.add_argument("--json", default="bench-results/bench_recovery.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    table = [row for name in args.models.split(",") for row in rows(name)]
    print("\n| model | setting | FP32 | bn | lsq |\n|---|---|---:|---:|---:|")
    for r in table:
        print(
            f"| {r['model']} | {r['setting']} | {r['fp32_test'] * 100:.1f} % | "
            f"{r['test_bn'] * 100:.1f} % | {r['test_lsq'] * 100:.1f} % |"
        )
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    machine = {"cpu": cpu_info()["label"], "python": platform.python_version(), "threads": 1}
    print(f"machine: {machine['cpu']}, 1 thread")
    out.write_text(json.dumps({"machine": machine, "rows": table}, indent=2), encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
