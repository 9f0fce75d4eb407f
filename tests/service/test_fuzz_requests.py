"""Property-based fuzzing of the HTTP API's request bodies (issue 15): any body gives a 4xx
with a JSON ``detail`` naming no server file, or a 200 with finite numbers -- never a 500.

In-process (FastAPI's TestClient, the app as ``lowbit serve`` builds it). Searches are
fuzzed through their schema and with bodies it refuses, so no search is started.
Derandomized and bounded (``max_examples``): a few seconds.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from pydantic import ValidationError

import lowbit
from lowbit.service import create_app
from lowbit.service.schemas import SearchRequest, model_names, profile_names

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hwsim"))
from fuzzkit import SCALARS, VALUES, fuzz_settings  # noqa: E402

pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

FUZZ = fuzz_settings(150)
PACKAGE_DIR = str(Path(lowbit.__file__).parent)


def _field(valid: list, *, extra=VALUES):
    """A field's value: mostly (4 in 5) a valid one, else anything."""
    valid_values = st.sampled_from(valid)
    return st.one_of(valid_values, valid_values, valid_values, valid_values, extra)


SIMULATE = st.fixed_dictionaries(
    {
        "profile": _field(list(profile_names())),
        "workload": _field(["resnet18", "mobilenetv2", "resnet18 ", "../resnet18"]),
    },
    optional={
        "bits": _field(["W4A8", "W8A8", "W2A2", "W32A32", "W٤A٨", "W04A08", "", "w4a4"]),
        "overrides": st.dictionaries(
            _field(
                ["compute.rows", "clock_hz", "memory.dram.size_bytes", "memory.0.holds"],
                extra=st.text(max_size=16),
            ),
            VALUES | st.integers(min_value=1, max_value=256),
            max_size=3,
        ),
        "plan": VALUES,
        "engine": _field(["analytic"], extra=st.sampled_from(["event", "EVENT", ""])),
    },
)
SEARCH = st.fixed_dictionaries(
    {"model": _field(list(model_names())), "profile": _field(list(profile_names()))},
    optional={
        key: VALUES
        for key in (
            "trials",
            "workers",
            "baselines",
            "sampler",
            "seed",
            "objectives",
            "max_latency_ms",
            "min_accuracy",
            "finetune_steps",
            "co_design",
            "area_budget_mm2",
            "trial_timeout_s",
            "pin_first_last",
        )
    },
)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    app = create_app(state_dir=tmp_path_factory.mktemp("fuzz-state"))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def _encode(body) -> bytes:
    # what a careless client sends: NaN and Infinity as bare tokens, any Unicode
    return json.dumps(body, allow_nan=True).encode("utf-8", "surrogatepass")


def _finite(node) -> bool:
    if isinstance(node, float):
        return math.isfinite(node)
    if isinstance(node, dict):
        return all(_finite(v) for v in node.values())
    if isinstance(node, list):
        return all(_finite(v) for v in node)
    return True


def _check(response) -> None:
    assert response.status_code < 500, response.text
    event(f"HTTP {response.status_code}")
    if response.status_code == 200:
        assert _finite(response.json())
    else:
        assert "detail" in response.json()
        assert PACKAGE_DIR not in response.text and "--set" not in response.text


@FUZZ
@given(body=st.one_of(SIMULATE, SIMULATE, SIMULATE, VALUES))
def test_simulate_answers_any_body_without_a_500(client, body):
    headers = {"content-type": "application/json"}
    _check(client.post("/v1/simulate", content=_encode(body), headers=headers))


@FUZZ
@given(body=SEARCH | VALUES)
def test_search_bodies_are_validated_without_a_500(client, body):
    raw = _encode(body)
    try:
        SearchRequest.model_validate_json(raw)
    except ValidationError:
        event("refused by the schema")
        response = client.post(
            "/v1/searches", content=raw, headers={"content-type": "application/json"}
        )
        assert response.status_code == 422
        _check(response)
    else:  # a valid search: not started here (it would run a search worker)
        event("valid")


@FUZZ
@given(raw=st.binary(max_size=64) | st.text(max_size=64).map(str.encode))
def test_bodies_that_are_not_json_are_4xx(client, raw):
    for route in ("/v1/simulate", "/v1/searches"):
        _check(client.post(route, content=raw, headers={"content-type": "application/json"}))


OVERRIDE_KEYS = [
    "clock_hz",
    "compute.rows",
    "compute.cols",
    "compute.dataflow",
    "memory.0.size_bytes",
    "memory.0.bandwidth_bytes_per_cycle",
    "memory.1.size_bytes",
    "memory.-1.double_buffered",
    "compute.precision.0.macs_per_pe_per_cycle",
    "overheads.per_layer_cycles",
]


@FUZZ
@given(
    profile=st.sampled_from(list(profile_names())),
    overrides=st.dictionaries(
        st.sampled_from(OVERRIDE_KEYS),
        st.one_of(
            st.integers(min_value=1, max_value=4096),
            st.integers(min_value=1, max_value=4096),
            st.floats(1e-9, 1e9),
            SCALARS,
        ),
        min_size=1,
        max_size=3,
    ),
    bits=st.sampled_from([None, "W8A8", "W4A8", "W2A2", "W16A16"]),
)
def test_simulate_with_any_override_values_is_finite_or_4xx(client, profile, overrides, bits):
    body = {"profile": profile, "workload": "resnet18", "overrides": overrides}
    if bits is not None:
        body["bits"] = bits
    headers = {"content-type": "application/json"}
    _check(client.post("/v1/simulate", content=_encode(body), headers=headers))
