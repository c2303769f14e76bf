"""``jobs.tasks.JobdeskBackend``: Django's standard task API (``django.tasks``) on Jobdesk.

Every ``@task`` becomes a durable ``Job`` typed by the task's module path: submitted
through ``jobs.submit`` (one transaction, enqueued when it commits), run by the same
workers with retries, ETAs, live progress, the console and the reconciler. The task's
job type is registered when the task is defined (``validate_task``), and a worker that
meets a task it has not imported yet imports it by its path.

Priorities −100…100 map onto the queues: ``priority >= 34`` → ``immediate``,
``priority <= -34`` → ``low``, anything between → ``normal`` (so −100 → low, 0 → normal,
100 → immediate). ``queue_name`` is ``"default"`` (by priority) or one of the queues by
name, which then wins. Jobdesk's own options ride on the task (see ``JobdeskTask``).
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from typing import Any

from django.utils.module_loading import import_string

from jobs.core import registry
from jobs.tasks import compat
from jobs.tasks.compat import DEFAULT_TASK_QUEUE_NAME, InvalidTask, Task, TaskResult, TaskResultDoesNotExist

IMMEDIATE_FROM = 34  # priority at or above: the immediate queue
LOW_UNTIL = -34  # priority at or below: the low queue
QUEUES = ("immediate", "normal", "low")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class JobdeskTask(Task):
    """A standard ``Task`` with Jobdesk's extras. Per task: ``@task(max_attempts=3,
    heavy=True, timeout=600, expected_duration=30, fork=False)``; per enqueue: ``my_task.options(
    idempotency_key=…, depends_on=[job ids], heavy=…, max_attempts=…, size=…).enqueue(…)`` (like ``using()``; each
    travels with that one job, and the task's job type keeps its own defaults)."""

    max_attempts: int | None = None  # None: JOB_MAX_ATTEMPTS
    timeout: int | None = None  # seconds; None: JOB_TIMEOUT (per task only: its job type's)
    heavy: bool = False  # waits for a work window
    expected_duration: float | None = None  # seconds, for ETAs until its runs say (per task only)
    fork: bool = True  # False: run inside the worker's process, no work-horse (per task only)
    idempotency_key: str | None = None
    depends_on: tuple[str, ...] = ()
    size: float | None = None  # this job's work in the task's unit (e.g. bytes), for its ETA

    def options(
        self,
        *,
        idempotency_key: str | None = None,
        depends_on: list | tuple | None = None,
        heavy: bool | None = None,
        max_attempts: int | None = None,
        size: float | None = None,
    ) -> JobdeskTask:
        changes: dict[str, Any] = {}
        if size is not None:
            changes["size"] = size
        if idempotency_key is not None:
            changes["idempotency_key"] = idempotency_key
        if depends_on is not None:
            # One job (its id, a UUID, a result or a row) is a list of one: a string was
            # split into its characters. A result or a row stands for its id.
            one = isinstance(depends_on, str | uuid.UUID) or hasattr(depends_on, "id")
            changes["depends_on"] = tuple(str(getattr(d, "id", d)) for d in ([depends_on] if one else depends_on))
        if heavy is not None:
            if not isinstance(heavy, bool):  # "no" is truthy: it made the job heavy
                raise InvalidTask(f"task {self.module_path}: heavy must be True or False, not {heavy!r}")
            changes["heavy"] = heavy
        if max_attempts is not None:
            changes["max_attempts"] = max_attempts
        return dataclasses.replace(self, **changes)


class UnstorableArgument(TypeError):
    """An argument that does not round-trip through JSON (a TypeError, as the standard
    backends raise)."""


class JobdeskBackend(compat.BaseTaskBackend):
    task_class = JobdeskTask
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict) -> None:
        super().__init__(alias, params)
        # "default" means "by priority"; a queue's own name picks it.
        self.queues = {DEFAULT_TASK_QUEUE_NAME, *QUEUES}
        registry.add_resolver(import_task_module)

    def validate_task(self, task: Task) -> None:
        super().validate_task(task)
        from jobs.tasks.running import register

        register(task, self.alias)

    def enqueue(self, task: Task, args, kwargs) -> TaskResult:
        from jobs import submit
        from jobs.tasks import results

        self.validate_task(task)
        payload = {"args": storable_arguments(list(args)), "kwargs": storable_arguments(dict(kwargs))}
        submitted = submit(
            task.module_path, payload, priority=queue_of(task), run_at=task.run_after, **_options_of(task)
        )
        # The job an idempotency key found may have run already: its result is read whole
        # (a fresh one said no attempts, no errors), and nothing was enqueued to announce.
        result = results.from_job(submitted.job, task, self.alias, fresh=submitted.created)
        if submitted.created:
            compat.task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> TaskResult:
        from jobs import Job
        from jobs.tasks import results

        try:
            job = Job.objects.filter(pk=uuid.UUID(str(result_id))).first()
        except ValueError:
            job = None
        task = task_named(job.type) if job is not None else None
        if job is None or task is None:
            raise TaskResultDoesNotExist(result_id)
        return results.from_job(job, task, self.alias)


def task_spec(task: Task, *args: Any, **kwargs: Any):
    """A ``jobs.JobSpec`` that runs ``task(*args, **kwargs)``: a step of ``jobs.chain``
    or a job of ``jobs.create_batch`` written as a standard task."""
    from jobs import JobSpec

    task.get_backend().validate_task(task)
    payload = {"args": storable_arguments(list(args)), "kwargs": storable_arguments(dict(kwargs))}
    return JobSpec(
        type=task.module_path, payload=payload, priority=queue_of(task), run_at=task.run_after, **_options_of(task)
    )


def _options_of(task: Task) -> dict[str, Any]:
    """A JobdeskTask's own options, as a submit takes them (none for a plain Task)."""
    if not isinstance(task, JobdeskTask):
        return {}
    return {"max_attempts": task.max_attempts, "heavy": task.heavy, "idempotency_key": task.idempotency_key,
            "depends_on": list(task.depends_on), "size": task.size}  # fmt: skip


def queue_of(task: Task) -> str:
    """The Jobdesk queue a task runs on: its queue by name, else by its priority."""
    if task.queue_name != DEFAULT_TASK_QUEUE_NAME:
        return task.queue_name
    if task.priority >= IMMEDIATE_FROM:
        return "immediate"
    if task.priority <= LOW_UNTIL:
        return "low"
    return "normal"


def storable_arguments(values: list | dict) -> Any:
    """The arguments as they will come back from the database, or an error naming the
    first one that would not (a datetime, a set, an object, NaN…)."""
    items = values.items() if isinstance(values, dict) else enumerate(values)
    for where, value in items:
        name = f"kwargs[{where!r}]" if isinstance(values, dict) else f"args[{where}]"
        try:
            text = json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise UnstorableArgument(
                f"Unsupported type: {type(value)} in {name}: a task's arguments must round-trip through JSON "
                f"({error}). Pass ids and plain values instead."
            ) from None
        if json.loads(text) != _tuples_as_lists(value):
            raise UnstorableArgument(
                f"Unsupported type: {type(value)} in {name}: it does not come back the same from JSON "
                "(e.g. a dict with non-string keys). Pass plain values instead."
            )
    return json.loads(json.dumps(values))


def _tuples_as_lists(value: Any) -> Any:
    """``value`` as JSON gives it back when nothing else is lost: a tuple, at any depth,
    comes back a list (as Django's own backends normalize it)."""
    if isinstance(value, list | tuple):
        return [_tuples_as_lists(item) for item in value]
    if isinstance(value, dict):
        return {key: _tuples_as_lists(item) for key, item in value.items()}
    return value


def task_named(name: str) -> Task | None:
    """The task object at a module path, or None when the path names no task."""
    try:
        found = import_string(name)
    except ImportError:
        return None
    return found if isinstance(found, Task) else None


def import_task_module(name: str) -> None:
    """A registry resolver: importing the task's module registers its job type."""
    if "." in name:
        task_named(name)


__all__ = ["InvalidTask", "JobdeskBackend", "JobdeskTask", "UnstorableArgument", "queue_of", "task_spec"]
