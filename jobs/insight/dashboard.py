"""What the operations dashboard shows, in one read-only call.

Counts by status, queue depths and pauses, workers and what each runs, the scheduler's heartbeat,
the work window, jobs finished per second over the last 15 minutes (by outcome and
queue), the last 24 hours per hour, queue waits, ETA accuracy and the
dead-letter pile. Each part is guarded: a Redis outage blanks the Redis parts and says
so instead of failing the page.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.core.cache import cache
from django.db.models import Count
from django.utils import timezone
from redis.exceptions import RedisError

from jobs.core import flow, opening, queueing
from jobs.core.models import Job, Status
from jobs.insight import calibration, health, stats, throughput
from jobs.insight.workers import label as worker_label
from workwindow.policy import closes_at, is_open, next_open

DAY = timedelta(hours=24)


CACHE_KEY = "jobs:dashboard"
CACHE_SECONDS = 2  # every open dashboard re-reads after events: one computation serves them all


def cached_overview() -> dict[str, Any]:
    """The overview, computed at most once per CACHE_SECONDS across web processes."""
    try:
        found = cache.get(CACHE_KEY)
    except Exception:  # the cache lives in Redis: without it, compute every time
        found = None
    if found is None:
        found = overview()
        with contextlib.suppress(Exception):
            cache.set(CACHE_KEY, found, CACHE_SECONDS)
        return found
    # The pauses are read afresh (two small queries): the operator who just paused a
    # queue is looking at this page, and a cached "running" would contradict them.
    return {**found, "queue_flow": queue_flow()}


def queue_flow() -> list[dict[str, Any]]:
    """Each queue's pause: who paused it, why, since when, how many jobs it holds."""
    return flow.describe_queues()


def overview(now: datetime | None = None) -> dict[str, Any]:
    now = now or timezone.now()
    counts = status_counts()
    redis_parts = _redis_parts()
    # Whole hours from the roll-ups (PostgreSQL), the partial ones read live.
    last_day = stats.summary(now - DAY, now, rollup_after=timedelta(0))
    return {
        "generated_at": now,
        "counts": counts,
        "dead_letters": counts.get(Status.DEAD_LETTER, 0),
        **redis_parts,
        "queue_flow": queue_flow(),  # from the database: shown when Redis is not
        "window": window_state(now),
        "hours": _hourly(last_day["series"]["points"], now),
        "throughput": throughput.throughput(now),  # per second, last 15 min, by outcome and queue
        "types": [
            {
                "type": row["type"],
                "complete": row["complete"],
                "failed": row["failed"] + row["dead_letter"],
                "queue_wait": row.get("queue_wait"),
                "duration": row.get("duration"),
            }
            for row in last_day["types"]
        ],  # fmt: skip
        "eta_accuracy": calibration.accuracy(),
    }


def status_counts(types: Iterable[str] = ()) -> dict[str, int]:
    """Jobs per status (of these types): one grouped scan of the (status, …) index."""
    jobs = Job.objects.filter(type__in=types) if types else Job.objects.all()
    rows = jobs.order_by().values_list("status").annotate(n=Count("*"))  # COUNT(*): index-only
    return {status: n for status, n in rows}


def _redis_parts() -> dict[str, Any]:
    try:
        depths = queueing.queue_depths()
        workers = queueing.workers()
        scheduler = health.scheduler_state()
    except RedisError as error:
        return {"redis_error": str(error), "queues": {}, "workers": [], "scheduler": {"ok": False, "error": str(error)}}
    running = _running_jobs([w.current_job for w in workers.values() if w.current_job])
    return {
        "redis_error": None,
        "queues": depths,
        "workers": [
            {
                "name": w.name,
                "label": worker_label(w),
                "host": w.hostname,
                "pid": w.pid,
                "queues": w.queues,
                "last_heartbeat": w.last_heartbeat,
                "since": w.birth,
                "done": w.successful + w.failed,
                "failed_runs": w.failed,
                "job": running.get(w.current_job) if w.current_job else None,
            }
            for w in sorted(workers.values(), key=lambda w: (w.hostname or "", w.pid or 0, w.name))
        ],  # fmt: skip
        "scheduler": scheduler,
    }


def _running_jobs(dispatches: list[str]) -> dict[str, dict]:
    """RQ says which dispatch each worker runs; the database says what that job is."""
    rows = Job.objects.filter(rq_job_id__in=dispatches).values("id", "rq_job_id", "type", "progress", "stage",
                                                                "started_at")  # fmt: skip
    return {row["rq_job_id"]: {k: v for k, v in row.items() if k != "rq_job_id"} for row in rows}


def window_state(now: datetime) -> dict[str, Any]:
    windows = opening.current()
    if not windows:
        return {"configured": False, "open": True, "next_opening": None, "closes_at": None}
    open_now = is_open(windows, now)
    return {
        "configured": True,
        "open": open_now,
        "closes_at": closes_at(windows, now) if open_now else None,
        "next_opening": None if open_now else next_open(windows, now),
        "deferred": Job.objects.filter(status=Status.DEFERRED).count(),
    }


def _hourly(points: list[dict], now: datetime) -> list[dict]:
    """24 hourly buckets, oldest first, zeros where nothing finished."""
    by_hour = {point["at"].replace(minute=0, second=0, microsecond=0): point for point in points}
    first = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=23)
    hours = [first + timedelta(hours=i) for i in range(24)]
    empty = {"complete": 0, "failed": 0}
    return [{"at": hour, "complete": by_hour.get(hour, empty)["complete"], "failed": by_hour.get(hour, empty)["failed"]}
            for hour in hours]  # fmt: skip
