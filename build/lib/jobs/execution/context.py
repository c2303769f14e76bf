"""What a handler gets: the job (read-only), progress reporting and a cancel check."""

from __future__ import annotations

import time
from typing import Any

from jobs.core import lifecycle
from jobs.core.models import Job
from jobs.execution.progress import ProgressReporter

_CANCEL_CHECK_INTERVAL = 0.5  # seconds between database reads in is_canceled()


class JobContext:
    def __init__(self, job: Job, dispatch: str) -> None:
        self.job = job
        self.dispatch = dispatch
        self._reporter = ProgressReporter(job, dispatch)
        self._canceled = False
        self._checked_at = float("-inf")

    @property
    def payload(self) -> dict[str, Any]:
        return self.job.payload

    @property
    def attempt(self) -> int:
        return self.job.attempts

    def progress(self, percent: float, stage: str = "", **details: Any) -> None:
        """Report progress (0–100) with a stage name and any JSON-serialisable details."""
        self._reporter.report(percent, stage, details)

    def is_canceled(self) -> bool:
        """True once an operator canceled this job (or it was taken away from this run)."""
        if self._canceled:
            return True
        now = time.monotonic()
        if now - self._checked_at >= _CANCEL_CHECK_INTERVAL:
            self._checked_at = now
            self._canceled = not lifecycle.still_owns(self.job.id, self.dispatch)
        return self._canceled

    def flush(self) -> None:
        self._reporter.flush()
