"""Lower bounds on a GEMM plan's cycles, for the branch and bound of
:mod:`lowbit.hwsim.engines._plan`: :func:`bounder` for one candidate shape, :func:`floorer` for a
whole family, K slice or row of candidates. Each is a valid bound on the timing of
:mod:`lowbit.hwsim.engines._schedule` (tests/hwsim/test_engines.py checks every candidate of
several targets against its built schedule); the closer they are, the fewer candidates
the search builds."""

from __future__ import annotations

from typing import NamedTuple

from ._target import GemmWork, Target
from ._tiling import Family, split

__all__ = ["bounder", "floorer"]


class _Terms(NamedTuple):
    """What a bound needs of one candidate shape (bytes or cycles as named)."""

    x_w: float  # bytes of the weight operand moved
    x_i: float  # bytes of the inputs moved
    head_w: float  # bytes of the weight operand the first tile prefetches
    head_i: float  # bytes of the inputs the first tile prefetches
    last_out: float  # bytes the last tile writes back (the smallest write-back)
    first_out: float  # bytes the first tile writes back (the largest)
    load_w: float  # K split: bytes of weights the smallest tile loads
    load_i: float  # K split: bytes of inputs the smallest tile loads
    c_first: float  # compute cycles of the first (largest) tile
    c_last: float  # compute cycles of the last (smallest) tile
    outer_only: int  # tiles after the last transfer of a port moving only the outer operand
    inner_only: int  # tiles after the last transfer of a port moving only the inner operand
    per_block: int  # tiles per block of outputs (the K slices)
    # a resident inner operand moves in the first outer iteration, with the next outer
    # tile's shares: (weight bytes, input bytes) its tiles after the first load, and the
    # iteration's tiles (one instance group, K whole); None otherwise
    first_iteration: tuple[float, float, int] | None


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def bounder(t: Target, w: GemmWork, *, scalar: bool = True):
    """``bound(shape, weights_outer, resident, tiles)``: cycles no schedule of the shape can
    beat (the timing of :mod:`lowbit.hwsim.engines._schedule`). Nothing overlaps the first
    tile's prefetch (its tiles, and with K whole its share of the next outer tile). After
    it, the larger of two chains:

    * compute: every tile's compute and handshake, every single-buffered transfer, the
      last write-back; and each other double-buffered write-back, sharing its step with
      the next tile's loads, adds whatever it outlasts the largest tile's compute by;
    * each port: its other transfers (the write-back before the last may overlap the
      last tile's compute), then the compute of the tiles after its last transfer -- one,
      or with K whole a whole outer iteration when the port moves only the outer
      operand (the last iteration prefetches nothing), or all but the first iteration
      when it moves only a resident inner operand (one port: the first iteration's
      loads, then the other iterations' compute);
    * K split with the operands on two ports: each step waits for the slower of its
      tile's two slices.

    Each tile computes its share of the GEMM's folds (as :func:`_gemm_plan.build`), so the
    compute of any n tiles is at least n of the smallest and at least the rest of the
    work less the other tiles at the largest.

    Per-GEMM constants are computed once; ``scalar`` takes the single-port shortcut when
    it applies (the same formulas)."""
    bw = t.bandwidth
    nports = len(bw)
    p_w, p_i, p_o = t.port_of[w.w_role], t.port_of["inputs"], t.port_of["outputs"]
    d_w, d_i, d_o = t.double[w.w_role], t.double["inputs"], t.double["outputs"]
    M, N, K, G = w.M, w.N, w.K, w.G
    gm, gn = t.mapping.granularity()
    gm, gn, gk = min(gm, M), min(gn, N), min(t.gk, K)
    wb, ib = w.wb, 0.0 if w.in_chip else w.ib
    ob = 0.0 if w.out_chip else w.ob
    size_w, size_i, size_o = G * N * K * wb, G * M * K * ib, G * M * N * ob
    work = w.cycles * G
    sync = t.tile_cycles
    # a tile's compute: its share of the GEMM's folds (as in _gemm_plan.build)
    m_folds, n_folds = _cdiv(M, gm), _cdiv(N, gn)
    per_fold = w.cycles / (m_folds * n_folds * _cdiv(K, gk))

    def terms(shape, weights_outer: bool, resident: bool) -> _Terms:
        mt, nt, kt, gt = shape
        sm, sn, sk, sg = split(M, mt, gm), split(N, nt, gn), split(K, kt, gk), split(G, gt)
        # balanced splits: the first tile is the largest, the last the smallest
        fm, fn, fk, fg = sm[0][0], sn[0][0], sk[0][0], sg[0][0]
        lm, ln, lk, lg = sm[-1][0], sn[-1][0], sk[-1][0], sg[-1][0]
        n_m, n_n = -(-M // mt), -(-N // nt)
        whole = kt == K
        head_w, head_i = fg * fk * fn * wb, fg * fk * fm * ib
        if weights_outer:
            x_w = size_w if whole else size_w * n_m
            x_i = size_i if resident else size_i * n_n
            n_o, n_i = n_n, n_m
            if whole and n_n > 1:  # the share of the next outer tile (_gemm_plan.build)
                head_w += fg * K * wb * ln * _cdiv(fm, gm) / m_folds
        else:
            x_i = size_i if whole else size_i * n_n
            x_w = size_w if resident else size_w * n_m
            n_o, n_i = n_m, n_n
            if whole and n_m > 1:
                head_i += fg * K * ib * lm * _cdiv(fn, gn) / n_folds
        first = None
        if whole and resident and n_o > 1 and gt >= G:
            if weights_outer:
                rest_o = K * wb * ln * (1 - _cdiv(fm, gm) / m_folds)
                first = (rest_o, x_i - (head_i if d_i else 0.0), n_i)
            else:
                rest_o = K * ib * lm * (1 - _cdiv(fn, gn) / n_folds)
                first = (x_w - (head_w if d_w else 0.0), rest_o, n_i)
        return _Terms(
            x_w=x_w,
            x_i=x_i,
            head_w=head_w,
            head_i=head_i,
            last_out=lg * lm * ln * ob,
            first_out=fg * fm * fn * ob,
            load_w=0.0 if whole else lg * lk * ln * wb,
            load_i=0.0 if whole else lg * lk * lm * ib,
            c_first=per_fold * fg * _cdiv(fm, gm) * _cdiv(fn, gn) * _cdiv(fk, gk) + sync,
            c_last=per_fold * lg * _cdiv(lm, gm) * _cdiv(ln, gn) * _cdiv(lk, gk) + sync,
            outer_only=(n_i + 1 if n_o > 1 else n_i) if whole else 1,
            inner_only=(n_o - 1) * n_i + 1 if whole and resident else 1,
            per_block=-(-K // kt),
            first_iteration=first,
        )

    def trailing(weights_outer: bool, carries_w: bool, carries_i: bool, e: _Terms) -> int:
        """Tiles computing after the last transfer of a port moving these operands."""
        if carries_w == carries_i:
            return 1
        return e.outer_only if carries_w == weights_outer else e.inner_only

    def after(n: int, tiles: int, e: _Terms) -> float:
        """Compute of the last ``n`` tiles: at least n of the smallest, and at least all
        compute (the shares sum to the GEMM's cycles) less the other tiles at the largest."""
        rest = work + tiles * sync - (tiles - n) * e.c_first
        return rest if rest > n * e.c_last else n * e.c_last

    if scalar and nports == 1:
        bw0 = bw[0]

        def bound1(shape, weights_outer: bool, resident: bool, tiles: int) -> float:
            e = terms(shape, weights_outer, resident)
            head = (e.head_w if d_w else 0.0) + (e.head_i if d_i else 0.0)
            serial = (0.0 if d_w else e.x_w) + (0.0 if d_i else e.x_i)
            prev = over = 0.0
            if not d_o:
                serial += size_o
            elif size_o:
                serial += e.last_out
                prev = e.first_out
                blocks = tiles // e.per_block
                if blocks > 1:
                    load = (e.load_w if d_w else 0.0) + (e.load_i if d_i else 0.0)
                    over = max(0.0, e.last_out / bw0 - e.c_first) + (blocks - 2) * max(
                        0.0, (e.last_out + load) / bw0 - e.c_first
                    )
            rest = work + tiles * sync + serial / bw0 + over
            n = 1 if size_o else trailing(weights_outer, e.x_w > 0, e.x_i > 0, e)
            port = (e.x_w + e.x_i + size_o - head - prev) / bw0 + after(n, tiles, e)
            if e.first_iteration is not None:  # its loads, then the other iterations
                f_w, f_i, n_i = e.first_iteration
                moved = (f_w if d_w else 0.0) + (f_i if d_i else 0.0)
                moved += max(0, n_i - 2) * e.last_out
                port = max(port, moved / bw0 + after(tiles - n_i + 1, tiles, e))
            return head / bw0 + (rest if rest > port else port)

        return bound1

    def bound(shape, weights_outer: bool, resident: bool, tiles: int) -> float:
        e = terms(shape, weights_outer, resident)
        busy = [0.0] * nports
        head = [0.0] * nports
        serial = [0.0] * nports
        busy[p_w] += e.x_w / bw[p_w]
        busy[p_i] += e.x_i / bw[p_i]
        busy[p_o] += size_o / bw[p_o]
        (head if d_w else serial)[p_w] += (e.head_w if d_w else e.x_w) / bw[p_w]
        (head if d_i else serial)[p_i] += (e.head_i if d_i else e.x_i) / bw[p_i]
        over = 0.0
        if not d_o:
            serial[p_o] += size_o / bw[p_o]
        elif size_o:  # as in bound1
            store = e.last_out / bw[p_o]
            serial[p_o] += store
            busy[p_o] -= e.first_out / bw[p_o]
            blocks = tiles // e.per_block
            if blocks > 1:
                load = (e.load_w / bw[p_w] if d_w and p_w == p_o else 0.0) + (
                    e.load_i / bw[p_i] if d_i and p_i == p_o else 0.0
                )
                over = max(0.0, store - e.c_first) + (blocks - 2) * max(
                    0.0, store + load - e.c_first
                )
        port = 0.0
        if shape[2] < K and d_w and d_i and p_w != p_i:
            # K split: every tile prefetches both slices, each on its port, so every step
            # after the first lasts at least the slower of the two (a chain of its own)
            port = (
                sum(
                    cm * cn * ck * cg * max(g * n * k * wb / bw[p_w], g * m * k * ib / bw[p_i])
                    for m, cm in split(M, shape[0], gm)
                    for n, cn in split(N, shape[1], gn)
                    for k, ck in split(K, shape[2], gk)
                    for g, cg in split(G, shape[3])
                )
                - max(head)
                + e.c_last
            )
        for p in range(nports):
            n = 1
            if not (size_o and p == p_o):
                n = trailing(weights_outer, e.x_w > 0 and p == p_w, e.x_i > 0 and p == p_i, e)
            port = max(port, busy[p] - head[p] + after(n, tiles, e))
        return max(head) + max(work + tiles * sync + max(serial) + over, port)

    return bound


def floorer(t: Target, w: GemmWork):
    """``floor(family, kt, isz, start, edges)``: cycles no candidate of ``family`` with K
    slices of ``kt``, inner tiles of ``isz`` (None: any) and an outer size from
    ``family.o_sizes[start:]`` can beat. The compute side runs every tile's compute and
    handshake and every single-buffered transfer one after the other, and with ``edges``
    also waits for the first tile's prefetch before it and the last write-back after it;
    each port moves its operands at least once, and with K split (``kt < K``) each operand
    once per tile of the other. Without ``edges`` (or without ``isz``) the floor only
    grows down the ladder of inner sizes, so the search can walk it lazily; with them, it
    only grows with ``start``."""
    M, N, K, G = w.M, w.N, w.K, w.G
    gm, gn = t.mapping.granularity()
    gm, gn, gk = min(gm, M), min(gn, N), min(t.gk, K)
    wb, ib, ob = w.wb, 0.0 if w.in_chip else w.ib, 0.0 if w.out_chip else w.ob
    work, sync = w.cycles * G, t.tile_cycles
    bw = t.bandwidth
    nports = len(bw)
    p_w, p_i, p_o = t.port_of[w.w_role], t.port_of["inputs"], t.port_of["outputs"]
    d_w, d_i, d_o = t.double[w.w_role], t.double["inputs"], t.double["outputs"]
    # cycles of each operand moved once on its port: all (busy) and single-buffered (serial)
    c_w, c_i = G * N * K * wb / bw[p_w], G * M * K * ib / bw[p_i]
    busy, serial = [0.0] * nports, [0.0] * nports
    for port, double, cycles in (
        (p_w, d_w, c_w),
        (p_i, d_i, c_i),
        (p_o, d_o, G * M * N * ob / bw[p_o]),
    ):
        busy[port] += cycles
        if not double:
            serial[port] += cycles
    # per loop order (weights outer?): (dim, fold block, cycles per element of a prefetched
    # first-tile row or column (0: single-buffered), port, single-buffered?, cycles once)
    # of the inner and of the outer operand
    w_side = (N, gn, wb / bw[p_w] if d_w else 0.0, p_w, not d_w, c_w)
    i_side = (M, gm, ib / bw[p_i] if d_i else 0.0, p_i, not d_i, c_i)
    sides = {True: (i_side, w_side), False: (w_side, i_side)}
    store = ob / bw[p_o] if d_o else 0.0

    def loads(again_o: float, again_i: float, p_out, s_out, p_in, s_in) -> tuple[float, float]:
        """(busiest port, compute-side stall) with extra cycles of outer / inner operand."""
        if nports == 1:
            stall = serial[0] + (again_o if s_out else 0.0) + (again_i if s_in else 0.0)
            return busy[0] + again_o + again_i, stall
        port = list(busy)
        stall = list(serial)
        port[p_out] += again_o
        port[p_in] += again_i
        if s_out:
            stall[p_out] += again_o
        if s_in:
            stall[p_in] += again_i
        return max(port), max(stall)

    def floor(
        fam: Family, kt: int, isz: int | None = None, start: int = 0, edges: bool = True
    ) -> float:
        inner, outer = sides[fam.weights_outer]
        dim, gran, cyc, p_in, s_in, c_in = inner
        _, _, cyc_o, p_out, s_out, c_out = outer
        n_k = -(-K // kt)
        n_i = 1 if isz is None else -(-dim // isz)
        split_k = kt < K
        tiles = n_i * n_k * G  # times the outer tile count
        # K split: the outer operand again for every inner tile after the first
        again = c_out * (n_i - 1) if split_k else 0.0
        port, stall = loads(again, 0.0, p_out, s_out, p_in, s_in)
        if isz is None or not edges:  # at least one outer tile
            compute = work + tiles * sync + stall
            return compute if compute > port else port
        parts = split(dim, isz, gran)
        first_k = split(K, kt, gk)[0][0]
        head = first_k * parts[0][0] * cyc  # the first inner tile
        # K whole: the first tile also prefetches its share of the next outer tile
        share = 0.0 if split_k else K * cyc_o * -(-parts[0][0] // gran) / -(-dim // gran)
        tail = parts[-1][0] * store  # the last write-back, per outer row or column
        best = float("inf")
        for first, last, n_o in fam.outer_parts[start:]:
            if split_k:  # the inner operand again for every outer tile after the first
                port, stall = loads(again, c_in * (n_o - 1), p_out, s_out, p_in, s_in)
            lead = first_k * first * cyc_o + (share * last if n_o > 1 else 0.0)
            # the first tile's loads run in parallel on distinct ports
            prefetch = head + lead if p_in == p_out else max(head, lead)
            compute = work + tiles * n_o * sync + stall + prefetch + tail * last
            f = compute if compute > port else port
            if f < best:
                best = f
        return best

    return floor
