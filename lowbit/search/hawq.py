"""HAWQ-style Hessian-aware bit allocation (the baseline every mixed-precision paper cites).

Sensitivity of layer ``l`` at weight bits ``b`` (HAWQ-V2, Dong et al., NeurIPS 2020; the
same form is the ILP objective of HAWQ-V3, Yao et al., ICML 2021):

    Ω_l(b) = Tr(H_l) / n_l · ‖Q_b(W_l) − W_l‖²

where ``H_l`` is the Hessian of the training loss w.r.t. the layer's weights (``n_l`` of
them) and ``Q_b`` the weight quantizer (symmetric, per output channel, as the plan uses).
``Tr(H_l)`` is estimated with Hutchinson's method (Hutchinson 1990; used by HAWQ-V2/PyHessian,
Yao et al. 2020): ``Tr(H) ≈ mean_i vᵢᵀ H vᵢ`` over Rademacher vectors ``vᵢ``, with ``H v``
from double back-propagation. One ``v`` over all layers at once gives every diagonal block's
trace: ``E[v_lᵀ (H v)_l] = Tr(H_ll)`` because the cross terms have zero mean.

Bits are then assigned by a multiple-choice knapsack (exact dynamic programme over a fine
latency grid): minimise Σ Ω_l(b_l) subject to Σ latency_l(b_l) ≤ budget, where the
per-layer latencies come from the simulator. Budgets are taken at 0.25 / 0.5 / 0.75 of the
way from the all-lowest-bits latency to the all-8-bit latency. As in HAWQ-V3's INT4/INT8
setting, a layer's activation bits follow its weight bits (the smallest activation width the
target runs that is ≥ the weight bits); attention products (no weights) stay at 8 bits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "BUDGET_FRACTIONS",
    "HawqInputs",
    "bit_options",
    "hutchinson_traces",
    "weight_perturbations",
    "sensitivities",
    "allocate",
    "hawq_assignments",
]

BUDGET_FRACTIONS = (0.25, 0.5, 0.75)


@dataclass(frozen=True, slots=True)
class HawqInputs:
    """What the allocation needs, measured by a worker. Options are keyed ``"w/a"``."""

    layers: tuple[str, ...]
    options: tuple[tuple[int, int], ...]
    traces: dict[str, float]
    params: dict[str, int]
    perturbation: dict[str, dict[int, float]]
    latency_ms: dict[str, dict[str, float]]
    total_latency_ms: dict[str, float]


def bit_options(w_bits: Sequence[int], a_bits: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """(w, a) pairs: each weight width with the smallest activation width ≥ it (else the
    widest), e.g. CPU (a only 8): (2,8), (4,8), (8,8); BitFusion: (2,2), (4,4), (8,8)."""
    out = []
    for w in sorted(w_bits):
        wider = [a for a in sorted(a_bits) if a >= w]
        out.append((w, wider[0] if wider else max(a_bits)))
    return tuple(out)


def hutchinson_traces(
    model,
    x,
    y,
    *,
    layers: Sequence[str],
    probes: int = 32,
    seed: int = 0,
    batch: int = 512,
) -> tuple[dict[str, float], dict[str, int]]:
    """Hutchinson estimates of Tr(H_l) of the cross-entropy loss on a batch of ``(x, y)``
    for each layer's weight; also returns each layer's weight count."""
    import torch
    import torch.nn.functional as F

    modules = dict(model.named_modules())
    missing = [name for name in layers if name not in modules]
    if missing:
        raise ValueError(f"hutchinson_traces: no layers {missing} in the model")
    weights = [modules[name].weight for name in layers]
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(x), generator=gen)[:batch]
    was_training = model.training
    model.eval()  # BatchNorm in inference mode: the loss the deployed model sees
    try:
        loss = F.cross_entropy(model(x[idx]), y[idx])
        grads = torch.autograd.grad(loss, weights, create_graph=True)
        sums = [0.0] * len(weights)
        for _ in range(probes):
            vs = [torch.randint(0, 2, w.shape, generator=gen).to(w.dtype) * 2 - 1 for w in weights]
            hvs = torch.autograd.grad(grads, weights, grad_outputs=vs, retain_graph=True)
            for i, (v, hv) in enumerate(zip(vs, hvs, strict=True)):
                sums[i] += float((v * hv).sum())
    finally:
        model.train(was_training)
    traces = {name: s / probes for name, s in zip(layers, sums, strict=True)}
    counts = {name: int(w.numel()) for name, w in zip(layers, weights, strict=True)}
    return traces, counts


def weight_perturbations(
    model, *, layers: Sequence[str], bits: Sequence[int]
) -> dict[str, dict[int, float]]:
    """‖Q_b(W) − W‖² per layer and bit-width (symmetric per-channel, as compress() does)."""
    from lowbit.models.compression.quant import quantize_weight

    modules = dict(model.named_modules())
    out: dict[str, dict[int, float]] = {}
    for name in layers:
        w = modules[name].weight.detach()
        out[name] = {}
        for b in bits:
            wq = quantize_weight(w, bits=b, symmetric=True, per_channel=True)[0]
            out[name][b] = float(((wq - w) ** 2).sum())
    return out


def sensitivities(inputs: HawqInputs) -> dict[str, dict[str, float]]:
    """Ω_l(option) = max(Tr(H_l), 0) / n_l · ‖Q_w(W_l) − W_l‖², options keyed ``"w/a"``.

    A negative trace estimate (possible at a saddle with few probes) is clipped to 0.
    """
    out = {}
    for name in inputs.layers:
        scale = max(inputs.traces[name], 0.0) / max(inputs.params[name], 1)
        out[name] = {f"{w}/{a}": scale * inputs.perturbation[name][w] for w, a in inputs.options}
    return out


def allocate(
    cost: Mapping[str, Mapping[str, float]],
    latency: Mapping[str, Mapping[str, float]],
    budget: float,
    *,
    resolution: int = 2000,
) -> dict[str, str] | None:
    """Multiple-choice knapsack: one option per layer minimising Σ cost subject to
    Σ latency ≤ ``budget``. None if nothing fits.

    Exact dynamic programme over a grid: each layer's latency is taken as its excess over
    that layer's fastest option (so the all-fastest choice is always representable), and the
    excess is rounded UP to cells of ``(budget − Σ fastest) / resolution`` — a returned
    assignment never exceeds the budget.
    """
    if not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"resolution must be a positive integer, got {resolution!r}")
    names = list(cost)
    floor = {n: min(latency[n][o] for o in cost[n]) for n in names}
    spare = budget - sum(floor.values())
    if spare < -1e-12 * max(1.0, abs(budget)):
        return None
    if not names:
        return {}
    spare = max(spare, 0.0)
    step = spare / resolution if spare > 0 else 1.0
    inf = math.inf
    # best[c] = (total cost, choices) using at most c grid cells of excess latency
    best: list[tuple[float, tuple[str, ...]]] = [(0.0, ())] * (resolution + 1)
    for name in names:
        nxt: list[tuple[float, tuple[str, ...]]] = [(inf, ())] * (resolution + 1)
        for option, c in cost[name].items():
            excess = latency[name][option] - floor[name]
            cells = math.ceil(excess / step - 1e-9) if excess > 0 else 0
            if cells > resolution or (spare == 0 and excess > 0):
                continue
            for used in range(cells, resolution + 1):
                prev_cost, prev = best[used - cells]
                total = prev_cost + c
                if total < nxt[used][0]:
                    nxt[used] = (total, (*prev, option))
        best = nxt
    total, choice = best[resolution]
    if total == inf:
        return None
    return dict(zip(names, choice, strict=True))


def hawq_assignments(
    inputs: HawqInputs, *, fractions: Sequence[float] = BUDGET_FRACTIONS
) -> list[tuple[float, float, dict[str, str]]]:
    """(fraction, latency budget ms, layer -> option) for each budget fraction.

    Budget = L_low + f·(L_8 − L_low) on the searchable layers' summed latency, with L_low /
    L_8 the sums at the lowest / the 8-bit option (other layers' latency is constant).
    """
    sens = sensitivities(inputs)
    keys = [f"{w}/{a}" for w, a in inputs.options]
    low, high = keys[0], keys[-1]
    lat = inputs.latency_ms
    l_low = sum(lat[name][low] for name in inputs.layers)
    l_high = sum(lat[name][high] for name in inputs.layers)
    out = []
    for f in fractions:
        budget = l_low + f * (l_high - l_low)
        assignment = allocate(sens, lat, budget)
        if assignment is not None:
            out.append((f, budget, assignment))
    return out
