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
        [--quantizer ort|lowbit | --fp32] [--profile FILE.toml] [--out FILE.json]

``--model``: a zoo model (seeded random weights, as in ``bench_host_model.py``) or a
held-out network (``resnet18-112``, ...: quantized by ONNX Runtime). Default profile: the
one ``lowbit calibrate-host`` wrote. ``--fp32``: the float network, cut after every node
but those an activation follows (ONNX Runtime fuses the two), simulated as FP32.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import onnx

from lowbit.hwsim.profiles import load_profile
from lowbit.models.compression.compress import compress
from lowbit.models.compression.plan import CompressionPlan
from lowbit.models.export.deploy import export_compressed
from lowbit.models.hostcal.calibration import default_profile_path
from lowbit.models.hostcal.check import measure_all, simulate_s
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


def fp32_model(name: str, plan: str, tmp: Path) -> Path:
    """The float ONNX file of zoo model or held-out network ``name`` (a zoo model's export
    under ``plan``: its pruned and low-rank shapes, float weights)."""
    held_out = {case.name: case for case in cases(layers=False)}
    if name in held_out:
        fp32 = tmp / "model.fp32.onnx"
        onnx.save(held_out[name].build(), str(fp32))
        return fp32
    model, calib = random_model(name)
    small = compress(model, CompressionPlan.from_bits_string(plan), calib=calib)
    return Path(export_compressed(small, out_dir=tmp / "export", check=False).fp32_path)


#: a float node ONNX Runtime fuses into the one before it: no cut between the two
_FUSED = {"Relu", "Clip"}


def _cut_points(graph) -> list:
    """The tensors to cut after: an INT8 graph's QuantizeLinear outputs; a float graph's
    every node output not consumed by an activation alone (so a conv keeps its fused ReLU)."""
    if any(n.op_type == "QuantizeLinear" for n in graph.node):
        return [n.output[0] for n in graph.node if n.op_type == "QuantizeLinear"]
    consumers: dict[str, list[str]] = {}
    for n in graph.node:
        for t in n.input:
            consumers.setdefault(t, []).append(n.op_type)
    outputs = {o.name for o in graph.output}
    return [
        n.output[0]
        for n in graph.node
        if n.output[0] not in outputs
        and not (consumers.get(n.output[0]) and set(consumers[n.output[0]]) <= _FUSED)
    ]


def cuts(path: Path, tmp: Path) -> list[tuple[str, Path]]:
    """(tensor, file) of the graph cut after each QuantizeLinear (a float graph: after each
    node but those an activation follows), then the whole graph."""
    graph = onnx.load(str(path)).graph
    source = graph.input[0].name
    out = []
    for i, tensor in enumerate(_cut_points(graph)):
        cut = tmp / f"cut{i}.onnx"
        onnx.utils.extract_model(str(path), str(cut), [source], [tensor])
        out.append((tensor, cut))
    return out + [("(whole graph)", path)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fashion-resnet")
    parser.add_argument("--plan", default="W8A8", help="zoo models: the compression plan")
    parser.add_argument("--quantizer", choices=("ort", "lowbit"), default="ort")
    parser.add_argument("--fp32", action="store_true", help="the float network instead")
    parser.add_argument("--profile", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    profile = load_profile(args.profile or default_profile_path())
    with tempfile.TemporaryDirectory() as tmp:
        if args.fp32:
            source = fp32_model(args.model, args.plan, Path(tmp))
        else:
            source = int8_model(args.model, args.plan, args.quantizer, Path(tmp))
        parts = cuts(source, Path(tmp))
        simulated = [simulate_s(p, profile, fp32=args.fp32)[0] for _, p in parts]
        with clock_track(reference_hz=profile.clock_hz):
            measured = [m.at_clock_s for m in measure_all([p for _, p in parts], repeats=50)]
    clock_ghz = profile.clock_hz / 1e9
    what = "FP32" if args.fp32 else args.quantizer
    print(f"{args.model} ({what}) on {cpu_info()['label']}, times at {clock_ghz:.2f} GHz")
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
            "quantizer": "fp32" if args.fp32 else args.quantizer,
            "cpu": cpu_info(),
            "cuts": rows,
        }
        args.out.write_text(json.dumps(payload, indent=2, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
