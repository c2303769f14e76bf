"""The current state of a job (or of all jobs) as a live message (docs/contract.md), read from the database:
what a WebSocket client gets first on connect, and again when a waiting job's ETA moves."""

from __future__ import annotations

from django.utils import timezone

from jobs.core import batches, relay
from jobs.core.models import FINAL_STATUSES, Batch, Job
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


BATCH_FINAL_STATES = ("complete", "finished")


def batch_snapshot(batch_id, kind: str = "snapshot") -> dict | None:
    """A batch's aggregate as a live message (docs/contract.md): ``snapshot`` on
    connect, ``progress`` as its jobs move, ``finished`` once its callbacks are in.
    None when the batch is gone."""
    batch = Batch.objects.filter(pk=batch_id).first()
    if batch is None:
        return None
    measured = batches.batch_progress(batch.pk)
    state = batches.state(batch, measured)
    if state in BATCH_FINAL_STATES:
        kind = "finished"
    finish = estimates.batch_finish(batch.pk) if measured.unfinished else None
    return {
        "type": kind,
        "batch_id": str(batch.pk),
        "timestamp": timezone.now().isoformat(),
        "state": state,
        "total": measured.total,
        "counts": measured.counts,
        "progress": measured.percent,
        "estimated_finish_at": relay.iso(finish),
        "callbacks": {
            "on_complete": str(batch.complete_job) if batch.complete_job else None,
            "on_success": str(batch.success_job) if batch.success_job else None,
        },
    }
