"""The current state of a job (or of all jobs) as a live message (docs/contract.md), read from the database:
what a WebSocket client gets first on connect, and again when a waiting job's ETA moves."""

from __future__ import annotations

from django.utils import timezone

from jobs.core import relay
from jobs.core.models import FINAL_STATUSES, Job
from jobs.insight import dashboard, estimates


def job_snapshot(job_id) -> dict | None:
    """None when the job is gone (deleted since the client asked)."""
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        return None
    estimate = None if job.status in FINAL_STATUSES else estimates.for_job(job)
    return relay.message(job, "snapshot", estimate=estimate)


def estimate_fields(job_id) -> dict:
    job = Job.objects.filter(pk=job_id).first()
    if job is None or job.status in FINAL_STATUSES:
        return {}
    return relay.eta_fields(estimates.for_job(job))


def gone_snapshot(job_id) -> dict:
    """The snapshot of a job deleted meanwhile: final, so the follower closes."""
    return {
        **relay.blank(), "type": "snapshot", "job_id": str(job_id), "timestamp": timezone.now().isoformat(),
        "status": "deleted", "user_message": "The job was deleted.",
    }  # fmt: skip


def ops_snapshot(types: frozenset[str] = frozenset(), statuses: frozenset[str] = frozenset()) -> dict:
    """For the operators' stream: job counts by status (``details.counts``), of the
    types and statuses the stream is narrowed to."""
    counts = dashboard.status_counts(types)
    if statuses:
        counts = {status: n for status, n in counts.items() if status in statuses}
    return {**relay.blank(), "type": "snapshot", "timestamp": timezone.now().isoformat(), "details": {"counts": counts}}
