"""Generate SCALE-Sim reference cycles for tests/hwsim/test_scalesim.py.

Runs the real SCALE-Sim (PyPI ``scalesim==3.0.0``) on small conv and GEMM layers for every
dataflow (os, ws, is) on two array sizes and writes the per-layer compute cycles, with the
cfg and topology texts and full provenance, to one JSON file. lowbit never imports
SCALE-Sim: run this from the repository root with the python of a separate venv that has
SCALE-Sim installed (``pip install scalesim==3.0.0 'numpy<2.4'``), activated::

    python benchmarks/scalesim_reference.py --out tests/hwsim/data/scalesim_reference.json

(scalesim 3.0.0 crashes on numpy >= 2.4.) ``--run CFG TOPOLOGY [--gemm]`` instead runs
one pair and prints its per-layer cycles and SCALE-Sim's wall time as JSON.

It uses SCALE-Sim's Python API (``scalesim.scale_sim.scalesim`` with
``save_disk_space=True``, so no per-cycle traces are written) in ``InterfaceBandwidth:
CALC`` mode, where SCALE-Sim never stalls and the reported "Total Cycles" are compute
cycles. A layer whose name contains ``DP`` is run by SCALE-Sim as one layer per channel
(named ``<name>Channel_<i>``); those are summed back into one entry, and the per-channel
values are kept too. About 15 seconds in total.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

ARRAYS = ((8, 8), (32, 32))
DATAFLOWS = ("os", "ws", "is")

#: conv topology: odd sizes, strides whose output size rounds up (ceil), multi-fold layers
#: and one depthwise ("DP") layer.
CONV_TOPOLOGY = """\
Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,
conv_3x3, 16, 16, 3, 3, 8, 16, 1,
conv_3x3_s2, 16, 16, 3, 3, 4, 24, 2,
conv_1x1, 8, 8, 1, 1, 40, 36, 1,
conv_7x7_s2, 20, 20, 7, 7, 3, 8, 2,
conv_wide, 28, 28, 3, 3, 16, 40, 1,
DP_conv_3x3, 12, 12, 3, 3, 6, 1, 1,
"""

#: GEMM topology (M, N, K): square-ish, tall, wide, and a batch-1 FC.
GEMM_TOPOLOGY = """\
Layer Name, M, N, K,
gemm_64x48x40, 64, 48, 40,
gemm_tall, 100, 10, 70,
gemm_wide, 9, 70, 33,
fc_batch1, 1, 100, 64,
"""

TOPOLOGIES = {"conv": CONV_TOPOLOGY, "gemm": GEMM_TOPOLOGY}

CFG_TEMPLATE = """\
[general]
run_name = ref_{rows}x{cols}_{dataflow}

[architecture_presets]
ArrayHeight: {rows}
ArrayWidth: {cols}
IfmapSramSzkB: 64
FilterSramSzkB: 64
OfmapSramSzkB: 32
IfmapOffset: 0
FilterOffset: 10000000
OfmapOffset: 20000000
Bandwidth: 10
Dataflow: {dataflow}
MemoryBanks: 1
ReadRequestBuffer: 512
WriteRequestBuffer: 512

[layout]
IfmapCustomLayout: False
IfmapSRAMBankBandwidth: 10
IfmapSRAMBankNum: 10
IfmapSRAMBankPort: 2
FilterCustomLayout: False
FilterSRAMBankBandwidth: 10
FilterSRAMBankNum: 10
FilterSRAMBankPort: 2

[sparsity]
SparsitySupport: false
SparseRep: ellpack_block
OptimizedMapping: false
BlockSize: 8
RandomNumberGeneratorSeed: 40

[run_presets]
InterfaceBandwidth: CALC
UseRamulatorTrace: False
"""


def run_scalesim(cfg_text: str, topology_text: str, *, gemm: bool, workdir: Path) -> list[dict]:
    """Run SCALE-Sim once; return one dict per topology row (DP channels summed)."""
    from scalesim.scale_sim import scalesim

    cfg = workdir / "ref.cfg"
    topo = workdir / "topology.csv"
    layout = workdir / "layout.csv"  # v3 always opens a layout file; a header is enough
    cfg.write_text(cfg_text)
    topo.write_text(topology_text)
    layout.write_text("Layer name,\n")
    sim = scalesim(
        save_disk_space=True,
        verbose=False,
        config=str(cfg),
        topology=str(topo),
        layout=str(layout),
        input_type_gemm=gemm,
    )
    sim.run_scale(top_path=str(workdir / "out"))

    rows: dict[str, dict] = {}
    for index, layer_sim in enumerate(sim.runner.single_layer_sim_object_list):
        scalesim_name = sim.topo.topo_arrays[index][0]
        # items: overall cycles (incl. prefetch), total (compute) cycles, stall cycles, ...
        items = layer_sim.get_compute_report_items()
        name = scalesim_name.split("Channel_")[0] if "DP" in scalesim_name else scalesim_name
        entry = rows.setdefault(
            name,
            {"name": name, "compute_cycles": 0, "stall_cycles": 0, "scalesim_layers": []},
        )
        entry["compute_cycles"] += int(items[1])
        entry["stall_cycles"] += int(items[2])
        entry["scalesim_layers"].append(
            {"name": scalesim_name, "compute_cycles": int(items[1]), "stall_cycles": int(items[2])}
        )
    for entry in rows.values():
        if len(entry["scalesim_layers"]) == 1:
            del entry["scalesim_layers"]
    return list(rows.values())


def run_one(cfg: Path, topology: Path, *, gemm: bool) -> int:
    """``--run``: simulate one cfg + topology; print per-layer cycles and wall time as JSON
    (used by benchmarks/bench_hwsim.py to time SCALE-Sim)."""
    with tempfile.TemporaryDirectory(prefix="scalesim-run-") as tmp:
        t0 = time.perf_counter()
        layers = run_scalesim(cfg.read_text(), topology.read_text(), gemm=gemm, workdir=Path(tmp))
        seconds = time.perf_counter() - t0
    json.dump({"scalesim": version("scalesim"), "seconds": seconds, "layers": layers}, sys.stdout)
    sys.stdout.write("\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", type=Path, help="write the reference JSON here")
    target.add_argument(
        "--run",
        nargs=2,
        type=Path,
        metavar=("CFG", "TOPOLOGY"),
        help="instead: run one cfg + topology CSV and print per-layer cycles as JSON",
    )
    parser.add_argument("--gemm", action="store_true", help="with --run: a GEMM (M, N, K) CSV")
    args = parser.parse_args(argv)
    if args.run:
        return run_one(*args.run, gemm=args.gemm)

    runs = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="scalesim-ref-") as tmp:
        for rows, cols in ARRAYS:
            for dataflow in DATAFLOWS:
                cfg_text = CFG_TEMPLATE.format(rows=rows, cols=cols, dataflow=dataflow)
                for kind, topology_text in TOPOLOGIES.items():
                    workdir = Path(tmp) / f"{rows}x{cols}_{dataflow}_{kind}"
                    workdir.mkdir()
                    t0 = time.perf_counter()
                    layers = run_scalesim(
                        cfg_text, topology_text, gemm=kind == "gemm", workdir=workdir
                    )
                    seconds = time.perf_counter() - t0
                    print(f"{rows}x{cols} {dataflow} {kind}: {seconds:.1f} s", file=sys.stderr)
                    runs.append(
                        {
                            "cfg": cfg_text,
                            "topology": kind,
                            "rows": rows,
                            "cols": cols,
                            "dataflow": dataflow,
                            "scalesim_seconds": round(seconds, 2),
                            "layers": layers,
                        }
                    )
    result = {
        "description": (
            "Per-layer compute cycles reported by SCALE-Sim (COMPUTE_REPORT 'Total Cycles', "
            "InterfaceBandwidth CALC so stall cycles are 0). DP layers: sum over SCALE-Sim's "
            "per-channel layers."
        ),
        "provenance": {
            "scalesim": version("scalesim"),
            "numpy": version("numpy"),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "generated_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "generator": "benchmarks/scalesim_reference.py",
            "command": (
                "python benchmarks/scalesim_reference.py "
                "--out tests/hwsim/data/scalesim_reference.json"
            ),
            "api": (
                "scalesim.scale_sim.scalesim(save_disk_space=True, verbose=False, config=cfg, "
                "topology=csv, layout=header-only csv, input_type_gemm=kind == 'gemm')"
                ".run_scale(top_path=tmp); per layer: "
                "runner.single_layer_sim_object_list[i].get_compute_report_items()[1:3]"
            ),
            "total_seconds": round(time.perf_counter() - started, 1),
        },
        "topologies": TOPOLOGIES,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_name(args.out.name + ".tmp")
    tmp_out.write_text(json.dumps(result, indent=1) + "\n")
    os.replace(tmp_out, args.out)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
