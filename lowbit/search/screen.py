"""Sensitivity screen: one-at-a-time measurements that narrow the space before a search.

Without finetuning, much of a per-layer space is at chance accuracy: 2-bit weights or
activations, rank 0.5 or keep 0.5 on a sensitive layer collapse the model on their own (on
fashion-resnet, 60-trial NSGA-II searches spent a fifth to a quarter of their trials at
chance accuracy; 66-100 % of the trials holding 2-bit activations, rank 0.5 or keep 0.5 on
any one layer were there). A search that keeps drawing them wastes its budget, and the
joint space, with more such choices, wastes more.

The screen measures, for every searched setting of every layer, the configuration that
differs from the base (uniform W8A8, dense, full rank; the largest bits the target offers)
in that one setting, at the search's first rung (the cheap val subset), and drops a choice
whose one-at-a-time accuracy is below the floor by more than the rung's noise margin
(``z`` standard errors, as the promotion rule: :func:`lowbit.search.fidelity.accuracy_margin`).
Compression errors compound, so a choice that alone breaks the floor is not part of a
feasible configuration. A setting's choices are ordered from the mildest to the harshest
(4 → 2 bits, keep 0.875 → 0.75 → … → 0.25), and accuracy falls along that order, so the
mildest dropped choice is found by bisection: about log2(n + 1) measurements for n choices,
all parameters in parallel rounds on the pool; the choices harsher than a dropped one are
dropped, the milder than a kept one kept, unmeasured. The base choice is never dropped.

The floor is the search's accuracy constraint (``min_accuracy``); a screen asked for
without a constraint uses the base's accuracy minus :data:`DEFAULT_DROP`. ``auto`` (the
default) screens when there is a constraint. Every searched method (joint, quant-only,
random) searches the screened space; the fixed baselines (uniform, HAWQ) keep the full one.
The result is written to ``screen.json`` in the run directory and reused when the run
resumes with the same space, floor and rung; ``summary.json`` records it under ``screen``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from lowbit.hwsim.errors import LowbitError

from .codesign import HW_PREFIX
from .evaluator import TrialRequest
from .fidelity import Fidelity, accuracy_margin
from .registry import SCREEN_MODES
from .space import DENSE, SearchSpace

__all__ = [
    "DEFAULT_DROP",
    "SCREEN_MODES",
    "Screen",
    "ScreenEntry",
    "base_params",
    "load_or_screen",
    "screen",
    "screen_summary",
]

#: the floor of a screen asked for without an accuracy constraint: base accuracy minus this
DEFAULT_DROP = 0.05
SCREEN_FILE = "screen.json"
SCREEN_VERSION = 2


@dataclass(frozen=True, slots=True)
class ScreenEntry:
    """One choice of one parameter: its one-at-a-time accuracy and simulated latency (None:
    not measured, implied by a harsher choice kept or a milder one dropped) and whether it
    is kept."""

    param: str
    value: Any
    accuracy: float | None
    kept: bool
    latency_ms: float | None = None


@dataclass(frozen=True, slots=True)
class Screen:
    """A screen's result; :meth:`apply` narrows a space to the kept choices."""

    floor: float
    margin_se: float
    rung: int
    samples: int
    base_accuracy: float
    entries: tuple[ScreenEntry, ...]
    evaluations: int
    seconds: float
    key: str
    base_latency_ms: float

    @property
    def dropped(self) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        for e in self.entries:
            if not e.kept:
                out.setdefault(e.param, []).append(e.value)
        return out

    def apply(self, space: SearchSpace) -> SearchSpace:
        """``space`` without the dropped choices (the other choices keep their order)."""
        dropped = self.dropped
        layers = []
        for layer in space.layers:
            changes = {}
            for setting, values in layer.choices().items():
                gone = dropped.get(f"{layer.name}.{setting}", [])
                if gone:
                    changes[setting] = tuple(v for v in values if v not in gone)
            layers.append(replace(layer, **changes) if changes else layer)
        return replace(space, layers=tuple(layers))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["version"] = SCREEN_VERSION
        data["dropped"] = self.dropped
        return data

    @classmethod
    def from_dict(cls, data: Any) -> Screen:
        """A screen from its JSON form (``screen.json``); ValueError listing every field
        that is missing or of the wrong type, with its key path."""
        if not isinstance(data, dict) or data.get("version") != SCREEN_VERSION:
            version = data.get("version") if isinstance(data, dict) else None
            raise ValueError(f"screen version {version!r} is not supported")
        problems = [f"{k}: not a finite number" for k in _NUMBERS if not _finite(data.get(k))]
        problems += [f"{k}: not a count" for k in _COUNTS if not _count(data.get(k))]
        if not isinstance(data.get("key"), str):
            problems.append("key: not a string")
        entries = data.get("entries")
        if not isinstance(entries, list):
            problems.append("entries: not a list")
            entries = []
        for i, e in enumerate(entries):
            problems += [f"entries[{i}].{p}" for p in _entry_problems(e)]
        if problems:
            raise ValueError("screen: " + "; ".join(problems))
        fields = {k: data[k] for k in cls.__slots__ if k != "entries"}
        return cls(entries=tuple(ScreenEntry(**e) for e in entries), **fields)


_NUMBERS = ("floor", "margin_se", "base_accuracy", "seconds", "base_latency_ms")
_COUNTS = ("rung", "samples", "evaluations")
_ENTRY_FIELDS = ("param", "value", "accuracy", "kept", "latency_ms")


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _entry_problems(entry: Any) -> list[str]:
    """What is wrong with one stored :class:`ScreenEntry` (empty when nothing)."""
    if not isinstance(entry, dict) or set(entry) != set(_ENTRY_FIELDS):
        return [f"fields: expected {', '.join(_ENTRY_FIELDS)}"]
    out = []
    if not isinstance(entry["param"], str) or "." not in entry["param"]:
        out.append("param: not a '<layer>.<setting>' name")
    if not (_finite(entry["value"]) or isinstance(entry["value"], str)):
        out.append("value: not a number or a string")
    if not isinstance(entry["kept"], bool):
        out.append("kept: not true or false")
    out += [
        f"{k}: not a finite number or null"
        for k in ("accuracy", "latency_ms")
        if entry[k] is not None and not _finite(entry[k])
    ]
    return out


def _severity(setting: str, value: Any) -> float:
    """Larger is harsher: fewer bits, lower keep / rank, sparser N:M."""
    if setting == "nm":
        if value == DENSE:
            return 0.0
        n, m = (int(v) for v in str(value).split(":"))
        return 1.0 - n / m
    return -float(value)


def base_params(space: SearchSpace) -> dict[str, Any]:
    """The screen's base: uniform at the widest bits the space offers (W8A8 on most
    targets), dense, full rank."""
    return space.uniform_params(max(space.w_bits), max(space.a_bits))


def _chains(space: SearchSpace, base: dict[str, Any]) -> list[list[tuple[str, Any]]]:
    """Per searched parameter, its non-base choices from the mildest to the harshest."""
    out = []
    for name, dist in space.distributions().items():
        if name.startswith(HW_PREFIX):
            continue
        setting = name.rsplit(".", 1)[1]
        others = [v for v in dist.choices if v != base[name]]
        others.sort(key=lambda v: _severity(setting, v))
        if others:
            out.append([(name, v) for v in others])
    return out


def screen_key(space: SearchSpace, *, floor: float | None, fidelity: Fidelity) -> str:
    """What a stored screen must match to be reused: the space, the floor asked for (None:
    the default below the base) and the rung."""
    asked = -1.0 if floor is None else float(floor)
    data = {"space": space.to_dict(), "floor": asked, "fidelity": fidelity.definition()}
    return json.dumps(data, sort_keys=True)


def screen(
    *,
    space: SearchSpace,
    pool: Any,
    floor: float | None,
    fidelity: Fidelity,
) -> Screen:
    """Measure the one-at-a-time configurations of ``space`` on ``pool``'s workers (module
    docstring); ``floor`` None: the base's accuracy minus :data:`DEFAULT_DROP`."""
    start = time.perf_counter()
    rung = fidelity.first_rung
    base = base_params(space)
    (base_out,) = pool.map([TrialRequest(-1, space.settings(base), rung=rung)])
    if base_out.failed:
        raise RuntimeError(f"screen: the base configuration failed: {base_out.error}")
    samples = int(base_out.samples or 1)
    base_acc = float(base_out.accuracy)
    level = base_acc - DEFAULT_DROP if floor is None else float(floor)
    z = fidelity.margin_se
    chains = _chains(space, base)
    # the mildest choice of every parameter first (the one a search uses most, and the
    # screen's warm starts need measured), then bisection, all parameters at once: [lo, hi)
    # is still open; choices before lo are kept (measured or implied by a harsher kept
    # one), from hi on dropped
    bounds = [[0, len(chain)] for chain in chains]
    measured: dict[tuple[str, Any], tuple[float, float] | None] = {}
    evaluations = 1
    first = True
    while True:
        batch = [
            (i, lo if first else (lo + hi) // 2) for i, (lo, hi) in enumerate(bounds) if lo < hi
        ]
        first = False
        if not batch:
            break
        requests = [
            TrialRequest(-1, space.settings({**base, chains[i][k][0]: chains[i][k][1]}), rung=rung)
            for i, k in batch
        ]
        outcomes = pool.map(requests)
        evaluations += len(requests)
        for (i, k), out in zip(batch, outcomes, strict=True):
            if out.failed:  # not the screen's to judge: the search records the failure
                measured[chains[i][k]] = None
                bounds[i][0] = k + 1
                continue
            acc = float(out.accuracy)
            measured[chains[i][k]] = (acc, float(out.latency_ms))
            if acc >= level - accuracy_margin(acc, samples=samples, z=z):
                bounds[i][0] = k + 1
            else:  # the harsher choices of this parameter go too, unmeasured
                bounds[i][1] = k
    entries = {}
    for i, chain in enumerate(chains):
        for k, pair in enumerate(chain):
            acc, latency = measured.get(pair) or (None, None)
            entries[pair] = ScreenEntry(pair[0], pair[1], acc, k < bounds[i][0], latency)
    ordered = tuple(entries[pair] for chain in chains for pair in chain)
    return Screen(
        floor=level,
        margin_se=z,
        rung=rung,
        samples=samples,
        base_accuracy=base_acc,
        entries=ordered,
        evaluations=evaluations,
        seconds=time.perf_counter() - start,
        key=screen_key(space, floor=floor, fidelity=fidelity),
        base_latency_ms=float(base_out.latency_ms),
    )


def load_or_screen(
    *,
    space: SearchSpace,
    pool: Any,
    floor: float | None,
    fidelity: Fidelity,
    run_dir: Path,
    write: Any,
) -> Screen:
    """The screen stored in ``run_dir`` if it was made for this space, floor and rung;
    otherwise a new one, written there with ``write(path, text)``."""
    path = Path(run_dir) / SCREEN_FILE
    if path.exists() and not path.is_file():  # before minutes of measurements, not after
        raise LowbitError(f"{path}: not a file (the sensitivity screen is written there)")
    key = screen_key(space, floor=floor, fidelity=fidelity)
    try:
        stored = Screen.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        stored = None
    if stored is not None and stored.key == key:
        return stored
    result = screen(space=space, pool=pool, floor=floor, fidelity=fidelity)
    write(path, json.dumps(result.to_dict(), indent=2) + "\n")
    return result


def screen_summary(result: Screen, *, space: SearchSpace, screened: SearchSpace) -> dict:
    """The ``screen`` section of summary.json: the floor, the cost, what was dropped and the
    space's size before and after (``screen.json`` has every measurement)."""
    return {
        "file": SCREEN_FILE,
        "floor": result.floor,
        "base_accuracy": result.base_accuracy,
        "rung": result.rung,
        "samples": result.samples,
        "evaluations": result.evaluations,
        "seconds": result.seconds,
        "dropped": result.dropped,
        "size_before": space.size,
        "size_after": screened.size,
    }
