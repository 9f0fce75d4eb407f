"""Arm Vela on the exported TFLite model: the Ethos-U command stream and Vela's estimate.

For an Ethos-U hardware profile (:func:`vela_target`) the export runs Vela (``ethos-u-vela``,
the ``edge`` extra) on ``model.int8.tflite`` with the profile's accelerator configuration
(``ethos-u55-<MACs>`` from its compute array) and the system it models (Vela's
``Ethos_U55_High_End_Embedded``: 500 MHz, SRAM on AXI0, weights in off-chip flash on AXI1 =
memory mode ``Shared_Sram``; see ``npu-ethos-u55.toml``). It keeps Vela's compiled model
(the TFLite file firmware runs with the Ethos-U driver) and its per-operator performance
report, and puts Vela's estimate (cycles, SRAM and flash use) beside lowbit's simulation of
the same plan in deploy.json (:func:`vela_estimate`).

Vela names each operator after its output tensor, which the TFLite export names after the
lowbit layer, so per-layer rows map to the simulator's layers (:func:`layer_of`,
:func:`assign_layers`: the steps of a layer Vela decomposes count to it, :func:`layer_pairs`);
:func:`ratio_summary` summarizes the ratios lowbit / Vela over configs
(``benchmarks/bench_vela.py``, ``lowbit validate --vela``). Vela estimates the NPU only (an
operator it places on the CPU counts 0 cycles), so the comparison leaves out, on both sides,
the layers with such an operator (``cpu_layers``, ``cycles_npu_layers``).
"""

from __future__ import annotations

import csv
import io
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lowbit.models.export._extras import require_extra
from lowbit.models.export._qdq_grids import ExportError

__all__ = [
    "RATIO_BAND",
    "VelaResult",
    "VelaTarget",
    "assign_layers",
    "layer_of",
    "layer_pairs",
    "ratio_summary",
    "run_vela",
    "vela_estimate",
    "vela_target",
    "within_band",
]

#: "within ±20 %" of the cycle ratios lowbit / Vela
RATIO_BAND = 0.2


@dataclass(frozen=True, slots=True)
class VelaTarget:
    """Vela's accelerator, system and memory configuration (names in Vela's ``Arm/vela.ini``)."""

    accelerator: str
    system_config: str = "Ethos_U55_High_End_Embedded"
    memory_mode: str = "Shared_Sram"
    config_file: str = "Arm/vela.ini"


@dataclass(frozen=True, slots=True)
class VelaResult:
    """Vela's output files (name → bytes), its network summary (the summary CSV's row, numbers
    as floats) and per-operator rows (the per-layer CSV), plus the CPU/NPU operator counts."""

    target: VelaTarget
    version: str
    files: dict[str, bytes]
    summary: dict[str, Any]
    layers: list[dict[str, Any]]
    cpu_operators: int
    npu_operators: int


#: Vela's Ethos-U55 configurations by MACs per cycle
_U55_MACS = (32, 64, 128, 256)


def vela_target(profile: Any) -> VelaTarget | None:
    """The Vela configuration of an Ethos-U55 hardware profile (MACs per cycle = rows × cols ×
    cores of its compute array, e.g. 256 → ``ethos-u55-256``), None for other targets."""
    if "ethos-u55" not in profile.name:
        return None
    c = profile.compute
    macs = int(c.rows * c.cols * c.cores)
    if macs not in _U55_MACS:
        raise ExportError(
            f"profile {profile.name}: {macs} MACs/cycle is not an Ethos-U55 configuration "
            f"(valid: {', '.join(map(str, _U55_MACS))})"
        )
    return VelaTarget(f"ethos-u55-{macs}")


def _number(value: str) -> Any:
    try:
        return float(value)
    except ValueError:
        return value


def run_vela(content: bytes, *, target: VelaTarget, name: str = "model") -> VelaResult:
    """Compile TFLite flatbuffer ``content`` with Vela for ``target`` (in a temporary
    directory, Vela in a subprocess). Raises :class:`ExportError` when Vela fails."""
    require_extra("ethosu.vela", package="ethos-u-vela", what="compiling for Ethos-U")
    from importlib.metadata import version

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / f"{name}.tflite"
        src.write_bytes(content)
        out_dir = Path(tmp) / "out"
        cmd = [
            sys.executable,
            "-m",
            "ethosu.vela",
            str(src),
            "--output-dir",
            str(out_dir),
            "--accelerator-config",
            target.accelerator,
            "--config",
            target.config_file,
            "--system-config",
            target.system_config,
            "--memory-mode",
            target.memory_mode,
            "--verbose-performance",  # also writes the per-layer CSV
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            last = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
            raise ExportError(f"Vela failed on the TFLite model ({target.accelerator}): {last}")
        files = {p.name: p.read_bytes() for p in sorted(out_dir.iterdir())}
    summary_name = f"{name}_summary_{target.system_config}.csv"
    layers_name = f"{name}_per-layer.csv"
    if summary_name not in files or layers_name not in files:
        raise ExportError(f"Vela wrote no performance report (files: {', '.join(files)})")
    summary = next(csv.DictReader(io.StringIO(files[summary_name].decode())))
    rows = list(csv.DictReader(io.StringIO(files[layers_name].decode())))
    counts = {
        kind: int(m.group(1)) if (m := re.search(rf"{kind} operators = (\d+)", proc.stdout)) else 0
        for kind in ("CPU", "NPU")
    }
    return VelaResult(
        target,
        version("ethos-u-vela"),
        files,
        {k: _number(v) for k, v in summary.items()},
        [{k.strip(): _number(v) for k, v in row.items()} for row in rows],
        counts["CPU"],
        counts["NPU"],
    )


def layer_of(vela_name: str) -> str:
    """The lowbit layer of a Vela operator name (its output tensor): a clamp of a sub-8-bit
    grid (``conv1.clip_max``), a low-rank factor (``fc1.first``) and the first half of a
    MEAN Vela splits (``pool_intermediate``) count to their layer."""
    name = re.sub(r"_intermediate$", "", vela_name.strip())  # Vela splits a MEAN in two
    name = re.sub(r"\.clip_(min|max)$", "", name)
    return re.sub(r"\.(first|second)$", "", name)


#: the attention export's tensor names (:mod:`lowbit.models.export._tflite_vit`) that name
#: no lowbit layer, and the layer each belongs to: Vela names the operators of an int16
#: softmax after its input (the scores), the scores are ``qk``'s output and q and k widened
#: to int16 its operands (the export computes the scores in int16), the probabilities
#: requantized onto ``av``'s grid are the softmax's, the heads merged back are ``av``'s
_ALIASES = (
    (re.compile(r"\.attn\.scores_softmax_\d+(/lut)?$"), ".attn.softmax"),
    (re.compile(r"\.attn\.scores$"), ".attn.qk"),
    (re.compile(r"\.attn\.[qk]\.transposed\.int16$"), ".attn.qk"),
    (re.compile(r"\.attn\.probs$"), ".attn.softmax"),
    (re.compile(r"\.attn\.merged$"), ".attn.av"),
)


def assign_layers(names: list[str], *, layers: list[str]) -> list[str | None]:
    """The lowbit layer of each Vela operator, ``names`` in Vela's execution order, given the
    simulated ``layers`` (in order): :func:`layer_of`'s name or its alias when that is a
    layer; else the longest layer whose name prefixes it (``ln1.mean``, ``q.transposed``: a
    step of a decomposed layer); else -- unnamed operators Vela inserts (``#1119``), the
    requantization of a layer's output onto its reader's grid (``fc1.input``) -- the layer
    of the operator before it. The model's output (``logits``) is the last layer's."""
    from lowbit.models.export.ort import OUTPUT_NAME

    known = set(layers)
    out: list[str | None] = []
    previous: str | None = None
    for raw in names:
        name = re.sub(r"/(Transpose|lut)$", "", layer_of(raw))
        for pattern, alias in _ALIASES:
            name = pattern.sub(alias, name)
        if name == OUTPUT_NAME and layers and name not in known:
            name = layers[-1]
        if name not in known and not name.endswith(".input"):
            prefixes = [x for x in known if name.startswith(x + ".")]
            name = max(prefixes, key=len) if prefixes else name
        layer = name if name in known else previous
        out.append(layer)
        previous = layer
    return out


def vela_estimate(result: VelaResult, *, files: dict[str, str], sim: Any | None) -> dict[str, Any]:
    """deploy.json's ``vela`` entry: Vela's estimate (total and per operator), the files
    kept (name in the export directory), and beside it lowbit's simulation ``sim`` of the
    same plan on the profile (a :class:`lowbit.hwsim.SimResult`, or None)."""
    s = result.summary
    names = [str(row.get("Name", "")) for row in result.layers]
    if sim is not None:
        keys = assign_layers(names, layers=[r.name for r in sim.layers])
        keys = [k if k is not None else layer_of(n) for k, n in zip(keys, names, strict=True)]
    else:
        keys = [layer_of(n) for n in names]
    per_layer: dict[str, int] = {}
    cpu_layers: set[str] = set()
    for key, row in zip(keys, result.layers, strict=True):
        per_layer[key] = per_layer.get(key, 0) + int(row.get("Op Cycles", 0))
        if str(row.get("Target", "")).strip() == "CPU":
            cpu_layers.add(key)
    out: dict[str, Any] = {
        "version": result.version,
        "accelerator": result.target.accelerator,
        "system_config": result.target.system_config,
        "memory_mode": result.target.memory_mode,
        "files": files,
        "cycles": int(s["cycles_total"]),
        "cycles_npu": int(s["cycles_npu"]),
        "cycles_sram_access": int(s["cycles_sram_access"]),
        "cycles_off_chip_flash_access": int(s["cycles_off_chip_flash_access"]),
        "latency_ms": float(s["inference_time"]) * 1e3,
        "clock_hz": float(s["core_clock"]),
        "sram_bytes": int(round(float(s["sram_memory_used"]) * 1024)),
        "flash_bytes": int(round(float(s["off_chip_flash_memory_used"]) * 1024)),
        "weights_bytes_encoded": int(s["total_npu_encoded_weights"]),
        "cpu_operators": result.cpu_operators,
        "npu_operators": result.npu_operators,
        "layers": [
            {
                "name": str(r.get("Name", "")).strip(),
                "op": str(r.get("NNG Operator", "")),
                "target": str(r.get("Target", "")),
                "cycles": int(r.get("Op Cycles", 0)),
                "macs": int(r.get("MAC Count", 0)),
                "layer": key,
            }
            for key, r in zip(keys, result.layers, strict=True)
        ],
        "cycles_by_layer": per_layer,
        "cpu_layers": sorted(cpu_layers),
    }
    if sim is not None:
        out["lowbit"] = {
            "profile": sim.hardware,
            "cycles": int(sim.total_cycles),
            "latency_ms": sim.latency_s * 1e3,
            "layers": {r.name: int(r.total_cycles) for r in sim.layers},
        }
        out["cycle_ratio_lowbit_over_vela"] = int(sim.total_cycles) / max(out["cycles"], 1)
        # Vela estimates NPU operators only (a CPU operator counts 0 cycles): compared, on
        # both sides, are the layers Vela runs wholly on the NPU
        npu = {r.name: int(r.total_cycles) for r in sim.layers if r.name not in cpu_layers}
        out["lowbit"]["cycles_npu_layers"] = sum(npu.values())
        out["cycles_npu_layers"] = out["cycles"] - sum(per_layer[k] for k in cpu_layers)
    return out


def layer_pairs(estimate: dict[str, Any], *, ops: dict[str, str]) -> list[dict[str, Any]]:
    """Per simulated layer Vela estimated: ``{layer, op, lowbit, vela}`` cycles, from a
    :func:`vela_estimate` with its ``lowbit`` section; ``ops`` maps lowbit layer → op kind
    (Vela operators of no simulated layer, and layers with an operator Vela runs on the CPU,
    are left out)."""
    sim = estimate["lowbit"]["layers"]
    cpu = set(estimate.get("cpu_layers", ()))
    return [
        {"layer": name, "op": ops[name], "lowbit": sim[name], "vela": cycles}
        for name, cycles in estimate["cycles_by_layer"].items()
        if name in ops and name in sim and name not in cpu
    ]


def within_band(ratios: list[float], *, band: float = RATIO_BAND) -> float | None:
    """Share of ``ratios`` within ``1 ± band`` (None for none)."""
    return sum(abs(r - 1) <= band for r in ratios) / len(ratios) if ratios else None


def _spearman(a: list[float], b: list[float]) -> float | None:
    import math

    from scipy.stats import spearmanr

    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    value = float(spearmanr(a, b).statistic)
    return value if math.isfinite(value) else None


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def ratio_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Cycle ratios lowbit / Vela over ``rows`` (each with ``lowbit_cycles``, ``vela_cycles``
    and ``layers``, a :func:`layer_pairs` list): Spearman (None below 3 points or for
    constant values), median ratio and share within ±20 % of totals and of layers, and per
    layer kind the count, median, min, max ratio and share within ±20 %."""
    totals = [(r["lowbit_cycles"], r["vela_cycles"]) for r in rows]
    layers = [x for r in rows for x in r["layers"] if x["vela"] > 0]
    ratios = [a / b for a, b in totals]
    out: dict[str, Any] = {
        "configs": len(rows),
        "total_spearman": _spearman([a for a, _ in totals], [b for _, b in totals]),
        "total_within_20pct": within_band(ratios),
        "total_median_ratio": _median(ratios) if ratios else None,
        "layers": len(layers),
        "layer_spearman": _spearman([x["lowbit"] for x in layers], [x["vela"] for x in layers]),
        "layer_within_20pct": within_band([x["lowbit"] / x["vela"] for x in layers]),
        "by_op": {},
    }
    for op in sorted({x["op"] for x in layers}):
        kind = [x["lowbit"] / x["vela"] for x in layers if x["op"] == op]
        out["by_op"][op] = {
            "layers": len(kind),
            "median_ratio": _median(kind),
            "min_ratio": min(kind),
            "max_ratio": max(kind),
            "within_20pct": within_band(kind),
        }
    return out
