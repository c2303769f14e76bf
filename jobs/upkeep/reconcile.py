"""Database vs Redis repair: no job is ever lost.

Run every minute by cron and by ``manage.py reconcile``. Safe to run concurrently with
itself (a Redis lock; a second pass just skips) and with workers (every repair is a
guarded lifecycle move, so it can never make a job run twice at once).
"""

from __future__ import annotations

import contextvars
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from redis.exceptions import LockError, RedisError
from redis.lock import Lock

from jobs.core import batches, flow, leases, lifecycle, liveness, outcomes, queueing, transitions
from jobs.core.errors import TransitionError
from jobs.core.models import BROKEN_DEPENDENCY_STATUSES, FINAL_STATUSES, Job, Priority, Status
from jobs.core.registry import cron, job_type

logger = logging.getLogger("jobs.reconcile")
ACTOR = "reconciler"
_LOCK_KEY = "jobdesk:reconcile:lock"
LOCK_SECONDS = 30  # a pass renews its lock before each repair (see _still_holding_the_lock)
_pass_lock: contextvars.ContextVar[Lock | None] = contextvars.ContextVar("jobdesk_reconcile_lock", default=None)
HOOK_REPLAY_AFTER = 60  # seconds: a live worker runs hooks right after recording
# Seconds a dispatch may sit in RQ's started registry without a heartbeat while its row
# is still queued. An inline run's claim waits behind the last run's record and hooks
# (jobs.execution.worker, ClaimBehind), and its worker beats the dispatch every 30 s
# meanwhile; no beat for this long means that worker died before its claim. The row is
# re-dispatched (a late claim of the old dispatch is refused).
UNCLAIMED_AFTER = 120


class LostRun(Exception):
    """What an attempt the reconciler found lost (its process gone) failed with."""


_REPAIRS = ("requeued", "rescheduled", "lost", "released", "canceled", "hooks_replayed", "batches_settled", "unheld")


@dataclass
class Report:
    skipped: bool = False
    requeued: list[str] = field(default_factory=list)
    rescheduled: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    canceled: list[str] = field(default_factory=list)
    hooks_replayed: list[str] = field(default_factory=list)
    batches_settled: list[str] = field(default_factory=list)  # batches whose callbacks it submitted
    unheld: list[str] = field(default_factory=list)  # held jobs their lever let go (a count, as text)
    errors: list[str] = field(default_factory=list)  # jobs a repair failed for (logged)

    @property
    def repairs(self) -> int:
        return sum(len(getattr(self, name)) for name in _REPAIRS)

    def as_dict(self) -> dict:
        return {
            "skipped": self.skipped,
            "repairs": self.repairs,
            **{name: getattr(self, name) for name in (*_REPAIRS, "errors")},
        }


def run(*, grace_seconds: float | None = None) -> Report:
    """One pass. ``grace_seconds`` spares rows changed that recently (their Redis side
    may still be on its way, e.g. an enqueue waiting for its transaction to commit)."""
    grace = settings.RECONCILE_GRACE_SECONDS if grace_seconds is None else grace_seconds
    lock = queueing.connection().lock(_LOCK_KEY, timeout=LOCK_SECONDS, blocking_timeout=0)
    if not lock.acquire(blocking=False):
        return Report(skipped=True)
    token = _pass_lock.set(lock)
    report = Report()
    try:
        _one_pass(timezone.now(), grace, report)
    except LockError:
        logger.warning("reconcile pass stopped: another pass holds the lock now", extra=report.as_dict())
        report.errors.append("lock lost")
    finally:
        _pass_lock.reset(token)
        try:
            lock.release()
        except (LockError, RedisError):
            logger.warning("reconcile lock lost before the pass ended")
    if report.repairs:
        logger.warning("reconcile repaired jobs", extra=report.as_dict())
    return report


def _one_pass(now: datetime, grace: float, report: Report) -> None:
    present = queueing.dispatches_in_redis(started_within=UNCLAIMED_AFTER)
    _restore_missing_dispatches(present, now - timedelta(seconds=grace), report)
    _rescue_lost_active(now, report)
    _settle_waiting(report)
    _replay_unfinished_hooks(now - timedelta(seconds=max(grace, HOOK_REPLAY_AFTER)), report)
    _settle_batches(report)
    # After the lost runs were repaired: their slots are free now.
    unheld = flow.release_held()
    if unheld:
        report.unheld.append(str(unheld))


def _still_holding_the_lock() -> None:
    """Renew the pass's lock before each repair; a pass that lost it (cut off from
    Redis, or slower than its lock) stops, and the pass that holds it goes on. Repairs
    are guarded moves, so even two passes at once could not run a job twice: the lock
    keeps the work — and the log — to one pass."""
    lock = _pass_lock.get()
    if lock is not None:
        lock.reacquire()  # LockNotOwnedError (a LockError) when another pass took over


def _repair(job_id, repairs: list[str], report: Report, move) -> None:
    """Apply one repair; a job that moved on meanwhile is skipped, and a job that cannot
    be repaired is logged and counted — it never stops the pass for the others."""
    _still_holding_the_lock()
    try:
        with transaction.atomic():
            move()
    except TransitionError:
        return  # claimed, finished or canceled while we looked: nothing to repair
    except Exception:
        logger.exception("reconcile could not repair a job", extra={"job_id": str(job_id)})
        report.errors.append(str(job_id))
        return
    repairs.append(str(job_id))


def _restore_missing_dispatches(present: set[str], changed_before: datetime, report: Report) -> None:
    # Held jobs are parked in the database on purpose (flow control): not missing.
    waiting_in_redis = Job.objects.filter(status__in=transitions.CLAIMABLE, updated_at__lt=changed_before, hold="")
    for job_id, dispatch, status in waiting_in_redis.values_list("id", "rq_job_id", "status").iterator():
        if dispatch in present:
            continue

        def redispatch(job_id=job_id, dispatch=dispatch, status=status):
            lifecycle.redispatch(
                job_id, dispatch=dispatch, actor_label=ACTOR, reason=f"{status} but missing from Redis: re-dispatched"
            )

        _repair(job_id, report.requeued if status == Status.QUEUED else report.rescheduled, report, redispatch)


def _rescue_lost_active(now: datetime, report: Report) -> None:
    # Only runs whose lease does not hold are read (each pass of a busy system would
    # otherwise read every running job), and RQ's worker registry only for a run claimed
    # before leases.
    active = list(leases.lapsed_or_unleased(Job.objects.filter(status=Status.ACTIVE)))
    if not active:
        return
    workers = queueing.workers() if any(job.lease_expires_at is None for job in active) else {}
    for job in active:
        reason = liveness.lost_reason(job, workers, now)
        if reason is None:
            continue

        def retry(job=job, reason=reason):
            outcomes.temporary_failure(
                job, job.rq_job_id, message=f"lost: {reason}", actor_label=ACTOR,
                recovery_actions=["None needed: retried automatically"],
                exception=f"{LostRun.__module__}.{LostRun.__qualname__}",
            )  # fmt: skip

        _repair(job.id, report.lost, report, retry)


def _settle_waiting(report: Report) -> None:
    """Release waiting jobs whose dependencies all completed; cancel broken ones."""
    for job in Job.objects.filter(status=Status.WAITING).prefetch_related("depends_on"):
        statuses = {d.status for d in job.depends_on.all()}
        broken = statuses & BROKEN_DEPENDENCY_STATUSES
        verdict = lifecycle.waiting_verdict(job.on_dependency_failure, sorted(statuses))
        if verdict == "cancel":

            def cancel(job=job, broken=broken):
                canceled = lifecycle.cancel(job.id, actor_label=ACTOR, reason=f"a dependency ended {sorted(broken)[0]}")
                outcomes.finished(canceled)

            _repair(job.id, report.canceled, report, cancel)
        elif verdict == "release":

            def release(job=job):
                lifecycle.release(job.id, message="dependencies final (reconciler)")

            _repair(job.id, report.released, report, release)


def _replay_unfinished_hooks(finished_before: datetime, report: Report) -> None:
    pending = Job.objects.filter(hooks_done=False, status__in=FINAL_STATUSES, finished_at__lt=finished_before)
    for job in pending:
        _repair(job.id, report.hooks_replayed, report, lambda job=job: outcomes.finished(job))


def _settle_batches(report: Report) -> None:
    """Closed batches whose jobs are all final but whose on_complete was never
    submitted (the worker recording the last job died before it settled the batch), and
    requeued ones now all complete without their on_success: settle them now. The guard
    on the batch row keeps it to one callback even if that worker's settle is still on
    its way."""
    for batch_id in dict.fromkeys([*batches.unsettled(), *batches.unsettled_success()]):
        try:
            fired = batches.settle(batch_id)
        except Exception:
            logger.exception("reconcile could not settle a batch", extra={"batch_id": str(batch_id)})
            report.errors.append(str(batch_id))
            continue
        if fired:
            report.batches_settled.append(str(batch_id))


@job_type("jobs.reconcile", public=False, priority=Priority.IMMEDIATE, timeout=300, max_attempts=1)
def run_as_job(ctx) -> dict:
    return run().as_dict()


cron("reconcile", "* * * * *", "jobs.reconcile")
