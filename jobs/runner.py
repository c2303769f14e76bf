"""The single RQ entry point for every job (SPEC §4.5).

claim → handler(ctx) → record the outcome → hooks → dependents. Each step is a guarded
lifecycle move, so a duplicate or stale RQ entry, a cancel, or a requeue in between
can never make a job run twice at once or run after it finished.
"""

from __future__ import annotations

import json
import logging
import traceback

from django.core.serializers.json import DjangoJSONEncoder

from jobs import lifecycle, outcomes, queueing, registry
from jobs.context import JobContext
from jobs.errors import AdminRequiredError, JobError, SubmitError, TransitionError, UserFixableError
from jobs.joblog import log_job
from jobs.models import Job

logger = logging.getLogger("jobs.runner")


def execute(job_id: str, dispatch: str) -> dict:
    """Run one dispatch of a job. Returns a small summary that RQ stores as its result."""
    worker_name = queueing.current_worker_name()
    try:
        job = lifecycle.claim(job_id, dispatch, worker_name)
    except (TransitionError, lifecycle.JobNotFound) as refused:
        logger.info("dispatch skipped", extra={"job_id": job_id, "dispatch": dispatch, "reason": str(refused)})
        return {"skipped": str(refused)}
    try:
        job = _run(job, dispatch)
    except TransitionError as refused:
        # Canceled, or taken over by a repair, while the handler ran: the outcome of
        # this run no longer belongs to the job.
        logger.info("outcome discarded", extra={"job_id": job_id, "dispatch": dispatch, "reason": str(refused)})
        return {"discarded": str(refused)}
    return {"status": job.status}


def _run(job: Job, dispatch: str) -> Job:
    try:
        job_type = registry.get(job.type)
    except SubmitError as unknown:
        return _failed(job, dispatch, AdminRequiredError(f"{unknown.message} Was the type removed from the code?"))
    context = JobContext(job, dispatch)
    try:
        result = job_type.handler(context)
        result = _json_safe(result)
    except (UserFixableError, AdminRequiredError) as error:
        context.flush()
        return _failed(job, dispatch, error)
    except queueing.TIMEOUT_EXCEPTIONS:
        context.flush()
        return _temporary(job, dispatch, TemporaryTimeout(job.timeout))
    except Exception as error:  # temporary errors and unexpected crashes alike retry
        context.flush()
        return _temporary(job, dispatch, error)
    context.flush()
    done = lifecycle.complete(job.id, dispatch, result)
    outcomes.finished(done)
    return done


class TemporaryTimeout(JobError):
    def __init__(self, seconds: int) -> None:
        super().__init__(
            f"timed out after {seconds}s",
            recovery_actions=["Retry later", "Raise the job type's timeout if the work is legitimately slow"],
        )


def _failed(job: Job, dispatch: str, error: JobError) -> Job:
    moved = lifecycle.fail(
        job.id,
        dispatch,
        category=error.category,
        message=error.message,
        details=error.details or traceback.format_exc(),
        recovery_actions=error.recovery_actions,
    )
    if error.category == "admin_required":
        log_job("operator attention needed", moved, level=logging.ERROR, error=error.message)
    outcomes.finished(moved)
    return moved


def _temporary(job: Job, dispatch: str, error: Exception) -> Job:
    if isinstance(error, JobError):
        message, actions = error.message, error.recovery_actions
    else:
        message, actions = f"{type(error).__name__}: {error}", ["Retry later", "Report it if it keeps happening"]
    return outcomes.temporary_failure(
        job,
        dispatch,
        message=message,
        details=traceback.format_exc(),
        recovery_actions=actions,
        actor_label=job.worker_name,
    )


def _json_safe(result):
    """Results go into a JSONField: reject what cannot round-trip, as a handler bug."""
    try:
        return json.loads(json.dumps(result, cls=DjangoJSONEncoder))
    except (TypeError, ValueError) as error:
        raise AdminRequiredError(f"The handler returned a result that is not JSON-serialisable: {error}") from None
