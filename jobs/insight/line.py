"""Counting a line: how many queued jobs of each type stand between places in it.

An exact count over a 100k-job line visits every row: tens of milliseconds, too slow for
every ETA a page or a submit asks for. So:

* the head of each priority's line, where jobs leave and every second counts, is read
  job by job (``HEAD_EXACT`` entries of the line index);
* beyond it, a profile of the whole line in buckets of ``PROFILE_BUCKET`` jobs (one
  query, rebuilt at most every ``PROFILE_SECONDS`` per process) gives counts,
  interpolated by enqueue time within a bucket;
* jobs enqueued after the profile was built are read job by job.

Only lines longer than the head ever build a profile. Deep in a long line an error of
half a bucket is a small fraction of the wait, and the profile's staleness does not
matter there: jobs leave at the head, and new ones join at the end, read exactly.
"""

from __future__ import annotations

import bisect
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import connection
from django.utils.dateparse import parse_datetime

from jobs.core.models import Job, Status

HEAD_EXACT = 2000
PROFILE_BUCKET = 250
PROFILE_SECONDS = 10.0
# Counts by *work*: a job type, or for a sized type's jobs the type and their size class
# ("ingestion.document#80"), since a sized job's duration depends on its class.
Counts = dict[str, float]
_CLASS_MARK = "#"


def work(job_type: str, size_class: int | None) -> str:
    return job_type if size_class is None else f"{job_type}{_CLASS_MARK}{size_class}"


def parts(key: str) -> tuple[str, int | None]:
    """The job type and size class a ``work`` key stands for."""
    job_type, mark, klass = key.rpartition(_CLASS_MARK)
    if mark and klass.lstrip("-").isascii() and klass.lstrip("-").isdigit():
        return job_type, int(klass)
    return key, None


@dataclass
class _Bucket:
    first: datetime  # enqueue time of its first and last job
    last: datetime
    counts: dict[str, int]


@dataclass
class _Profile:
    buckets: list[_Bucket]  # in line order
    lasts: list[datetime]
    before: list[Counts]  # counts by type of all buckets before bucket i

    @classmethod
    def of(cls, buckets: list[_Bucket]) -> _Profile:
        before: list[Counts] = []
        running: defaultdict[str, float] = defaultdict(float)
        for bucket in buckets:
            before.append(dict(running))
            for job_type, n in bucket.counts.items():
                running[job_type] += n
        before.append(dict(running))
        return cls(buckets, [b.last for b in buckets], before)

    @property
    def end(self) -> datetime | None:
        return self.lasts[-1] if self.lasts else None

    def up_to(self, at: datetime) -> Counts:
        """Jobs enqueued before ``at`` (interpolated inside the bucket ``at`` falls in)."""
        index = bisect.bisect_left(self.lasts, at)
        counts = dict(self.before[index])
        if index < len(self.buckets):
            bucket = self.buckets[index]
            span = (bucket.last - bucket.first).total_seconds()
            share = 0.0 if at <= bucket.first or span <= 0 else (at - bucket.first).total_seconds() / span
            for job_type, n in bucket.counts.items():
                counts[job_type] = counts.get(job_type, 0.0) + n * share
        return counts


_profiles: tuple[float, dict[str, _Profile]] | None = None


def clear_cache() -> None:
    global _profiles
    _profiles = None


def _profile(priority: str, *, fresh: bool = False) -> _Profile:
    global _profiles
    if fresh or _profiles is None or _profiles[0] < time.monotonic():
        _profiles = (time.monotonic() + PROFILE_SECONDS, _build_profiles())
    return _profiles[1].get(priority) or _Profile.of([])


_PROFILE_SQL = """
SELECT priority, bucket, type, size_class, COUNT(*), MIN(enqueued_at), MAX(enqueued_at) FROM (
    SELECT priority, type, size_class, enqueued_at,
           (ROW_NUMBER() OVER (PARTITION BY priority ORDER BY enqueued_at) - 1) / %s AS bucket
    FROM {table} WHERE status = %s AND enqueued_at IS NOT NULL
) line
GROUP BY priority, bucket, type, size_class
"""


def _build_profiles() -> dict[str, _Profile]:
    buckets: dict[str, dict[int, _Bucket]] = defaultdict(dict)
    with connection.cursor() as cursor:
        cursor.execute(_PROFILE_SQL.format(table=Job._meta.db_table), [PROFILE_BUCKET, Status.QUEUED.value])
        for priority, index, job_type, klass, n, first, last in cursor.fetchall():
            first, last = _as_datetime(first), _as_datetime(last)
            bucket = buckets[priority].setdefault(index, _Bucket(first, last, {}))
            bucket.first, bucket.last = min(bucket.first, first), max(bucket.last, last)
            bucket.counts[work(job_type, klass)] = n
    return {p: _Profile.of([b[i] for i in sorted(b)]) for p, b in buckets.items()}


def _as_datetime(value) -> datetime:
    """Raw SQL gives SQLite's datetimes as text."""
    if isinstance(value, str):
        value = parse_datetime(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass
class _Counted:
    """Queued jobs counted in the database, by stretch and type, never fetched one by one."""

    by_stretch: dict[int, Counts]
    total: int
    last: datetime | None  # enqueue time of the last job counted
    at_last: dict[int, Counts]  # of which enqueued at exactly that time

    def add_to(self, found: list[Counts], *, without_last: bool = False) -> None:
        for index, counts in self.by_stretch.items():
            for job_type, n in counts.items():
                found[index][job_type] += n - (self.at_last.get(index, {}).get(job_type, 0) if without_last else 0)


_COUNT_SQL = """
SELECT stretch, type, size_class, at_last, COUNT(*), MAX(last) FROM (
    SELECT type, size_class, stretch, enqueued_at = MAX(enqueued_at) OVER () AS at_last,
           MAX(enqueued_at) OVER () AS last
    FROM (
        SELECT type, size_class, enqueued_at, {stretch} AS stretch FROM {table}
        WHERE status = %s AND priority = %s AND enqueued_at IS NOT NULL{where}
        ORDER BY enqueued_at{limit}
    ) head
) marked
GROUP BY stretch, type, size_class, at_last
"""


def _count(
    priority: str,
    bounds: list[datetime | None],
    *,
    since: datetime | None = None,
    after: datetime | None = None,
    limit: int | None = None,
) -> _Counted:
    """Jobs of ``priority``'s line, in line order from ``since`` (or ``after``), up to
    ``limit`` of them and not past the last bound, counted per stretch of ``bounds``."""
    adapt = connection.ops.adapt_datetimefield_value
    cases = [(f"WHEN enqueued_at < %s THEN {i}", adapt(b)) for i, b in enumerate(bounds) if b is not None]
    stretch = f"CASE {' '.join(c for c, _ in cases)} ELSE {len(bounds) - 1} END" if cases else "0"
    where, params = "", [b for _, b in cases] + [Status.QUEUED.value, priority]
    for clause, value in (("enqueued_at >= %s", since), ("enqueued_at > %s", after), ("enqueued_at < %s", bounds[-1])):
        if value is not None:
            where += f" AND {clause}"
            params.append(adapt(value))
    sql = _COUNT_SQL.format(
        stretch=stretch, table=Job._meta.db_table, where=where, limit=f" LIMIT {int(limit)}" if limit else ""
    )
    counted = _Counted({}, 0, None, {})
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for index, job_type, klass, at_last, n, last in cursor.fetchall():
            key = work(job_type, klass)
            by_type = counted.by_stretch.setdefault(index, {})
            by_type[key] = by_type.get(key, 0) + n
            if at_last:
                counted.at_last.setdefault(index, {})[key] = n
            counted.total += n
            counted.last = _as_datetime(last)
    return counted


def stretches(priority: str, bounds: list[datetime | None]) -> list[Counts]:
    """Queued jobs by type in each stretch of ``priority``'s line: stretch i holds those
    enqueued before ``bounds[i]`` and not before ``bounds[i-1]``. ``bounds`` ascend; a
    final None means "to the end of the line"."""
    found: list[Counts] = [defaultdict(float) for _ in bounds]  # defaultdicts: add_to adds to missing types
    if not bounds:
        return found
    head = _count(priority, bounds, limit=HEAD_EXACT)
    if head.total < HEAD_EXACT:
        head.add_to(found)
        return found  # the head is all of the line that matters: exact
    # The head ends before its last enqueue time; jobs enqueued at that very time (a bulk
    # submit) are all counted with what follows.
    head_end = head.last
    assert head_end is not None  # a full head counted rows, and every row has an enqueue time
    head.add_to(found, without_last=True)
    profile = _profile(priority)
    if profile.end is None or profile.end < head_end:
        profile = _profile(priority, fresh=True)  # the head has moved past it
    if profile.end is None or profile.end < head_end:
        _count(priority, bounds, since=head_end).add_to(found)  # still: count the rest exactly
        return found
    _add_profiled(profile, head_end, bounds, found)
    if bounds[-1] is None or bounds[-1] > profile.end:
        _count(priority, bounds, after=profile.end).add_to(found)  # joined since the profile was built
    return found


def _add_profiled(profile: _Profile, head_end: datetime, bounds: list[datetime | None], found: list[Counts]) -> None:
    """The stretch of the profile after the head and up to its end, bound by bound."""
    assert profile.end is not None  # the caller only profiles with a non-empty profile
    previous = profile.up_to(head_end)
    for index, bound in enumerate(bounds):
        if bound is not None and bound <= head_end:
            continue
        upto = profile.before[-1] if bound is None or bound > profile.end else profile.up_to(bound)
        for job_type, n in upto.items():
            found[index][job_type] += max(0.0, n - previous.get(job_type, 0.0))
        previous = upto
        if bound is None or bound > profile.end:
            return
