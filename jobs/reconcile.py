"""Database vs Redis repair: no job is ever lost (SPEC §4.8).

Run every minute by cron and by ``manage.py reconcile``. Safe to run concurrently with
itself (a Redis lock; a second pass just skips) and with workers (every repair is a
guarded lifecycle move, so it can never make a job run twice at once).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from redis.exceptions import LockError

from jobs import lifecycle, liveness, outcomes, queueing
from jobs.errors import TransitionError
from jobs.models import BROKEN_DEPENDENCY_STATUSES, Job, Status

logger = logging.getLogger("jobs.reconcile")
ACTOR = "reconciler"
_LOCK_KEY = "jobdesk:reconcile:lock"


@dataclass
class Report:
    skipped: bool = False
    requeued: list[str] = field(default_factory=list)
    rescheduled: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    canceled: list[str] = field(default_factory=list)

    @property
    def repairs(self) -> int:
        return sum(len(x) for x in (self.requeued, self.rescheduled, self.lost, self.released, self.canceled))

    def as_dict(self) -> dict:
        return {
            "skipped": self.skipped,
            "repairs": self.repairs,
            **{k: getattr(self, k) for k in ("requeued", "rescheduled", "lost", "released", "canceled")},
        }


def run(*, grace_seconds: float | None = None) -> Report:
    """One pass. ``grace_seconds`` spares rows changed that recently (their Redis side
    may still be on its way, e.g. an enqueue waiting for its transaction to commit)."""
    grace = settings.RECONCILE_GRACE_SECONDS if grace_seconds is None else grace_seconds
    lock = queueing.connection().lock(_LOCK_KEY, timeout=300, blocking_timeout=0)
    if not lock.acquire(blocking=False):
        return Report(skipped=True)
    try:
        now = timezone.now()
        report = Report()
        present = queueing.dispatches_in_redis()
        _restore_missing_dispatches(present, now - timedelta(seconds=grace), report)
        _rescue_lost_active(now, report)
        _settle_waiting(report)
    finally:
        try:
            lock.release()
        except LockError:
            logger.warning("reconcile lock expired before the pass ended")
    if report.repairs:
        logger.warning("reconcile repaired jobs", extra=report.as_dict())
    return report


def _restore_missing_dispatches(present: set[str], changed_before: datetime, report: Report) -> None:
    waiting_in_redis = Job.objects.filter(status__in=lifecycle.REDISPATCHABLE, updated_at__lt=changed_before)
    for job_id, dispatch, status in waiting_in_redis.values_list("id", "rq_job_id", "status").iterator():
        if dispatch in present:
            continue
        try:
            with transaction.atomic():
                job = lifecycle.redispatch(
                    job_id,
                    dispatch=dispatch,
                    actor_label=ACTOR,
                    reason=f"{status} but missing from Redis: re-dispatched",
                )
                transaction.on_commit(lambda job=job: queueing.dispatch(job))
        except TransitionError:
            continue  # it moved on meanwhile (claimed, canceled…): nothing to repair
        (report.requeued if status == Status.QUEUED else report.rescheduled).append(str(job_id))


def _rescue_lost_active(now: datetime, report: Report) -> None:
    active = list(Job.objects.filter(status=Status.ACTIVE))
    if not active:
        return
    workers = queueing.workers()
    for job in active:
        reason = liveness.lost_reason(job, workers, now)
        if reason is None:
            continue
        try:
            with transaction.atomic():
                outcomes.temporary_failure(
                    job, job.rq_job_id, message=f"lost: {reason}", actor_label=ACTOR,
                    recovery_actions=["None needed: retried automatically"],
                )  # fmt: skip
        except TransitionError:
            continue  # finished or canceled while we looked
        report.lost.append(str(job.id))


def _settle_waiting(report: Report) -> None:
    """Release waiting jobs whose dependencies all completed; cancel broken ones."""
    for job in Job.objects.filter(status=Status.WAITING).prefetch_related("depends_on"):
        statuses = {d.status for d in job.depends_on.all()}
        broken = statuses & BROKEN_DEPENDENCY_STATUSES
        try:
            if broken:
                canceled = lifecycle.cancel(job.id, actor_label=ACTOR, reason=f"a dependency ended {sorted(broken)[0]}")
                outcomes.finished(canceled)
                report.canceled.append(str(job.id))
            elif statuses <= {Status.COMPLETE}:
                with transaction.atomic():
                    released = lifecycle.release(job.id, message="dependencies complete (reconciler)")
                    transaction.on_commit(lambda released=released: queueing.dispatch(released))
                report.released.append(str(job.id))
        except TransitionError:
            continue
