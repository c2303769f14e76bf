"""Progress reports from handlers: throttled writes to the job row (SPEC §7).

A handler may report thousands of times a second; the row is written at most once per
``PROGRESS_WRITE_INTERVAL`` seconds, and the last report is flushed before the outcome
is recorded, so the final state is never lost to throttling.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from django.conf import settings

from jobs import lifecycle


@dataclass
class ProgressReporter:
    job_id: object
    dispatch: str
    interval: float = field(default_factory=lambda: settings.PROGRESS_WRITE_INTERVAL)
    writes: int = 0
    _last_write: float = float("-inf")
    _pending: tuple[int, str, dict] | None = None

    def report(self, percent: float, stage: str = "", details: dict | None = None) -> None:
        clamped = max(0, min(100, int(percent)))
        self._pending = (clamped, stage[:200], details or {})
        if time.monotonic() - self._last_write >= self.interval:
            self.flush()

    def flush(self) -> None:
        if self._pending is None:
            return
        percent, stage, details = self._pending
        self._pending = None
        self._last_write = time.monotonic()
        self.writes += lifecycle.record_progress(
            self.job_id, self.dispatch, percent=percent, stage=stage, details=details
        )
