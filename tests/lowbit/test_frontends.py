"""Every front-end offers exactly the registries' names: the CLI's choices, the HTTP
service's request schema and the report's method colours equal the search methods, samplers,
objectives, screen and fidelity modes of :mod:`lowbit.search.registry` (whose behaviour is
registered in ``baselines.METHODS`` / ``runner``) and hwsim's engines; no front-end or
library module spells a list of those names again."""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from pathlib import Path

import pytest
from cli_testkit import error_of

import lowbit
from lowbit import hwsim
from lowbit.cli import build_parser
from lowbit.reports import plots
from lowbit.reports._figure import METHOD_COLORS
from lowbit.search import baselines, fidelity, registry, runner
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
    assert fidelity.FIDELITY_MODES is registry.FIDELITY_MODES
    assert all(name == m.name for name, m in registry.METHODS_SHOWN.items())
    assert registry.DEFAULT_SAMPLER in registry.SAMPLER_NAMES
    assert set(registry.DEFAULT_OBJECTIVES) <= set(registry.OBJECTIVE_NAMES)
    assert registry.DEFAULT_SCREEN in registry.SCREEN_MODES
    assert registry.DEFAULT_FIDELITY in registry.FIDELITY_MODES
    assert hwsim.DEFAULT_ENGINE in hwsim.engine_names()


def test_cli_choices_are_the_registries(capsys):
    assert _choices("search", "--sampler") == registry.SAMPLER_NAMES
    assert _choices("search", "--screen") == registry.SCREEN_MODES
    assert _choices("search", "--fidelity") == registry.FIDELITY_MODES
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
    assert _enum(search, "screen") == registry.SCREEN_MODES
    assert _enum(SimulateRequest.model_json_schema(), "engine") == tuple(hwsim.engine_names())


def test_report_colours_cover_every_method():
    assert tuple(METHOD_COLORS) == registry.METHOD_NAMES
    assert len(set(METHOD_COLORS.values())) == len(METHOD_COLORS)  # methods stay apart
    fixed = [m for m in registry.METHODS_SHOWN.values() if m.fixed]
    assert all(m.legend and m.marker != "o" for m in fixed)  # points, told apart from fronts


#: names of the registries (methods, samplers, objectives, screen / fidelity modes, engines)
_REGISTERED = {
    *registry.METHOD_NAMES,
    *registry.SAMPLER_NAMES,
    *registry.OBJECTIVE_NAMES,
    *registry.SCREEN_MODES,
    *registry.FIDELITY_MODES,
    *hwsim.engine_names(),
}
#: where the names are defined (registries) or are a different list that shares a word
#: ("auto" of an export's weight type)
_DEFINED_IN = {"search/registry.py", "hwsim/engines/__init__.py", "commands/export.py"}


def _name_lists(tree: ast.AST) -> list[tuple[int, tuple[str, ...]]]:
    """Tuples, lists and sets of 2+ string literals that are all registered names."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and len(node.elts) >= 2:
            values = [e.value for e in node.elts if isinstance(e, ast.Constant)]
            if len(values) == len(node.elts) and all(v in _REGISTERED for v in values):
                out.append((node.lineno, tuple(values)))
    return out


def test_no_module_copies_a_name_list():
    """A literal list of registered names outside the registries is a copy that can drift
    (``("auto", "multi", "full")`` in the CLI, ``("accuracy", "latency")`` in a check)."""
    root = Path(lowbit.__file__).parent
    copies = [
        f"{path.relative_to(root)}:{line}: {values}"
        for path in sorted(root.rglob("*.py"))
        if path.relative_to(root).as_posix() not in _DEFINED_IN
        for line, values in _name_lists(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert copies == []


def test_the_finder_sees_a_copied_list():
    tree = ast.parse('CHOICES = ("auto", "multi", "full")\nOK = ("W4A8", "auto")')
    assert _name_lists(tree) == [(1, ("auto", "multi", "full"))]


def test_plots_ask_the_registry_not_method_names():
    text = Path(plots.__file__).read_text(encoding="utf-8")
    assert not any(f'"{name}"' in text for name in registry.METHOD_NAMES)


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
