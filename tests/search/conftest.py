"""Shared fixtures: hand-built profiles, a synthetic model description, one Ray session."""

from __future__ import annotations

import logging
import os

import pytest
from search_testkit import SYNTHETIC_LAYERS, bitfusion_profile, make_profile

from hwsim.profile import HardwareProfile
from search.space import build_space


@pytest.fixture(scope="session")
def bitfusion_like() -> HardwareProfile:
    return bitfusion_profile()


@pytest.fixture(scope="session")
def int8_cpu_like() -> HardwareProfile:
    return make_profile("test-cpu", [(8, 8, 2.0), (32, 32, 1.0)], weight_storage="packed")


@pytest.fixture(scope="session")
def bitserial_like() -> HardwareProfile:
    modes = [(w, a, 64 / (w * a)) for w in range(1, 9) for a in range(1, 9)]
    return make_profile("test-bitserial", modes)


@pytest.fixture(scope="session")
def synthetic_space(bitfusion_like):
    return build_space(SYNTHETIC_LAYERS, bitfusion_like, model="synthetic-cnn")


@pytest.fixture(scope="session")
def zoo_cache(tmp_path_factory):
    """A session model cache (LOWBIT_CACHE) unless one is set; set before Ray starts so the
    workers inherit it."""
    before = os.environ.get("LOWBIT_CACHE")
    if not before:
        os.environ["LOWBIT_CACHE"] = str(tmp_path_factory.mktemp("lowbit-cache"))
    yield os.environ["LOWBIT_CACHE"]
    if not before:
        os.environ.pop("LOWBIT_CACHE", None)


@pytest.fixture(scope="session")
def ray_session(zoo_cache):
    """One small local Ray (2 CPUs, loopback, no dashboard) for the whole test session."""
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
