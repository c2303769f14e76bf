"""What follows a job's outcome: the retry decision, completion hooks, dependents."""

from __future__ import annotations

import contextlib
import logging

from django.conf import settings
from django.db import connection, transaction

from jobs.core import batches, lifecycle, registry, tracing
from jobs.core.errors import SubmitError, TransitionError
from jobs.core.joblog import log_job
from jobs.core.models import Batch, Job, Status
from jobs.core.retry import backoff_delay, should_retry

logger = logging.getLogger("jobs.core.outcomes")


def temporary_failure(
    job: Job,
    dispatch: str,
    *,
    message: str,
    details: str = "",
    recovery_actions=(),
    actor_label: str = "",
    exception: str = "",
) -> Job:
    """Retry with backoff while attempts remain, else dead-letter. A job of a canceled
    batch is not retried: the cancel let its running jobs finish, not start again."""
    error = {"message": message, "details": details, "recovery_actions": recovery_actions, "exception": exception}
    if _batch_canceled(job):
        message = f"{message} (not retried: its batch was canceled)"
    elif should_retry(job.attempts, job.max_attempts):
        delay = backoff_delay(job.attempts, settings.RETRY_BASE_DELAY, cap=settings.RETRY_MAX_DELAY)
        return lifecycle.retry_later(job.id, dispatch, delay=delay, actor_label=actor_label, **error)
    moved = lifecycle.dead_letter(
        job.id, dispatch, actor_label=actor_label, message=message, details=details, exception=exception
    )
    finished(moved)
    return moved


def _batch_canceled(job: Job) -> bool:
    return job.batch_id is not None and Batch.objects.filter(pk=job.batch_id, canceled_at__isnull=False).exists()


def finished(job: Job) -> None:
    """Run the type's hooks, then release or cancel the jobs waiting on this one, then
    mark that done (the reconciler replays these steps for a job left without it).
    Dependents canceled on the way are finished the same way, in turn: a loop, not a
    recursion (a chain of 900 jobs went past Python's stack a level a job, with half of
    it canceled: a 500 in the web, an unrecorded outcome in a worker)."""
    pending = [job]
    while pending:
        pending.extend(_finish(pending.pop()))


def _finish(job: Job) -> list[Job]:
    """``finished`` for one job; the dependents it canceled, to finish next."""
    if job.hooks_done and job.batch_id is None:
        return []  # nothing follows this job's end (no hooks, nobody waits on it, no batch)
    canceled: list[Job] = []
    with tracing.following(job):
        if not job.hooks_done:
            run_hooks(job)
            canceled = settle_dependents(job)
            # Done for this round only: a requeue meanwhile (an operator's retry while a
            # slow hook ran) starts a new round, whose end is followed up again.
            Job.objects.filter(pk=job.id, rq_job_id=job.rq_job_id, status=job.status).update(hooks_done=True)
        if job.batch_id is not None:
            batches.job_finished(job)  # the last one submits the batch's callbacks
    return canceled


def run_hooks(job: Job) -> None:
    try:
        job_type = registry.get(job.type, resolve=True)
    except SubmitError:
        return
    hooks = job_type.on_success if job.status == Status.COMPLETE else job_type.on_failure
    for hook in hooks:
        try:
            with _own_savepoint():
                hook(job)
        except Exception:  # a broken hook must not undo the recorded outcome
            log_job("completion hook failed", job, level=logging.ERROR, hook=getattr(hook, "__name__", str(hook)))
            logger.exception("hook %s failed for job %s", hook, job.id)


def _own_savepoint():
    """Inside the caller's transaction (the reconciler's repair), a hook gets a savepoint
    of its own: a query of its that fails rolls back to it, not the whole repair — which
    was then tried again, hook and all, on every pass."""
    return transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext()


def settle_dependents(job: Job) -> list[Job]:
    """After ``job`` ended: release dependents whose dependencies are all complete, or
    cancel them when this one did not complete; the ones canceled (``finished`` goes on
    with them)."""
    canceled_ones: list[Job] = []
    if not job.has_dependents:
        return canceled_ones
    for dependent in job.dependents.filter(status=Status.WAITING):
        try:
            statuses = list(dependent.depends_on.values_list("status", flat=True))
            verdict = lifecycle.waiting_verdict(dependent.on_dependency_failure, statuses)
            if verdict == "release":
                lifecycle.release(
                    dependent.id,
                    message="dependencies complete" if job.status == Status.COMPLETE else "dependencies final",
                )
            elif verdict == "cancel":
                canceled_ones.append(lifecycle.cancel(dependent.id, reason=f"dependency {job.id} ended {job.status}"))
        except TransitionError:
            continue  # someone else (a concurrent settle, an operator) got there first
    return canceled_ones
