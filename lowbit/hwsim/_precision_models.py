"""Precision models: how ``[compute]`` describes its precision modes, one class per model.

Engines only ever read the explicit table :attr:`lowbit.hwsim.profile.ComputeUnit.precisions`; a
profile may state it entry by entry (``precision_model = "table"``) or derive it from a
bit-flexible datapath's scaling law (``"bitfusion"``, ``"bitserial"``). Explicit
``[[compute.precision]]`` entries are always added to what a model derives (a float mode on
a bit-serial overlay, say); validation rejects a (w, a) pair defined twice.

A model is a :class:`PrecisionModel`: its name, the schema of its sub-table
``[compute.<name>]``, its validation rules and its derivation. :data:`PRECISION_MODELS` is
the one registry: the schema's ``precision_model`` choices and sub-tables
(:mod:`lowbit.hwsim._profile_schema`), the cross-key rules (:mod:`lowbit.hwsim._profile_rules`)
and the builder all read it, so a new model is one class and one
:func:`register_precision_model` call.

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

from collections.abc import Mapping
from typing import ClassVar

from ._profile_walk import check_unique, is_int
from ._schema_types import MIN_RATE, Key, Table
from .profile import Precision

__all__ = [
    "PRECISION_MODELS",
    "PrecisionModel",
    "ScalingLaw",
    "TableModel",
    "BitFusion",
    "BitSerial",
    "register_precision_model",
    "expand_precisions",
    "explicit_precisions",
]


class PrecisionModel:
    """One ``precision_model``: the schema of its sub-table, its rules, its derivation.

    Subclasses set ``name`` and ``table`` (None: no sub-table) and override :meth:`check`
    and :meth:`derive`; both read the raw ``[compute]`` table (``derive``: validated and
    default-filled).
    """

    name: ClassVar[str] = ""
    #: schema of ``[compute.<name>]``; None: the model reads no sub-table
    table: ClassVar[Table | None] = None

    def check(self, compute: Mapping, out: list[str]) -> list[tuple[int, int]]:
        """Append this model's problems with ``compute`` to ``out`` (values the schema walk
        rejected are skipped: one mistake, one message); return the (w_bits, a_bits) pairs
        it derives, which explicit entries may not define again."""
        return []

    def derive(self, compute: Mapping) -> list[Precision]:
        """The precision modes the model derives (explicit entries are added by
        :func:`expand_precisions`)."""
        return []


class TableModel(PrecisionModel):
    """``"table"``: every mode is an explicit ``[[compute.precision]]`` entry."""

    name = "table"

    def check(self, compute: Mapping, out: list[str]) -> list[tuple[int, int]]:
        if not compute.get("precision", []):
            out.append(
                'compute.precision: missing (precision_model = "table" needs at least one '
                "[[compute.precision]] entry)"
            )
        return []


def _law_table(base: str, default_bits: tuple[int, ...]) -> Table:
    """The sub-table of a scaling law: its widths, and the rate and energy of its
    ``base`` (``"w8a8"``) mode."""
    return Table(
        {
            "bits": Key("list[bits]", required=False, default=list(default_bits)),
            f"{base}_macs_per_pe_per_cycle": Key(
                "number", required=False, default=1.0, low=MIN_RATE, high=4096
            ),
            f"{base}_energy_pj_per_mac": Key("number", low=0, high=1e4, unit="pJ"),
        },
        required=False,
    )


class ScalingLaw(PrecisionModel):
    """A bit-flexible datapath: every (w, a) of ``[compute.<name>].bits`` squared, each mode
    scaled from the base mode by :meth:`mode` (rate and energy per MAC)."""

    #: the base mode's prefix in the sub-table's keys (``w8a8_macs_per_pe_per_cycle``)
    base: ClassVar[str] = ""
    default_bits: ClassVar[tuple[int, ...]] = ()

    def bit_problem(self, bits: int) -> str | None:
        """Why the datapath cannot run width ``bits`` (None: it can)."""
        return None

    def mode(self, w_bits: int, a_bits: int, *, base_rate: float, base_energy: float) -> Precision:
        raise NotImplementedError

    def check(self, compute: Mapping, out: list[str]) -> list[tuple[int, int]]:
        name = self.name
        if name not in compute:
            out.append(f'compute.{name}: missing (precision_model = "{name}" needs it)')
        params = compute.get(name)
        if not isinstance(params, dict):
            return []
        bits = params.get("bits", list(self.default_bits))
        if not (isinstance(bits, list) and all(is_int(b) for b in bits)):
            return []
        where = f"compute.{name}.bits"
        if not bits:
            out.append(f"{where}: must not be empty")
        check_unique(bits, where, out)
        for i, b in enumerate(bits):
            problem = self.bit_problem(b)
            if problem is not None:
                out.append(f"{where}[{i}]: {problem}")
        return [(w, a) for w in bits for a in bits]

    def derive(self, compute: Mapping) -> list[Precision]:
        params = compute[self.name]
        rate = float(params[f"{self.base}_macs_per_pe_per_cycle"])
        energy = float(params[f"{self.base}_energy_pj_per_mac"])
        bits = params["bits"]
        return [self.mode(w, a, base_rate=rate, base_energy=energy) for w in bits for a in bits]


class BitFusion(ScalingLaw):
    """BitFusion (Sharma et al., ISCA 2018): bricks fuse to (8/w)·(8/a) MACs of the W8A8 one."""

    name = "bitfusion"
    base = "w8a8"
    #: widths a BitFusion datapath fuses to (powers of two; 16 by temporal fusion)
    fusable_bits: ClassVar[tuple[int, ...]] = (2, 4, 8, 16)
    default_bits = (2, 4, 8)
    table = _law_table(base, default_bits)

    def bit_problem(self, bits: int) -> str | None:
        if bits not in self.fusable_bits:
            return f"must be 2, 4, 8 or 16 (BitBricks fuse in powers of two), got {bits}"
        return None

    def mode(self, w_bits: int, a_bits: int, *, base_rate: float, base_energy: float) -> Precision:
        return Precision(
            w_bits=w_bits,
            a_bits=a_bits,
            macs_per_pe_per_cycle=base_rate * (8 / w_bits) * (8 / a_bits),
            energy_pj_per_mac=base_energy * (w_bits * a_bits) / 64,
        )


class BitSerial(ScalingLaw):
    """BISMO (Umuroglu et al., FPL 2018): w·a bit-plane passes of the W1A1 MAC."""

    name = "bitserial"
    base = "w1a1"
    default_bits = tuple(range(1, 9))
    table = _law_table(base, default_bits)

    def bit_problem(self, bits: int) -> str | None:
        if bits == 32:  # the schema walk allows 32 (float) in a list of bits
            return "bit-serial widths are integers 1-16, got 32"
        return None

    def mode(self, w_bits: int, a_bits: int, *, base_rate: float, base_energy: float) -> Precision:
        return Precision(
            w_bits=w_bits,
            a_bits=a_bits,
            macs_per_pe_per_cycle=base_rate / (w_bits * a_bits),
            energy_pj_per_mac=base_energy * w_bits * a_bits,
        )


#: precision_model name -> its model, in the order the schema lists them
PRECISION_MODELS: dict[str, PrecisionModel] = {}


def register_precision_model(model: PrecisionModel) -> PrecisionModel:
    """Add ``model`` under ``model.name``; the schema, the rules and the builder accept it
    from then on.

    ``model.name`` is also the key of its sub-table in ``[compute]``: it must not be one of
    that table's own keys (``kind``, ``rows``, ``precision`` ...).

    Raises:
        ValueError: the name is empty or already registered.
    """
    name = model.name
    if not isinstance(name, str) or not name:
        raise ValueError(f"precision model {type(model).__name__} has no name")
    if name in PRECISION_MODELS:
        raise ValueError(f"precision model {name!r} is already registered")
    PRECISION_MODELS[name] = model
    return model


for _model in (TableModel(), BitFusion(), BitSerial()):
    register_precision_model(_model)


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
    model = PRECISION_MODELS[compute["precision_model"]]
    modes = model.derive(compute) + explicit_precisions(compute)
    return tuple(sorted(modes, key=lambda p: (p.w_bits, p.a_bits)))
