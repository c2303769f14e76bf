"""Throughput, outcomes, durations, waits and ETA accuracy per job type over a period
(SPEC §9 /api/stats/). Everything is a database aggregate; no job row is read.

The period selects jobs by when they finished (their outcome is known then).
PostgreSQL computes percentiles in the grouped query (``percentile_cont``); SQLite has
no percentile aggregate, so there each one is one ordered ``LIMIT 1 OFFSET k`` query.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Aggregate, Count, DurationField, ExpressionWrapper, F, FloatField, Max, Q, QuerySet
from django.db.models.functions import Abs, Trunc

from jobs.models import Job, Status

PERCENTILES = {"p50": 0.5, "p95": 0.95}
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


def _span(end: str, start: str) -> ExpressionWrapper:
    return ExpressionWrapper(F(end) - F(start), output_field=DurationField())


MEASURES = {
    "duration": (_span("finished_at", "started_at"), Q(status=Status.COMPLETE, started_at__isnull=False)),
    "queue_wait": (_span("started_at", "created_at"), Q(started_at__isnull=False)),
    "eta_error": (Abs("eta_error_seconds", output_field=FloatField()), Q(eta_error_seconds__isnull=False)),
}


def summary(since: datetime, until: datetime, jobs: QuerySet[Job] | None = None) -> dict:
    finished = (jobs if jobs is not None else Job.objects.all()).filter(finished_at__gte=since, finished_at__lt=until)
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
        "types": [{"type": t, **v} for t, v in sorted(per_type.items())],
        "series": _series(finished, since, until),
    }


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
            duration_max=Max(_span("finished_at", "started_at"), filter=Q(status=Status.COMPLETE)),
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


def _by_offset(rows: QuerySet[Job]) -> dict[str, dict]:
    by_type = {}
    for row in rows.values("type").annotate(n=Count("pk")).order_by():
        ordered = rows.filter(type=row["type"]).order_by("value").values_list("value", flat=True)
        by_type[row["type"]] = {
            name: _seconds(ordered[round(fraction * (row["n"] - 1))]) for name, fraction in PERCENTILES.items()
        }
    return by_type


def _series(finished: QuerySet[Job], since: datetime, until: datetime) -> dict:
    unit = "hour" if until - since <= timedelta(hours=72) else "day"
    rows = (
        finished.annotate(bucket=Trunc("finished_at", unit))
        .values("bucket")
        .annotate(
            complete=Count("pk", filter=OUTCOMES["complete"]),
            failed=Count("pk", filter=OUTCOMES["failed"] | OUTCOMES["dead_letter"]),
            canceled=Count("pk", filter=OUTCOMES["canceled"]),
        )
        .order_by("bucket")
    )
    return {"bucket": unit, "points": [{"at": r.pop("bucket"), **r} for r in rows]}


def _seconds(value) -> float | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        return round(value.total_seconds(), 3)
    return round(float(value), 3)
