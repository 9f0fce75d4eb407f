"""Per-layer compression plans: what to do to each layer, as versioned JSON-round-trippable data.

A :class:`CompressionPlan` maps keys to :class:`LayerSpec` settings. A key is a layer name from
``model.named_modules()`` (a Conv1d/Conv2d/Linear or a :class:`~lowbit.models.graph.MatMulSite`), a
``"re:<regex>"`` pattern (``re.fullmatch`` on the layer name) or ``"_default"``. Resolution:
exact name > first matching ``re:`` key in insertion order > ``_default`` > float and dense.

Settings given by exact name are checked strictly against the model (:meth:`CompressionPlan.check`);
settings from a pattern or ``_default`` apply where they mean something: a keep ratio only to
prune-group producers, a rank only to factorisable layers and only below their full rank.
:meth:`CompressionPlan.effective` returns these normalised per-layer settings (with first/last
pinning applied); compress() and the simulator bridge both read it, so shapes agree. One
layer's settings and their checks are :mod:`lowbit.models.compression.spec` (re-exported here).

Example:
    >>> plan = CompressionPlan.from_bits_string("W4A8")
    >>> plan.resolve("conv1").w_bits
    4
    >>> CompressionPlan.from_json(plan.to_json()) == plan
    True
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from typing import Any

from torch import nn

from lowbit.hwsim.compression import KNOBS
from lowbit.hwsim.errors import InputFileError
from lowbit.hwsim.fileio import loads_json
from lowbit.models.compression.spec import LayerSpec, PlanError
from lowbit.models.graph import COMPUTE_LAYERS, MatMulSite, keep_owners, prune_groups_of

__all__ = [
    "PLAN_VERSION",
    "PLAN_VERSIONS",
    "RECOVERY_MODES",
    "PlanError",
    "LayerSpec",
    "CompressionPlan",
    "compute_layers",
    "full_rank",
    "rank_eligible",
    "rank_for",
]

PLAN_VERSION = 2
#: plan versions read: version 1 plans predate ``recovery`` and mean ``"bn"``
PLAN_VERSIONS = (1, 2)
#: ``bn``: BatchNorm re-estimation after pruning/low rank/sparsity; ``lsq``: also least-squares
#: reconstruction of pruned consumers and whitened low rank
#: (:mod:`lowbit.models.compression.reconstruct`)
RECOVERY_MODES = ("bn", "lsq")


@dataclass(frozen=True, slots=True)
class CompressionPlan:
    """Per-layer compression settings for one model.

    Attributes:
        layers: settings keyed by layer name, ``"re:<regex>"`` (full match) or ``"_default"``.
        pin_first_last: keep the first and last Conv/Linear at W8A8 (float stays float), dense,
            unpruned and full rank, whatever the other keys say.
        recovery: how compress() recovers accuracy after pruning, low rank or sparsity,
            without training (:data:`RECOVERY_MODES`); a version 1 plan is always ``"bn"``,
            what it meant when it was written.
        version: plan format version (:data:`PLAN_VERSIONS`).
    """

    layers: dict[str, LayerSpec] = field(default_factory=dict)
    pin_first_last: bool = True
    recovery: str = "lsq"
    version: int = PLAN_VERSION

    def __post_init__(self) -> None:
        problems = []
        if self.version not in PLAN_VERSIONS:
            problems.append(
                f"version: supported versions are {list(PLAN_VERSIONS)}, got {self.version!r}"
            )
        elif self.version == 1:
            object.__setattr__(self, "recovery", "bn")
        if self.recovery not in RECOVERY_MODES:
            problems.append(
                f"recovery: must be one of {list(RECOVERY_MODES)}, got {self.recovery!r}"
            )
        if not isinstance(self.pin_first_last, bool):
            problems.append(f"pin_first_last: must be true or false, got {self.pin_first_last!r}")
        if not isinstance(self.layers, dict):
            raise PlanError(problems + [f"layers: must be a mapping, got {type(self.layers)}"])
        object.__setattr__(self, "layers", dict(self.layers))  # private copy
        for key, spec in self.layers.items():
            if not isinstance(key, str) or not key:
                problems.append(f"layers[{key!r}]: key must be a non-empty string")
            elif key.startswith("re:"):
                try:
                    re.compile(key[3:])
                except re.error as exc:
                    problems.append(f'layers["{key}"]: bad regular expression: {exc}')
            if not isinstance(spec, LayerSpec):
                problems.append(f'layers["{key}"]: must be a LayerSpec, got {type(spec).__name__}')
        if problems:
            raise PlanError(problems)

    # --- construction -----------------------------------------------------------------------
    @classmethod
    def uniform(
        cls, *, w_bits: int | None, a_bits: int | None, pin_first_last: bool = True, **spec: Any
    ) -> CompressionPlan:
        """One setting for every layer (the ``_default`` key); extra keywords go to LayerSpec."""
        return cls(
            layers={"_default": LayerSpec(w_bits=w_bits, a_bits=a_bits, **spec)},
            pin_first_last=pin_first_last,
        )

    @classmethod
    def from_bits_string(cls, text: str, *, pin_first_last: bool = True) -> CompressionPlan:
        """``"W4A8"`` → uniform 4-bit weights, 8-bit activations (``FP``/``32`` = float)."""
        # ASCII digits without leading zeros: "W٤A٨" and "W04A08" are typos, not W4A8
        token = r"(0|[1-9][0-9]?|FP)"
        match = re.fullmatch(f"W{token}A{token}", text.strip(), flags=re.IGNORECASE | re.ASCII)
        if match is None:
            raise PlanError(
                [f"bits: expected a string like W4A8 (W<2-8|FP>A<2-8|FP>), got {text!r}"]
            )

        def parse(token: str) -> int | None:
            return None if token.upper() in ("FP", "32") else int(token)

        return cls.uniform(
            w_bits=parse(match[1]), a_bits=parse(match[2]), pin_first_last=pin_first_last
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": self.version, "pin_first_last": self.pin_first_last}
        if self.version >= 2:
            out["recovery"] = self.recovery
        out["layers"] = {key: spec.to_dict() for key, spec in self.layers.items()}
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: Any) -> CompressionPlan:
        """Build from a parsed JSON object; every problem is reported with its field path."""
        if not isinstance(data, dict):
            raise PlanError([f"plan: must be a JSON object, got {type(data).__name__}"])
        known = {"version", "pin_first_last", "recovery", "layers"}
        problems = [
            f"{key}: unknown field (valid: {', '.join(sorted(known))})"
            for key in sorted(set(data) - known)
        ]
        version = data.get("version", PLAN_VERSION)
        if version not in PLAN_VERSIONS or isinstance(version, bool):
            problems.append(
                f"version: supported versions are {list(PLAN_VERSIONS)}, got {version!r}"
            )
            version = PLAN_VERSION
        recovery = data.get("recovery", "lsq")
        if version == 1 and "recovery" in data:
            problems.append('recovery: not a field of version 1 plans (they mean "bn")')
        elif recovery not in RECOVERY_MODES:
            problems.append(f"recovery: must be one of {list(RECOVERY_MODES)}, got {recovery!r}")
        raw_layers = data.get("layers", {})
        layers: dict[str, LayerSpec] = {}
        if not isinstance(raw_layers, dict):
            problems.append(f"layers: must be an object, got {type(raw_layers).__name__}")
            raw_layers = {}
        for key, raw in raw_layers.items():
            if not isinstance(raw, dict):
                problems.append(f'layers["{key}"]: must be an object of settings, got {raw!r}')
                continue
            try:
                layers[key] = LayerSpec.from_dict(raw)
            except PlanError as exc:
                problems.extend(f'layers["{key}"].{p}' for p in exc.problems)
        if problems:
            raise PlanError(problems)
        return cls(
            layers=layers,
            pin_first_last=data.get("pin_first_last", True),
            recovery=recovery,
            version=version,
        )

    @classmethod
    def from_json(cls, text: str) -> CompressionPlan:
        try:
            data = loads_json(text, source="plan", what="compression plan")
        except InputFileError as exc:
            raise PlanError([f"plan: {exc.problem}"]) from None
        return cls.from_dict(data)

    # --- resolution -------------------------------------------------------------------------
    def resolve(self, name: str) -> LayerSpec:
        """Settings for layer ``name`` by key precedence (no pinning, no model needed)."""
        if name in self.layers and not name.startswith("re:") and name != "_default":
            return self.layers[name]
        for key, spec in self.layers.items():
            if key.startswith("re:") and re.fullmatch(key[3:], name):
                return spec
        return self.layers.get("_default", LayerSpec())

    def check(self, model: nn.Module) -> None:
        """Raise one PlanError listing every key or setting that does not fit ``model``."""
        layers = compute_layers(model)
        groups = prune_groups_of(model)
        producers, owners = {g.producer for g in groups}, keep_owners(groups)
        problems = []
        for key, spec in self.layers.items():
            if key == "_default":
                continue
            if key.startswith("re:"):
                if not any(re.fullmatch(key[3:], name) for name in layers):
                    problems.append(f'layers["{key}"]: pattern matches no layer')
                continue
            module = layers.get(key)
            if module is None:
                problems.append(
                    f'layers["{key}"]: no Conv/Linear/MatMulSite named {key!r} '
                    f"(layers: {', '.join(layers)})"
                )
                continue
            fit = _fit_problems(key, spec, module, producers, owners)
            problems.extend(f'layers["{key}"].{p}' for p in fit)
        if problems:
            raise PlanError(problems)

    def effective(self, model: nn.Module) -> dict[str, LayerSpec]:
        """Normalised settings of every compute layer and MatMulSite, in module order.

        Pinned first/last layers get W8A8 (a float setting stays float), keep 1, no rank and
        no sparsity; so does the keep of a group with a pinned coupled producer or follower
        (its channels are the pinned layer's). ``keep`` is 1 on non-producers (coupled
        producers and depthwise followers follow their group's producer); ``rank`` is the
        integer rank from :func:`rank_for` (``rank_fraction`` cleared), None where it would
        not reduce the layer or the layer cannot be factorised; a MatMulSite has
        ``w_bits = a_bits`` (both operands are activations) and no pruning or rank.
        """
        self.check(model)
        layers = compute_layers(model)
        groups = prune_groups_of(model)
        weighted = [name for name, m in layers.items() if isinstance(m, COMPUTE_LAYERS)]
        pinned = {weighted[0], weighted[-1]} if self.pin_first_last and weighted else set()
        producers = {g.producer for g in groups if not pinned & {*g.producers, *g.followers}}
        out = {}
        for name, module in layers.items():
            spec = self.resolve(name)
            if isinstance(module, MatMulSite):
                spec = replace(spec.for_matmul(), weight_granularity="per_channel")
            elif name in pinned:
                spec = spec.pinned()
            else:
                spec = replace(
                    spec,
                    keep=spec.keep if name in producers else 1.0,
                    rank=rank_for(spec, module),
                    rank_fraction=None,
                )
            out[name] = spec
        return out


def _fit_problems(
    name: str, spec: LayerSpec, module: nn.Module, producers: set[str], owners: dict[str, str]
) -> list[str]:
    """Problems of a spec given by exact name for this module (field: message); ``owners``:
    coupled producers and followers -> their group's producer."""
    problems = []
    if isinstance(module, MatMulSite):  # every weight knob must be as for_matmul() sets it
        dense = spec.for_matmul()
        for key in KNOBS:
            if key not in ("w_bits", "a_bits") and getattr(spec, key) != getattr(dense, key):
                problems.append(f"{key}: {name!r} is a MatMulSite (no weights to prune/factorise)")
        return problems
    if spec.keep < 1.0 and name in owners:
        problems.append(
            f"keep: {spec.keep} but {name!r} is pruned with the prune group of producer "
            f"{owners[name]!r} and has no keep ratio of its own: set keep on {owners[name]!r}"
        )
    elif spec.keep < 1.0 and name not in producers:
        problems.append(
            f"keep: {spec.keep} but {name!r} is not a prune-group producer "
            f"(producers: {', '.join(sorted(producers)) or 'none'})"
        )
    if spec.rank is not None or spec.rank_fraction is not None:
        key = "rank" if spec.rank is not None else "rank_fraction"
        if not rank_eligible(module):
            problems.append(f"{key}: {name!r} is a grouped convolution (not factorisable)")
        elif spec.rank is not None and spec.rank >= full_rank(module):
            problems.append(
                f"rank: {spec.rank} is not below full rank {full_rank(module)} "
                "(= min(out, in·k·k)); use a smaller rank or none"
            )
    return problems


def compute_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Conv1d/Conv2d/Linear layers and MatMulSites by name, in ``named_modules()`` order.

    The quantized wrappers of :mod:`lowbit.models.compression.quant` subclass these types, so a
    compressed model
    lists them too (a low-rank layer as its two factors ``name.first`` and ``name.second``).
    """
    out = {}
    for name, module in model.named_modules():
        if isinstance(module, (*COMPUTE_LAYERS, MatMulSite)) and name:
            out[name] = module
    return out


def full_rank(module: nn.Module) -> int:
    """min(out, in·k·k) for a Linear or ungrouped conv (the weight viewed as out × rest)."""
    weight = module.weight
    return min(weight.shape[0], weight[0].numel())


def rank_eligible(module: nn.Module) -> bool:
    """Linear layers and ungrouped Conv1d/Conv2d can be factorised by truncated SVD."""
    if isinstance(module, nn.Linear):
        return True
    return isinstance(module, (nn.Conv1d, nn.Conv2d)) and module.groups == 1


def rank_for(spec: LayerSpec, layer: nn.Module) -> int | None:
    """Integer rank of ``layer`` under ``spec``, or None if it stays full rank.

    The rule is :meth:`lowbit.hwsim.compression.Compression.rank_of` (shared with the
    simulator): ``rank_fraction`` f gives ``max(1, round(f * full_rank))``; a rank at or above
    the full rank (which could not reduce the layer) or an ineligible layer gives None.
    """
    return spec.rank_of(full_rank(layer)) if rank_eligible(layer) else None
