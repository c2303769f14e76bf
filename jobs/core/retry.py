"""Backoff policy for temporary errors: a pure function."""

from __future__ import annotations

import random


def backoff_delay(
    attempt: int, base: float, *, jitter: float = 0.1, rng: random.Random | None = None, cap: float | None = None
) -> float:
    """Seconds to wait before attempt ``attempt + 1``, after ``attempt`` failed ones.

    ``base · 2^(attempt-1)`` plus up to ``jitter`` of that again, so jobs that failed
    together do not all come back in the same second; the doubling stops at ``cap``
    (RETRY_MAX_DELAY), the jitter still added.
    Without one, the 34th attempt of a 30 s base waited past the year 9999: its retry
    could not be written, and the job stayed active, holding its type's slot.
    """
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    delay = base * (2 ** min(attempt - 1, 1000))  # an int power: no float overflow on the way
    if cap is not None:
        delay = min(delay, cap)  # then the jitter: jobs at the cap still come back spread out
    return delay + (rng or random).uniform(0, delay * jitter)


def should_retry(attempts: int, max_attempts: int) -> bool:
    return attempts < max_attempts
