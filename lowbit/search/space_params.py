"""The search space as Optuna and the evaluators see it: per-layer choices
(:class:`LayerChoices`) and :class:`SearchSpace` — its categorical parameters, the settings
and :class:`~lowbit.models.compression.plan.CompressionPlan` of a trial's params, uniform
and quantization-only variants, and JSON. :func:`lowbit.search.space.build_space` derives
one from a model and a target.

The space is one frozen, JSON-serialisable object; Optuna parameters are named
``"<layer>.<setting>"`` and are all categorical (only settings with 2+ choices are sampled).

With co-design (:mod:`lowbit.search.codesign`) the space also holds the profile's tunable hardware
parameters, named ``"hw:<key path>"``; :meth:`SearchSpace.settings` then returns their
values as profile overrides under the reserved entry ``HARDWARE_KEY`` ("@hardware").
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from lowbit.hwsim.compression import Compression

from .codesign import HARDWARE_KEY, HW_PREFIX, CoDesign

if TYPE_CHECKING:
    import optuna

    from lowbit.models.compression.plan import CompressionPlan

__all__ = ["DENSE", "SETTINGS", "SPACE_VERSION", "LayerChoices", "SearchSpace"]

SPACE_VERSION = 1
#: the settings of one layer, in parameter order: knobs of the shared per-layer spec
#: (:data:`lowbit.hwsim.compression.KNOBS`), spelled as there; a parameter's value encodes
#: the knob's (``nm`` "2:4" or :data:`DENSE`; ``rank_fraction`` 1.0 = full rank), decoded by
#: :meth:`SearchSpace.settings`
SETTINGS = ("w_bits", "a_bits", "keep", "nm", "rank_fraction")
#: the ``nm`` choice of a dense layer
DENSE = "dense"


@dataclass(frozen=True, slots=True)
class LayerChoices:
    """The choices of one layer; a one-element tuple is a fixed setting."""

    name: str
    kind: str
    w_bits: tuple[int, ...]
    a_bits: tuple[int, ...]
    keep: tuple[float, ...] = (1.0,)
    nm: tuple[str, ...] = (DENSE,)
    rank_fraction: tuple[float, ...] = (1.0,)

    def choices(self) -> dict[str, tuple]:
        """Setting -> choices, for the settings this layer has (a matmul has no weights)."""
        out = {key: getattr(self, key) for key in SETTINGS}
        if self.kind == "matmul":
            del out["w_bits"], out["keep"], out["nm"], out["rank_fraction"]
        return out


@dataclass(frozen=True, slots=True)
class SearchSpace:
    """Per-layer choices for one model on one target (see the module docstring)."""

    model: str
    hardware: str
    hardware_hash: str
    pin_first_last: bool
    pinned: tuple[str, ...]
    w_bits: tuple[int, ...]
    a_bits: tuple[int, ...]
    layers: tuple[LayerChoices, ...]
    version: int = SPACE_VERSION
    #: the hardware parameters of a co-design search (None: the profile is fixed)
    codesign: CoDesign | None = None

    # --- Optuna --------------------------------------------------------------------------
    def distributions(self) -> dict[str, optuna.distributions.CategoricalDistribution]:
        """Every sampled parameter (2+ choices) and its categorical distribution."""
        from optuna.distributions import CategoricalDistribution

        out = {
            f"{layer.name}.{key}": CategoricalDistribution(values)
            for layer in self.layers
            for key, values in layer.choices().items()
            if len(values) > 1
        }
        if self.codesign is not None:
            for choice in self.codesign.choices:
                if len(choice.values) > 1:
                    out[choice.param] = CategoricalDistribution(choice.values)
        return out

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Sample every parameter of the space on ``trial``; returns the params dict.

        With co-design this also records the trial's hardware area and sets its area
        constraint (:meth:`lowbit.search.codesign.CoDesign.mark`): both are known at ask time.
        """
        params = {
            name: trial.suggest_categorical(name, dist.choices)
            for name, dist in self.distributions().items()
        }
        if self.codesign is not None:
            self.codesign.mark(trial, params)
        return params

    @property
    def size(self) -> int:
        """Number of distinct configurations (product of the choice counts)."""
        n = 1
        for dist in self.distributions().values():
            n *= len(dist.choices)
        return n

    # --- configurations ------------------------------------------------------------------
    def settings(self, params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """Per-layer :class:`lowbit.models.compression.plan.LayerSpec` keyword arguments for
        ``params``.

        Parameters missing from ``params`` take the layer's only choice; a parameter that is
        not in the space or a value outside its choices raises ValueError. With co-design
        the entry ``HARDWARE_KEY`` holds the chosen profile overrides ``{key path: value}``.
        """
        dists = self.distributions()
        unknown = sorted(set(params) - set(dists))
        bad = [
            f"{k}={v!r} (choices: {list(dists[k].choices)})"
            for k, v in params.items()
            if k in dists and v not in dists[k].choices
        ]
        if unknown or bad:
            raise ValueError(f"params do not fit the space: unknown {unknown}, invalid {bad}")
        out = {}
        for layer in self.layers:
            chosen = {}
            for key, values in layer.choices().items():
                name = f"{layer.name}.{key}"
                if name in params:
                    chosen[key] = params[name]
                elif len(values) == 1:
                    chosen[key] = values[0]
                else:
                    raise ValueError(f"params: missing {name!r} (choices: {list(values)})")
            if layer.kind == "matmul":
                out[layer.name] = {"w_bits": chosen["a_bits"], "a_bits": chosen["a_bits"]}
                continue
            nm = None if chosen["nm"] == DENSE else tuple(int(v) for v in chosen["nm"].split(":"))
            rank = None if chosen["rank_fraction"] >= 1.0 else float(chosen["rank_fraction"])
            out[layer.name] = {
                "w_bits": int(chosen["w_bits"]),
                "a_bits": int(chosen["a_bits"]),
                "keep": float(chosen["keep"]),
                "nm": nm,
                "rank_fraction": rank,
            }
        if self.codesign is not None:
            out[HARDWARE_KEY] = self.codesign.overrides(params)
        return out

    def compressions(self, params: Mapping[str, Any]) -> dict[str, Compression]:
        """The typed per-layer spec of ``params``: one
        :class:`~lowbit.hwsim.compression.Compression` per layer, validated (co-design
        overrides aside). :meth:`settings` is its wire form, the JSON-able keyword arguments
        a trial request carries to a Ray worker, spelled as the spec's knobs."""
        return {
            name: Compression(**kw)
            for name, kw in self.settings(params).items()
            if name != HARDWARE_KEY
        }

    def hardware_overrides(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The profile overrides chosen by ``params`` (empty without co-design)."""
        return self.codesign.overrides(params) if self.codesign is not None else {}

    def plan(self, params: Mapping[str, Any]) -> CompressionPlan:
        """The :class:`lowbit.models.compression.plan.CompressionPlan` of ``params`` (one key per
        layer)."""
        from lowbit.models.compression.plan import CompressionPlan, LayerSpec

        layers = {
            name: LayerSpec(**kw)
            for name, kw in self.settings(params).items()
            if name != HARDWARE_KEY
        }
        return CompressionPlan(layers=layers, pin_first_last=self.pin_first_last)

    def supports_uniform(self, w_bits: int, a_bits: int) -> bool:
        """Whether uniform W{w}A{a} is a point of the space."""
        return w_bits in self.w_bits and a_bits in self.a_bits

    def uniform_params(
        self, w_bits: int, a_bits: int, *, overrides: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Params of uniform W{w}A{a}, dense, unpruned, full rank, on the hardware as given
        (plus ``overrides``)."""
        if not self.supports_uniform(w_bits, a_bits):
            raise ValueError(
                f"W{w_bits}A{a_bits} is not in the space of {self.hardware!r} "
                f"(weights {list(self.w_bits)}, activations {list(self.a_bits)})"
            )
        fixed = {"w_bits": w_bits, "a_bits": a_bits, "keep": 1.0, "nm": DENSE, "rank_fraction": 1.0}
        params = {
            name: fixed[name.rsplit(".", 1)[1]]
            for name in self.distributions()
            if not name.startswith(HW_PREFIX)
        }
        if self.codesign is not None:
            params.update(self.codesign.base_params())
        params.update(overrides or {})
        return params

    def quant_only(self) -> SearchSpace:
        """The same space without pruning, N:M sparsity or low rank (bits only)."""
        layers = tuple(
            replace(layer, keep=(1.0,), nm=(DENSE,), rank_fraction=(1.0,)) for layer in self.layers
        )
        return replace(self, layers=layers)

    # --- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["size"] = self.size
        data["parameters"] = len(self.distributions())
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> SearchSpace:
        data = json.loads(text)
        if data.get("version") != SPACE_VERSION:
            raise ValueError(f"search space version {data.get('version')!r} is not supported")
        data.pop("size", None)
        data.pop("parameters", None)
        layers = tuple(
            LayerChoices(**{k: tuple(v) if isinstance(v, list) else v for k, v in layer.items()})
            for layer in data.pop("layers")
        )
        tuples = {k: tuple(data.pop(k)) for k in ("pinned", "w_bits", "a_bits")}
        codesign = data.pop("codesign", None)
        if codesign is not None:
            codesign = CoDesign.from_dict(codesign)
        return cls(layers=layers, codesign=codesign, **tuples, **data)
