"""Fixtures shared by the test packages: model caches (``LOWBIT_CACHE``) and one local Ray.

``zoo_cache`` keeps a cache that is already set (trained checkpoints are reused); the fresh
caches replace it, for tests that must see training happen. Each restores the previous value.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest


def _cache_at(path: Path) -> Iterator[Path]:
    """Point ``LOWBIT_CACHE`` at ``path`` while the fixture lives; restore it after."""
    previous = os.environ.get("LOWBIT_CACHE")
    os.environ["LOWBIT_CACHE"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("LOWBIT_CACHE", None)
    else:
        os.environ["LOWBIT_CACHE"] = previous


@pytest.fixture(scope="session")
def zoo_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A session model cache unless ``LOWBIT_CACHE`` is set already; set before Ray starts
    (:func:`ray_session`) so the workers inherit it."""
    before = os.environ.get("LOWBIT_CACHE")
    if before:
        yield Path(before)
    else:
        yield from _cache_at(tmp_path_factory.mktemp("lowbit-cache"))


@pytest.fixture(scope="session")
def fresh_session_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An empty ``LOWBIT_CACHE`` from first use to the end of the session."""
    yield from _cache_at(tmp_path_factory.mktemp("lowbit-cache"))


@pytest.fixture(scope="module")
def fresh_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An empty ``LOWBIT_CACHE`` for the requesting test module."""
    yield from _cache_at(tmp_path_factory.mktemp("module-cache"))


@pytest.fixture(scope="session")
def ray_session(zoo_cache):
    """One small local Ray (2 CPUs, loopback, no dashboard) for the whole test session; later
    in-process searches reuse it instead of starting their own."""
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(
            address="local",
            num_cpus=2,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            object_store_memory=128 * 1024**2,
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
    yield ray
    ray.shutdown()
