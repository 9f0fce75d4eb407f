"""How one layer of a workload is compressed, as the simulator sees it (:class:`Compression`).

Bit-widths (32 = float), structured keep ratios of output and input channels, N:M and
unstructured sparsity, and a low-rank factorisation rank. A layer of
:mod:`lowbit.hwsim.workload` keeps its dense shapes and carries one of these; the engines
derive the effective shapes from both.

Example:
    >>> Compression(w_bits=4, nm=(2, 4), density=0.5).weight_density
    0.25
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FLOAT_BITS", "Compression"]

#: bit-width that stands for "left in floating point" (fp32).
FLOAT_BITS = 32

_VALID_BITS = set(range(1, 17)) | {FLOAT_BITS}


@dataclass(frozen=True, slots=True)
class Compression:
    """How one layer is compressed. Defaults mean dense W8A8.

    Attributes:
        w_bits: weight bit-width (1-16, or 32 = float).
        a_bits: input-activation bit-width (1-16, or 32 = float).
        out_keep: fraction of output channels / filters kept by structured pruning.
        in_keep: fraction of input channels kept (set when the producer was pruned).
        nm: N:M fine-grained sparsity as ``(n, m)``: n non-zeros in every m weights.
        density: unstructured weight density (1.0 = dense).
        rank: low-rank factorisation rank, or None for a full-rank layer.
    """

    w_bits: int = 8
    a_bits: int = 8
    out_keep: float = 1.0
    in_keep: float = 1.0
    nm: tuple[int, int] | None = None
    density: float = 1.0
    rank: int | None = None

    def __post_init__(self) -> None:
        errors = []
        for key in ("w_bits", "a_bits"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value not in _VALID_BITS:
                errors.append(
                    f"{key}: must be an integer 1-16 or {FLOAT_BITS} (float), got {value!r}"
                )
        for key in ("out_keep", "in_keep", "density"):
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
                errors.append(f"{key}: must be in (0, 1], got {value!r}")
        if self.nm is not None:
            ok = (
                isinstance(self.nm, tuple)
                and len(self.nm) == 2
                and all(isinstance(v, int) for v in self.nm)
                and 0 < self.nm[0] <= self.nm[1]
            )
            if not ok:
                errors.append(f"nm: must be (n, m) with 0 < n <= m, got {self.nm!r}")
        if self.rank is not None and (not isinstance(self.rank, int) or self.rank < 1):
            errors.append(f"rank: must be a positive integer or None, got {self.rank!r}")
        if errors:
            raise ValueError("invalid compression: " + "; ".join(errors))

    @property
    def weight_density(self) -> float:
        """Fraction of weights that are non-zero after N:M and unstructured sparsity."""
        nm = self.nm[0] / self.nm[1] if self.nm else 1.0
        return nm * self.density
