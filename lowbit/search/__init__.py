"""search: multi-objective Optuna studies on Ray over bits, pruning and rank.

Optuna asks and tells on the driver; Ray actors (one per worker) hold the trained model and
data once and evaluate trials (compress → accuracy on val; simulated latency/energy on the
target). Studies live in a journal file in the run directory (or any database URL), so a
rerun with the same study name resumes, also after the driver was killed.

Example (starts a local Ray; a few minutes)::

    from lowbit.search import SearchSetup, ZooModel, run_search
    result = run_search(SearchSetup(
        model=ZooModel(name="digits-cnn"), hardware="npu-bitfusion", n_trials=60,
        out_dir="runs/cnn-bitfusion", workers=2,
        methods=("joint", "quant-only", "random", "uniform", "hawq")))
    print(result.summary["methods"]["joint"]["hypervolume_val"])

A user model is a :class:`UserModel` (your module and metric) in the same setup.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lowbit.hwsim._lazy import lazy_attributes

if TYPE_CHECKING:  # lazy re-exports, see __getattr__
    from .baselines import METHODS
    from .config import ConfigError, DeploymentConfig, load_config
    from .pareto import hypervolume_2d, non_dominated, non_dominated_sort
    from .run import execute, run_search
    from .setup import SearchResult, SearchSetup, UserModel, ZooModel
    from .space import SearchSpace, build_space, describe_model, target_bits
    from .storage import open_storage
    from .summary import HV_REFERENCE
    from .user import describe_user_model, user_space
    from .zoo import zoo_space

__all__ = [
    "METHODS",
    "HV_REFERENCE",
    "ConfigError",
    "DeploymentConfig",
    "SearchResult",
    "SearchSetup",
    "SearchSpace",
    "build_space",
    "describe_model",
    "describe_user_model",
    "execute",
    "hypervolume_2d",
    "load_config",
    "non_dominated",
    "non_dominated_sort",
    "open_storage",
    "run_search",
    "target_bits",
    "user_space",
    "UserModel",
    "ZooModel",
    "zoo_space",
]

#: public name -> submodule holding it, imported on first access: ``import lowbit.search``
#: (and :mod:`lowbit.search.registry`, which the CLI reads to build its parser) needs no
#: Optuna or Ray
_LAZY = {
    "METHODS": "baselines",
    "HV_REFERENCE": "summary",
    "ConfigError": "config",
    "DeploymentConfig": "config",
    "SearchResult": "setup",
    "SearchSetup": "setup",
    "SearchSpace": "space",
    "build_space": "space",
    "describe_model": "space",
    "describe_user_model": "user",
    "execute": "run",
    "hypervolume_2d": "pareto",
    "load_config": "config",
    "non_dominated": "pareto",
    "non_dominated_sort": "pareto",
    "open_storage": "storage",
    "run_search": "run",
    "target_bits": "space",
    "user_space": "user",
    "UserModel": "setup",
    "ZooModel": "setup",
    "zoo_space": "zoo",
}

__getattr__, __dir__ = lazy_attributes(__name__, globals(), _LAZY)
