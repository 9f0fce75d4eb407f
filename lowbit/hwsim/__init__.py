"""hwsim: cycle-level simulation of NPU, FPGA and SIMD-CPU targets (numpy + simpy only).

The facade: describe a target (:class:`HardwareProfile`, usually from a TOML file via
:func:`load_profile`), a network (:class:`Workload` of layers with their compression), and
simulate it::

    >>> from lowbit import hwsim
    >>> profile = hwsim.load_profile("npu-systolic-32")  # doctest: +SKIP
    >>> result = hwsim.simulate(hwsim.builtin_workload("resnet18"), profile)  # doctest: +SKIP
    >>> result.latency_s, result.energy_j  # doctest: +SKIP

The model behind both engines is documented in :mod:`lowbit.hwsim.engines._base`. Importing hwsim
is cheap: profiles, workloads and the engines load on first use, and torch never does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_attributes
from .errors import LowbitError, ProfileError, WorkloadError
from .profile import HardwareProfile, UnsupportedPrecision
from .result import LayerResult, SimResult
from .workload import (
    Compression,
    Conv2d,
    Elementwise,
    Gemm,
    Layer,
    Linear,
    MatMul,
    Pool,
    Workload,
)

if TYPE_CHECKING:  # lazy re-exports, see __getattr__
    from .profiles import builtin_profile_names, load_profile
    from .workloads import builtin_workload

__all__ = [
    "simulate",
    "simulate_layer",
    "engine_names",
    "DEFAULT_ENGINE",
    "Workload",
    "Layer",
    "Gemm",
    "Conv2d",
    "Linear",
    "MatMul",
    "Elementwise",
    "Pool",
    "Compression",
    "HardwareProfile",
    "SimResult",
    "LayerResult",
    "LowbitError",
    "ProfileError",
    "WorkloadError",
    "UnsupportedPrecision",
    "load_profile",
    "builtin_profile_names",
    "builtin_workload",
]

#: name -> module of the names loaded on first access (they may import more, or be newer)
_LAZY = {
    "load_profile": "profiles",
    "builtin_profile_names": "profiles",
    "builtin_workload": "workloads",
}


__getattr__, __dir__ = lazy_attributes(__name__, globals(), _LAZY)


#: the engine of ``engine=`` when none is named (one of :func:`engine_names`)
DEFAULT_ENGINE = "analytic"


def engine_names() -> list[str]:
    """Names accepted by ``engine=``: ``["analytic", "event"]``."""
    from .engines import engine_names as names

    return names()


def simulate(
    workload: Workload, profile: HardwareProfile, *, engine: str = DEFAULT_ENGINE
) -> SimResult:
    """Simulate every layer of ``workload`` in order on ``profile``.

    Args:
        workload: the layers with their compression (``Workload.with_compression``).
        profile: the target.
        engine: "analytic" (closed form, memoised) or "event" (SimPy, same model).

    Returns:
        A frozen :class:`SimResult` with per-layer :class:`LayerResult` rows.

    Raises:
        ValueError: unknown engine name (the message lists the valid ones).
        UnsupportedPrecision: a layer asks for bits the target cannot run.
    """
    from .engines import get_engine

    return get_engine(engine).simulate(workload, profile)


def simulate_layer(
    layer: Layer, profile: HardwareProfile, *, engine: str = DEFAULT_ENGINE
) -> LayerResult:
    """Simulate one layer on ``profile`` with its input coming from off chip."""
    from .engines import get_engine

    return get_engine(engine).simulate_layer(layer, profile)
