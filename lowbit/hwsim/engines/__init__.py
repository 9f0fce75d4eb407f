"""Simulation engines: one shared model, two ways to compose time.

* ``analytic`` (:class:`~lowbit.hwsim.engines.analytic.AnalyticEngine`): closed form, memoised;
  the default, fast enough for search loops.
* ``event`` (:class:`~lowbit.hwsim.engines.event.EventEngine`): SimPy processes over the same tile
  schedule; the reference the analytic engine is tested against.

The model and the contract every engine keeps are in :mod:`lowbit.hwsim.engines._base`; how GEMMs
map on the compute unit in :mod:`lowbit.hwsim.engines.dataflows`.
"""

from __future__ import annotations

import importlib

from ._base import Engine
from .dataflows import (
    MAPPINGS,
    InputStationary,
    Mapping,
    OutputStationary,
    VectorMapping,
    WeightStationary,
    mapping_for,
)

__all__ = [
    "ENGINES",
    "Engine",
    "engine_names",
    "get_engine",
    "Mapping",
    "MAPPINGS",
    "OutputStationary",
    "WeightStationary",
    "InputStationary",
    "VectorMapping",
    "mapping_for",
]

#: engine name -> "module:class" (imported on first use: the event engine needs simpy)
ENGINES: dict[str, str] = {
    "analytic": "lowbit.hwsim.engines.analytic:AnalyticEngine",
    "event": "lowbit.hwsim.engines.event:EventEngine",
}

_instances: dict[str, Engine] = {}


def engine_names() -> list[str]:
    return list(ENGINES)


def get_engine(name: str) -> Engine:
    """The shared instance of engine ``name`` (its caches live as long as the process)."""
    engine = _instances.get(name)
    if engine is not None:
        return engine
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r} (valid: {', '.join(ENGINES)})")
    module_name, cls_name = ENGINES[name].split(":")
    engine = _instances[name] = getattr(importlib.import_module(module_name), cls_name)()
    return engine
