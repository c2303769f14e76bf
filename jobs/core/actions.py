"""Operator and owner actions on jobs: cancel, requeue, promote, run now.

The API, the admin and management commands call these; each is a lifecycle move (which
brings Redis in line once it commits), recorded in the timeline with who did it, plus
what the action adds: the end of a canceled job followed up, a requeue's refusals.
"""

from __future__ import annotations

from jobs.core import batches, leases, lifecycle, outcomes
from jobs.core.errors import ActionRefused
from jobs.core.models import BROKEN_DEPENDENCY_STATUSES, DependencyFailure, Job


def cancel(job_id, *, actor=None, actor_label: str = "", reason: str = "") -> Job:
    """Cancel a waiting job (withdrawn from Redis) or a running one (its work-horse is
    stopped: by RQ's stop-job command, and by its Jobdesk parent within seconds)."""
    job = lifecycle.cancel(job_id, actor=actor, actor_label=actor_label, reason=reason)
    outcomes.finished(job)
    return job


def requeue(job_id, *, actor=None, actor_label: str = "") -> Job:
    broken = Job.objects.filter(dependents=job_id, status__in=BROKEN_DEPENDENCY_STATUSES).first()
    if broken is not None and not _runs_after_failures(job_id):
        raise ActionRefused(
            f"Cannot requeue job {job_id}: its dependency {broken.id} is {broken.status}; requeue that first."
        )
    if leases.still_running(job_id):  # canceled, but its run has not stopped (or lapsed) yet
        raise ActionRefused(f"Cannot requeue job {job_id} yet: its last run is still stopping; try again in a moment.")
    job = lifecycle.requeue(job_id, actor=actor, actor_label=actor_label)
    if job.batch_id is not None:
        batches.reopened(job.batch_id)  # its on_success may come due again
    return job


def promote(job_id, *, actor=None, actor_label: str = "") -> Job:
    return lifecycle.promote(job_id, actor=actor, actor_label=actor_label)


def run_now(job_id, *, actor=None, actor_label: str = "") -> Job:
    """Sidekiq's "add to queue": a scheduled or retrying job stops waiting. (A deferred
    heavy job still waits for its work window: the window is the point of it.)"""
    return lifecycle.run_now(job_id, actor=actor, actor_label=actor_label)


def _runs_after_failures(job_id) -> bool:
    """Did the job ask to run whatever its dependencies ended in? Then a failed one is
    no reason to refuse its new round (it runs once they are all final)."""
    policy = Job.objects.filter(pk=job_id).values_list("on_dependency_failure", flat=True).first()
    return policy == DependencyFailure.RUN
