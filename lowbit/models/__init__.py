"""models: real data, the model zoo, compression transforms, measured accuracy (torch).

The public facade; the submodules hold the details:

- :mod:`lowbit.models.data` — offline datasets and their fixed splits (:func:`load_split`);
- :mod:`lowbit.models.zoo` — the registered networks (:data:`ZOO`, :func:`build`);
- :mod:`lowbit.models.train` — deterministic training and the checkpoint cache
  (:func:`load_trained`);
- :mod:`lowbit.models.evaluate` — accuracy on a split (:func:`evaluate`);
- :mod:`lowbit.models.plan`, :mod:`lowbit.models.compress`, :mod:`lowbit.models.qat` —
  compression plans, :func:`compress` and :func:`finetune`;
- :mod:`lowbit.models.bridge` — a model + plan as an hwsim workload (:func:`to_workload`).

Example:
    >>> from lowbit import models
    >>> base = models.load_trained("digits-cnn")
    >>> x_val, _ = models.load_split("digits", "val")
    >>> small = models.compress(base, models.CompressionPlan.from_bits_string("W4A8"), calib=x_val)
    >>> models.evaluate(small, split="test") > 0.9
    True
"""

from __future__ import annotations

# Functions are imported eagerly (not lazily): ``models.compress`` and ``models.evaluate``
# share their names with submodules, and binding the functions here, after the submodules
# are loaded, keeps the names pointing at the functions.
from .bridge import register_zoo_workloads, to_workload
from .compress import compress
from .data import load_split
from .evaluate import evaluate
from .plan import CompressionPlan, LayerSpec, PlanError
from .qat import finetune
from .train import load_trained
from .zoo import ZOO, build

__all__ = [
    "ZOO",
    "CompressionPlan",
    "LayerSpec",
    "PlanError",
    "build",
    "compress",
    "evaluate",
    "finetune",
    "load_split",
    "load_trained",
    "register_zoo_workloads",
    "to_workload",
]
