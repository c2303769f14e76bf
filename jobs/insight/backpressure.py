"""Should new work wait? How long the line is against a limit, and how long the workers
need to bring it back under — what an app's intake answers with 503 and Retry-After."""

from __future__ import annotations

import math

from jobs.core.models import Job
from jobs.insight import durations, estimates

MAX_RETRY_AFTER = 600  # seconds: beyond this, "later" is all a client needs to know
MIN_RETRY_AFTER = 5


def retry_after_backlog(limit: int, job_type: str) -> int | None:
    """None while at most ``limit`` jobs wait (every pending status counts: a closed work
    window must not let heavy work pile up); else the seconds until the workers have
    brought the line back under ``limit``, judged by ``job_type``'s run time."""
    # The count stops early, so a long line costs no full scan.
    depth = Job.objects.pending()[: limit * 10 + 1].count()
    if depth <= limit:
        return None
    workers = estimates.live_workers() or 1
    per_job = durations.of(job_type).mean
    return min(MAX_RETRY_AFTER, max(MIN_RETRY_AFTER, math.ceil(per_job * max(1, depth - limit) / workers)))
