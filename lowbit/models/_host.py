"""What the OS says about this machine's CPU: its feature flags (``/proc/cpuinfo``).

A host fact, torch-free and without lowbit imports, read by both the export (which weight
type ONNX Runtime's INT8 kernels want, :func:`lowbit.models.export.deploy.resolve_weight_type`)
and host calibration (the ISA a profile is fitted on, :mod:`lowbit.models.hostcal.isa`, which
re-exports :func:`cpu_flags`), so neither subpackage imports the other for it.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

__all__ = ["cpu_flags", "read_os_text"]


@cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where unavailable)."""
    for line in read_os_text("/proc/cpuinfo").splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def read_os_text(path: str) -> str:
    """The text of an OS information file (``/proc``, ``/sys``); empty where unreadable."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError:
        return ""
