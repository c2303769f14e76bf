"""Leases: how long a run may go on without proving that its worker still holds it.

Every claim grants a lease (``Job.lease_expires_at``) of ``JOB_LEASE_SECONDS``. While
the run goes on, its worker renews it every ``JOB_LEASE_RENEW_SECONDS``
(``jobs.execution.leasekeeper``); a worker that could not renew for
``JOB_LEASE_STOP_SECONDS`` — the database unreachable, or the renewal refused because
the job was canceled or taken away — stops the run. Only once the lease has passed may
the reconciler, on any host, declare the run lost and hand the job to another worker:
by then the first run has stopped, so the two never overlap.

Deadlines are set and compared on the database's clock (in SQL), so the hosts' clocks
play no part; the worker measures its own stop on its monotonic clock, from the moment
it *sent* its last successful renewal (which the database ran at that moment or later).

The dispatch id is the fencing token: a renewal, a progress write or an outcome from a
run that lost its lease names a dispatch the row no longer has, and is refused.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import BooleanField, Count, DateTimeField, ExpressionWrapper, Q
from django.db.models.functions import Now

from jobs.core.models import Job, Status


def deadline() -> ExpressionWrapper:
    """A fresh lease's deadline, on the database's clock (for an UPDATE)."""
    return ExpressionWrapper(Now() + timedelta(seconds=settings.JOB_LEASE_SECONDS), output_field=DateTimeField())


def deadline_sql() -> str:
    """The same as SQL, for the one-statement claim (jobs.core.fastpath; PostgreSQL)."""
    return f"statement_timestamp() + interval '{float(settings.JOB_LEASE_SECONDS)} seconds'"


def renew(job_id, dispatch: str) -> bool:
    """Extend this run's lease; False when refused: the job was canceled, taken away
    (another dispatch) or its lease has already passed — the run must stop at once.
    A renewal after expiry is refused on purpose: the reconciler may have judged the
    run lost in that moment, and a late renewal must not revive it beside the retry."""
    alive = Q(lease_expires_at__gt=Now())
    return (
        Job.objects.filter(alive, pk=job_id, rq_job_id=dispatch, status=Status.ACTIVE).update(
            lease_expires_at=deadline()
        )
        == 1
    )


def adopt(job_id, dispatch: str, worker_name: str, host: str, pid: int) -> Job | None:
    """A run claimed for the worker ``worker_name`` (process ``host``:``pid``) by a helper
    that died before it answered (the worker's bookkeeper): its row, its lease renewed,
    while it is still this dispatch's, active and leased; None otherwise (the claim never
    committed, or the job has moved on). RQ's worker names are new at every start and
    one at a time in its registry, so no other worker — not one in another container
    with the same host name and pid — matches."""
    claimed_for_us = Job.objects.filter(
        Q(lease_expires_at__gt=Now()), pk=job_id, rq_job_id=dispatch, status=Status.ACTIVE, worker_name=worker_name,
        runner_host=host, runner_pid=pid,
    )  # fmt: skip
    if claimed_for_us.update(lease_expires_at=deadline()) != 1:
        return None
    return Job.objects.filter(pk=job_id).first()  # deleted meanwhile: None


def release(job_id, dispatch: str) -> bool:
    """The run has stopped without recording an outcome (canceled or taken away while it
    ran): give its lease back, so the job may be requeued at once (and its slot, under a
    concurrency limit, taken: ``stopping``). False when it held none."""
    return (
        Job.objects.filter(pk=job_id, rq_job_id=dispatch, lease_expires_at__isnull=False)
        .exclude(status=Status.ACTIVE)
        .update(lease_expires_at=None)
        == 1
    )


def stopping(job_type: str) -> int:
    """Runs of the type no longer active (canceled) whose lease still holds: they may
    still be running — a ``fork=False`` handler that does not look at ``ctx.is_canceled()``
    runs on until its worker's next renewal is refused — and so still count against a
    concurrency limit."""
    return stopping_by_type([job_type]).get(job_type, 0)


def stopping_by_type(job_types: list[str]) -> dict[str, int]:
    """``stopping`` for several types at once: one grouped scan of the small partial index."""
    rows = _stopping_runs(job_types).values("type").annotate(n=Count("id")).order_by()
    return {row["type"]: row["n"] for row in rows}


def stopping_until(job_type: str) -> list:
    """When the leases of the type's stopping runs (``stopping``) lapse at the latest: a
    run gives its slot back when it stops, or when its lease passes."""
    return list(_stopping_runs([job_type]).values_list("lease_expires_at", flat=True))


def _stopping_runs(job_types: list[str]):
    """Runs of these types no longer active whose lease still holds (the partial index)."""
    return Job.objects.filter(type__in=job_types, lease_expires_at__gt=Now()).exclude(status=Status.ACTIVE)


def still_running(job_id) -> bool:
    """Does a run of this job still hold a lease (a canceled run not stopped yet)?"""
    return Job.objects.filter(pk=job_id, lease_expires_at__gt=Now()).exists()


def lapsed_or_unleased(active):
    """Those of the ``active`` jobs whose lease has passed or that have none (claimed
    before leases) — a run whose lease holds is never lost — annotated with
    ``lease_expired`` (True; None: no lease), judged on the database's clock."""
    expired = ExpressionWrapper(Q(lease_expires_at__lte=Now()), output_field=BooleanField())
    return active.filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=Now())).annotate(
        lease_expired=expired
    )
