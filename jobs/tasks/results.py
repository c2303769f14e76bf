"""A ``TaskResult`` read from the job's row and its timeline."""

from __future__ import annotations

from datetime import datetime

from jobs.core.models import Job, JobEvent, Status
from jobs.tasks.compat import Task, TaskError, TaskResult, TaskResultStatus

# Retrying counts as ready (it will run again); dead letters and cancels as failed.
STATUS = {
    Status.QUEUED: TaskResultStatus.READY,
    Status.SCHEDULED: TaskResultStatus.READY,
    Status.DEFERRED: TaskResultStatus.READY,
    Status.WAITING: TaskResultStatus.READY,
    Status.RETRYING: TaskResultStatus.READY,
    Status.ACTIVE: TaskResultStatus.RUNNING,
    Status.COMPLETE: TaskResultStatus.SUCCESSFUL,
    Status.FAILED: TaskResultStatus.FAILED,
    Status.DEAD_LETTER: TaskResultStatus.FAILED,
    Status.CANCELED: TaskResultStatus.FAILED,
}
CANCELED = "jobs.tasks.results.TaskCanceled"


class TaskCanceled(Exception):
    """The error a canceled task's result carries (the reason is its traceback text)."""


def from_job(job: Job, task: Task, backend: str, *, fresh: bool = False, running_on: str = "") -> TaskResult:
    """The result as the row says. ``fresh``: without reading the timeline (just
    submitted; or running, where ``running_on`` names the worker of every attempt so far
    — enough for ``attempts``; ``get_result`` reads the real history)."""
    errors: list[TaskError] = []
    workers: list[str] = []
    started_at = job.started_at  # the last attempt's start: the first's too, when there was one
    if not fresh:
        errors, workers, first_start = _history(job)
        started_at = first_start or started_at
    else:
        if running_on:
            workers = [running_on] * job.attempts
        if job.attempts > 1:
            started_at = _first_start(job) or started_at
    result: TaskResult = TaskResult(
        task=task,
        id=str(job.id),
        status=STATUS[Status(job.status)],
        enqueued_at=job.enqueued_at or job.created_at,
        started_at=started_at,  # the first attempt's start, as django.tasks means it
        finished_at=job.finished_at,
        last_attempted_at=job.started_at,
        args=list((job.payload or {}).get("args", [])),
        kwargs=dict((job.payload or {}).get("kwargs", {})),
        backend=backend,
        errors=errors,
        worker_ids=workers,
    )
    object.__setattr__(result, "_return_value", job.result)
    return result


def _history(job: Job) -> tuple[list[TaskError], list[str], datetime | None]:
    """The exception of each failed attempt and the worker of each attempt, in order; when
    the first attempt started (None: the timeline no longer says)."""
    errors: list[TaskError] = []
    workers: list[str] = []
    starts: list[datetime] = []
    events = JobEvent.objects.filter(job_id=job.id, kind=JobEvent.Kind.TRANSITION).order_by("seq")
    rows = events.values_list("from_status", "to_status", "actor_label", "message", "details", "created_at")
    for from_status, to_status, actor, message, details, at in rows:
        if to_status == Status.ACTIVE:
            workers.append(actor)
            starts.append(at)
        elif from_status == Status.ACTIVE and to_status == Status.DEFERRED and workers:
            workers.pop()  # the claim found its work window closed: no attempt (lifecycle.defer)
            starts.pop()
        elif details.get("exception_class"):
            errors.append(TaskError(exception_class_path=details["exception_class"], traceback=details["traceback"]))
        elif to_status == Status.CANCELED:
            errors.append(TaskError(exception_class_path=CANCELED, traceback=message))
    return errors, workers, starts[0] if starts else None


def _first_start(job: Job) -> datetime | None:
    """When the job's first attempt started, as its timeline says (a claim, not one its
    work window sent back)."""
    _errors, _workers, first = _history(job)
    return first
