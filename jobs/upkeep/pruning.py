"""Retention: finished jobs, their finished batches and old timeline entries (events, job
logs) go, in slices (times UTC).

``prune_events`` is a standard ``@task`` (Django's task API) and ``prune_jobs`` a
Jobdesk job type: both styles run side by side on the same workers, crons and console.
A task is named by its module path (``jobs.upkeep.pruning.prune_events``) and runs on
the ``jobdesk`` task backend, which Jobdesk adds to ``TASKS`` if the project has not."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import Exists, OuterRef
from django.utils import timezone

from jobs.core.models import Batch, Job, JobEvent, JobLog, Priority
from jobs.core.registry import cron, job_type
from jobs.tasks.compat import task

_BATCH = 5000


def _delete_in_batches(queryset) -> int:
    deleted = 0
    while True:
        ids = list(queryset.values_list("pk", flat=True)[:_BATCH])
        if not ids:
            return deleted
        deleted += queryset.model.objects.filter(pk__in=ids).delete()[1].get(queryset.model._meta.label, 0)


@task(backend="jobdesk", priority=-100, max_attempts=2, timeout=1800)
def prune_events() -> dict:
    cutoff = timezone.now() - timedelta(days=settings.JOB_EVENT_RETENTION_DAYS)
    # Job logs are timeline material too: kept as long as events (and gone with their job).
    return {
        "deleted_events": _delete_in_batches(JobEvent.objects.filter(created_at__lt=cutoff)),
        "deleted_logs": _delete_in_batches(JobLog.objects.filter(created_at__lt=cutoff)),
    }


@job_type("jobs.prune_jobs", public=False, priority=Priority.LOW, timeout=1800, max_attempts=2)
def prune_jobs(ctx) -> dict:
    cutoff = timezone.now() - timedelta(days=settings.JOB_RETENTION_DAYS)
    deleted_jobs = _delete_in_batches(Job.objects.final().filter(finished_at__lt=cutoff))
    # A batch goes once it finished before the cutoff and none of its jobs is left.
    ended = Batch.objects.filter(completed_at__lt=cutoff).filter(~Exists(Job.objects.filter(batch=OuterRef("pk"))))
    return {"deleted_jobs": deleted_jobs, "deleted_batches": _delete_in_batches(ended)}


cron("prune-events", "30 8 * * *", prune_events.module_path)
cron("prune-jobs", "0 9 * * *", "jobs.prune_jobs")
