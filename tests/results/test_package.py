"""Where the results package sits: pandas stays above the simulator, the readers cover
every column the search writes, importing the package is light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from lowbit.results.run import PARETO_SCHEMA, TRIAL_SCHEMA
from lowbit.search.results import PARETO_COLUMNS, TRIAL_COLUMNS

LOWBIT = Path(__file__).resolve().parents[2] / "lowbit"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_pandas_and_pyarrow_stay_out_of_the_lower_layers():
    lower = ("hardware_profiles", "hwsim", "models", "search")
    users = sorted(
        str(path.relative_to(LOWBIT))
        for package in lower
        for path in (LOWBIT / package).rglob("*.py")
        if _imports(path) & {"pandas", "pyarrow"}
    )
    assert users == []


def test_the_readers_cover_every_column_the_search_writes():
    assert {c.name for c in TRIAL_SCHEMA} == set(TRIAL_COLUMNS) - {"values"}
    assert {c.name for c in PARETO_SCHEMA} == set(PARETO_COLUMNS)


def test_importing_the_package_does_not_import_pandas():
    code = "import sys, lowbit.results; print('pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
