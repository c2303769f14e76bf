"""Heavy jobs and the work window: the jobs side of SPEC §6 (the policy is workwindow's).

A heavy job starts only while a window is open. Submit defers it to the next opening;
the runner re-checks at claim time (the window may have closed while it waited) and
defers it again without spending an attempt; editing a window reschedules deferred jobs.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from jobs.core import lifecycle, queueing
from jobs.core.errors import TransitionError
from jobs.core.models import Job, Status
from workwindow.models import enabled_windows
from workwindow.policy import Window, is_open, next_open

logger = logging.getLogger("jobs.core.window")


def current() -> list[Window]:
    return enabled_windows()


def deferral_until(at: datetime, windows: list[Window]) -> datetime | None:
    """When a heavy job wanting to start at ``at`` may start, or None for "at ``at``".
    A window set that never opens (within a week) does not hold work back forever."""
    if is_open(windows, at):
        return None
    opening = next_open(windows, at)
    if opening is None:
        logger.warning("no work window opens within a week: heavy jobs run without waiting")
    return opening


def defer_if_closed(job: Job, dispatch: str) -> bool:
    """At claim: put a heavy job back to ``deferred`` when no window is open now."""
    if not job.heavy:
        return False
    until = deferral_until(timezone.now(), current())
    if until is None:
        return False
    deferred = lifecycle.defer(job.id, dispatch, until=until)
    queueing.schedule(deferred, until)
    return True


def reschedule_deferred() -> int:
    """After a window changed: move every deferred job to its new opening."""
    windows, now, moved = current(), timezone.now(), 0
    for job in Job.objects.filter(status=Status.DEFERRED):
        wanted = max(now, job.run_at) if job.run_at else now
        until = deferral_until(wanted, windows) or (wanted if wanted > now else None)
        if until == job.scheduled_for:
            continue
        try:
            with transaction.atomic():
                rescheduled = lifecycle.reschedule(job.id, dispatch=job.rq_job_id, until=until)
                transaction.on_commit(lambda j=rescheduled, old=job: _move_in_redis(old, j))
            moved += 1
        except TransitionError:
            continue  # claimed or canceled meanwhile
    return moved


def _move_in_redis(old: Job, new: Job) -> None:
    queueing.withdraw(old.rq_job_id, old.priority)
    queueing.dispatch(new)


def on_window_change(**kwargs) -> None:
    transaction.on_commit(reschedule_deferred)
