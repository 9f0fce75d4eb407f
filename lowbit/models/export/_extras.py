"""The optional ``edge`` extra (``pip install 'lowbit[edge]'``): importing its packages, or
one line saying how to install them."""

from __future__ import annotations

import importlib
from typing import Any

from lowbit.models.export._qdq_grids import ExportError

__all__ = ["EdgeExtraMissing", "litert_schema", "require_extra"]


class EdgeExtraMissing(ExportError):
    """An optional ``edge`` package (LiteRT, Vela, QONNX) is not installed."""


def require_extra(module: str, *, package: str, what: str) -> Any:
    """Import ``module`` or raise :class:`EdgeExtraMissing` in one line naming the fix."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise EdgeExtraMissing(
            f"{what} needs the optional package {package} (module {module} not importable: "
            f"{exc.msg}); install it with: pip install 'lowbit[edge]'"
        ) from None


def litert_schema() -> Any:
    """The TFLite schema's generated Python module shipped with LiteRT."""
    return require_extra(
        "ai_edge_litert.schema_py_generated", package="ai-edge-litert", what="the TFLite export"
    )
