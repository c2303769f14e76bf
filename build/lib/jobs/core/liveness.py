"""Is the process that claimed an active job still there?

Decided by the claim itself, not by a timeout: a slow job whose process is alive is
never declared lost. On the claiming host the work-horse's pid is checked (with its
start time, so a recycled pid does not count); elsewhere RQ's worker registry and
heartbeat decide.
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta

from django.conf import settings

from jobs.core.models import Job
from jobs.core.queueing import WorkerState

HOSTNAME = socket.gethostname()


def process_started_at(pid: int) -> datetime | None:
    """When ``pid`` started (Linux /proc), or None when no such process runs (a zombie —
    killed, not yet reaped by its new parent — runs nothing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # exists, owned by someone else
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        with open("/proc/stat") as system:
            boot = next(int(line.split()[1]) for line in system if line.startswith("btime"))
    except (OSError, StopIteration, IndexError, ValueError):
        return datetime.min.replace(tzinfo=UTC)  # alive, start unknown (not Linux)
    if fields[0] in ("Z", "X"):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return datetime.fromtimestamp(boot + int(fields[19]) / ticks, tz=UTC)


# Between a claim and RQ marking the worker busy with that job, a few milliseconds pass.
CLAIM_GRACE = timedelta(seconds=10)


# How long a worker's hold on a running dispatch lasts without a refresh (jobs.execution.worker).
IN_HAND_TTL = 10


def lost_reason(
    job: Job,
    workers: dict[str, WorkerState],
    in_hand: set[str],
    now: datetime,
    memory_age: float,
    abandoned: frozenset[str] = frozenset(),
) -> str | None:
    """Why ``job`` (active) has nobody running it any more, or None if it is in hand.

    ``in_hand``: dispatches whose Jobdesk worker holds them (refreshed every few
    seconds, kept until the outcome is recorded). ``abandoned``: dispatches whose worker
    gave up recording their outcome. ``memory_age``: how long Redis has been keeping
    such keys; right after a flush, remote jobs are not judged yet.
    """
    if job.rq_job_id in abandoned:
        return f"worker {job.worker_name} could not record the outcome and gave it up"
    local = job.runner_host == HOSTNAME and job.runner_pid
    if local:  # the claiming process is checkable: its death is proof
        assert job.runner_pid is not None  # local means it has a pid
        started = process_started_at(job.runner_pid)
        if started is None:
            return f"process {job.runner_pid} of worker {job.worker_name} on {HOSTNAME} is gone"
        if job.started_at and started > job.started_at + timedelta(seconds=1):
            return f"process {job.runner_pid} on {HOSTNAME} is gone (its pid was reused)"
    if job.rq_job_id in in_hand:
        return None
    worker = workers.get(job.worker_name)
    settled = job.started_at is None or now - job.started_at > CLAIM_GRACE
    if local:
        # Its process lives. A parent stopped (SIGSTOP, a frozen VM) after its horse
        # finished has let its hold lapse and RQ shows no current job — but it will record
        # the outcome when it resumes: only a worker busy with *another* dispatch has
        # provably moved on.
        if worker is not None and worker.current_job not in (None, job.rq_job_id) and settled:
            return f"worker {job.worker_name} moved on to other work without recording this one"
        return None
    if worker is not None and worker.current_job != job.rq_job_id and settled:
        return f"worker {job.worker_name} moved on (its work-horse died or its outcome was not recorded)"
    if memory_age < IN_HAND_TTL * 2:
        return None  # Redis just lost its memory: give live workers time to refresh
    if worker is None:
        return f"worker {job.worker_name} is gone (no RQ worker registration)"
    stale_after = timedelta(seconds=settings.WORKER_STALE_SECONDS)
    if worker.last_heartbeat and now - worker.last_heartbeat.replace(tzinfo=UTC) > stale_after:
        return f"worker {job.worker_name} stopped heart-beating at {worker.last_heartbeat.isoformat()}"
    return None
