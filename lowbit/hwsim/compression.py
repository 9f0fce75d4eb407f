"""How one layer is compressed: the typed spec every layer of lowbit shares (:class:`Compression`).

One spelling per knob, from a plan file through the search space to the simulator:

================  ===============================================================================
``w_bits``        weight bit-width 1-16; ``None`` = left in float
``a_bits``        input-activation bit-width 1-16; ``None`` = left in float
``keep``          fraction of the layer's OUTPUT channels kept by structured pruning, in (0, 1]
``in_keep``       fraction of its input channels kept (derived: its producer was pruned)
``nm``            N:M sparsity ``(n, m)``: n non-zeros in every m consecutive reduction weights
``density``       unstructured weight density in (0, 1] (after N:M, if both)
``rank``          low-rank factorisation rank (a positive integer)
``rank_fraction`` the rank as a fraction of the layer's full rank ``min(N, K)``, in (0, 1]
================  ===============================================================================

Who uses it: a simulator layer (:mod:`lowbit.hwsim.workload`) keeps its dense shapes and
carries one, the engines derive the effective GEMMs from both; a compression plan's
:class:`~lowbit.models.compression.spec.LayerSpec` *is* a Compression plus the quantizer
settings only the torch transforms read (so a plan's effective spec goes to the simulator
as it is, :meth:`Compression.knobs`); a search trial's parameters are named
``"<layer>.<knob>"`` after these fields. The rules every layer applies are here too:
:func:`kept_channels`, :meth:`Compression.rank_of` (a fraction -> an integer rank),
:meth:`Compression.pinned` (a pinned first/last layer) and :meth:`Compression.for_matmul`.

Float is ``None``. The cost models need an operand's width: :func:`storage_bits` (and the
``w_storage_bits``/``a_storage_bits`` properties) give :data:`FLOAT_BITS` (32) for float;
that width is what a :class:`~lowbit.hwsim.workload.Gemm` and a simulated layer's result
record. Compatibility: the constructor reads ``32`` as float (``--bits W32A32``, older
code) and the keyword ``out_keep=`` (the old name of ``keep``, deprecated) as ``keep``.

Example:
    >>> Compression(w_bits=4, nm=(2, 4), density=0.5).weight_density
    0.25
    >>> Compression(w_bits=32).w_bits is None
    True
    >>> Compression(rank_fraction=0.25).rank_of(64)
    16
"""

from __future__ import annotations

import warnings
from dataclasses import InitVar, dataclass, fields, replace
from typing import Any, ClassVar, TypeVar

from .errors import LowbitError

__all__ = [
    "FLOAT_BITS",
    "KNOBS",
    "Compression",
    "CompressionError",
    "kept_channels",
    "spec_bits",
    "storage_bits",
]

#: the width of an operand left in floating point (fp32), as the cost models count it
FLOAT_BITS = 32

_C = TypeVar("_C", bound="Compression")


class CompressionError(LowbitError, ValueError):
    """A compression spec is malformed; ``problems`` lists every problem as
    ``"knob: message"``, the message joins them."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("invalid compression: " + "; ".join(self.problems))


def storage_bits(bits: int | None) -> int:
    """The width an operand of ``bits`` occupies in the cost models: :data:`FLOAT_BITS` for
    float (``None``), else ``bits``."""
    return FLOAT_BITS if bits is None else bits


def spec_bits(width_bits: int | None) -> int | None:
    """The spec's spelling of an operand ``width_bits`` wide: ``None`` (float) for
    :data:`FLOAT_BITS` or ``None``, else the bits (the inverse of :func:`storage_bits`)."""
    return None if width_bits is None or width_bits == FLOAT_BITS else width_bits


def kept_channels(n: int, keep: float) -> int:
    """Channels left after keeping a fraction ``keep`` of ``n``: ``max(1, round(n · keep))``
    (the rule of the pruning transform, the simulator and the search space alike)."""
    return max(1, int(round(n * keep)))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_fraction(value: Any) -> bool:
    """A number in (0, 1]."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 < value <= 1.0


#: the knobs of a dense, unpruned, full-rank layer (what pinning and a matmul reset)
_DENSE: dict[str, Any] = {
    "keep": 1.0,
    "in_keep": 1.0,
    "nm": None,
    "density": 1.0,
    "rank": None,
    "rank_fraction": None,
}


@dataclass(frozen=True, slots=True)
class Compression:
    """How one layer is compressed (the knobs are the module docstring's table).

    The defaults mean dense W8A8: a simulator layer without a plan runs at the reference
    precision. (:class:`~lowbit.models.compression.spec.LayerSpec` defaults to float.)
    Every problem is reported at once, as one :class:`CompressionError`.
    """

    #: the bit-widths this type accepts (a subclass may narrow them)
    BITS: ClassVar[range] = range(1, 17)

    w_bits: int | None = 8
    a_bits: int | None = 8
    keep: float = 1.0
    in_keep: float = 1.0
    nm: tuple[int, int] | None = None
    density: float = 1.0
    rank: int | None = None
    rank_fraction: float | None = None
    #: compatibility: the old name of ``keep`` (deprecated; never stored)
    out_keep: InitVar[float | None] = None

    def __post_init__(self, out_keep: float | None) -> None:
        if out_keep is not None:
            warnings.warn(
                "Compression(out_keep=...) is deprecated: the knob is spelled keep",
                DeprecationWarning,
                stacklevel=3,
            )
            object.__setattr__(self, "keep", out_keep)
        for key in ("w_bits", "a_bits"):  # 32 (an fp32 operand's width) is float
            if _is_int(getattr(self, key)):
                object.__setattr__(self, key, spec_bits(getattr(self, key)))
        if isinstance(self.nm, list):  # JSON gives lists
            object.__setattr__(self, "nm", tuple(self.nm))
        problems = self.problems()
        if problems:
            raise self._error(problems)

    @classmethod
    def _error(cls, problems: list[str]) -> LowbitError:
        return CompressionError(problems)

    def problems(self) -> list[str]:
        """Every problem of this spec as ``"knob: message"`` (empty when valid)."""
        problems = []
        low, high = self.BITS[0], self.BITS[-1]
        for key in ("w_bits", "a_bits"):
            value = getattr(self, key)
            if value is not None and not (_is_int(value) and value in self.BITS):
                problems.append(
                    f"{key}: must be an integer {low}-{high} or null (float), got {value!r}"
                )
        for key in ("keep", "in_keep", "density"):
            if not _is_fraction(getattr(self, key)):
                problems.append(f"{key}: must be in (0, 1], got {getattr(self, key)!r}")
        if self.nm is not None:
            ok = (
                isinstance(self.nm, tuple)
                and len(self.nm) == 2
                and all(_is_int(v) for v in self.nm)
                and 0 < self.nm[0] <= self.nm[1]
            )
            if not ok:
                problems.append(f"nm: must be [n, m] with 0 < n <= m, got {self.nm!r}")
        if self.rank is not None and not (_is_int(self.rank) and self.rank >= 1):
            problems.append(f"rank: must be a positive integer or null, got {self.rank!r}")
        if self.rank_fraction is not None and not _is_fraction(self.rank_fraction):
            problems.append(f"rank_fraction: must be in (0, 1] or null, got {self.rank_fraction!r}")
        if self.rank is not None and self.rank_fraction is not None:
            problems.append("rank_fraction: give at most one of rank and rank_fraction")
        return problems

    # --- what the cost models read ------------------------------------------------------
    @property
    def weight_density(self) -> float:
        """Fraction of weights that are non-zero after N:M and unstructured sparsity."""
        nm = self.nm[0] / self.nm[1] if self.nm else 1.0
        return nm * self.density

    @property
    def w_storage_bits(self) -> int:
        """Bits one weight occupies (:func:`storage_bits`: 32 for float)."""
        return storage_bits(self.w_bits)

    @property
    def a_storage_bits(self) -> int:
        """Bits one input activation occupies (:func:`storage_bits`: 32 for float)."""
        return storage_bits(self.a_bits)

    # --- the rules every layer applies --------------------------------------------------
    def rank_of(self, full_rank: int) -> int | None:
        """The integer rank of a layer whose full rank is ``full_rank`` (``min(N, K)``; 0 for
        a layer that cannot be factorised), or None when it stays full rank.

        ``rank_fraction`` f gives ``max(1, round(f · full_rank))``; a rank at or above the
        full rank (it could not reduce the layer) gives None.
        """
        if full_rank < 1:
            return None
        if self.rank is not None:
            rank = self.rank
        elif self.rank_fraction is not None:
            rank = max(1, int(round(self.rank_fraction * full_rank)))
        else:
            return None
        return rank if rank < full_rank else None

    def pinned(self: _C) -> _C:
        """This spec on a layer ``pin_first_last`` pins: 8-bit (a float operand stays float),
        dense, unpruned and full rank; other settings (a quantizer's) are kept."""
        return replace(
            self,
            w_bits=None if self.w_bits is None else 8,
            a_bits=None if self.a_bits is None else 8,
            **_DENSE,
        )

    def for_matmul(self: _C) -> _C:
        """This spec on an activation × activation product: both operands at ``a_bits``, no
        weights to prune, sparsify or factorise."""
        return replace(self, w_bits=self.a_bits, **_DENSE)

    def knobs(self, **changes: Any) -> Compression:
        """The plain :class:`Compression` of this spec (a subclass's extra settings dropped),
        with ``changes`` applied."""
        values = {key: getattr(self, key) for key in KNOBS}
        values.update(changes)
        return Compression(**values)


#: the knobs of a layer, in field order (what :meth:`Compression.knobs` carries)
KNOBS: tuple[str, ...] = tuple(f.name for f in fields(Compression))
