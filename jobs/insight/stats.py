"""Throughput, outcomes, durations, waits and ETA accuracy per job type over a period
(GET /api/stats/). Everything is a database aggregate; no job row is read.

The period selects jobs by when they finished (their outcome is known then).
PostgreSQL computes percentiles in the grouped query (``percentile_cont``); SQLite has
no percentile aggregate, so there each one is one ordered ``LIMIT 1 OFFSET k`` query.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypedDict

from django.db import connection
from django.db.models import Aggregate, Count, DurationField, ExpressionWrapper, F, FloatField, Max, Q, QuerySet
from django.db.models.functions import Abs, Trunc

from jobs.core.models import Job, JobStatsHour, Status
from jobs.insight import rollup

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations

PERCENTILES = {"p50": 0.5, "p95": 0.95}
# Longer periods of all jobs come from hourly roll-ups on PostgreSQL.
ROLLUP_AFTER = timedelta(hours=48)
OUTCOMES = {
    "complete": Q(status=Status.COMPLETE),
    "failed": Q(status=Status.FAILED),
    "dead_letter": Q(status=Status.DEAD_LETTER),
    "canceled": Q(status=Status.CANCELED),
}


class PercentileCont(Aggregate):
    """PostgreSQL's ordered-set aggregate: percentile_cont(f) WITHIN GROUP (ORDER BY x)."""

    function = "PERCENTILE_CONT"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"

    def __init__(self, expression, fraction: float, **extra):
        super().__init__(expression, fraction=float(fraction), **extra)


def span(end: str, start: str) -> ExpressionWrapper:
    return ExpressionWrapper(F(end) - F(start), output_field=DurationField())


MEASURES = {
    "duration": (span("finished_at", "started_at"), Q(status=Status.COMPLETE, started_at__isnull=False)),
    "queue_wait": (span("started_at", "created_at"), Q(started_at__isnull=False)),
    "eta_error": (Abs("eta_error_seconds", output_field=FloatField()), Q(eta_error_seconds__isnull=False)),
}


def summary(since: datetime, until: datetime, owner=None, *, rollup_after: timedelta = ROLLUP_AFTER) -> dict:
    """Stats of ``owner``'s jobs, or of all jobs. All jobs over more than ``rollup_after``
    on PostgreSQL come from the hourly roll-ups (jobs.insight.rollup) where they cover the period
    (the dashboard, refreshed live, takes them for any period)."""
    if owner is None and rollup.available() and until - since > rollup_after:
        covered = rollup.covered_until()
        start, end = rollup.ceil_hour(since), min(rollup.floor_hour(until), covered) if covered else None
        if end is not None and start < end:
            return _from_rollups(since, until, start, end)
    jobs = Job.objects.all() if owner is None else Job.objects.filter(owner=owner)
    finished = jobs.filter(finished_at__gte=since, finished_at__lt=until)
    hours = max((until - since).total_seconds() / 3600, 1e-9)
    postgres = connection.vendor == "postgresql"
    per_type = {row["type"]: _outcomes(row, hours, with_percentiles=postgres) for row in _counts(finished, postgres)}
    if not postgres:
        for measure, by_type in _percentiles_by_offset(finished).items():
            for job_type, values in by_type.items():
                per_type.setdefault(job_type, {})[measure] = values
    return {
        "since": since,
        "until": until,
        "source": "jobs",
        "types": [{"type": t, **v} for t, v in sorted(per_type.items())],
        "series": _series(finished, since, until),
    }


def _from_rollups(since: datetime, until: datetime, start: datetime, end: datetime) -> dict:
    """Stored hours in [start, end), the partial hours around them counted live."""
    rows = list(JobStatsHour.objects.filter(hour__gte=start, hour__lt=end))
    rows += rollup.compute(since, start) + rollup.compute(end, until)
    merged: dict[str, rollup.Merged] = defaultdict(rollup.Merged)
    for row in rows:
        merged[row.type].add(row)
    hours = (until - since).total_seconds() / 3600
    types = []
    for job_type, totals in sorted(merged.items()):
        found = _outcomes({**totals.counts, "total": totals.counts["finished"], "duration_max": totals.duration_max},
                          hours, with_percentiles=False)  # fmt: skip
        for letter, measure in rollup.MEASURES.items():
            found[measure] = {name: _seconds(totals.percentile(letter, q)) for name, q in PERCENTILES.items()}
        types.append({"type": job_type, **found})
    return {"since": since, "until": until, "source": "hourly roll-ups", "types": types,
            "series": _series_of_rows(rows, since, until)}  # fmt: skip


def _series_of_rows(rows: list[JobStatsHour], since: datetime, until: datetime) -> dict:
    unit = _series_unit(since, until)
    points: dict[datetime, dict[str, int]] = defaultdict(lambda: {"complete": 0, "failed": 0, "canceled": 0})
    for row in rows:
        at = row.hour if unit == "hour" else row.hour.replace(hour=0)
        points[at]["complete"] += row.complete
        points[at]["failed"] += row.failed + row.dead_letter
        points[at]["canceled"] += row.canceled
    return {"bucket": unit, "points": [{"at": at, **points[at]} for at in sorted(points)]}


def _series_unit(since: datetime, until: datetime) -> str:
    return "hour" if until - since <= timedelta(hours=72) else "day"


def _counts(finished: QuerySet[Job], with_percentiles: bool):
    """One grouped scan: counts, the longest run and — on PostgreSQL — every percentile."""
    percentiles = {
        f"{measure}_{name}": PercentileCont(expression, fraction, filter=condition)
        for measure, (expression, condition) in MEASURES.items()
        for name, fraction in PERCENTILES.items()
    }
    return (
        finished.values("type")
        .annotate(
            total=Count("pk"),
            **{name: Count("pk", filter=condition) for name, condition in OUTCOMES.items()},
            duration_max=Max(span("finished_at", "started_at"), filter=Q(status=Status.COMPLETE)),
            **(percentiles if with_percentiles else {}),
        )
        .order_by()
    )


def _outcomes(row: dict, hours: float, *, with_percentiles: bool) -> dict:
    total = row["total"]
    found = {
        "finished": total,
        **{name: row[name] for name in OUTCOMES},
        "rates": {name: round(row[name] / total, 4) for name in ("complete", "failed", "dead_letter")},
        "throughput_per_hour": round(row["complete"] / hours, 3),
        "duration_max": _seconds(row["duration_max"]),
    }
    if with_percentiles:
        for measure in MEASURES:
            found[measure] = {name: _seconds(row[f"{measure}_{name}"]) for name in PERCENTILES}
    return found


def _percentiles_by_offset(finished: QuerySet[Job]) -> dict[str, dict[str, dict]]:
    """SQLite has no percentile aggregate: one ordered LIMIT 1 OFFSET k query each."""
    found: dict[str, dict[str, dict]] = {}
    for measure, (expression, condition) in MEASURES.items():
        found[measure] = _by_offset(finished.filter(condition).annotate(value=expression))
    return found


class _Measured(TypedDict):
    value: Any  # a measure annotated on each job


def _by_offset(rows: QuerySet[WithAnnotations[Job, _Measured]]) -> dict[str, dict]:
    by_type = {}
    for row in rows.values("type").annotate(n=Count("pk")).order_by():
        ordered = rows.filter(type=row["type"]).order_by("value").values_list("value", flat=True)
        by_type[row["type"]] = {
            name: _seconds(ordered[round(fraction * (row["n"] - 1))]) for name, fraction in PERCENTILES.items()
        }
    return by_type


def _series(finished: QuerySet[Job], since: datetime, until: datetime) -> dict:
    unit = _series_unit(since, until)
    rows = (
        # UTC buckets, as the stored roll-ups' (a day in TIME_ZONE began at another hour)
        finished.annotate(bucket=Trunc("finished_at", unit, tzinfo=UTC))
        .values("bucket")
        .annotate(
            complete=Count("pk", filter=OUTCOMES["complete"]),
            failed=Count("pk", filter=OUTCOMES["failed"] | OUTCOMES["dead_letter"]),
            canceled=Count("pk", filter=OUTCOMES["canceled"]),
        )
        .order_by("bucket")
    )
    return {
        "bucket": unit,
        "points": [{"at": r["bucket"], **{k: v for k, v in r.items() if k != "bucket"}} for r in rows],
    }


def _seconds(value) -> float | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        return round(value.total_seconds(), 3)
    return round(float(value), 3)
