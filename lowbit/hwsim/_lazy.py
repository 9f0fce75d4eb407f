"""Lazy package attributes (PEP 562): a facade that names its public functions but imports
the submodule holding each only when it is first used, so importing the package stays light
(``lowbit.hwsim`` without simpy, ``lowbit.models`` without torch)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["lazy_attributes"]


def lazy_attributes(
    package: str, namespace: dict[str, Any], table: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``: a name in ``table`` (name ->
    submodule, relative to the package) is imported on first access and kept in the
    package's ``namespace`` (its ``globals()``); any other name is an ``AttributeError``."""

    def __getattr__(name: str) -> Any:
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{table[name]}", package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(table))

    return __getattr__, __dir__
