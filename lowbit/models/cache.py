"""Where lowbit keeps what it computes once: trained checkpoints, host profiles (torch-free)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir() -> Path:
    """Root of lowbit's caches: ``$LOWBIT_CACHE``, else ``~/.cache/lowbit``."""
    root = os.environ.get("LOWBIT_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "lowbit"
