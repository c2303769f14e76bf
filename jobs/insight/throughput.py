"""Jobs finished per second over the last minutes, by outcome and by queue: the
dashboard's live throughput chart.

One grouped query: the finished jobs of the window (a range of the ``job_finished``
index on ``finished_at``), counted per second, status and queue (a job's queue is its
priority). At most window × 3 statuses × 3 queues rows come back, whatever the table
holds; they are summed into ``step``-second buckets here. Buckets are aligned to the
epoch, so two reads a moment apart agree on every bucket but the last (still filling).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db.models import Count
from django.db.models.functions import Trunc
from django.utils import timezone

from jobs.core.models import Job, Status

WINDOW_SECONDS = 15 * 60
STEP_SECONDS = 5  # one point per 5 s: 180 points, each a rate in jobs per second
RATE_SECONDS = 60  # the "now" figure: the last minute's average
OUTCOME_OF = {Status.COMPLETE: "complete", Status.FAILED: "failed", Status.DEAD_LETTER: "failed"}
OUTCOMES = ("complete", "failed")  # failed: failed or dead letter


def throughput(now: datetime | None = None, *, window: int = WINDOW_SECONDS, step: int = STEP_SECONDS) -> dict:
    """Finished jobs per ``step``-second bucket over the last ``window`` seconds:
    ``total`` and ``queues[name]``, each ``{"complete": [...], "failed": [...]}`` (counts,
    oldest first; divide by ``step`` for jobs per second), and ``rate``, the last
    minute's jobs per second by outcome."""
    now = now or timezone.now()
    end_epoch = math.floor(now.timestamp() / step) * step + step  # the bucket now falls in, included
    end = datetime.fromtimestamp(end_epoch, tz=UTC)
    start = end - timedelta(seconds=window)
    buckets = window // step
    queues = list(settings.JOB_QUEUES)

    def empty() -> dict[str, list[int]]:
        return {outcome: [0] * buckets for outcome in OUTCOMES}

    total, by_queue = empty(), {name: empty() for name in queues}
    rate = dict.fromkeys(OUTCOMES, 0)
    rows = (
        Job.objects.filter(finished_at__gte=start, finished_at__lt=end, status__in=list(OUTCOME_OF))
        .order_by()
        .annotate(second=Trunc("finished_at", "second", tzinfo=UTC))
        .values_list("second", "status", "priority")
        .annotate(n=Count("*"))
    )
    recent = now - timedelta(seconds=RATE_SECONDS)
    for second, status, priority, n in rows:
        outcome = OUTCOME_OF[status]
        index = min(int((second - start).total_seconds()) // step, buckets - 1)
        total[outcome][index] += n
        if priority in by_queue:
            by_queue[priority][outcome][index] += n
        if second >= recent:
            rate[outcome] += n
    return {
        "start": start,
        "end": end,
        "step": step,
        "total": total,
        "queues": by_queue,
        "rate": {outcome: round(count / RATE_SECONDS, 2) for outcome, count in rate.items()},
    }
