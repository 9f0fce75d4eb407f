"""A one-line progress display on stderr: trials done/failed, hypervolume, ETA.

On a terminal the line is redrawn in place with ``\\r``; elsewhere (a log file, CI) nothing
is printed until :meth:`Progress.close`, which prints one final line. No dependency.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress", "format_eta"]


def format_eta(seconds: float | None) -> str:
    """``h:mm:ss`` (or ``--:--`` when unknown)."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "--:--"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}"


class Progress:
    """Progress of one method's trials.

    Args:
        label: shown first (the method name).
        total: trials to complete in this run.
        stream: where to write (stderr by default).
        enabled: False silences everything (tests, ``--quiet``).
    """

    def __init__(
        self, label: str, *, total: int, stream: TextIO | None = None, enabled: bool = True
    ) -> None:
        self.label = label
        self.total = max(0, int(total))
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.done = 0
        self.failed = 0
        self.hypervolume: float | None = None
        self._start = time.monotonic()
        self._width = 0

    def line(self) -> str:
        elapsed = time.monotonic() - self._start
        eta = None
        if self.done and self.total:
            eta = elapsed / self.done * max(0, self.total - self.done)
        elif self.total == 0:
            eta = 0.0
        hv = "-" if self.hypervolume is None else f"{self.hypervolume:.4f}"
        return (
            f"[{self.label}] {self.done}/{self.total} done, {self.failed} failed, "
            f"HV {hv}, elapsed {format_eta(elapsed)}, ETA {format_eta(eta)}"
        )

    def update(self, *, done: int, failed: int, hypervolume: float | None = None) -> None:
        self.done, self.failed = done, failed
        if hypervolume is not None:
            self.hypervolume = hypervolume
        if self.enabled and self.tty:
            text = self.line()
            pad = max(0, self._width - len(text))
            self.stream.write("\r" + text + " " * pad)
            self.stream.flush()
            self._width = len(text)

    def close(self) -> None:
        """Finish the line (TTY) or print the final line (not a TTY)."""
        if not self.enabled:
            return
        if self.tty:
            self.update(done=self.done, failed=self.failed)
            self.stream.write("\n")
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()
