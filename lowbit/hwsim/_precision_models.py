"""Precision models: how ``[compute]`` describes its precision modes.

Engines only ever read the explicit table :attr:`lowbit.hwsim.profile.ComputeUnit.precisions`; a
profile may state it entry by entry (``precision_model = "table"``) or derive it from a
bit-flexible datapath's scaling law (``"bitfusion"``, ``"bitserial"``). Explicit
``[[compute.precision]]`` entries are always added to what a model derives (a float mode on
a bit-serial overlay, say); validation rejects a (w, a) pair defined twice.

Scaling laws (one PE = one MAC slot at the model's base precision):

* ``bitfusion`` -- Sharma et al., "Bit Fusion: Bit-Level Dynamically Composable Architecture
  for Accelerating Deep Neural Networks", ISCA 2018. A Fusion Unit of 16 2-bit BitBricks
  runs one 8x8-bit MAC per cycle, or fuses into (8/w)·(8/a) smaller MACs: 4 at W4A4 or
  W2A8, 16 at W2A2. The same bricks switch every cycle, so energy per MAC scales with the
  bit product: ``E(w, a) = E(8, 8) · (w·a) / 64``. Widths are powers of two (the bricks
  fuse in powers of two); 16 bits runs by temporal fusion at 1/2 rate per 16-bit operand.
* ``bitserial`` -- Umuroglu, Rasnayake, Själander, "BISMO: A Scalable Bit-Serial Matrix
  Multiplication Overlay for Reconfigurable Computing", FPL 2018. A W-bit by A-bit product is
  W·A binary (AND + popcount) products, one bit-plane pair per pass, so
  ``macs_per_pe_per_cycle = base / (w·a)`` with ``base`` binary MACs per PE per cycle, and
  ``E(w, a) = E(1, 1) · w·a``. Any width 1-16 runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from .profile import Precision

__all__ = ["PRECISION_MODELS", "BITFUSION_BITS", "expand_precisions", "explicit_precisions"]

#: widths a BitFusion datapath fuses to (powers of two; 16 by temporal fusion)
BITFUSION_BITS = (2, 4, 8, 16)


def explicit_precisions(compute: Mapping) -> list[Precision]:
    """The ``[[compute.precision]]`` entries as written."""
    return [
        Precision(
            w_bits=int(p["w_bits"]),
            a_bits=int(p["a_bits"]),
            macs_per_pe_per_cycle=float(p["macs_per_pe_per_cycle"]),
            energy_pj_per_mac=float(p["energy_pj_per_mac"]),
        )
        for p in compute["precision"]
    ]


def _bitfusion(compute: Mapping) -> list[Precision]:
    params = compute["bitfusion"]
    bits = params["bits"]
    base = float(params["w8a8_macs_per_pe_per_cycle"])
    energy = float(params["w8a8_energy_pj_per_mac"])
    return [
        Precision(
            w_bits=w,
            a_bits=a,
            macs_per_pe_per_cycle=base * (8 / w) * (8 / a),
            energy_pj_per_mac=energy * (w * a) / 64,
        )
        for w in bits
        for a in bits
    ]


def _bitserial(compute: Mapping) -> list[Precision]:
    params = compute["bitserial"]
    bits = params["bits"]
    base = float(params["w1a1_macs_per_pe_per_cycle"])
    energy = float(params["w1a1_energy_pj_per_mac"])
    return [
        Precision(
            w_bits=w,
            a_bits=a,
            macs_per_pe_per_cycle=base / (w * a),
            energy_pj_per_mac=energy * w * a,
        )
        for w in bits
        for a in bits
    ]


#: precision_model name -> the modes it derives (before explicit entries are added)
PRECISION_MODELS: dict[str, Callable[[Mapping], list[Precision]]] = {
    "table": lambda compute: [],
    "bitfusion": _bitfusion,
    "bitserial": _bitserial,
}


def expand_precisions(compute: Mapping) -> tuple[Precision, ...]:
    """Every precision mode of a validated, default-filled ``[compute]`` table (see
    :func:`lowbit.hwsim._profile_walk.fill_defaults`), sorted by (w_bits, a_bits).

    Example:
        >>> modes = expand_precisions({"precision_model": "bitfusion", "precision": [],
        ...     "bitfusion": {"bits": [2, 8], "w8a8_macs_per_pe_per_cycle": 1.0,
        ...                   "w8a8_energy_pj_per_mac": 0.64}})
        >>> [(p.w_bits, p.a_bits, p.macs_per_pe_per_cycle) for p in modes]
        [(2, 2, 16.0), (2, 8, 4.0), (8, 2, 4.0), (8, 8, 1.0)]
    """
    model = compute["precision_model"]
    modes = PRECISION_MODELS[model](compute) + explicit_precisions(compute)
    return tuple(sorted(modes, key=lambda p: (p.w_bits, p.a_bits)))
