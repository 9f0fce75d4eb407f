"""The tile schedule both engines time, and its closed-form timing.

A layer runs as a sequence of tiles. Each tile has a compute time and, per off-chip port,
the transfer cycles (bytes / port bandwidth) of what it loads before it can compute and
what it writes back after. Transfers are of two kinds, by the on-chip level they fill or
drain: into a *double-buffered* level they overlap compute (one half is filled while the
array works on the other); into a *single-buffered* level they cannot (the array is using
the only copy). Runs of identical tiles are stored once with a repeat count
(:class:`Block`), so a layer with thousands of tiles is a handful of objects.

Timing (both engines; cycles as floats until the layer total is rounded up). Step i:

1. serial phase: write back tile i-1's single-buffered outputs and load tile i's
   single-buffered operands: ``dma(Ss_{i-1} + Ls_i)``;
2. tile i computes while the DMA writes back tile i-1's double-buffered outputs and
   prefetches tile i+1's double-buffered operands: ``max(C_i, dma(Sd_{i-1} + Ld_{i+1}))``.

::

    total = dma(Ld_0) + sum_i [dma(Ss_{i-1} + Ls_i) + max(C_i, dma(Sd_{i-1} + Ld_{i+1}))]
            + dma(Sd_{n-1} + Ss_{n-1})

With every level double buffered this is prologue + Σ max(compute, DMA) + epilogue; with
none, load, compute and write-back serialize. ``dma(x)`` is the busiest port: transfers on
different off-chip levels (DRAM, flash) run in parallel, on one port one after the other
(each port is one resource shared by reads and writes). :func:`closed_form` sums this over
the blocks in O(number of blocks); the event engine simulates the tiles of
:func:`iter_tiles` with SimPy processes.
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["Tile", "Block", "closed_form", "closed_form_general", "iter_tiles"]

Vec = tuple[float, ...]


class Tile:
    """One tile: compute cycles; per-port transfer cycles, double (d) / single (s) buffered."""

    __slots__ = (
        "compute",
        "load",
        "store",
        "load_s",
        "store_s",
        "first_load",
        "last_store",
        "ld1",
        "sd1",
        "serial1",
    )

    def __init__(self, compute: float, load: Vec, store: Vec, load_s: Vec, store_s: Vec):
        self.compute = compute
        self.load, self.store = load, store
        self.load_s, self.store_s = load_s, store_s
        self.first_load = load
        self.last_store = (store, store_s)
        # single-port scalars (the fast path of closed_form)
        self.ld1, self.sd1, self.serial1 = load[0], store[0], load_s[0] + store_s[0]

    count = 1

    def __repr__(self) -> str:
        return (
            f"Tile(compute={self.compute:g}, load={self.load}, store={self.store}, "
            f"load_s={self.load_s}, store_s={self.store_s})"
        )


class Block:
    """``repeat`` back-to-back copies of a sequence of tiles and blocks."""

    __slots__ = ("repeat", "items", "first_load", "last_store", "ld1", "sd1", "serial1")

    def __init__(self, repeat: int, items: tuple[Tile | Block, ...]):
        if repeat < 1 or not items:
            raise ValueError(f"a block needs repeat >= 1 and items, got {repeat}, {items!r}")
        # flatten: a child run once is spliced in; one repeated child multiplies repeats
        serial = 0.0
        flat: list | None = None
        for idx, item in enumerate(items):
            if type(item) is Block and item.repeat == 1:
                if flat is None:
                    flat = list(items[:idx])
                flat.extend(item.items)
            elif flat is not None:
                flat.append(item)
            serial += item.serial1
        if flat is not None:
            items = tuple(flat)
        serial *= repeat
        while len(items) == 1 and type(items[0]) is Block:
            repeat *= items[0].repeat
            items = items[0].items
        self.repeat = repeat
        self.items = items
        first, last = items[0], items[-1]
        self.first_load, self.last_store = first.first_load, last.last_store
        self.ld1, self.sd1 = first.ld1, last.sd1
        self.serial1 = serial

    @property
    def count(self) -> int:
        """Number of tiles."""
        return self.repeat * sum(item.count for item in self.items)

    def __repr__(self) -> str:
        return f"Block({self.repeat}, {self.items!r})"


def dma(a: Vec, b: Vec) -> float:
    """Cycles to move a then b: ports in parallel, each port serial."""
    n = len(a)
    if n == 1:
        return a[0] + b[0]
    if n == 2:
        x, y = a[0] + b[0], a[1] + b[1]
        return x if x > y else y
    return max(x + y for x, y in zip(a, b, strict=True))


def _node(item: Tile | Block, prev: tuple[Vec, Vec], nxt: Vec) -> float:
    """Sum of the step terms of one item, given the stores before and the load after."""
    if type(item) is Tile:
        d = dma(prev[0], nxt)
        c = item.compute
        return dma(prev[1], item.load_s) + (c if c > d else d)
    return _block(item, prev, nxt)


def _inner(items: tuple[Tile | Block, ...]) -> float:
    """Sum over items[1:-1], whose neighbours are all inside ``items``."""
    total = 0.0
    for idx in range(1, len(items) - 1):
        total += _node(items[idx], items[idx - 1].last_store, items[idx + 1].first_load)
    return total


def _block(block: Block, prev: tuple[Vec, Vec], nxt: Vec) -> float:
    """Sum of the step terms of ``block``: its copies differ only in what precedes the
    first copy and follows the last, so inner items are summed once and multiplied."""
    r, items = block.repeat, block.items
    if len(items) == 1:
        item = items[0]
        if r == 1:
            return _node(item, prev, nxt)
        own_store, own_load = item.last_store, item.first_load
        total = _node(item, prev, own_load) + _node(item, own_store, nxt)
        if r > 2:
            total += (r - 2) * _node(item, own_store, own_load)
        return total
    head, tail = items[0], items[-1]
    after_head, before_tail = items[1].first_load, items[-2].last_store
    total = r * _inner(items) + _node(head, prev, after_head) + _node(tail, before_tail, nxt)
    if r > 1:
        total += (r - 1) * (
            _node(head, block.last_store, after_head) + _node(tail, before_tail, block.first_load)
        )
    return total


def _node1(item: Tile | Block, prev: float, nxt: float) -> float:
    """Single-port :func:`_node` without the serial phases (they are summed apart)."""
    if type(item) is Tile:
        d = prev + nxt
        c = item.compute
        return c if c > d else d
    return _block1(item, prev, nxt)


def _block1(block: Block, prev: float, nxt: float) -> float:
    """Single-port :func:`_block`: the same algorithm on scalars."""
    r, items = block.repeat, block.items
    if len(items) == 1:
        item = items[0]
        if r == 1:
            return _node1(item, prev, nxt)
        total = _node1(item, prev, item.ld1) + _node1(item, item.sd1, nxt)
        if r > 2:
            total += (r - 2) * _node1(item, item.sd1, item.ld1)
        return total
    inner = 0.0
    for idx in range(1, len(items) - 1):
        inner += _node1(items[idx], items[idx - 1].sd1, items[idx + 1].ld1)
    head, tail = items[0], items[-1]
    after_head, before_tail = items[1].ld1, items[-2].sd1
    total = r * inner + _node1(head, prev, after_head) + _node1(tail, before_tail, nxt)
    if r > 1:
        total += (r - 1) * (
            _node1(head, block.sd1, after_head) + _node1(tail, before_tail, block.ld1)
        )
    return total


def closed_form(schedule: Block) -> float:
    """Cycles of ``schedule`` under the timing above (exact, no simulation)."""
    if len(schedule.first_load) == 1:
        # one port: the serial phases telescope into the sum of all serial transfers,
        # so only the overlapped steps need their neighbours
        return schedule.ld1 + schedule.serial1 + schedule.sd1 + _block1(schedule, 0.0, 0.0)
    zero = tuple(0.0 for _ in schedule.first_load)
    body = _block(schedule, (zero, zero), zero)
    store, store_s = schedule.last_store
    return dma(zero, schedule.first_load) + body + dma(store, store_s)


def closed_form_general(schedule: Block) -> float:
    """:func:`closed_form` without the single-port fast path (tests compare the two)."""
    zero = tuple(0.0 for _ in schedule.first_load)
    body = _block(schedule, (zero, zero), zero)
    store, store_s = schedule.last_store
    return dma(zero, schedule.first_load) + body + dma(store, store_s)


def iter_tiles(node: Tile | Block) -> Iterator[Tile]:
    """Every tile of a schedule in execution order."""
    if type(node) is Tile:
        yield node
        return
    for _ in range(node.repeat):
        for item in node.items:
            yield from iter_tiles(item)
