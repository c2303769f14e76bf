"""Why did my ETA change? A waiting job's estimate, revised where its followers can see it.

An estimate comes with an 80 % range. When a fresh estimate's start falls outside the
range a follower was last shown, that is news: the followers get it at once (not at the
next periodic re-read), with the reason, and the job's timeline records the revision so
the question has an answer later too. Within the range, a moving estimate is noise and is
only sent on the periodic re-read.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from jobs.core import lifecycle
from jobs.core.models import PENDING_STATUSES, Job, JobEvent

# A revision already on the timeline this recently is not written again: several
# followers (in several web processes) see the same move, a moment apart.
_RECORDED_WITHIN = timedelta(seconds=5)


def arrived_ahead(arrived: dict[str, int], priority: str | None) -> str:
    """The reason, when new work went ahead of a job of ``priority``: "12 immediate jobs
    arrived ahead"; "" when none of it goes ahead (same or lower priority joins behind)."""
    if priority not in settings.JOB_QUEUES:
        return ""
    rank = settings.JOB_QUEUES.index(priority)
    ahead = [(p, arrived[p]) for p in settings.JOB_QUEUES[:rank] if arrived.get(p)]
    if not ahead:
        return ""
    words = [f"{n} {p} job{'s' if n != 1 else ''}" for p, n in ahead]
    return f"{' and '.join(words)} arrived ahead"


def moved(shown: dict[str, Any], fresh: dict[str, Any]) -> bool:
    """Does the fresh estimate's start fall outside the range last shown?"""
    shown_range = shown.get("estimated_start_range")
    new_start = _when(fresh.get("estimated_start_at"))
    if not shown_range or new_start is None:
        return False
    low, high = (_when(t) for t in shown_range)
    return low is not None and high is not None and not low <= new_start <= high


def revise(job_id, shown: dict[str, Any], fresh: dict[str, Any], reason: str = "") -> dict[str, Any] | None:
    """If the estimate moved out of the range shown, record the revision on the job's
    timeline (once for all its followers) and return it: {"from", "to", "reason"}."""
    if not moved(shown, fresh):
        return None
    before, after = _when(shown.get("estimated_start_at")), _when(fresh.get("estimated_start_at"))
    if before is None or after is None:
        return None
    if not reason:
        reason = f"the work ahead is going {'slower' if after > before else 'faster'} than estimated"
    revision = {"from": before.isoformat(), "to": after.isoformat(), "reason": reason}
    _record(job_id, before, after, revision)
    return revision


def _record(job_id, before: datetime, after: datetime, revision: dict[str, Any]) -> None:
    with transaction.atomic():
        # The row lock makes followers in other processes take turns; the check then
        # sees a revision one of them just wrote.
        job = Job.objects.select_for_update().filter(pk=job_id, status__in=PENDING_STATUSES).first()
        if job is None:
            return
        recent = JobEvent.objects.filter(
            job_id=job_id, kind=JobEvent.Kind.NOTE, created_at__gte=timezone.now() - _RECORDED_WITHIN
        ).values_list("details", flat=True)
        if any(isinstance(d, dict) and "eta_revision" in d for d in recent):
            return
        lifecycle.note(
            job_id,
            f"ETA revised: start {_clock(before)} → {_clock(after)} UTC ({revision['reason']})",
            actor_label="estimates",
            details={"eta_revision": revision},
        )


def _when(value) -> datetime | None:
    if isinstance(value, datetime):
        return value
    return parse_datetime(value) if isinstance(value, str) else None


def _clock(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%H:%M:%S")
