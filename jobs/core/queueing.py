"""The only module that talks to RQ and rq-scheduler about jobs.

Enqueue, schedule, withdraw, stop, and "is this dispatch in Redis?". Every function is
safe to call when Redis is down: it logs, returns False, and the database row stays
as it is for the reconciler to repair.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import django_rq
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from redis.exceptions import RedisError
from rq import Queue
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job as RQJob
from rq.timeouts import JobTimeoutException
from rq.worker import Worker

from jobs.core.models import TIMED_STATUSES, Job, Status

logger = logging.getLogger("jobs.core.queueing")

ENTRY_POINT = "jobs.execution.runner.execute"
# Raised inside the handler when RQ's death penalty fires (the type's timeout).
TIMEOUT_EXCEPTIONS: tuple[type[BaseException], ...] = (JobTimeoutException,)
# How long past its own timeout the job may spend in bookkeeping before RQ kills it.
_BOOKKEEPING_GRACE = 30


@functools.cache
def connection():
    """One Redis client per process: django-rq builds a new client (and TCP connection)
    on every call otherwise. redis-py's pool is fork-safe: a work-horse reconnects."""
    return django_rq.get_connection("normal")


@receiver(setting_changed)
def _forget_connection(setting: str, **kwargs) -> None:
    if setting in ("RQ_QUEUES", "REDIS_URL"):
        connection.cache_clear()


def queue(priority: str) -> Queue:
    return django_rq.get_queue(priority, connection=connection())


def scheduler():
    # rq-scheduler moves due jobs onto the queue named in each job (queue_name=...).
    return django_rq.get_scheduler("normal", connection=connection())


def scheduler_beat_key(*, of_cron_work: bool = False) -> str:
    """Where the scheduler's heartbeat is kept: set after each of its polls that went
    through; ``of_cron_work``: set by its heartbeat cron job when a worker runs it."""
    return f"{settings.SCHEDULER_HEARTBEAT_KEY}:cron" if of_cron_work else settings.SCHEDULER_HEARTBEAT_KEY


def _job_options(job: Job) -> dict:
    return {
        "job_id": job.rq_job_id,
        "job_timeout": job.timeout + _BOOKKEEPING_GRACE,
        "result_ttl": settings.JOB_RESULT_TTL,
        "description": f"{job.type} {job.id}",
        "meta": {"type": job.type},  # the claim's flow-control check needs no read of the row
    }


def _redis_down(what: str, job_ids: Iterable, error: Exception) -> bool:
    logger.error(
        "redis unreachable: %s deferred to the reconciler",
        what,
        extra={"job_ids": [str(j) for j in job_ids][:20], "error": str(error)},
    )
    return False


def enqueue(job: Job, *, at_front: bool = False) -> bool:
    """Push the job's current dispatch onto the RQ queue named by its priority (onto its
    front for a job that had reached the head already and was held)."""
    return enqueue_many([job], at_front=at_front)


def enqueue_many(jobs: list[Job], *, at_front: bool = False) -> bool:
    """Enqueue several jobs in one Redis round trip (submit, bulk submit)."""
    if not jobs:
        return True
    by_priority: dict[str, list[Job]] = defaultdict(list)
    for job in jobs:
        by_priority[job.priority].append(job)
    try:
        with connection().pipeline() as pipe:
            for priority, group in by_priority.items():
                q = queue(priority)
                data = [
                    Queue.prepare_data(
                        ENTRY_POINT, args=(str(j.id), j.rq_job_id), at_front=at_front, **_prepare_options(j)
                    )
                    # Pushed one by one onto the front: reversed, they keep their order there.
                    for j in (reversed(group) if at_front else group)
                ]
                q.enqueue_many(data, pipeline=pipe)
            pipe.execute()
    except RedisError as error:
        return _redis_down("bulk enqueue", [j.id for j in jobs], error)
    return True


def _prepare_options(job: Job) -> dict:
    options = _job_options(job)
    options["timeout"] = options.pop("job_timeout")
    return options


def schedule(job: Job, at: datetime) -> bool:
    """Have rq-scheduler put the job's current dispatch on its queue at ``at``."""
    try:
        scheduler().enqueue_at(
            _whole_second_not_before(at),
            ENTRY_POINT,
            str(job.id),
            job.rq_job_id,
            job_id=job.rq_job_id,
            queue_name=job.priority,
            timeout=job.timeout + _BOOKKEEPING_GRACE,
            job_result_ttl=settings.JOB_RESULT_TTL,
            job_description=f"{job.type} {job.id}",
            meta={"type": job.type},
        )
    except RedisError as error:
        return _redis_down("schedule", [job.id], error)
    return True


def _whole_second_not_before(at: datetime) -> datetime:
    # rq-scheduler keeps whole seconds (it truncates), which would run a job up to a
    # second before its run_at; round up instead.
    if at.microsecond:
        return at.replace(microsecond=0) + timedelta(seconds=1)
    return at


def dispatch(job: Job) -> bool:
    """Put the job where its status says it belongs: a queue now, or the scheduler."""
    if job.status == Status.QUEUED:
        return enqueue(job)
    if job.status in TIMED_STATUSES and job.scheduled_for:
        return schedule(job, job.scheduled_for)
    return True  # waiting / active / final: nothing to put in Redis


def withdraw(rq_job_id: str, priority: str) -> bool:
    """Remove a dispatch from its queue and from the scheduler (cancel, promote)."""
    if not rq_job_id:
        return True
    try:
        conn = connection()
        queue(priority).remove(rq_job_id)
        scheduler().cancel(rq_job_id)
        with contextlib.suppress(NoSuchJobError):
            RQJob.fetch(rq_job_id, connection=conn).delete(remove_from_queue=True)
    except RedisError as error:
        return _redis_down("withdraw", [rq_job_id], error)
    return True


def stop(rq_job_id: str) -> bool:
    """Ask the worker running this dispatch to kill its work-horse (RQ stop-job)."""
    try:
        send_stop_job_command(connection(), rq_job_id)
    except (NoSuchJobError, InvalidJobOperation):
        return False  # not running (yet, or any more): the status guard covers it
    except RedisError as error:
        return _redis_down("stop", [rq_job_id], error)
    return True


def current_worker_name() -> str:
    from rq import get_current_job

    rq_job = get_current_job()
    if rq_job is not None and rq_job.worker_name:
        return rq_job.worker_name
    return Worker.__name__ + "-inline"


def dispatches_in_redis(*, started_within: float) -> set[str]:
    """Every RQ job id Redis still holds for us: queued, scheduled, or being executed —
    the last only when a worker took it up (RQ's started registry) less than
    ``started_within`` seconds ago or has beaten it since. For a row still queued, an
    older one is a worker that died between taking the dispatch and claiming the row (an
    inline run, whose claim waits behind the last run's record): RQ keeps it "started"
    until the job's timeout has passed, an hour for some types."""
    from rq.executions import Execution
    from rq.registry import StartedJobRegistry

    conn = connection()
    present: set[str] = set(
        x.decode() if isinstance(x, bytes) else x for x in conn.zrange(scheduler().scheduled_jobs_key, 0, -1)
    )
    since = time.time() - started_within
    for name in settings.JOB_QUEUES:
        q = queue(name)
        present.update(q.get_job_ids())
        started = StartedJobRegistry(queue=q).get_job_and_execution_ids()
        if not started:
            continue
        with conn.pipeline(transaction=False) as pipe:
            for job_id, execution_id in started:
                pipe.hget(Execution(execution_id, job_id, conn).key, "last_heartbeat")
            beats = pipe.execute()
        present.update(job_id for (job_id, _), beat in zip(started, beats, strict=True) if _recent(beat, since))
    return present


def _recent(timestamp: bytes | None, since: float) -> bool:
    try:
        return timestamp is not None and float(timestamp) >= since
    except ValueError:  # not RQ's: count it as there, as before
        return True


@dataclass(frozen=True)
class WorkerState:
    name: str
    hostname: str | None
    pid: int | None
    current_job: str | None
    last_heartbeat: datetime | None
    queues: list[str]
    # RQ's own counters: dispatches it handled (a Jobdesk job's failure is recorded by the
    # runner, so it counts as successful here) and those whose work-horse failed; since when.
    successful: int = 0
    failed: int = 0
    birth: datetime | None = None


def worker_count() -> int:
    """Live workers in RQ's registry: one Redis call, for estimates."""
    return Worker.count(connection=connection())


def workers() -> dict[str, WorkerState]:
    """RQ's own registry of live workers (their keys expire without heartbeats)."""
    return {
        w.name: WorkerState(
            name=w.name,
            hostname=w.hostname,
            pid=w.pid,
            current_job=w.get_current_job_id(),
            last_heartbeat=w.last_heartbeat,
            queues=w.queue_names(),
            successful=w.successful_job_count,
            failed=w.failed_job_count,
            birth=w.birth_date,
        )
        for w in Worker.all(connection=connection())
    }


def queue_depths() -> dict[str, int]:
    return {name: queue(name).count for name in settings.JOB_QUEUES}
