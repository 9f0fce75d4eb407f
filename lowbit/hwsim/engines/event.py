"""Event engine: the shared tile schedule simulated with SimPy (time in cycles).

Per layer, three processes run the tiles of :func:`lowbit.hwsim.engines._tiling.plan_gemm`, and
each off-chip level is one port, a ``simpy.Resource(capacity=1)`` shared by all of them
(a transfer touching several ports holds them in parallel):

* the **loader** takes one of the two buffer slots (a ``simpy.Container`` of capacity 2)
  and prefetches the tile's operands whose home level is double buffered;
* **compute**, per tile: first the serial phase (drain the previous tile's outputs from a
  single-buffered level, load this tile's single-buffered operands), then waits for the
  prefetched operands and for a free output half (the one tile i-2 wrote from) and
  computes; when done it hands the tile to the writer and frees its input slot, so the
  loader fetches tile i+2 while tile i+1 computes;
* the **writer** drains each finished tile's double-buffered outputs and frees their half.

Requests queue first come, first served, and a process queues for the port as it reaches
the transfer, so the order on a port is: serial phase, write-back, prefetch -- the step
order of the closed form in :mod:`lowbit.hwsim.engines._schedule`, which this engine reproduces
exactly on a single port. With several ports a transfer may start before the step's
slowest transfer on another port ends, so the event engine can be slightly faster. Events
are per tile, never per cycle; the run is deterministic.
"""

from __future__ import annotations

import simpy

from ..result import LayerResult
from ..workload import Layer
from ._base import Engine
from ._layer import evaluate
from ._schedule import Block, iter_tiles
from ._target import Target

__all__ = ["EventEngine", "simulate_schedule"]

#: buffer slots of a double-buffered level
_SLOTS = 2


def _request(ports: list[simpy.Resource], cycles: tuple[float, ...]) -> list:
    """Queue for every port with something to move, now (the queue order is set here)."""
    return [(ports[p], ports[p].request(), c) for p, c in enumerate(cycles) if c > 0]


def _hold(env: simpy.Environment, port: simpy.Resource, request, cycles: float):
    yield request
    yield env.timeout(cycles)
    port.release(request)


def _serve(env: simpy.Environment, requests: list):
    """Wait for the queued transfers to finish (ports in parallel)."""
    if len(requests) == 1:
        yield from _hold(env, *requests[0])
    elif requests:
        yield env.all_of([env.process(_hold(env, *r)) for r in requests])


def simulate_schedule(schedule: Block) -> float:
    """Cycles to run ``schedule`` (loads, compute, write-backs) in a fresh environment."""
    env = simpy.Environment()
    n_ports = len(schedule.first_load)
    ports = [simpy.Resource(env, capacity=1) for _ in range(n_ports)]
    free = simpy.Container(env, capacity=_SLOTS, init=_SLOTS)
    out_free = simpy.Container(env, capacity=_SLOTS, init=_SLOTS)
    loaded: simpy.Store = simpy.Store(env)
    computed: simpy.Store = simpy.Store(env)
    zero = (0.0,) * n_ports

    def loader():
        for tile in iter_tiles(schedule):
            yield free.get(1)
            yield from _serve(env, _request(ports, tile.load))
            loaded.put(tile)

    def compute():
        prev = None
        for tile in iter_tiles(schedule):
            drain = prev.store_s if prev is not None else zero
            serial = _request(ports, tuple(a + b for a, b in zip(drain, tile.load_s, strict=True)))
            if prev is not None:
                computed.put(prev)
                free.put(1)
            yield from _serve(env, serial)
            yield loaded.get()
            yield out_free.get(1)  # the output half that tile i-2 drained
            if tile.compute > 0:
                yield env.timeout(tile.compute)
            prev = tile
        serial = _request(ports, prev.store_s)
        computed.put(prev)
        free.put(1)
        yield from _serve(env, serial)

    n_tiles = schedule.count

    def writer():
        for _ in range(n_tiles):
            tile = yield computed.get()
            yield from _serve(env, _request(ports, tile.store))
            out_free.put(1)

    env.process(loader())
    env.process(compute())
    env.process(writer())
    env.run()
    return float(env.now)


class EventEngine(Engine):
    """SimPy simulation of the shared tile schedule (the reference for the analytic one)."""

    name = "event"

    def _layer(self, layer: Layer, t: Target, input_on_chip: bool) -> LayerResult:
        return evaluate(layer, t, input_on_chip=input_on_chip, timer=simulate_schedule)
