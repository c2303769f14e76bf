"""The scheduler's cron work, through a worker: health shows when a tick of the
scheduler last ran on a worker. Whether the scheduler is alive is its own heartbeat's to
say, set after each of its polls that went through (``jobs.upkeep.scheduler``): this job
does not refresh that one, or a scheduler whose polls fail after firing cron ticks would
look alive."""

from __future__ import annotations

from django.utils import timezone

from jobs.core import queueing
from jobs.core.models import Priority
from jobs.core.registry import cron, job_type


@job_type("jobs.scheduler_heartbeat", public=False, priority=Priority.IMMEDIATE, timeout=60, max_attempts=1)
def scheduler_heartbeat(ctx) -> dict:
    now = timezone.now().isoformat()
    queueing.connection().set(queueing.scheduler_beat_key(of_cron_work=True), now, ex=180)
    return {"heartbeat": now}


cron("scheduler-heartbeat", "* * * * *", "jobs.scheduler_heartbeat")
