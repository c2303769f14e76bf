"""Cron entries in rq-scheduler: registered idempotently, each tick a visible Job.

rq-scheduler can push the same cron RQ job twice when a tick fires while the previous
one still waits (docs/stack.md), so a tick only *submits* a Job, with an idempotency key
made of the entry and the tick time: a repeated tick returns the existing job.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from crontab import CronTab

from jobs.core import queueing, registry
from jobs.core.models import Priority

logger = logging.getLogger("jobs.upkeep.crons")

CRON_ID_PREFIX = "jobdesk-cron-"
TICK_ENTRY_POINT = "jobs.upkeep.crons.tick"


def cron_id(name: str) -> str:
    return CRON_ID_PREFIX + name.replace(".", "-")


def tick_time(schedule: str, now: datetime) -> datetime:
    """The scheduled instant this tick belongs to: the latest cron time <= now (UTC)."""
    naive = now.astimezone(UTC).replace(tzinfo=None, microsecond=0)
    seconds_back = CronTab(schedule).previous(now=naive + timedelta(seconds=1), default_utc=True)
    return (naive + timedelta(seconds=1) + timedelta(seconds=seconds_back)).replace(tzinfo=UTC)


def tick(name: str) -> str | None:
    """What rq-scheduler runs for a cron entry: submit its job once per tick time."""
    from jobs.core.submit import submit

    entry = registry.cron_entries().get(name)
    if entry is None:
        logger.warning("cron entry no longer registered", extra={"cron": name})
        return None
    at = tick_time(entry.schedule, datetime.now(UTC))
    outcome = submit(entry.job_type, entry.payload, idempotency_key=f"cron:{name}:{at.isoformat()}")
    return str(outcome.job.id)


def missing() -> list[str]:
    """Registered entries that are not scheduled in Redis (e.g. after a flush)."""
    wanted = [cron_id(name) for name in registry.cron_entries()]
    scheduler = queueing.scheduler()
    with scheduler.connection.pipeline(transaction=False) as pipe:
        for job_id in wanted:
            pipe.zscore(scheduler.scheduled_jobs_key, job_id)
        scores = pipe.execute()
    return [job_id for job_id, score in zip(wanted, scores, strict=True) if score is None]


def sync() -> dict[str, list[str]]:
    """Register every cron entry under a fixed id; drop ours that the code no longer has."""
    scheduler = queueing.scheduler()
    wanted = registry.cron_entries()
    present = {job.id for job in scheduler.get_jobs() if job.id.startswith(CRON_ID_PREFIX)}
    for name, entry in wanted.items():
        scheduler.cancel(cron_id(name))  # re-register so a changed schedule takes effect
        scheduler.cron(
            entry.schedule,
            TICK_ENTRY_POINT,
            args=[name],
            id=cron_id(name),
            queue_name=Priority.IMMEDIATE,
            timeout=60,
            result_ttl=600,
            use_local_timezone=False,
        )
    stale = present - {cron_id(n) for n in wanted}
    for job_id in stale:
        scheduler.cancel(job_id)
    return {"registered": sorted(wanted), "removed": sorted(stale)}
