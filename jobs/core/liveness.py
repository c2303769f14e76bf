"""Is the run of an active job still going on?

Decided by the run's lease (jobs.core.leases), which its worker renews while the run
goes on, wherever it runs: a slow job whose worker keeps renewing is never declared
lost, and a job is only taken over once its lease has passed — after its own worker
stopped it. (``process_started_at`` stays for tests and diagnostics: a pid with its
start time, so a recycled pid does not count.)
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from django.conf import settings

from jobs.core.models import Job
from jobs.core.queueing import WorkerState


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


def lost_reason(job: Job, workers: dict[str, WorkerState], now: datetime) -> str | None:
    """Why ``job`` (active) has nobody running it any more, or None if its run goes on.

    Its lease decides (``job.lease_expired``: ``jobs.core.leases.lapsed_or_unleased``, on the
    database's clock), on this host as on any other: a run whose lease has passed has
    been stopped by its own worker's watchdog, or its worker is gone or cut off. A pid
    is no proof across hosts — two machines may share a hostname — so none is trusted.
    """
    if job.lease_expires_at is not None:
        if getattr(job, "lease_expired", False):
            expired = job.lease_expires_at.isoformat()
            return f"its lease expired at {expired}: worker {job.worker_name} stopped renewing it"
        return None
    return _lost_without_lease(job, workers, now)


def _lost_without_lease(job: Job, workers: dict[str, WorkerState], now: datetime) -> str | None:
    """A run claimed by a worker from before leases (an upgrade in progress): judged by
    its RQ worker, and never before it could have run out its timeout when Redis has
    simply forgotten the worker (a flush)."""
    worker = workers.get(job.worker_name)
    settled = job.started_at is None or now - job.started_at > CLAIM_GRACE
    if worker is not None and worker.current_job != job.rq_job_id and settled:
        return f"worker {job.worker_name} moved on (its work-horse died or its outcome was not recorded)"
    stale_after = timedelta(seconds=settings.WORKER_STALE_SECONDS)
    if worker is not None and worker.last_heartbeat and now - worker.last_heartbeat.replace(tzinfo=UTC) > stale_after:
        return f"worker {job.worker_name} stopped heart-beating at {worker.last_heartbeat.isoformat()}"
    if worker is None and job.started_at and now - job.started_at > timedelta(seconds=job.timeout) + stale_after:
        return f"worker {job.worker_name} is gone (no RQ worker registration) and its run would have timed out"
    return None
