"""Zoo models in a search: their space, and the run made ready before Ray starts.

:func:`prepare_zoo` is what :func:`lowbit.search.run_search` does for a :class:`ZooModel`:
the co-design space when asked (:mod:`lowbit.search.codesign`), the model trained once on
the driver (cached; its progress shown), the rungs resolved from the val split's size
(:mod:`lowbit.search.fidelity`), and the evaluator spec whose trained model and val/test
tensors go to the workers once, through Ray's object store.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lowbit.hwsim.errors import LowbitError
from lowbit.hwsim.profile import HardwareProfile

from .codesign import CoDesign, build_codesign
from .fidelity import resolve_fidelity
from .setup import PreparedSearch, SearchSetup, ZooModel, resolve_profile
from .space import SearchSpace, build_space, describe_model
from .zoo_evaluator import ZooEvaluatorSpec, share_zoo_data

__all__ = ["prepare_zoo", "zoo_space"]


def zoo_space(
    model: str,
    hardware: str | Path | HardwareProfile,
    *,
    pin_first_last: bool = False,
    codesign: CoDesign | None = None,
) -> SearchSpace:
    """The search space of zoo ``model`` on ``hardware`` (no training, no Ray); with
    ``codesign`` (:func:`lowbit.search.codesign.build_codesign`) the hardware parameters too."""
    from lowbit.models.zoo import build

    profile = resolve_profile(hardware)
    layers = describe_model(build(model))
    return build_space(
        layers, profile, model=model, pin_first_last=pin_first_last, codesign=codesign
    )


def prepare_zoo(setup: SearchSetup) -> PreparedSearch:
    """The space, default study name and evaluator spec of ``setup`` (a :class:`ZooModel`);
    trains the model when it is not cached yet."""
    model = setup.model
    if not isinstance(model, ZooModel) or setup.hardware is None:
        raise LowbitError("prepare_zoo: the setup needs a ZooModel and a hardware target")
    codesign = None
    if setup.co_design:
        try:
            codesign, profile = build_codesign(
                setup.hardware, area_budget_mm2=setup.area_budget_mm2
            )
        except ValueError as exc:
            raise LowbitError(str(exc)) from None
    else:
        profile = resolve_profile(setup.hardware)
    space = zoo_space(model.name, profile, pin_first_last=setup.pin_first_last, codesign=codesign)
    from lowbit import models
    from lowbit.models.data import split_sizes

    # train once here, not once per worker; a model trained now shows its progress
    base = models.load_trained(model.name, seed=setup.seed, progress=setup.progress or None)
    resolved = resolve_fidelity(
        mode=model.fidelity,
        val_samples=split_sizes(base.dataset)["val"],
        cheap_val=model.cheap_val_samples,
        calib_samples=model.calib_samples,
        margin_se=model.promote_margin_se,
    )
    spec = ZooEvaluatorSpec(
        model=model.name,
        profile=profile,
        seed=setup.seed,
        pin_first_last=setup.pin_first_last,
        finetune_steps=model.finetune_steps,
        codesign=codesign,
        fidelity=resolved,
    )

    @contextmanager
    def evaluator() -> Iterator[ZooEvaluatorSpec]:
        yield share_zoo_data(spec)

    return PreparedSearch(
        space=space, study_name=f"{model.name}-{profile.name}-s{setup.seed}", evaluator=evaluator
    )
