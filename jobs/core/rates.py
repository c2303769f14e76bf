"""Rate limits as text ("100/minute", "5/2s") and the sliding window they are held to.

A rate of N per P seconds allows a start when fewer than N starts happened in the last
P seconds. Unlike a counter per fixed period, a sliding window never lets 2·N through
around a period's boundary.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_UNITS = {
    "s": 1, "sec": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
}  # fmt: skip
_PATTERN = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+)\s*$", re.ASCII)  # 0-9 only
MAX_PERIOD_SECONDS = 366 * 86400  # a window longer than a year is no rate limit anyone means
HINT = 'Write starts per period, e.g. "100/minute", "5/2s" or "1000/hour".'


@dataclass(frozen=True)
class Rate:
    count: int
    seconds: float

    def __str__(self) -> str:
        return f"{self.count}/{self.seconds:g}s"

    def allows(self, starts: list[float], now: float) -> bool:
        """May one more start happen at ``now``, given the latest starts (epoch s)?"""
        return len(recent(starts, now, self)) < self.count

    def free(self, starts: list[float], now: float) -> int:
        """How many starts the window has room for at ``now``."""
        return max(0, self.count - len(recent(starts, now, self)))


def recent(starts: list[float], now: float, rate: Rate) -> list[float]:
    return [t for t in starts if t >= now - rate.seconds]  # one exactly P ago still counts


def parse(text: str, *, stored: bool = False) -> Rate:
    """``"100/minute"`` → Rate(100, 60). ValueError (with the hint) when malformed.
    ``stored``: a rate already kept (set before periods were limited) is held to the
    longest period rather than refused — refused, it would mean no limit at all."""
    match = _PATTERN.match(text.lower())
    if not match or match.group(3) not in _UNITS:
        raise ValueError(f"{text!r} is not a rate. {HINT}")
    count, multiple, unit = int(match.group(1)), float(match.group(2) or 1), match.group(3)
    seconds = multiple * _UNITS[unit]
    if count < 1 or seconds <= 0:
        raise ValueError(f"{text!r} allows nothing: the count and the period must be positive. {HINT}")
    if seconds > MAX_PERIOD_SECONDS and stored:
        return Rate(count, MAX_PERIOD_SECONDS)
    if seconds > MAX_PERIOD_SECONDS:
        raise ValueError(f"{text!r}: the period is at most 366 days. {HINT}")
    if count > 100_000:
        raise ValueError(f"{text!r}: at most 100000 starts per period are counted. {HINT}")
    return Rate(count, seconds)
