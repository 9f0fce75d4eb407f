"""Hypothesis settings and value strategies shared by the fuzz tests (issue 15)."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st


def fuzz_settings(max_examples: int) -> settings:
    """Bounded and derandomized (the same examples every run, so CI cannot fail by
    chance), no example database, no deadline (the machine may be busy)."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


#: JSON/TOML-like scalars, the odd ones included (NaN, infinities, huge integers, denormals)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 1e-308, 5e-324, 1e308, 2**63, "", "os", "ws", "weights"]),
    st.text(max_size=12),
)
#: scalars, lists and tables of them, a few levels deep
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)
