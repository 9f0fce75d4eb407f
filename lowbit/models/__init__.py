"""models: real data, the model zoo, compression transforms, measured accuracy (torch).

The public facade; the submodules hold the details:

- :mod:`lowbit.models.data` — offline datasets and their fixed splits (:func:`load_split`);
- :mod:`lowbit.models.zoo` — the registered networks (:data:`ZOO`, :func:`build`);
- :mod:`lowbit.models.train` — deterministic training and the checkpoint cache
  (:func:`load_trained`);
- :mod:`lowbit.models.accuracy` — accuracy on a split (:func:`evaluate`);
- :mod:`lowbit.models.compression.plan`, :mod:`lowbit.models.compression.compress`,
  :mod:`lowbit.models.compression.qat` —
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

from lowbit.hwsim._lazy import lazy_attributes

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

#: public name -> submodule holding it, imported on first access: subpackages that need no
#: torch (``hostcal``, ``workloads``) stay torch-free, and ``import lowbit.models`` is instant
_LAZY = {
    "register_zoo_workloads": "bridge",
    "to_workload": "bridge",
    "compress": "compression.compress",
    "CompressionPlan": "compression.plan",
    "LayerSpec": "compression.plan",
    "PlanError": "compression.plan",
    "finetune": "compression.qat",
    "load_split": "data",
    "evaluate": "accuracy",
    "load_trained": "train",
    "ZOO": "zoo",
    "build": "zoo",
}


__getattr__, __dir__ = lazy_attributes(__name__, globals(), _LAZY)
