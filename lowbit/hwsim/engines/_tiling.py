"""Memory side of the model: where operands live, how a GEMM is tiled, what moves off chip.

Read :mod:`lowbit.hwsim.engines._base` for the model as a whole; this module states its
memory part and makes the candidate tilings; :mod:`._gemm_plan` builds a candidate's tile
schedule (:mod:`._schedule`, what both engines time) and its traffic by the rule below.

Operands and levels
    Each operand (weights, inputs, outputs) has a *home*: the largest on-chip level that
    holds it (``profile.on_chip(op)``). Its active capacity is the level's size, or half of
    it when the level is double buffered (the other half is being filled). Operands sharing
    a home share its capacity. An operand with no on-chip level streams from off chip at
    every use. The activation operand of an attention MatMul (``weights_are_activations``)
    lives where inputs live. Each operand moves through the off-chip level that holds it
    (``profile.off_chip(op)``); distinct off-chip levels are distinct ports.

Tiles
    A tile is an (Mt, Nt, Kt) block of the GEMM (times ``gt`` instances when whole
    instances -- groups, heads -- are batched), a multiple of the dataflow's fold block.
    K is innermost, so a tile's outputs stay on chip until complete. Loop orders: weights
    outer (N tiles outside M tiles) or inputs outer (M outside N).

    * K whole: the outer operand's tile stays on chip for all inner tiles; the next outer
      tile's is prefetched alongside them in shares of their compute time (into the other
      half of a double buffer), the first one up front. The inner loop is cut into tiles
      of the pipeline granule (``PIPELINE_STEPS`` of them) or finer.
    * K split: K is cut into slices of the granule or finer (multiples of the array's
      reduction width, ``rows``; at m != 1 that is a share of a fold); every tile loads
      both operands' slices and the outputs stay on chip until the last slice (output
      stationary at the buffer level).

Off-chip traffic (the usual reuse rule: an operand is re-fetched once per iteration of
every loop it does not depend on outside its innermost non-trivial loop; Timeloop,
Parashar et al. ISPASS 2019)::

    outer operand X_o:  once with K whole, else once per inner tile (n_i times)
    inner operand X_i:  once if it fits on chip whole beside the tiles, else n_o times
    outputs:            written once (partial sums stay on chip)

Inputs already on chip (the previous layer's output stayed there) cost no reads. The input
tile of a convolution is a share of its ifmap (in_h·in_w·in_c), not of the im2col matrix
(halos ignored), or of the im2col matrix when that is smaller (a strided 1×1 conv).

Choosing the plan (:mod:`lowbit.hwsim.engines._plan`)
    Candidates (:class:`Family`): both loop orders with K whole and K split (one order:
    it moves the same bytes either way), every combination of a K slice, an inner and an
    outer tile size from fixed ladders (the whole dimension, or the pipeline granule for
    K slices, then fold-block·2^j below it) that fits, and whole instances batched by a ladder of
    counts. Each tile also costs ``overheads.tile_cycles`` on the compute side. The plan
    with the fewest cycles wins, exactly (branch and bound). The ladders depend on the
    GEMM's dimensions only, so the candidates that fit only gain members as bytes
    shrink or capacity grows, and a fixed candidate's cycles only fall as its bytes do
    (or its inner operand becomes resident, or the ports get faster): so fewer bits,
    more on-chip memory and more bandwidth never pick a slower plan (tested on every
    built-in). Choosing one size per dimension from what fits -- "the largest tile that
    fits" -- would not be monotone: a bigger tile that newly fits lengthens the
    pipeline's fill and can be slower than the smaller one it displaces.
"""

from __future__ import annotations

from functools import lru_cache

from ._target import GemmWork, Target

__all__ = ["PIPELINE_STEPS", "FAMILIES", "Family", "split", "batches", "shapes", "inner_resident"]

#: the pipelined loop (inner tiles with K whole, K slices when split) is cut into tiles of
#: at most the granule (:func:`_granule`), i.e. into at least this many: fine enough that
#: the pipeline's fill and drain are small. Fixed, as every ladder is, so the candidates
#: depend on the GEMM's dimensions only.
PIPELINE_STEPS = 16


@lru_cache(maxsize=8192)
def split(total: int, tile: int, gran: int = 1) -> tuple[tuple[int, int], ...]:
    """((size, repeat), ...): ``total`` cut into ceil(total / tile) tiles as equal as
    multiples of ``gran`` allow, the last one possibly smaller. Balanced tiles keep a
    small edge tile from pairing its short compute with a big neighbour's transfers."""
    n = -(-total // tile)
    units = -(-total // gran)
    per = min(total, -(-units // n) * gran)
    full = (total - 1) // per
    last = total - full * per
    if last == per:
        return ((per, full + 1),)
    return ((per, full), (last, 1)) if full else ((last, 1),)


@lru_cache(maxsize=4096)
def _ladder(dim: int, gran: int) -> tuple[int, ...]:
    """Tile sizes tried, largest first: the whole dimension, then gran·2^j below it."""
    sizes = [dim]
    size = gran
    while size * 2 < dim:
        size *= 2
    while gran <= size < dim:
        sizes.append(size)
        size //= 2
    return tuple(sizes)


def _granule(dim: int, gran: int) -> int:
    """Smallest multiple of ``gran`` cutting ``dim`` into at most PIPELINE_STEPS tiles."""
    units = -(-dim // gran)
    return min(dim, -(-units // PIPELINE_STEPS) * gran)


def _fit(levels, w: GemmWork, which: int, sizes) -> float:
    """Largest value of dim ``which`` (0 M, 1 N, 2 K), the others as in ``sizes``, such that
    every home level holds the weight (Nt·Kt), input (Mt·Kt) and output (Mt·Nt) tiles it is
    home to; 0 when even a unit tile does not fit."""
    m, n, k = sizes
    best = float("inf")
    for cap, has_w, has_i, has_o in levels:
        w_t = n * k * w.wb if has_w else 0.0
        i_t = m * k * w.ib if has_i else 0.0
        o_t = m * n * w.ob if has_o else 0.0
        if which == 0:
            coef, const = (i_t + o_t) / m, w_t
        elif which == 1:
            coef, const = (w_t + o_t) / n, i_t
        else:
            coef, const = (w_t + i_t) / k, o_t
        if coef > 0:
            best = min(best, (cap - const) / coef)
        elif const > cap:
            return 0.0
    return best


def inner_resident(levels, w: GemmWork, mt: int, nt: int, weights_outer: bool, gt: int = 1) -> bool:
    """Does the whole inner operand fit beside the outer operand's and the output's tiles
    (for ``gt`` instances at once)?"""
    K = w.K
    for cap, has_w, has_i, has_o in levels:
        w_t = (nt if weights_outer else w.N) * K * w.wb if has_w else 0.0
        i_t = (w.M if weights_outer else mt) * K * w.ib if has_i else 0.0
        o_t = mt * nt * w.ob if has_o else 0.0
        if gt * (w_t + i_t + o_t) > cap:
            return False
    return True


class Family:
    """The candidates of one loop order with K whole or split: a tile shape takes its K
    slice, inner and outer sizes from fixed ladders (:func:`_ladder`, depending on the
    GEMM's dimensions only) and is a candidate when it fits. So more capacity or fewer
    bytes per element only ever add candidates.

    K whole: ``kt = K``; inner sizes from the pipeline granule (:func:`_granule`) down.
    K split: K slices from the granule down; inner sizes from the whole dimension down
    (at ``kt = K``, when the granule is all of K, only those above the inner granule:
    below it they repeat K whole). Outer sizes: from the whole dimension down."""

    __slots__ = (
        "weights_outer",
        "split_k",
        "o_idx",
        "i_idx",
        "k_sizes",
        "i_sizes",
        "o_sizes",
        "i_whole",
        "grans",
        "dims",
        "levels",
        "w",
        "outer_parts",
    )

    def __init__(self, t: Target, w: GemmWork, weights_outer: bool, split_k: bool) -> None:
        gm, gn = t.mapping.granularity()
        self.w, self.levels = w, t.holds(w.w_role)
        self.weights_outer, self.split_k = weights_outer, split_k
        self.dims = (w.M, w.N, w.K)
        self.grans = (min(gm, w.M), min(gn, w.N), min(t.gk, w.K))
        self.o_idx, self.i_idx = (1, 0) if weights_outer else (0, 1)
        o, i, grans = self.o_idx, self.i_idx, self.grans
        self.o_sizes = _ladder(self.dims[o], grans[o])
        granule = _granule(self.dims[i], grans[i])
        if split_k:
            self.k_sizes = _ladder(_granule(w.K, grans[2]), grans[2])
            self.i_sizes = _ladder(self.dims[i], grans[i])
            self.i_whole = tuple(s for s in self.i_sizes if s > granule)
        else:
            self.k_sizes = (w.K,)
            self.i_sizes = self.i_whole = _ladder(granule, grans[i])
        #: per outer size: its first and last tile (balanced splits) and their number
        self.outer_parts = tuple(
            (parts[0][0], parts[-1][0], -(-self.dims[o] // s))
            for s in self.o_sizes
            for parts in (split(self.dims[o], s, grans[o]),)
        )

    def inners(self, kt: int) -> tuple[int, ...]:
        """Inner sizes with K slices of ``kt``, largest first."""
        return self.i_whole if kt == self.w.K else self.i_sizes

    def outers(self, kt: int, isz: int) -> tuple[int, ...]:
        """Outer sizes that fit beside K slices of ``kt`` and inner tiles of ``isz``,
        largest first (none if even the smallest does not fit)."""
        sizes = list(self.grans)
        sizes[2], sizes[self.i_idx] = kt, isz
        if _fit(self.levels, self.w, self.i_idx, sizes) < isz:
            return ()
        lim = _fit(self.levels, self.w, self.o_idx, sizes)
        return tuple(o for o in self.o_sizes if o <= lim)

    def shape(self, kt: int, isz: int, osz: int) -> tuple[int, int, int, int]:
        """(Mt, Nt, Kt, 1)."""
        return (isz, osz, kt, 1) if self.weights_outer else (osz, isz, kt, 1)


#: the families of candidates, (split K, weights outer); K split moves the same bytes in
#: either order, so one order is enough
FAMILIES = ((False, True), (False, False), (True, True))


def batches(t: Target, w: GemmWork) -> tuple[int, ...]:
    """Instance counts ``gt`` > 1 that fit whole, several instances per tile (one tile
    each: the loop order is moot). A fixed ladder too, filtered by fit."""
    levels = t.holds(w.w_role)
    if w.G == 1 or not inner_resident(levels, w, w.M, w.N, True):
        return ()
    return tuple(g for g in _ladder(w.G, 1)[:-1] if inner_resident(levels, w, w.M, w.N, True, g))


def shapes(t: Target, w: GemmWork, weights_outer: bool, split_k: bool):
    """Every candidate (Mt, Nt, Kt, gt) of one family (batched instances ride with
    weights outer, K whole)."""
    fam = Family(t, w, weights_outer, split_k)
    for kt in fam.k_sizes:
        for isz in fam.inners(kt):
            for osz in fam.outers(kt, isz):
                yield fam.shape(kt, isz, osz)
    if weights_outer and not split_k:
        for gt in batches(t, w):
            yield (w.M, w.N, w.K, gt)
