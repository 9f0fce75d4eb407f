"""Multi-fidelity trials: two rungs, and promotion from the cheap one to the full one.

Rungs (numbered, the same in every run; ``rung`` in trials.csv, pareto.csv and configs):

=====  =======  ===============================================================================
rung   name     what a trial's accuracy is measured on
=====  =======  ===============================================================================
0      cheap    a fixed, seeded, label-stratified subset of the val split (``cheap_val``
               images, default 1,000), without QAT
1      full     the whole val split, after ``finetune_steps`` QAT steps when asked for
=====  =======  ===============================================================================

At both rungs activations are calibrated on the same fixed calibration subset of val
(``calib_samples`` images, default 512, label-stratified, seed :data:`CALIB_SEED`; all of val
when it is smaller) and latency, energy and size come from the simulator, so they are exact
at every rung. The final test re-evaluation is always at the full rung.

``mode``: ``multi`` runs every trial at the cheap rung first and promotes the promising ones;
``full`` runs every trial at the full rung only (the behaviour before rungs existed);
``auto`` (default) is ``multi`` when the val split has more than :data:`AUTO_MIN_VAL` images
(the toy digits/MNIST-1D models keep ``full``).

Promotion rule (decided on the driver, in the ask/tell loop, as soon as a trial's cheap result
arrives): the trial is promoted unless an earlier cheap result of the same study is at least
as good in every exact objective (latency, and energy/size when they are objectives) and more
accurate by more than the margin ``z · sqrt(p (1 - p) / n)`` (``z`` = ``margin_se``, default 2;
``p`` the trial's cheap accuracy; ``n`` = ``cheap_val``): two standard errors of an accuracy
measured on ``n`` images. A trial over the latency constraint (exact) or more than the margin
below the accuracy constraint is not promoted either. Optuna is told each trial's values once,
at its last rung (a promoted trial's full-rung values; the others keep their cheap values).

Why this rule and not asynchronous successive halving (ASHA) on the Pareto rank: Optuna's
pruners are single-objective, and ASHA promotes the top 1/eta of a rung by rank, so a trial's
last rung is known only once enough later trials have reported; it would have to stay open
(RUNNING) until then, or be told twice. The dominance rule decides at once from what is known,
so every trial is told exactly once; it needs no eta, and it drops only what is confidently
dominated: latency is exact, and accuracy differences within the subset's sampling noise
never drop a trial, so a configuration that may well be on the full-rung front is measured
there. The Pareto export and the hypervolumes use full-rung trials only (they stay
comparable with single-rung runs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from lowbit.hwsim.errors import LowbitError

from .registry import DEFAULT_FIDELITY, FIDELITY_MODES

__all__ = [
    "AUTO_MIN_VAL",
    "CALIB_SEED",
    "CHEAP",
    "CHEAP_SEED",
    "FIDELITY_MODES",
    "FULL",
    "RUNG_NAMES",
    "CheapResult",
    "Fidelity",
    "Measurement",
    "Promotion",
    "accuracy_margin",
    "decide_promotion",
    "resolve_fidelity",
]

CHEAP, FULL = 0, 1
RUNG_NAMES = ("cheap", "full")
#: ``auto`` uses two rungs above this many val images
AUTO_MIN_VAL = 2000
#: seeds of the two fixed subsets of val (recorded in summary.json and every config)
CALIB_SEED = 0
CHEAP_SEED = 1
DEFAULT_CHEAP_VAL = 1000
DEFAULT_CALIB_SAMPLES = 512
DEFAULT_MARGIN_SE = 2.0


@dataclass(frozen=True, slots=True)
class Fidelity:
    """How trials are measured (resolved against the val split, see :func:`resolve_fidelity`).

    Attributes:
        mode: what was asked for (``auto``, ``multi`` or ``full``).
        rungs: ``(CHEAP, FULL)`` or ``(FULL,)``.
        cheap_val: val images at the cheap rung (None without a cheap rung).
        calib_samples: calibration images (a subset of val); None: the whole val split.
        margin_se: promotion margin in standard errors.
        val_samples: size of the val split (None: not known, e.g. a user metric).
    """

    mode: str = "full"
    rungs: tuple[int, ...] = (FULL,)
    cheap_val: int | None = None
    calib_samples: int | None = None
    margin_se: float = DEFAULT_MARGIN_SE
    val_samples: int | None = None
    cheap_seed: int = CHEAP_SEED
    calib_seed: int = CALIB_SEED

    @property
    def multi(self) -> bool:
        return CHEAP in self.rungs

    @property
    def first_rung(self) -> int:
        return self.rungs[0]

    @property
    def legacy(self) -> bool:
        """Full rung only, calibrated on the whole val split: what runs did before rungs."""
        whole = self.calib_samples is None or self.calib_samples == self.val_samples
        return not self.multi and whole

    def definition(self) -> dict:
        """What makes trials' numbers comparable (a study's definition; not ``mode``)."""
        out = self.to_dict()
        del out["mode"]
        return out

    def to_dict(self) -> dict:
        return {
            "mode": self.mode,
            "rungs": [RUNG_NAMES[r] for r in self.rungs],
            "cheap_val": self.cheap_val,
            "cheap_seed": self.cheap_seed if self.multi else None,
            "calib_samples": self.calib_samples,
            "calib_seed": self.calib_seed,
            "promote_margin_se": self.margin_se if self.multi else None,
            "val_samples": self.val_samples,
        }


def resolve_fidelity(
    *,
    mode: str = DEFAULT_FIDELITY,
    val_samples: int,
    cheap_val: int = DEFAULT_CHEAP_VAL,
    calib_samples: int = DEFAULT_CALIB_SAMPLES,
    margin_se: float = DEFAULT_MARGIN_SE,
) -> Fidelity:
    """The :class:`Fidelity` of a zoo search whose val split has ``val_samples`` images.

    Raises:
        LowbitError: an unknown mode, a non-positive size or margin, or two rungs asked for
            with a cheap subset no smaller than the val split (one line, every problem).
    """
    problems = []
    if mode not in FIDELITY_MODES:
        problems.append(f"fidelity: unknown {mode!r} (valid: {', '.join(FIDELITY_MODES)})")
    for key, value in (("cheap_val", cheap_val), ("calib_samples", calib_samples)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            problems.append(f"{key}: must be a positive integer, got {value!r}")
    if not isinstance(margin_se, (int, float)) or not margin_se >= 0:
        problems.append(f"promote_margin: must be >= 0 standard errors, got {margin_se!r}")
    if not problems and mode == "multi" and cheap_val >= val_samples:
        problems.append(
            f"cheap_val: the cheap rung needs fewer images than the val split ({val_samples}), "
            f"got {cheap_val}"
        )
    if problems:
        raise LowbitError("invalid fidelity settings: " + "; ".join(problems))
    multi = mode == "multi" or (mode == "auto" and val_samples > AUTO_MIN_VAL)
    multi = multi and cheap_val < val_samples
    return Fidelity(
        mode=mode,
        rungs=(CHEAP, FULL) if multi else (FULL,),
        cheap_val=cheap_val if multi else None,
        calib_samples=min(calib_samples, val_samples),
        margin_se=float(margin_se),
        val_samples=val_samples,
    )


@dataclass(frozen=True, slots=True)
class Measurement:
    """What an evaluator measures on (a worker reports it with the reference; every
    deployment config records it).

    Attributes:
        val_samples, test_samples: sizes of the splits (the full rung measures all of them;
            None: not known, a user metric).
        cheap_val_samples: images of the cheap rung (None without one).
        calib_split: ``val`` (zoo models) or ``user`` (the user's calibration batch).
        calib_samples, calib_seed: the calibration subset (seed None for a user batch).
        calib_sha256: SHA-256 of the subset's sorted val indices (int64 little-endian).
        qat_steps, qat_seed: QAT at the full rung (0 steps: none).
        threads: torch threads of a worker (float reductions depend on them).
    """

    val_samples: int | None
    test_samples: int | None
    calib_samples: int
    cheap_val_samples: int | None = None
    calib_split: str = "val"
    calib_seed: int | None = CALIB_SEED
    calib_sha256: str | None = None
    qat_steps: int = 0
    qat_seed: int = 0
    threads: int = 1


@dataclass(frozen=True, slots=True)
class CheapResult:
    """A trial's cheap-rung point: accuracy (maximised) and its exact costs (minimised)."""

    number: int
    accuracy: float
    costs: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class Promotion:
    """A promotion decision and why (recorded as the ``promotion`` user attribute)."""

    promote: bool
    margin: float
    reason: str
    dominated_by: int | None = None


def accuracy_margin(accuracy: float, *, samples: int, z: float) -> float:
    """``z`` standard errors of an accuracy ``accuracy`` measured on ``samples`` images."""
    p = min(1.0, max(0.0, accuracy))
    return z * math.sqrt(p * (1 - p) / samples)


def decide_promotion(
    candidate: CheapResult,
    earlier: Sequence[CheapResult],
    *,
    samples: int,
    z: float,
    max_latency_ms: float | None = None,
    min_accuracy: float | None = None,
) -> Promotion:
    """Promote ``candidate`` (module docstring) given the ``earlier`` cheap results of its
    study; ``costs[0]`` is the latency in ms."""
    margin = accuracy_margin(candidate.accuracy, samples=samples, z=z)
    if max_latency_ms is not None and candidate.costs[0] > max_latency_ms:
        return Promotion(False, margin, "over the latency constraint (exact at every rung)")
    if min_accuracy is not None and candidate.accuracy + margin < min_accuracy:
        return Promotion(
            False, margin, f"below the accuracy constraint by more than the margin {margin:.4f}"
        )
    best: CheapResult | None = None
    for other in earlier:
        if other.number == candidate.number:
            continue
        better = other.accuracy - candidate.accuracy > margin
        if better and all(o <= c for o, c in zip(other.costs, candidate.costs, strict=True)):
            if best is None or other.accuracy > best.accuracy:
                best = other
    if best is None:
        return Promotion(
            True,
            margin,
            f"not dominated by more than the margin {margin:.4f} at the cheap rung",
        )
    return Promotion(
        False,
        margin,
        f"dominated at the cheap rung by trial {best.number}: as fast or faster and "
        f"{best.accuracy - candidate.accuracy:+.4f} accuracy (margin {margin:.4f})",
        dominated_by=best.number,
    )
