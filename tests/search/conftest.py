"""Shared fixtures: hand-built profiles and a synthetic model description (the model cache
and the Ray session come from tests/conftest.py)."""

from __future__ import annotations

import pytest
from search_testkit import SYNTHETIC_LAYERS, bitfusion_profile, make_profile

from lowbit.hwsim.profile import HardwareProfile
from lowbit.search.space import build_space


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
