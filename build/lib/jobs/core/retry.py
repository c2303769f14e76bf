"""Backoff policy for temporary errors: a pure function."""

from __future__ import annotations

import random


def backoff_delay(attempt: int, base: float, *, jitter: float = 0.1, rng: random.Random | None = None) -> float:
    """Seconds to wait before attempt ``attempt + 1``, after ``attempt`` failed ones.

    ``base · 2^(attempt-1)`` plus up to ``jitter`` of that again, so jobs that failed
    together do not all come back in the same second.
    """
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    delay = base * (2 ** (attempt - 1))
    return delay + (rng or random).uniform(0, delay * jitter)


def should_retry(attempts: int, max_attempts: int) -> bool:
    return attempts < max_attempts
