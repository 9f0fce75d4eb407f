"""Ranges of the integers users pass through every front-end (flags, configs, requests).

They live here, in the lowest layer, so the CLI, the search's config reader and the HTTP
service check the same ranges. A seed must fit a signed 64-bit integer (torch and numpy
generators take it); a step count must finish (``--finetune-steps 10**20`` would run for
ever).
"""

from __future__ import annotations

__all__ = ["MAX_SEED", "MAX_STEPS", "check_int"]

#: largest seed accepted (seeds are 0 .. 2**63 - 1)
MAX_SEED = 2**63 - 1
#: largest QAT / fine-tuning step count accepted
MAX_STEPS = 1_000_000


def check_int(value: object, *, name: str, low: int, high: int) -> str | None:
    """None when ``value`` is an integer in ``[low, high]``, else the problem as a phrase.

    Example:
        >>> check_int(2**63, name="seed", low=0, high=MAX_SEED)
        'seed: must be an integer from 0 to 9223372036854775807, got 9223372036854775808'
    """
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        return f"{name}: must be an integer from {low} to {high}, got {value!r}"
    return None
