"""One layer's compression settings (:class:`LayerSpec`): every knob, its range, its JSON form.

A :class:`~lowbit.models.compression.plan.CompressionPlan` maps layer names, patterns and
``_default`` to these; a new compression knob is a field here (checked in ``__post_init__``)
plus the transform that reads it. Every problem is a :class:`PlanError` listing all of them.

Example:
    >>> LayerSpec(w_bits=4, a_bits=8, keep=0.5).to_dict()["keep"]
    0.5
    >>> try:
    ...     LayerSpec.from_dict({"w_bits": 9, "bits": 4})
    ... except PlanError as exc:
    ...     [p.split(":")[0] for p in exc.problems]
    ['bits', 'w_bits']
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal

from lowbit.hwsim.errors import LowbitError

__all__ = ["LayerSpec", "PlanError"]

_BITS = range(2, 9)
_GRANULARITIES = ("per_channel", "per_tensor")
_CALIBRATIONS = ("minmax", "percentile", "mse")


class PlanError(LowbitError, ValueError):
    """A compression plan is malformed or does not fit the model.

    ``problems`` lists every problem as ``"field.path: message"``; the message joins them so one
    error tells the user everything to fix.
    """

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("invalid compression plan: " + "; ".join(self.problems))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_fraction(value: Any) -> bool:
    """A number in (0, 1]."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 < value <= 1.0


@dataclass(frozen=True, slots=True)
class LayerSpec:
    """How to compress one layer. The defaults mean float and dense (no compression).

    Attributes:
        w_bits: weight bit-width 2-8, or None to leave weights in float.
        a_bits: input-activation bit-width 2-8 (both operands of a MatMulSite), or None.
        weight_granularity: one weight scale per output channel or one per tensor.
        symmetric: signed symmetric grid with zero point 0 (else unsigned with a zero point).
        calibration: activation range estimator on the calibration batch.
        keep: fraction of the layer's OUTPUT channels kept by structured pruning, in (0, 1];
            kept count = ``models.prune.kept_channels(n, keep) = max(1, round(n * keep))``.
        nm: N:M sparsity ``(n, m)``: n non-zeros in every m consecutive reduction weights.
        density: unstructured magnitude-pruning density in (0, 1] (after N:M, if both).
        rank: low-rank factorisation rank (a positive integer below the full rank).
        rank_fraction: rank as a fraction of the full rank, in (0, 1] (see
            :func:`lowbit.models.compression.plan.rank_for`).
    """

    w_bits: int | None = None
    a_bits: int | None = None
    weight_granularity: Literal["per_channel", "per_tensor"] = "per_channel"
    symmetric: bool = True
    calibration: Literal["minmax", "percentile", "mse"] = "minmax"
    keep: float = 1.0
    nm: tuple[int, int] | None = None
    density: float = 1.0
    rank: int | None = None
    rank_fraction: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.nm, list):  # JSON gives lists
            object.__setattr__(self, "nm", tuple(self.nm))
        problems = []
        for key in ("w_bits", "a_bits"):
            value = getattr(self, key)
            if value is not None and not (_is_int(value) and value in _BITS):
                problems.append(f"{key}: must be an integer 2-8 or null (float), got {value!r}")
        if self.weight_granularity not in _GRANULARITIES:
            problems.append(
                f"weight_granularity: must be one of {list(_GRANULARITIES)}, "
                f"got {self.weight_granularity!r}"
            )
        if not isinstance(self.symmetric, bool):
            problems.append(f"symmetric: must be true or false, got {self.symmetric!r}")
        if self.calibration not in _CALIBRATIONS:
            problems.append(
                f"calibration: must be one of {list(_CALIBRATIONS)}, got {self.calibration!r}"
            )
        for key in ("keep", "density"):
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
        if problems:
            raise PlanError(problems)

    def to_dict(self) -> dict[str, Any]:
        """Every field, JSON-ready (``nm`` as a list)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        if out["nm"] is not None:
            out["nm"] = list(out["nm"])
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LayerSpec:
        """Build from a dict; missing fields take their defaults, unknown ones are an error."""
        if not isinstance(data, dict):
            raise PlanError([f"settings: must be an object, got {data!r}"])
        known = {f.name for f in fields(cls)}
        problems = [
            f"{key}: unknown setting (valid: {', '.join(sorted(known))})"
            for key in sorted(set(data) - known)
        ]
        try:
            spec = cls(**{k: v for k, v in data.items() if k in known})
        except PlanError as exc:
            problems.extend(exc.problems)
        if problems:
            raise PlanError(problems)
        return spec
