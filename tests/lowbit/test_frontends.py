"""Every front-end offers exactly the registries' names: the CLI's choices, the HTTP
service's request schema and the report's method colours equal the search methods, samplers
and objectives of :mod:`lowbit.search.registry` (whose behaviour is registered in
``baselines.METHODS`` / ``runner``) and hwsim's engines."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest
from cli_testkit import error_of

from lowbit import hwsim
from lowbit.cli import build_parser
from lowbit.reports._figure import METHOD_COLORS
from lowbit.search import baselines, registry, runner
from lowbit.service.schemas import SearchRequest, SimulateRequest


def _choices(command: str, flag: str) -> tuple[str, ...]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    action = next(a for a in sub.choices[command]._actions if flag in a.option_strings)
    return tuple(action.choices)


def _enum(schema: dict, field: str) -> tuple[str, ...]:
    prop = schema["properties"][field]
    return tuple(prop.get("items", prop)["enum"])


def test_the_search_registries_name_what_is_implemented():
    assert tuple(baselines.METHODS) == registry.METHOD_NAMES
    fixed = tuple(name for name, m in baselines.METHODS.items() if m.fixed is not None)
    assert fixed == registry.FIXED_METHOD_NAMES
    assert registry.BASELINE_NAMES == registry.METHOD_NAMES[1:]
    assert runner.SAMPLERS is registry.SAMPLERS and runner.OBJECTIVES is registry.OBJECTIVES


def test_cli_choices_are_the_registries(capsys):
    assert _choices("search", "--sampler") == registry.SAMPLER_NAMES
    for command in ("simulate", "sweep"):
        assert _choices(command, "--engine") == tuple(hwsim.engine_names())
    # comma lists are checked in run(): the error lists the valid names
    argv = ("search", "--model", "digits-cnn", "--hardware", "npu-bitfusion")
    line = error_of(capsys, *argv, "--baselines", "nope")
    assert f"(valid: {', '.join(registry.BASELINE_NAMES)}, all)" in line
    line = error_of(capsys, *argv, "--objectives", "accuracy,nope")
    assert f"(valid: {', '.join(registry.OBJECTIVE_NAMES)}, all)" in line


def test_service_schema_enums_are_the_registries():
    search = SearchRequest.model_json_schema()
    assert _enum(search, "baselines") == registry.BASELINE_NAMES
    assert _enum(search, "sampler") == registry.SAMPLER_NAMES
    assert _enum(search, "objectives") == registry.OBJECTIVE_NAMES
    assert _enum(SimulateRequest.model_json_schema(), "engine") == tuple(hwsim.engine_names())


def test_report_colours_cover_every_method():
    assert tuple(METHOD_COLORS) == registry.METHOD_NAMES
    assert len(set(METHOD_COLORS.values())) == len(METHOD_COLORS)  # methods stay apart


@pytest.mark.parametrize("name", registry.SAMPLER_NAMES)
def test_every_sampler_builds(name):
    sampler = runner.make_sampler(name, seed=0, n_trials=10)
    assert type(sampler).__module__.startswith("optuna.samplers")


def test_reading_the_registries_keeps_the_cli_light():
    """Building every subcommand's parser (what ``lowbit --help`` does) imports neither
    Optuna, Ray nor torch."""
    code = (
        "import sys; from lowbit.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('optuna', 'ray', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
