"""One candidate tiling of a GEMM as a plan: its tile schedule (:mod:`._schedule`) and its
off-chip bytes by the reuse rule. The memory model, the loop orders and the traffic rule
are stated in :mod:`lowbit.hwsim.engines._tiling`, which also makes the candidates;
:mod:`lowbit.hwsim.engines._plan` builds them here and keeps the fastest.
"""

from __future__ import annotations

from ._schedule import Block, Tile, closed_form
from ._target import GemmWork, Target
from ._tiling import split

__all__ = ["GemmPlan", "build", "traffic"]


class GemmPlan:
    """A chosen tiling: its schedule, off-chip bytes per role, cycles and tile count."""

    __slots__ = ("schedule", "w_bytes", "i_bytes", "o_bytes", "cycles", "tiles")

    def __init__(self, schedule, w_bytes, i_bytes, o_bytes, cycles, tiles):  # noqa: D107
        self.schedule: Block = schedule
        self.w_bytes, self.i_bytes, self.o_bytes = w_bytes, i_bytes, o_bytes
        self.cycles, self.tiles = cycles, tiles


def _counts(w: GemmWork, shape) -> tuple[int, int, int, int]:
    mt, nt, kt, gt = shape
    return -(-w.M // mt), -(-w.N // nt), -(-w.K // kt), -(-w.G // gt)


def traffic(
    w: GemmWork, shape, weights_outer: bool, resident: bool, reuse: bool | None = None
) -> tuple[float, float]:
    """Off-chip (weight operand, inputs) bytes of a plan by the reuse rule; ``reuse``: the
    outer operand stays on chip for all inner tiles (default: when K is whole)."""
    n_m, n_n, _, _ = _counts(w, shape)
    size_w = w.G * w.N * w.K * w.wb
    size_i = 0.0 if w.in_chip else w.G * w.M * w.K * w.ib
    n_o, n_i = (n_n, n_m) if weights_outer else (n_m, n_n)
    x_o, x_i = (size_w, size_i) if weights_outer else (size_i, size_w)
    x_o *= 1 if (shape[2] == w.K if reuse is None else reuse) else n_i
    x_i *= 1 if resident else n_o
    return (x_o, x_i) if weights_outer else (x_i, x_o)


def _runs(n: int, desc) -> list[list]:
    """[[desc(o), count], ...] for o in range(n), equal neighbours merged; only the first
    and last three positions can differ from the middle ones."""
    keys = sorted({0, 1, 2, n - 3, n - 2, n - 1} & set(range(n)))
    runs: list[list] = []
    done = -1
    for k in keys:
        for d, count in ((desc(done + 1), k - done - 1), (desc(k), 1)):
            if count <= 0:
                continue
            if runs and runs[-1][0] == d:
                runs[-1][1] += count
            else:
                runs.append([d, count])
        done = k
    return runs


def build(
    t: Target, w: GemmWork, shape, weights_outer: bool, resident: bool, reuse: bool = True
) -> GemmPlan:
    """The tile schedule of one candidate and its off-chip bytes (``reuse=False``: even
    with K whole nothing stays on chip between tiles)."""
    M, N, K, G = w.M, w.N, w.K, w.G
    mt, nt, kt, gt = shape
    reuse = reuse and kt == K
    n_m, n_n, _, _ = _counts(w, shape)
    bw = t.bandwidth
    nports = len(bw)
    # (port, overlaps compute) of each operand's transfers
    p_w, d_w = t.port_of[w.w_role], t.double[w.w_role]
    p_i, d_i = t.port_of["inputs"], t.double["inputs"]
    p_o, d_o = t.port_of["outputs"], t.double["outputs"]
    wb = w.wb
    ib = 0.0 if w.in_chip else w.ib
    ob = 0.0 if w.out_chip else w.ob
    zero = (0.0,) * nports
    # a tile's compute is its share of the GEMM's cycles by folds (a partial fold holds the
    # array for a whole fold), plus the per-tile handshake
    gm, gn = t.mapping.granularity()
    gm, gn, gk = min(gm, M), min(gn, N), min(t.gk, K)
    per_fold = w.cycles / ((-(-M // gm)) * (-(-N // gn)) * (-(-K // gk)))
    sync = t.tile_cycles
    if weights_outer:
        D_o, o_parts, i_parts, n_o = N, split(N, nt, gn), split(M, mt, gm), n_n
        g_o, g_i = gn, gm
    else:
        D_o, o_parts, i_parts, n_o = M, split(M, mt, gm), split(N, nt, gn), n_m
        g_o, g_i = gm, gn
    D_i = M + N - D_o
    k_parts = split(K, kt, gk)

    made: dict = {}
    w_cyc, i_cyc, o_cyc = wb / bw[p_w], ib / bw[p_i], ob / bw[p_o]

    def tile(g: int, o_el: float, i_el: float, osz: int, isz: int, ksz: int, out: bool) -> Tile:
        """Computes g·osz·isz·ksz MACs after loading ``o_el`` outer-operand rows (or
        columns) and ``i_el`` inner-operand ones, each ksz long."""
        key = (g, o_el, i_el, osz, isz, ksz, out)
        made_tile = made.get(key)
        if made_tile is not None:
            return made_tile
        w_el, in_el = (o_el, i_el) if weights_outer else (i_el, o_el)
        if nports == 1:
            w_t, i_t = g * w_el * ksz * w_cyc, g * in_el * ksz * i_cyc
            ld = ((w_t if d_w else 0.0) + (i_t if d_i else 0.0),)
            ls = ((0.0 if d_w else w_t) + (0.0 if d_i else i_t),)
        else:
            ldl, lsl = [0.0] * nports, [0.0] * nports
            (ldl if d_w else lsl)[p_w] += g * w_el * ksz * w_cyc
            (ldl if d_i else lsl)[p_i] += g * in_el * ksz * i_cyc
            ld, ls = tuple(ldl), tuple(lsl)
        sd = ss = zero
        if out and ob:
            cyc = g * osz * isz * o_cyc
            if nports == 1:
                vec: tuple = (cyc,)
            else:
                vecl = [0.0] * nports
                vecl[p_o] = cyc
                vec = tuple(vecl)
            sd, ss = (vec, zero) if d_o else (zero, vec)
        folds = (-(-osz // g_o)) * (-(-isz // g_i)) * (-(-ksz // gk))
        made_tile = made[key] = Tile(per_fold * g * folds + sync, ld, sd, ls, ss)
        return made_tile

    def size(o: int) -> int:
        return o_parts[0][0] if o < o_parts[0][1] else o_parts[-1][0]

    def desc(o: int) -> tuple[int, int, bool, bool]:
        """(size, next outer tile's size to prefetch, loads the inner operand, first)."""
        nxt = size(o + 1) if o + 1 < n_o else 0
        return (size(o), nxt, o == 0 or not resident, o == 0)

    inner_folds = -(-D_i // g_i)

    def outer_reuse(g: int, osz: int, nxt: int, load_i: bool, first: bool) -> tuple:
        """K whole: the outer operand stays for all inner tiles; the next outer tile's is
        prefetched alongside them in shares of their compute time (their folds), the first
        one up front."""
        items = []
        for idx, (isz, rep) in enumerate(i_parts):
            share = nxt * (-(-isz // g_i)) / inner_folds
            i_el = isz if load_i else 0
            if idx == 0 and first:
                items.append(tile(g, osz + share, i_el, osz, isz, K, True))
                rep -= 1
            if rep:
                items.append(Block(rep, (tile(g, share, i_el, osz, isz, K, True),)))
        return tuple(items)

    def outer_split(g: int, osz: int) -> tuple:
        """K split: every tile loads both slices; outputs leave after the last one."""
        items = []
        for isz, rep in i_parts:
            ks: list = []
            for ksz, krep in k_parts[:-1]:
                ks.append(Block(krep, (tile(g, osz, isz, osz, isz, ksz, False),)))
            ksz, krep = k_parts[-1]
            if krep > 1:
                ks.append(Block(krep - 1, (tile(g, osz, isz, osz, isz, ksz, False),)))
            ks.append(tile(g, osz, isz, osz, isz, ksz, True))
            items.append(Block(rep, tuple(ks)))
        return tuple(items)

    groups = []
    for g, g_rep in split(G, gt):
        if reuse:
            outers = tuple(Block(c, outer_reuse(g, *d)) for d, c in _runs(n_o, desc))
        else:
            outers = tuple(Block(c, outer_split(g, osz)) for osz, c in o_parts)
        groups.append(Block(g_rep, outers))
    schedule = Block(1, tuple(groups))
    w_bytes, i_bytes = traffic(w, shape, weights_outer, resident, reuse)
    n_tiles = schedule.count
    return GemmPlan(schedule, w_bytes, i_bytes, G * M * N * ob, closed_form(schedule), n_tiles)
