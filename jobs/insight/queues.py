"""What waits where, and when new work would run: read-only."""

from __future__ import annotations

from django.conf import settings
from django.db.models import Count

from jobs.core import flow, queueing, registry
from jobs.core.models import UNFINISHED_STATUSES, Job
from jobs.insight import calibration, estimates

WAITING = sorted(UNFINISHED_STATUSES)


_LEVER_KEYS = {False: ("paused", "paused_reason", "held"), True: ("paused", "paused_reason", "paused_by", "held")}


def overview(types: list[str] | None = None, *, who_paused: bool = False) -> dict:
    """Depth per priority (Redis and database), workers, the ETA of a new job of each type
    (``types`` or every registered one) per queue, and how accurate first ETAs have been.
    Why a queue is paused is for everyone (their jobs wait for it); who paused it only
    with ``who_paused`` (for those who see the levers)."""
    counts = {(row["priority"], row["status"]): row["n"] for row in _counts()}
    redis_depths = queueing.queue_depths()
    workers = queueing.workers()
    known = registry.all_types()
    wanted = {name: known[name].heavy for name in (types or sorted(known)) if name in known}
    outlook = estimates.outlook(wanted) if wanted else {}
    levers = {lever["name"]: lever for lever in flow.describe_queues()}
    return {
        "queues": [
            {
                "name": priority,
                "depth": redis_depths.get(priority, 0),  # RQ's list: what workers will take next
                **{key: levers[priority][key] for key in _LEVER_KEYS[who_paused]},
                **{status: counts.get((priority, status), 0) for status in WAITING},
                "new_job_eta": {
                    name: {
                        "estimated_start_at": guess.start_at,
                        "estimated_finish_at": guess.finish_at,
                        "estimated_start_range": guess.start_range,
                        "estimated_finish_range": guess.finish_range,
                        "cold": guess.cold,
                        "warning": guess.warning,
                    }  # fmt: skip
                    for name, guess in outlook.get(priority, {}).items()
                },
            }
            for priority in settings.JOB_QUEUES
        ],
        "workers": {
            "count": len(workers),
            "busy": sum(1 for w in workers.values() if w.current_job),
            "concurrency_setting": settings.WORKER_CONCURRENCY,
        },
        "eta_accuracy": calibration.accuracy(),
    }


def _counts():
    return Job.objects.filter(status__in=WAITING).values("priority", "status").annotate(n=Count("id")).order_by()
