"""Hourly roll-ups of finished jobs per type, so stats over weeks stay fast (PostgreSQL).

A 30-day ``/api/stats/`` over a million jobs would scan and sort every row of the period.
Instead a cron entry (every minute) folds each finished hour into one ``JobStatsHour``
row per type: outcome counts, the longest run, and histograms of run time, queue wait
and ETA error over fixed log-spaced bounds (16 per decade, 0.01 s to 10^6 s). Stats for
a long period add the stored hours and count the partial hours at its edges live; the
percentiles come from the merged histograms, interpolated within a bucket (a bucket is
15 % wide, so the error is a few percent). Rows outlive the jobs the retention prunes.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from datetime import datetime, timedelta

from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from jobs.core.models import Job, JobStatsHour, Priority
from jobs.core.registry import cron, job_type

BOUNDS = [10 ** (i / 16 - 2) for i in range(16 * 8 + 1)]  # 0.01 s … 1e6 s
MEASURES = {"d": "duration", "w": "queue_wait", "e": "eta_error"}
COVERED_KEY = "jobdesk:stats:rolled-up-until"
HOUR = timedelta(hours=1)

_ROLLUP_SQL = """
WITH j AS (
    SELECT date_trunc('hour', finished_at) AS hour, type, status,
           EXTRACT(EPOCH FROM finished_at - started_at) AS run,
           EXTRACT(EPOCH FROM started_at - created_at) AS wait,
           abs(eta_error_seconds) AS eta
    FROM {table} WHERE finished_at >= %(since)s AND finished_at < %(until)s
), h AS (
    SELECT hour, type, 'd' AS m, width_bucket(run, %(bounds)s::float8[]) AS b, count(*) AS n
        FROM j WHERE status = 'complete' AND run IS NOT NULL GROUP BY 1, 2, 3, 4
    UNION ALL
    SELECT hour, type, 'w', width_bucket(wait, %(bounds)s::float8[]), count(*)
        FROM j WHERE wait IS NOT NULL GROUP BY 1, 2, 3, 4
    UNION ALL
    SELECT hour, type, 'e', width_bucket(eta, %(bounds)s::float8[]), count(*)
        FROM j WHERE eta IS NOT NULL GROUP BY 1, 2, 3, 4
), c AS (
    SELECT hour, type, count(*) AS finished,
           count(*) FILTER (WHERE status = 'complete') AS complete,
           count(*) FILTER (WHERE status = 'failed') AS failed,
           count(*) FILTER (WHERE status = 'dead_letter') AS dead_letter,
           count(*) FILTER (WHERE status = 'canceled') AS canceled,
           max(run) FILTER (WHERE status = 'complete') AS run_max
    FROM j GROUP BY 1, 2
), hist AS (
    SELECT hour, type, jsonb_object_agg(m || b, n) AS histograms FROM h GROUP BY 1, 2
)
SELECT c.hour, c.type, c.finished, c.complete, c.failed, c.dead_letter, c.canceled, c.run_max, hist.histograms
FROM c LEFT JOIN hist ON hist.hour = c.hour AND hist.type = c.type
"""


def available() -> bool:
    return connection.vendor == "postgresql"


def floor_hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def ceil_hour(at: datetime) -> datetime:
    floored = floor_hour(at)
    return floored if floored == at else floored + HOUR


def compute(since: datetime, until: datetime) -> list[JobStatsHour]:
    """Roll-up rows (unsaved) for the jobs finished in [since, until), per hour and type."""
    with connection.cursor() as cursor:
        cursor.execute(_ROLLUP_SQL.format(table=Job._meta.db_table), {"since": since, "until": until, "bounds": BOUNDS})
        rows = cursor.fetchall()
    return [
        JobStatsHour(
            hour=hour,
            type=job_type,
            finished=finished,
            complete=complete,
            failed=failed,
            dead_letter=dead_letter,
            canceled=canceled,
            duration_max=_float(run_max),
            histograms=_as_dict(histograms),
        )  # fmt: skip
        for hour, job_type, finished, complete, failed, dead_letter, canceled, run_max, histograms in rows
    ]


def refresh(now: datetime | None = None) -> dict:
    """Fold every finished hour not yet folded (and the last one again: a record may be
    written a little after its finish time). Idempotent."""
    if not available():
        return {"skipped": "roll-ups are for PostgreSQL"}
    until = floor_hour(now or timezone.now())
    latest = JobStatsHour.objects.order_by("-hour").values_list("hour", flat=True).first()
    if latest is not None:
        since = latest - HOUR
    else:
        finished = Job.objects.filter(finished_at__isnull=False).order_by("finished_at")
        first = finished.values_list("finished_at", flat=True).first()
        since = floor_hour(first) if first else until
    rows = compute(since, until) if since < until else []
    JobStatsHour.objects.filter(hour__gte=since, hour__lt=until).delete()
    JobStatsHour.objects.bulk_create(rows, batch_size=1000)
    cache.set(COVERED_KEY, until.isoformat(), timeout=None)
    return {"since": since.isoformat(), "until": until.isoformat(), "rows": len(rows)}


def covered_until() -> datetime | None:
    try:
        raw = cache.get(COVERED_KEY)
    except Exception:  # the cache is Redis; without it, stats take the live path
        return None
    return datetime.fromisoformat(raw) if raw else None


class Merged:
    """Counts and histograms of one type over a period, summed from roll-up rows."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = defaultdict(int)
        self.duration_max: float | None = None
        self.histograms: dict[str, dict[int, int]] = {m: defaultdict(int) for m in MEASURES}

    def add(self, row: JobStatsHour) -> None:
        for name in ("finished", "complete", "failed", "dead_letter", "canceled"):
            self.counts[name] += getattr(row, name)
        if row.duration_max is not None:
            self.duration_max = max(self.duration_max or 0.0, row.duration_max)
        for key, n in row.histograms.items():
            self.histograms[key[0]][int(key[1:])] += n

    def percentile(self, measure: str, fraction: float) -> float | None:
        histogram = self.histograms[measure]
        total = sum(histogram.values())
        if not total:
            return None
        target, seen = fraction * total, 0
        for bucket in sorted(histogram):
            n = histogram[bucket]
            if seen + n >= target:
                return _interpolate(bucket, (target - seen) / n)
            seen += n
        return _interpolate(max(histogram), 1.0)


def _interpolate(bucket: int, share: float) -> float:
    """A value ``share`` of the way through ``bucket`` (width_bucket numbering), in log space."""
    if bucket <= 0:
        return BOUNDS[0] * share
    low = BOUNDS[bucket - 1]
    high = BOUNDS[bucket] if bucket < len(BOUNDS) else low * 10 ** (1 / 16)
    return 10 ** (math.log10(low) + share * (math.log10(high) - math.log10(low)))


def _float(value) -> float | None:
    return None if value is None else float(value)


def _as_dict(value) -> dict:
    if value is None:
        return {}
    if isinstance(value, str):
        return json.loads(value)
    return dict(value)


@job_type("jobs.stats_rollup", public=False, priority=Priority.LOW, timeout=600, max_attempts=1)
def run_as_job(ctx) -> dict:
    return refresh()


cron("stats-rollup", "* * * * *", "jobs.stats_rollup")
