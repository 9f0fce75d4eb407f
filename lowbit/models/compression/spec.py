"""One layer's compression settings in a plan (:class:`LayerSpec`): the shared
:class:`~lowbit.hwsim.compression.Compression` knobs plus the quantizer settings, and their
JSON form.

A :class:`~lowbit.models.compression.plan.CompressionPlan` maps layer names, patterns and
``_default`` to these. The knobs, their checks and the rules every layer applies (kept
channels, rank of a fraction, pinning) live in :mod:`lowbit.hwsim.compression`, torch-free;
this type narrows the bit-widths to what the torch quantizers implement (2-8), defaults to
float and dense (a plan key says what to change), and adds the settings only the
quantizers read. Every problem is a :class:`PlanError` listing all of them.

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

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from lowbit.hwsim.compression import KNOBS, Compression
from lowbit.hwsim.errors import LowbitError

__all__ = ["DERIVED_KNOBS", "PLAN_KEYS", "QUANTIZER_SETTINGS", "LayerSpec", "PlanError"]

_GRANULARITIES = ("per_channel", "per_tensor")
_CALIBRATIONS = ("minmax", "percentile", "mse")
#: settings only the torch quantizers read (not knobs of the shared spec)
QUANTIZER_SETTINGS = ("weight_granularity", "symmetric", "calibration")
#: knobs the model's graph sets, never a plan (a consumer's kept inputs)
DERIVED_KNOBS = ("in_keep",)
#: the settings of a plan entry, in their JSON order: bits, quantizer settings, then every
#: other knob of :class:`~lowbit.hwsim.compression.Compression` (a new knob joins by itself)
PLAN_KEYS = (
    "w_bits",
    "a_bits",
    *QUANTIZER_SETTINGS,
    *(k for k in KNOBS if k not in ("w_bits", "a_bits", *DERIVED_KNOBS)),
)


class PlanError(LowbitError, ValueError):
    """A compression plan is malformed or does not fit the model.

    ``problems`` lists every problem as ``"field.path: message"``; the message joins them so one
    error tells the user everything to fix.
    """

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("invalid compression plan: " + "; ".join(self.problems))


@dataclass(frozen=True, slots=True)
class LayerSpec(Compression):
    """How to compress one layer. The defaults mean float and dense (no compression).

    The knobs are :class:`~lowbit.hwsim.compression.Compression`'s (``w_bits``/``a_bits``
    2-8 here, ``None`` = float; ``keep``; ``nm``; ``density``; ``rank``; ``rank_fraction``,
    resolved by :func:`lowbit.models.compression.plan.rank_for`); ``in_keep`` is derived
    from the graph and must stay 1 in a plan. Quantizer settings:

    Attributes:
        weight_granularity: one weight scale per output channel or one per tensor.
        symmetric: signed symmetric grid with zero point 0 (else unsigned with a zero point).
        calibration: activation range estimator on the calibration batch.
    """

    BITS: ClassVar[range] = range(2, 9)

    w_bits: int | None = None
    a_bits: int | None = None
    weight_granularity: Literal["per_channel", "per_tensor"] = "per_channel"
    symmetric: bool = True
    calibration: Literal["minmax", "percentile", "mse"] = "minmax"

    @classmethod
    def _error(cls, problems: list[str]) -> LowbitError:
        return PlanError(problems)

    def problems(self) -> list[str]:
        problems = Compression.problems(self)
        if self.in_keep != 1.0:  # DERIVED_KNOBS
            problems.append(
                "in_keep: derived from the producers' keep, not planned: set keep on the producer"
            )
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
        return problems

    def to_dict(self) -> dict[str, Any]:
        """Every plan setting, JSON-ready (``nm`` as a list), in :data:`PLAN_KEYS` order."""
        out = {key: getattr(self, key) for key in PLAN_KEYS}
        if out["nm"] is not None:
            out["nm"] = list(out["nm"])
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LayerSpec:
        """Build from a dict; missing settings take their defaults, unknown ones are an error."""
        if not isinstance(data, dict):
            raise PlanError([f"settings: must be an object, got {data!r}"])
        problems = [
            f"{key}: unknown setting (valid: {', '.join(sorted(PLAN_KEYS))})"
            for key in sorted(set(data) - set(PLAN_KEYS))
        ]
        try:
            spec = cls(**{k: v for k, v in data.items() if k in PLAN_KEYS})
        except PlanError as exc:
            problems.extend(exc.problems)
        if problems:
            raise PlanError(problems)
        return spec
