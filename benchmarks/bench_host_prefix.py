"""Where a network's simulated time parts from its measured time, layer by layer, on this CPU.

ONNX Runtime's per-node profiler adds ~10 us to each kernel it reports -- more than many of
an edge network's layers take -- so this compares whole runs instead: the INT8 graph cut
after every ``QuantizeLinear`` (``onnx.utils.extract_model``: the input up to that tensor),
each cut timed as the held-out check times a model (quiet-gated, at the profile's clock:
:func:`lowbit.models.hostcal.check.measure_all`) and simulated on the host profile. The
difference between two consecutive cuts is the layers between them, measured and simulated.
Each cut ends with the layout change ONNX Runtime adds before a graph output, on both sides.
On an AMD Zen 3 this found the 24-channel convs and depthwise convs the model then missed.

Usage::

    .venv/bin/python benchmarks/bench_host_prefix.py [--model fashion-resnet] [--plan W8A8]
        [--quantizer ort|lowbit] [--profile FILE.toml] [--out FILE.json]

``--model``: a zoo model (seeded random weights, as in ``bench_host_model.py``) or a
held-out network (``resnet18-112``, ...: quantized by ONNX Runtime). Default profile: the
one ``lowbit calibrate-host`` wrote.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import onnx

from lowbit import hwsim
from lowbit.hwsim.onnx_workload import import_onnx
from lowbit.hwsim.profiles import load_profile
from lowbit.models.compression.compress import compress
from lowbit.models.compression.plan import CompressionPlan
from lowbit.models.export.deploy import export_compressed
from lowbit.models.hostcal.calibration import default_profile_path
from lowbit.models.hostcal.check import measure_all
from lowbit.models.hostcal.clock import clock_track
from lowbit.models.hostcal.graphs import quantize_int8
from lowbit.models.hostcal.heldout import cases
from lowbit.models.hostcal.isa import cpu_info

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_residual_int8 import random_model  # noqa: E402  (the same seeded zoo nets)


def int8_model(name: str, plan: str, quantizer: str, tmp: Path) -> Path:
    """The INT8 ONNX file of zoo model or held-out network ``name``."""
    held_out = {case.name: case for case in cases(layers=False)}
    if name in held_out:
        fp32 = tmp / "model.fp32.onnx"
        onnx.save(held_out[name].build(), str(fp32))
        return quantize_int8(fp32, tmp / "model.int8.onnx")
    model, calib = random_model(name)
    small = compress(model, CompressionPlan.from_bits_string(plan), calib=calib)
    result = export_compressed(small, out_dir=tmp / "export", check=False)
    if quantizer == "ort":
        return quantize_int8(result.fp32_path, tmp / "model.int8.onnx")
    return Path(result.int8_path)


def cuts(path: Path, tmp: Path) -> list[tuple[str, Path]]:
    """(tensor, file) of the graph cut after each QuantizeLinear, then the whole graph."""
    graph = onnx.load(str(path)).graph
    source = graph.input[0].name
    out = []
    for i, node in enumerate(n for n in graph.node if n.op_type == "QuantizeLinear"):
        cut = tmp / f"cut{i}.onnx"
        onnx.utils.extract_model(str(path), str(cut), [source], [node.output[0]])
        out.append((node.output[0], cut))
    return out + [("(whole graph)", path)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fashion-resnet")
    parser.add_argument("--plan", default="W8A8", help="zoo models: the compression plan")
    parser.add_argument("--quantizer", choices=("ort", "lowbit"), default="ort")
    parser.add_argument("--profile", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    profile = load_profile(args.profile or default_profile_path())
    with tempfile.TemporaryDirectory() as tmp:
        parts = cuts(int8_model(args.model, args.plan, args.quantizer, Path(tmp)), Path(tmp))
        simulated = [hwsim.simulate(import_onnx(p).workload, profile).latency_s for _, p in parts]
        with clock_track(reference_hz=profile.clock_hz):
            measured = [m.at_clock_s for m in measure_all([p for _, p in parts], repeats=50)]
    clock_ghz = profile.clock_hz / 1e9
    print(f"{args.model} ({args.quantizer}) on {cpu_info()['label']}, times at {clock_ghz:.2f} GHz")
    print(
        f"{'cut after':52} {'meas us':>8} {'sim us':>8} {'sim/meas':>8} {'d meas':>7} {'d sim':>7}"
    )
    rows, before = [], (0.0, 0.0)
    for (tensor, _), m, s in zip(parts, measured, simulated, strict=True):
        rows.append({"tensor": tensor, "measured_s": m, "simulated_s": s})
        print(
            f"{tensor[-52:]:52} {m * 1e6:8.1f} {s * 1e6:8.1f} {s / m:8.2f} "
            f"{(m - before[0]) * 1e6:7.1f} {(s - before[1]) * 1e6:7.1f}"
        )
        before = (m, s)
    if args.out:
        payload = {
            "model": args.model,
            "quantizer": args.quantizer,
            "cpu": cpu_info(),
            "cuts": rows,
        }
        args.out.write_text(json.dumps(payload, indent=2, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
