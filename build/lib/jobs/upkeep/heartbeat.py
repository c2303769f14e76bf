"""The scheduler's heartbeat, through a worker: health reads the key to tell that the
scheduler ticks and workers take its work (the scheduler also sets it on each poll)."""

from __future__ import annotations

from django.conf import settings
from django.utils import timezone

from jobs.core import queueing
from jobs.core.models import Priority
from jobs.core.registry import cron, job_type


@job_type("jobs.scheduler_heartbeat", public=False, priority=Priority.IMMEDIATE, timeout=60, max_attempts=1)
def scheduler_heartbeat(ctx) -> dict:
    now = timezone.now().isoformat()
    queueing.connection().set(settings.SCHEDULER_HEARTBEAT_KEY, now, ex=180)
    return {"heartbeat": now}


cron("scheduler-heartbeat", "* * * * *", "jobs.scheduler_heartbeat")
