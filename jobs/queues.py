"""What waits where (SPEC §9 /api/queues/): read-only, one query plus one Redis pass."""

from __future__ import annotations

from django.conf import settings
from django.db.models import Count

from jobs import queueing
from jobs.models import Job, Status

WAITING = (Status.QUEUED, Status.SCHEDULED, Status.DEFERRED, Status.WAITING, Status.RETRYING, Status.ACTIVE)


def overview() -> dict:
    counts = {(row["priority"], row["status"]): row["n"] for row in _counts()}
    redis_depths = queueing.queue_depths()
    workers = queueing.workers()
    return {
        "queues": [
            {
                "name": priority,
                "depth": redis_depths.get(priority, 0),  # RQ's list: what workers will take next
                **{status: counts.get((priority, status), 0) for status in WAITING},
            }
            for priority in settings.JOB_QUEUES
        ],
        "workers": {
            "count": len(workers),
            "busy": sum(1 for w in workers.values() if w.current_job),
            "concurrency_setting": settings.WORKER_CONCURRENCY,
        },
    }


def _counts():
    return Job.objects.filter(status__in=WAITING).values("priority", "status").annotate(n=Count("id")).order_by()
