"""The platform's own periodic work, each run a visible Job (SPEC §8). All times UTC."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from jobs.core import queueing
from jobs.core.models import FINAL_STATUSES, Job, JobEvent, Priority
from jobs.core.registry import cron, job_type
from jobs.insight import rollup
from jobs.upkeep import reconcile

_BATCH = 5000


@job_type("jobs.reconcile", public=False, priority=Priority.IMMEDIATE, timeout=300, max_attempts=1)
def run_reconcile(ctx) -> dict:
    return reconcile.run().as_dict()


@job_type("jobs.scheduler_heartbeat", public=False, priority=Priority.IMMEDIATE, timeout=60, max_attempts=1)
def scheduler_heartbeat(ctx) -> dict:
    now = timezone.now().isoformat()
    queueing.connection().set(settings.SCHEDULER_HEARTBEAT_KEY, now, ex=180)
    return {"heartbeat": now}


def _delete_in_batches(queryset) -> int:
    deleted = 0
    while True:
        ids = list(queryset.values_list("pk", flat=True)[:_BATCH])
        if not ids:
            return deleted
        deleted += queryset.model.objects.filter(pk__in=ids).delete()[1].get(queryset.model._meta.label, 0)


@job_type("jobs.prune_events", public=False, priority=Priority.LOW, timeout=1800, max_attempts=2)
def prune_events(ctx) -> dict:
    cutoff = timezone.now() - timedelta(days=settings.JOB_EVENT_RETENTION_DAYS)
    return {"deleted_events": _delete_in_batches(JobEvent.objects.filter(created_at__lt=cutoff))}


@job_type("jobs.prune_jobs", public=False, priority=Priority.LOW, timeout=1800, max_attempts=2)
def prune_jobs(ctx) -> dict:
    cutoff = timezone.now() - timedelta(days=settings.JOB_RETENTION_DAYS)
    old = Job.objects.filter(status__in=FINAL_STATUSES, finished_at__lt=cutoff)
    return {"deleted_jobs": _delete_in_batches(old)}


cron("reconcile", "* * * * *", "jobs.reconcile")
cron("scheduler-heartbeat", "* * * * *", "jobs.scheduler_heartbeat")
cron("prune-events", "30 8 * * *", "jobs.prune_events")
cron("prune-jobs", "0 9 * * *", "jobs.prune_jobs")


@job_type("jobs.stats_rollup", public=False, priority=Priority.LOW, timeout=600, max_attempts=1)
def stats_rollup(ctx) -> dict:
    return rollup.refresh()


cron("stats-rollup", "* * * * *", "jobs.stats_rollup")
