"""JSON writers of results refuse NaN and Infinity, naming the key (issue 15): the readers
refuse them, so a file holding one would be a run nobody can read."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lowbit.hwsim.errors import LowbitError
from lowbit.search.results import write_json


@pytest.mark.parametrize(
    "data, key, shown",
    [
        ({"reference": {"w8a8_latency_ms": float("inf")}}, "reference.w8a8_latency_ms", "inf"),
        ({"methods": {"joint": {"hv": [0.5, float("nan")]}}}, "methods.joint.hv[1]", "nan"),
        ([{"a": 1}, {"b": -float("inf")}], "[1].b", "-inf"),
        ({"x": (1.0, np.float64("nan"))}, "x[1]", "nan"),
        (float("nan"), "(the top level)", "nan"),
    ],
)
def test_non_finite_numbers_are_refused_naming_the_key(tmp_path, data, key, shown):
    path = tmp_path / "summary.json"
    with pytest.raises(LowbitError) as info:
        write_json(path, data)
    assert str(info.value).startswith(f"{path}: {key}: {shown} is not a finite number")
    assert not path.exists()  # nothing written


def test_a_refused_write_leaves_the_previous_file(tmp_path):
    path = tmp_path / "status.json"
    write_json(path, {"state": "completed", "finished": 1.5, "nested": [1, 2.0, {"ok": 1e308}]})
    before = path.read_bytes()
    with pytest.raises(LowbitError, match="finished"):
        write_json(path, {"state": "failed", "finished": float("inf")})
    assert path.read_bytes() == before
    assert json.loads(before)["nested"][2]["ok"] == 1e308
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]  # no temporary file left
