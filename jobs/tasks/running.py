"""Running a standard task as a Jobdesk job: its job type, its handler, its context."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
from inspect import iscoroutinefunction
from typing import TYPE_CHECKING, Any

from asgiref.sync import SyncToAsync
from django.db import connections

from jobs.core import registry
from jobs.core.errors import UserFixableError
from jobs.tasks import compat
from jobs.tasks.compat import Task, TaskContext

if TYPE_CHECKING:  # tasks are defined (and registered) while Django loads apps: no models yet
    from jobs.core.models import Job
    from jobs.execution.context import JobContext


def register(task: Task, backend: str) -> None:
    """The job type that runs ``task``: named by its module path, submitted by code only,
    with the defaults of the task as defined (the first one seen): a copy made by
    ``using()`` or ``options()`` changes its own job, never the type."""
    from jobs.tasks.backend import queue_of

    if registry.is_registered(task.module_path):
        return
    try:
        define = registry.job_type(
            task.module_path,
            public=False,
            priority=queue_of(task),
            timeout=getattr(task, "timeout", None),
            max_attempts=getattr(task, "max_attempts", None),
            heavy=bool(getattr(task, "heavy", False)),
            expected_duration=getattr(task, "expected_duration", None),
            fork=getattr(task, "fork", True),
            after_record=lambda job: _finished(job, backend),
            summary_payload=lambda summary: {"args": [summary], "kwargs": {}},  # a batch callback's one argument
        )
    except ValueError as invalid:  # an option out of range, where the task is defined
        raise compat.InvalidTask(str(invalid).replace("job type", "task", 1)) from None
    define(lambda ctx: run(ctx, backend))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class JobdeskTaskContext(TaskContext):
    """The standard context (``task_result``, ``attempt``) with Jobdesk's own:
    ``progress(percent, stage, **details)`` and ``is_canceled()``, also from an
    ``async def`` task (they talk to the database from a thread of their own)."""

    job: JobContext
    _database_thread: concurrent.futures.ThreadPoolExecutor | None = None

    def progress(self, percent: float, stage: str = "", **details: Any) -> None:
        self._outside_the_loop(self.job.progress, percent, stage, **details)

    def is_canceled(self) -> bool:
        return bool(self._outside_the_loop(self.job.is_canceled))

    def dependency_results(self) -> dict[str, Any]:
        """What the jobs this task depends on ended with, by id in submission order
        (see ``JobContext.dependency_results``)."""
        return dict(self._outside_the_loop(self.job.dependency_results))

    def add_to_batch(self, specs: list) -> list:
        """Submit more jobs (``jobs.JobSpec``, or ``jobs.task_spec(task, …)``) into this
        task's batch while it runs (see ``JobContext.add_to_batch``)."""
        return list(self._outside_the_loop(self.job.add_to_batch, specs))

    def _outside_the_loop(self, call, *args, **kwargs):
        if self._database_thread is None:
            return call(*args, **kwargs)
        return self._database_thread.submit(call, *args, **kwargs).result()


def run(ctx: JobContext, backend: str) -> Any:
    """The handler of every task's job: the task's function with the stored arguments."""
    from jobs.tasks import results

    task = _task(ctx.job.type)
    # Without reading the timeline: a work-horse has no database connection of its own
    # and opening one costs more than a small job (get_result reads the full history).
    result = results.from_job(ctx.job, task, backend, fresh=True, running_on=ctx.job.worker_name)
    compat.task_started.send(type(task.get_backend()), task_result=result)
    args, kwargs = list(ctx.payload.get("args", [])), dict(ctx.payload.get("kwargs", {}))
    if iscoroutinefunction(task.func):
        value = _run_coroutine(task, ctx, result, args, kwargs)
    else:
        if task.takes_context:
            args.insert(0, JobdeskTaskContext(task_result=result, job=ctx))
        value = task.func(*args, **kwargs)
    return _storable(value)


def _run_coroutine(task: Task, ctx: JobContext, result, args: list, kwargs: dict) -> Any:
    """On an event loop of its own; the context's database calls go to a thread, since
    Django's ORM refuses to run inside a loop."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="jobdesk-task-db") as database:
        if task.takes_context:
            args.insert(0, JobdeskTaskContext(task_result=result, job=ctx, _database_thread=database))
        try:
            return asyncio.run(task.func(*args, **kwargs))
        finally:
            database.submit(connections.close_all).result()
            _close_thread_sensitive_connections()


def _close_thread_sensitive_connections() -> None:
    """The connections of the ORM's async API (``await Model.objects.aget()``), made in
    asgiref's one thread for such calls: in a long-lived worker they outlived the task,
    unchecked. Not waited for: a call the task's timeout abandoned may still hold that
    thread (the worker would wait past the timeout). Nothing to close, nothing started,
    when the task never used it."""
    executor = SyncToAsync.single_thread_executor
    if getattr(executor, "_threads", None):  # its thread was started (CPython's executor)
        executor.submit(connections.close_all)


def _task(name: str) -> Task:
    from jobs.tasks.backend import task_named

    task = task_named(name)
    if task is None:
        raise UserFixableError(f"{name} is no longer a task in the code.", recovery_actions=["Deploy it again"])
    return task


def _storable(value: Any) -> Any:
    """A return value must come back from JSON and be storable, or the job fails saying
    why (the task's own value: ``user_fixable``, as docs/tasks.md says)."""
    return registry.stored_result(
        value, UserFixableError, who="task",
        advice="Return plain values (numbers, strings, lists, dicts), and store big output elsewhere: return its id",
    )  # fmt: skip


class TaskFailed(Exception):
    """What a failed task raised, as its record keeps it: the message and the traceback
    of the process that ran it (a work-horse, gone by now)."""


def _finished(job: Job, backend: str) -> None:
    """The standard ``task_finished`` signal, once the outcome is recorded (in the worker)
    and final: not after an attempt that will be retried (Django's signal says the task
    has finished).

    For a failed task it is sent while ``TaskFailed`` is being handled: the standard
    receiver logs a failure with ``logger.exception`` for error monitoring, which found
    no exception here (the task raised in another process) and logged none."""
    from jobs.core.models import FINAL_STATUSES
    from jobs.tasks import results

    if job.status not in FINAL_STATUSES:  # an attempt that will be retried: the task goes on
        return
    task = _task(job.type)
    result = results.from_job(job, task, backend)
    if result.status != compat.TaskResultStatus.FAILED:
        compat.task_finished.send(type(task.get_backend()), task_result=result)
        return
    try:
        raise TaskFailed(f"{job.error_message}\n\nRaised in the process that ran it:\n{job.error_details}".rstrip())
    except TaskFailed:
        compat.task_finished.send(type(task.get_backend()), task_result=result)
