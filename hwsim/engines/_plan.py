"""Choosing a GEMM's tiling: candidates from :func:`hwsim.engines._tiling.shapes`, a lower
bound on each, and the fewest cycles among them (exactly: a candidate is built only while
its bound can still win). Why the choice is monotone in bits is explained in
:mod:`hwsim.engines._tiling`."""

from __future__ import annotations

from ._target import GemmWork, Target
from ._tiling import GemmPlan, build, inner_resident, shapes, split

__all__ = ["plan_gemm", "bounder"]


def bounder(t: Target, w: GemmWork, *, scalar: bool = True):
    """``bound(shape, weights_outer, resident, tiles)``: cycles no schedule of the shape can
    beat. Nothing overlaps the first tile's prefetch; after it, every tile's compute and
    handshake, every single-buffered transfer and the last write-back run one after the
    other, and each port still has its other transfers to make. Per-GEMM constants are
    computed once; ``scalar`` takes the single-port shortcut when it applies."""
    bw = t.bandwidth
    nports = len(bw)
    ports = (t.port_of[w.w_role], t.port_of["inputs"], t.port_of["outputs"])
    double = (t.double[w.w_role], t.double["inputs"], t.double["outputs"])
    M, N, K, G = w.M, w.N, w.K, w.G
    gm, gn = t.mapping.granularity()
    gm, gn, gk = min(gm, M), min(gn, N), min(t.gk, K)
    wb, ib = w.wb, 0.0 if w.in_chip else w.ib
    ob = 0.0 if w.out_chip else w.ob
    size_w, size_i, size_o = G * N * K * wb, G * M * K * ib, G * M * N * ob
    work = w.cycles * G
    sync = t.tile_cycles
    d_w, d_i, d_o = double

    def edges(shape):
        """Sizes of the first and the last tile (balanced splits, :func:`split`)."""
        mt, nt, kt, gt = shape
        sm, sn, sk, sg = split(M, mt, gm), split(N, nt, gn), split(K, kt, gk), split(G, gt)
        first = (sm[0][0], sn[0][0], sk[0][0], sg[0][0])
        last = (sm[-1][0], sn[-1][0], sg[-1][0])
        return first, last

    def moved(shape, weights_outer: bool, resident: bool):
        mt, nt, kt, _ = shape
        n_m, n_n = -(-M // mt), -(-N // nt)
        if weights_outer:
            x_w = size_w if kt == K else size_w * n_m
            x_i = size_i if resident else size_i * n_n
        else:
            x_i = size_i if kt == K else size_i * n_n
            x_w = size_w if resident else size_w * n_m
        return x_w, x_i

    if scalar and nports == 1:
        bw0 = bw[0]
        serial_o = 0.0 if d_o else size_o

        def bound1(shape, weights_outer: bool, resident: bool, tiles: int) -> float:
            x_w, x_i = moved(shape, weights_outer, resident)
            (fm, fn, fk, fg), (lm, ln, lg) = edges(shape)
            head = fg * fk * ((fn * wb if d_w else 0.0) + (fm * ib if d_i else 0.0))
            serial = serial_o + (0.0 if d_w else x_w) + (0.0 if d_i else x_i)
            if d_o:
                serial += lg * lm * ln * ob
            busy = x_w + x_i + size_o
            rest = work + tiles * sync + serial / bw0
            other = (busy - head) / bw0
            return head / bw0 + (rest if rest > other else other)

        return bound1

    p_w, p_i, p_o = ports
    bw_w, bw_i, bw_o = bw[p_w], bw[p_i], bw[p_o]
    out_busy = size_o / bw_o

    def bound(shape, weights_outer: bool, resident: bool, tiles: int) -> float:
        x_w, x_i = moved(shape, weights_outer, resident)
        (fm, fn, fk, fg), (lm, ln, lg) = edges(shape)
        busy = [0.0] * nports
        head = [0.0] * nports
        serial = [0.0] * nports
        busy[p_w] += x_w / bw_w
        busy[p_i] += x_i / bw_i
        busy[p_o] += out_busy
        if d_w:
            head[p_w] += fg * fn * fk * wb / bw_w
        else:
            serial[p_w] += x_w / bw_w
        if d_i:
            head[p_i] += fg * fm * fk * ib / bw_i
        else:
            serial[p_i] += x_i / bw_i
        if d_o:  # the last tile's write-back follows all compute
            serial[p_o] += lg * lm * ln * ob / bw_o
        else:
            serial[p_o] += out_busy
        rest = max([b - h for b, h in zip(busy, head, strict=True)])
        return max(head) + max(work + tiles * sync + max(serial), rest)

    return bound


def plan_gemm(t: Target, w: GemmWork) -> GemmPlan:
    """The plan with the fewest cycles among the candidates (:func:`shapes`): they are
    visited by increasing lower bound (:func:`bounder`) and built only while that bound is
    below the best cycles so far, so the result is the exact minimum. Among plans with
    equal cycles, the fewer bytes win if both were built."""
    levels = t.holds(w.w_role)
    bound = bounder(t, w)
    M, N, K, G = w.M, w.N, w.K, w.G
    candidates = []
    # K split moves the same bytes in either order: one order is enough
    for split_k, weights_outer in ((False, True), (False, False), (True, True)):
        for shape in shapes(t, w, weights_outer, split_k):
            mt, nt, kt, gt = shape
            resident = kt == K and inner_resident(levels, w, mt, nt, weights_outer, gt)
            tiles = -(-M // mt) * -(-N // nt) * -(-K // kt) * -(-G // gt)
            lb = bound(shape, weights_outer, resident, tiles)
            candidates.append((lb, len(candidates), shape, weights_outer, resident))
    if not candidates:  # nothing fits: fold-sized tiles, every operand at every use
        gm, gn = t.mapping.granularity()
        shape = (min(gm, w.M), min(gn, w.N), min(t.gk, w.K), 1)
        return build(t, w, shape, True, False, reuse=False)
    candidates.sort()
    best: GemmPlan | None = None
    for lb, _, shape, weights_outer, resident in candidates:
        if best is not None and lb >= best.cycles:
            break
        plan = build(t, w, shape, weights_outer, resident)
        if best is None or (plan.cycles, plan.w_bytes + plan.i_bytes) < (
            best.cycles,
            best.w_bytes + best.i_bytes,
        ):
            best = plan
    return best
