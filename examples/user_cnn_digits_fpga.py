"""Bring your own model: a CNN you define and train, searched for the ZCU102 FPGA overlay.

What a user does, top to bottom: load data (scikit-learn's 8×8 digits), define and train a
small CNN in plain PyTorch, write the metric you care about (balanced accuracy here), run
``lowbit.search.run_search`` with a ``UserModel`` against the ``fpga-zcu102-dsp`` profile on
Ray, print the Pareto set, and turn the chosen configuration into a firmware deployment
config.

Run (about a minute with the defaults; ``--trials 6 --epochs 3`` for a smoke test)::

    python examples/user_cnn_digits_fpga.py --out runs/digits-fpga
"""

from __future__ import annotations

import argparse
import copy
import csv
import os
from pathlib import Path

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.nn import functional as F

HARDWARE = "fpga-zcu102-dsp"


class DigitsCNN(nn.Module):
    """Three 3×3 convolutions and two linear layers for 1×8×8 images."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.conv2, self.bn2 = nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32)
        self.conv3, self.bn3 = nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32)
        self.fc1 = nn.Linear(32 * 2 * 2, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        x = F.max_pool2d(F.relu(self.bn3(self.conv3(x))), 2)
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))


def load_data(seed: int = 0) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Digits as (n, 1, 8, 8) floats in [0, 1]; stratified 60/20/20 train/val/test split."""
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target, dtype=torch.int64)
    idx = list(range(len(y)))
    train, rest = train_test_split(idx, test_size=0.4, stratify=y, random_state=seed)
    val, test = train_test_split(rest, test_size=0.5, stratify=y[rest], random_state=seed)
    return {name: (x[i], y[i]) for name, i in (("train", train), ("val", val), ("test", test))}


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int) -> nn.Module:
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        model.train()
        for batch in torch.randperm(len(x)).split(64):
            opt.zero_grad()
            F.cross_entropy(model(x[batch]), y[batch]).backward()
            opt.step()
    return model.eval()


def balanced_accuracy(x: torch.Tensor, y: torch.Tensor):
    """The user's metric: mean per-class recall (robust to class imbalance)."""

    def metric(model: nn.Module) -> float:
        with torch.no_grad():
            pred = model(x).argmax(1)
        recalls = [(pred[y == c] == c).float().mean() for c in y.unique()]
        return float(torch.stack(recalls).mean())

    return metric


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/digits-fpga", help="run directory")
    parser.add_argument("--trials", type=int, default=int(os.environ.get("TRIALS", 40)))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=int(os.environ.get("EPOCHS", 15)))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    from lowbit import hwsim, models
    from lowbit.hwsim.profiles import load_profile
    from lowbit.models.compression.plan import CompressionPlan
    from lowbit.models.export.firmware import write_firmware_config
    from lowbit.models.trace import prepare_model
    from lowbit.search import SearchSetup, UserModel, load_config, run_search

    data = load_data()
    net = train(DigitsCNN(), *data["train"], epochs=args.epochs)
    x_val, y_val = data["val"]
    metric = balanced_accuracy(x_val, y_val)
    print(f"trained DigitsCNN: balanced accuracy {metric(net):.3f} on val")

    user = UserModel(
        module=net,
        example_input=x_val[:1],
        evaluate=metric,
        evaluate_test=balanced_accuracy(*data["test"]),
        calib=x_val,
        name="digits-cnn-user",
    )
    result = run_search(
        SearchSetup(
            model=user,
            hardware=HARDWARE,
            n_trials=args.trials,
            out_dir=args.out,
            workers=args.workers,
        )
    )
    ref = result.summary["reference"]
    print(f"\nW8A8 reference: {ref['w8a8_latency_ms']:.4f} ms, metric {ref['w8a8_val']:.3f}")
    print(f"\nPareto set on {HARDWARE} (metric = balanced accuracy):")
    print(f"{'config':<14}{'val':>7}{'test':>7}{'latency ms':>12}{'vs W8A8':>9}")
    with open(Path(args.out) / "pareto.csv", newline="", encoding="utf-8") as fh:
        rows = sorted(csv.DictReader(fh), key=lambda r: float(r["latency_ms"]))
    for row in rows:
        print(
            f"{row['config_id']:<14}{float(row['accuracy_val']):>7.3f}"
            f"{float(row['accuracy_test']):>7.3f}{float(row['latency_ms']):>12.4f}"
            f"{float(row['latency_vs_w8a8']):>9.2f}"
        )

    # the deployment config: fastest within 1 point of FP32, else the most accurate
    best = result.summary["methods"]["joint"]["best_within_1pt"]
    chosen = (
        best["config_id"]
        if best
        else max(rows, key=lambda r: float(r["accuracy_val"]))["config_id"]
    )
    config_path = Path(args.out) / "configs" / f"{chosen}.json"
    print(f"\ndeployment config: {config_path}")

    # the firmware team's JSON for the chosen plan
    config = load_config(config_path)
    plan = CompressionPlan.from_dict(config.plan)
    base = copy.deepcopy(net)
    prepare_model(base, x_val[:1])  # the traced prune groups the search used
    small = models.compress(base, plan, calib=x_val)
    profile = load_profile(HARDWARE)
    sim = hwsim.simulate(models.to_workload(base, plan), profile)
    firmware = write_firmware_config(
        Path(args.out) / "firmware" / f"{chosen}.json",
        small,
        plan=plan,
        profile=profile,
        sim_result=sim,
        model_name="digits-cnn-user",
    )
    print(f"firmware config: {firmware}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
