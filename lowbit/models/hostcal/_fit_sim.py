"""The hwsim side of the host fit (split from :mod:`lowbit.models.hostcal._fit`): what the
profile being fitted simulates for each kind of measurement -- a layer chain's per-layer
time, a single conv's or a single GEMM's kernel time (the layer without its dispatch)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["chain_layer_s", "gemm_kernel_s", "sweep_kernel_s"]


def _chain(row: dict[str, Any], depth: int):
    """The hwsim layers of a chain."""
    from lowbit.hwsim.workload import Compression, Conv2d, Linear, MatMul, Workload

    bits = 8 if row["precision"] == "int8" else None  # None: float
    comp = Compression(w_bits=bits, a_bits=bits)
    n, s = row["size"], row["spatial"]
    if row["kind"] == "conv":
        make = lambda i: Conv2d(  # noqa: E731
            name=f"l{i}",
            compression=comp,
            in_h=s,
            in_w=s,
            in_c=n,
            out_c=n,
            k_h=3,
            k_w=3,
            out_h=s,
            out_w=s,
            batch=row["batch"],
        )
    elif row["kind"] == "matmul":
        make = lambda i: MatMul(  # noqa: E731
            name=f"l{i}", compression=comp, M=n, N=n, K=n, heads=row["batch"]
        )
    else:
        make = lambda i: Linear(  # noqa: E731
            name=f"l{i}", compression=comp, in_features=n, out_features=n, tokens=row["batch"]
        )
    return Workload("chain", tuple(make(i) for i in range(depth)))


def chain_layer_s(rows, data: dict[str, Any], depths: tuple[int, int]) -> np.ndarray:
    """Simulated per-layer seconds of each chain row (the same two-depth difference)."""
    from lowbit import hwsim
    from lowbit.hwsim.profiles import profile_from_dict

    profile = profile_from_dict(data, source="host calibration")
    out = []
    for row in rows:
        t = [hwsim.simulate(_chain(row, d), profile).latency_s for d in depths]
        out.append((t[1] - t[0]) / (depths[1] - depths[0]))
    return np.array(out)


def _kernel_s(layers, data: dict[str, Any]) -> np.ndarray:
    """Simulated kernel seconds of single layers: each layer without its dispatch."""
    from lowbit import hwsim
    from lowbit.hwsim.profiles import profile_from_dict

    profile = profile_from_dict(data, source="host calibration")
    out = []
    for layer in layers:
        cycles = hwsim.simulate_layer(layer, profile).total_cycles
        out.append(max(cycles - profile.overheads.layer_cycles, 1) / profile.clock_hz)
    return np.array(out)


def gemm_kernel_s(rows, data: dict[str, Any]) -> np.ndarray:
    """Simulated kernel seconds of each single-GEMM row
    (:func:`lowbit.models.hostcal.gemm.gemm_sweep`): the layer without its dispatch."""
    from lowbit.hwsim.workload import Compression, Linear

    comp = Compression(w_bits=8, a_bits=8)
    return _kernel_s(
        (
            Linear(
                name="g",
                compression=comp,
                in_features=r["in_features"],
                out_features=r["out_features"],
                tokens=r["rows"],
                # a Gemm (QGemm) applies its bias and column scales itself; a MatMul does not
                fused_bias=r.get("form", "gemm") == "gemm",
            )
            for r in rows
        ),
        data,
    )


def sweep_kernel_s(rows, data: dict[str, Any]) -> np.ndarray:
    """Simulated kernel seconds of each conv-sweep row: the layer without its dispatch."""
    from lowbit.hwsim.workload import Compression, Conv2d

    def layer(row: dict[str, Any]) -> Conv2d:
        s = row["spatial"]
        return Conv2d(
            name="c",
            compression=Compression(w_bits=8, a_bits=8),
            in_h=s,
            in_w=s,
            in_c=row["in_c"],
            out_c=row["out_c"],
            k_h=row["k"],
            k_w=row["k"],
            out_h=s,
            out_w=s,
            batch=row["batch"],
            groups=row.get("groups", 1),
            weight_storage=row.get("weights", "s8"),
        )

    return _kernel_s((layer(row) for row in rows), data)
