"""argparse value types shared by the subcommands: range-checked integers.

A value out of range is an argparse error (usage line, then ``argument --seed: ...``, exit
code 2) before any work starts.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from lowbit.hwsim.limits import MAX_SEED, MAX_STEPS

__all__ = ["bounded_int", "seed", "steps"]


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """An argparse ``type`` accepting integers ``low`` .. ``high`` (ASCII digits)."""

    def parse(text: str) -> int:
        stripped = text.strip()
        digits = stripped[1:] if stripped[:1] in "+-" else stripped
        if not (digits.isascii() and digits.isdigit()) or len(digits) > 30:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
        value = int(stripped)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}, got {value}")
        return value

    parse.__name__ = "integer"  # argparse names the type in its messages
    return parse


#: a training / sampler seed: 0 .. 2**63 - 1
seed = bounded_int(0, MAX_SEED)
#: a QAT / fine-tuning step count
steps = bounded_int(0, MAX_STEPS)
