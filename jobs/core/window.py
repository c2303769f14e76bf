"""Heavy jobs and the work window: the jobs side of it (the policy is workwindow's).

A heavy job starts only while a window is open. Submit defers it to the next opening;
the runner re-checks at claim time (the window may have closed while it waited) and
defers it again without spending an attempt; editing a window reschedules deferred jobs.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from jobs.core import lifecycle
from jobs.core.errors import JobNotFound, TransitionError
from jobs.core.models import Job, Status
from jobs.core.opening import current, deferral_until


def defer_if_closed(job: Job, dispatch: str) -> bool:
    """At claim: put a heavy job back to ``deferred`` when no window is open now."""
    if not job.heavy:
        return False
    until = deferral_until(timezone.now(), current())
    if until is None:
        return False
    lifecycle.defer(job.id, dispatch, until=until)
    return True


# Passes at most, while the windows keep changing under one (edits in quick succession).
_RESCHEDULE_PASSES = 5


def reschedule_deferred() -> int:
    """After a window changed: move every deferred job to its new opening. Each move is
    its own short transaction (a pass over thousands of jobs must not hold the database);
    a pass that finds the windows changed while it ran goes again with the new ones:
    two edits' passes ran side by side, and the one that had read the older windows
    could write last, leaving jobs at openings the window no longer had."""
    moved = 0
    windows = current()
    for _ in range(_RESCHEDULE_PASSES):
        moved += _reschedule_to(windows)
        latest = current()
        if latest == windows:
            break
        windows = latest
    return moved


def _reschedule_to(windows) -> int:
    now, moved = timezone.now(), 0
    for job in Job.objects.filter(status=Status.DEFERRED):
        wanted = max(now, job.run_at) if job.run_at else now
        until = deferral_until(wanted, windows) or (wanted if wanted > now else None)
        if until == job.scheduled_for:
            continue
        try:
            lifecycle.reschedule(job.id, dispatch=job.rq_job_id, until=until)
            moved += 1
        except (TransitionError, JobNotFound):
            continue  # claimed, canceled or deleted meanwhile
    return moved


def on_window_change(**kwargs) -> None:
    transaction.on_commit(reschedule_deferred)
