"""Work-window time math: pure functions, no Django, no database.

A window opens at ``start`` on each of its ``weekdays`` (Monday = 0: the day it opens)
in its own time zone and closes at ``end`` — the next day when ``end <= start``
(22:00–06:00), after 24 hours when they are equal. Wall-clock times become instants by
one rule: the first instant at which the zone's clock reads that time or later. So a
window starting in an hour the clock skips (spring forward) opens when the clock jumps
past it, and one starting in an hour the clock repeats (fall back) opens on the first
pass only. Several windows combine as their union; no window at all means "always open".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

ALL_DAYS = frozenset(range(7))
HORIZON = timedelta(days=8)  # a week of openings, plus margin for zones and DST


@dataclass(frozen=True)
class Window:
    zone: ZoneInfo
    start: time
    end: time
    weekdays: frozenset[int] = field(default=ALL_DAYS)


Interval = tuple[datetime, datetime]  # [open, close) in UTC


def first_instant(day: date, wall: time, zone: ZoneInfo) -> datetime:
    """The first instant (UTC) at which ``zone``'s clock reads ``day wall`` or later."""
    naive = datetime.combine(day, wall)
    earlier = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)  # fold=0: first pass
    if earlier.astimezone(zone).replace(tzinfo=None) == naive:
        return earlier
    # Skipped by the clock: the answer is the transition, between the two readings.
    low, high = sorted((int(earlier.timestamp()), int(naive.replace(tzinfo=zone, fold=1).timestamp())))
    while low < high:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, UTC).astimezone(zone).replace(tzinfo=None) >= naive:
            high = middle
        else:
            low = middle + 1
    return datetime.fromtimestamp(low, UTC)


def occurrences(window: Window, since: datetime, until: datetime) -> list[Interval]:
    """The window's openings that may overlap [since, until), in order."""
    first_day = since.astimezone(window.zone).date() - timedelta(days=1)
    last_day = until.astimezone(window.zone).date() + timedelta(days=1)
    spans_midnight = window.end <= window.start
    found = []
    day = first_day
    while day <= last_day:
        if day.weekday() in window.weekdays:
            opens = first_instant(day, window.start, window.zone)
            closes = first_instant(day + timedelta(days=spans_midnight), window.end, window.zone)
            if closes > opens:  # a window lying wholly in a skipped hour never opens
                found.append((opens, closes))
        day += timedelta(days=1)
    return found


def open_periods(windows: Iterable[Window], since: datetime, until: datetime) -> list[Interval]:
    """The union of all windows' openings around [since, until): sorted, merged."""
    intervals = sorted(i for w in windows for i in occurrences(w, since, until))
    merged: list[Interval] = []
    for opens, closes in intervals:
        if merged and opens <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], closes))
        else:
            merged.append((opens, closes))
    return merged


def is_open(windows: Sequence[Window], at: datetime) -> bool:
    if not windows:
        return True
    return any(opens <= at < closes for opens, closes in open_periods(windows, at, at))


def next_open(windows: Sequence[Window], after: datetime) -> datetime | None:
    """``after`` itself when open, else the next opening; None if no window ever opens."""
    if not windows:
        return after
    for opens, closes in open_periods(windows, after, after + HORIZON):
        if closes > after:
            return max(opens, after)
    return None


def closes_at(windows: Sequence[Window], at: datetime) -> datetime | None:
    """When the open period containing ``at`` ends; None when closed at ``at`` or open
    for longer than the horizon (e.g. a 24-hour window every day)."""
    if not windows:
        return None
    for opens, closes in open_periods(windows, at, at + HORIZON):
        if opens <= at < closes:
            return closes if closes < at + HORIZON else None
    return None
