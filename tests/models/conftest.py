"""Shared fixtures of the models tests.

Every test session gets its own empty checkpoint cache (``LOWBIT_CACHE`` in a temp dir), so
tests never read a user's checkpoints and always exercise training with the real recipes.
Each trained model is trained once per session (:func:`trained`) and handed out as a copy.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pytest
from torch import nn


@pytest.fixture(scope="session", autouse=True)
def lowbit_cache(fresh_session_cache: Path) -> Path:
    """A fresh ``LOWBIT_CACHE`` for the whole session (tests/conftest.py; the previous value
    is restored at the end)."""
    return fresh_session_cache


@pytest.fixture(scope="session")
def trained(lowbit_cache: Path) -> Callable[[str], nn.Module]:
    """``trained(name)``: a copy of zoo model ``name`` trained (seed 0) with its real recipe."""
    from lowbit.models.train import load_trained

    models: dict[str, nn.Module] = {}

    def get(name: str) -> nn.Module:
        if name not in models:
            models[name] = load_trained(name)
        return copy.deepcopy(models[name])

    return get


@pytest.fixture()
def digits_cnn(trained: Callable[[str], nn.Module]) -> nn.Module:
    """Trained ``digits-cnn`` (a private copy)."""
    return trained("digits-cnn")
