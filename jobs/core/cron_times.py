"""When a cron expression fires in a time zone, across daylight-saving changes.

The expression reads wall-clock time in its zone (``0 7 * * *`` in Europe/Kyiv is 07:00
Kyiv time, summer and winter). On the two change days a day has a gap or a repeated
hour; the rule is the one cron has always had (and the work window follows):

- An entry with a fixed hour fires once per matching wall-clock time. A time that falls
  in the spring gap fires when the gap ends (03:30 on a day that jumps 03:00 → 04:00
  fires at 04:00): never skipped. A time in the autumn's repeated hour fires on its
  first pass only: never doubled.
- An entry that runs every hour (``*`` in the hour field: ``*/5 * * * *``) fires by
  elapsed time: every real 5 minutes, through both passes of a repeated hour, and over
  a gap as if it were not there (no wall-clock minute in the gap exists to be missed).

Pure functions of their arguments: no database, no Redis, no clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from crontab import CronTab

HINT = 'Five fields: minute hour day-of-month month day-of-week, e.g. "0 7 * * *" or "*/15 * * * 1-5".'
ZONE_HINT = 'An IANA time zone name, e.g. "UTC", "Europe/Kyiv" or "America/New_York".'
_SEARCH_LIMIT = 2000  # candidates tried before an expression is called impossible (e.g. 30 February)


def parse(expression: str) -> CronTab:
    """The expression, or ValueError with the hint. Five fields only: crontab also
    takes a seconds and a year field, which schedules do not use."""
    # ASCII only: crontab reads "５" (a full-width digit) as 5, which no cron does.
    if not isinstance(expression, str) or not expression.isascii() or len(expression.split()) != 5:
        raise ValueError(f"{expression!r} is not a cron expression. {HINT}")
    try:
        return CronTab(expression)
    except ValueError as error:
        raise ValueError(f"{expression!r} is not a cron expression ({error}). {HINT}") from None


def zone(name: str) -> ZoneInfo:
    """The zone, or ValueError with the hint."""
    # Only the zones the server lists (as a work window's): ZoneInfo also opens
    # "localtime", "posixrules" or "right/UTC", and "America" (a directory) raised
    # IsADirectoryError — a 500.
    from workwindow.models import known_zones  # a model module: loaded once the apps are

    if not isinstance(name, str) or name not in known_zones():
        raise ValueError(f"{name!r} is not a time zone. {ZONE_HINT}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"{name!r} is not a time zone. {ZONE_HINT}") from None


def by_elapsed_time(expression: str) -> bool:
    """Hourly or finer (``*`` hour): fires by elapsed time across a change (see above)."""
    return expression.split()[1] == "*"


def next_after(expression: str, zone_name: str, after: datetime) -> datetime:
    """The first firing strictly after ``after`` (an aware datetime), in UTC."""
    tab, tz = parse(expression), zone(zone_name)
    if by_elapsed_time(expression):
        return _next_by_elapsed_time(tab, tz, after)
    return _next_by_wall_clock(tab, tz, after)


def next_runs(expression: str, zone_name: str, after: datetime, count: int = 5) -> list[datetime]:
    """Up to ``count`` firings after ``after``. A rare expression may have fewer within
    the parser's reach (``0 0 29 2 1``, 29 February on a Monday: 2044, 2072, then none
    it can find): those found, not none; one with no firing at all is an error."""
    runs: list[datetime] = []
    at = after
    for _ in range(count):
        try:
            at = next_after(expression, zone_name, at)
        except ValueError:
            if runs:
                break
            raise
        runs.append(at)
    return runs


def _wall(moment: datetime, tz: ZoneInfo) -> datetime:
    return moment.astimezone(tz).replace(tzinfo=None)


def _next_wall(tab: CronTab, wall: datetime) -> datetime:
    """The next matching wall-clock minute strictly after ``wall`` (naive)."""
    delay = tab.next(now=wall, default_utc=True)
    if delay is None:
        raise ValueError(f"the expression never fires. {HINT}")
    return (wall + timedelta(seconds=delay)).replace(second=0, microsecond=0)


def _instants(wall: datetime, tz: ZoneInfo) -> list[datetime]:
    """The real instants a wall-clock time names: none (in a gap), one, or two (fold)."""
    found = set()
    for fold in (0, 1):
        instant = wall.replace(tzinfo=tz, fold=fold).astimezone(UTC)
        if _wall(instant, tz) == wall:
            found.add(instant)
    return sorted(found)


def _gap_end(wall: datetime, tz: ZoneInfo) -> datetime:
    """The first instant after the gap a nonexistent wall time falls in: the change.
    Read with the offsets before and after, the wall time brackets it."""
    low = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)  # with the later (larger) offset: earlier
    high = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    return _change_between(low, high, tz)


def _change_between(low: datetime, high: datetime, tz: ZoneInfo) -> datetime:
    """The first instant in (low, high] whose UTC offset is high's (changes fall on
    whole minutes)."""
    target = high.astimezone(tz).utcoffset()
    low_minute, high_minute = int(low.timestamp() // 60), int(high.timestamp() // 60)
    while high_minute - low_minute > 1:
        middle = (low_minute + high_minute) // 2
        if datetime.fromtimestamp(middle * 60, UTC).astimezone(tz).utcoffset() == target:
            high_minute = middle
        else:
            low_minute = middle
    return datetime.fromtimestamp(high_minute * 60, UTC)


def _next_by_wall_clock(tab: CronTab, tz: ZoneInfo, after: datetime) -> datetime:
    wall = _wall(after, tz)
    for _ in range(_SEARCH_LIMIT):
        wall = _next_wall(tab, wall)
        instants = _instants(wall, tz)
        candidate = instants[0] if instants else _gap_end(wall, tz)  # a repeated time: its first pass
        if candidate > after:
            return candidate
    raise ValueError(f"the expression does not fire within {_SEARCH_LIMIT} tries. {HINT}")


def _next_by_elapsed_time(tab: CronTab, tz: ZoneInfo, after: datetime) -> datetime:
    """Read the expression against the offset in force; when the firing it gives lies
    past a change of offset, read it again from the change with the new offset."""
    start, offset = after, _offset(after, tz)
    for _ in range(_SEARCH_LIMIT):
        wall = _next_wall(tab, (start + offset).replace(tzinfo=None))
        candidate = (wall - offset).replace(tzinfo=UTC)
        if _offset(candidate, tz) == offset:
            return candidate
        change = _change_between(start, candidate, tz)
        start, offset = change - timedelta(microseconds=1), _offset(change, tz)
    raise ValueError(f"the expression does not fire within {_SEARCH_LIMIT} tries. {HINT}")


def _offset(moment: datetime, tz: ZoneInfo) -> timedelta:
    offset = moment.astimezone(tz).utcoffset()
    assert offset is not None  # a ZoneInfo always has one
    return offset
