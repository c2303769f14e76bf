"""Progress reports from handlers: throttled writes to the job row, each relayed to
WebSocket clients (SPEC §7).

A handler may report thousands of times a second; the row is written (and the report
relayed) at most once per ``PROGRESS_WRITE_INTERVAL`` seconds. A report that arrives
sooner is held, and written when the interval is up, by a timer, so a handler that
reports and then works silently for a minute is still shown where it is. The last report
is flushed before the outcome is recorded, so the final state is never lost to throttling.
Each write is the job's next event (``seq`` + 1): clients see every written report, in
order, and can tell a gap from silence.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime

from django.conf import settings
from django.db import connection
from django.utils import timezone

from jobs import lifecycle, relay
from jobs.models import Job


class ProgressReporter:
    def __init__(self, job: Job, dispatch: str, interval: float | None = None) -> None:
        self.job = job  # the handler's copy: its progress fields follow the writes
        self.dispatch = dispatch
        self.interval = settings.PROGRESS_WRITE_INTERVAL if interval is None else interval
        self.writes = 0
        self._last_write = float("-inf")
        self._pending: tuple[int, str, dict, datetime] | None = None
        self._owned = True  # False once a write finds the run no longer owns the job
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def report(self, percent: float, stage: str = "", details: dict | None = None) -> None:
        clamped = max(0, min(100, int(percent)))
        with self._lock:
            self._pending = (clamped, stage[:200], details or {}, timezone.now())
            wait = self._last_write + self.interval - time.monotonic()
            if wait <= 0:
                self._write_pending()
            elif self._timer is None:
                self._timer = threading.Timer(wait, self._write_when_due)
                self._timer.daemon = True
                self._timer.start()

    def flush(self) -> None:
        """Write what is held now (the run is ending)."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._write_pending()

    def _write_when_due(self) -> None:
        try:
            with self._lock:
                self._timer = None
                self._write_pending()
        finally:
            connection.close()  # the timer thread's own connection

    def _write_pending(self) -> None:
        if self._pending is None or not self._owned:
            return
        percent, stage, details, at = self._pending
        self._pending = None
        self._last_write = time.monotonic()
        job = self.job
        self._owned = lifecycle.record_progress(
            job.id, self.dispatch, seq=job.seq, percent=percent, stage=stage, details=details
        )
        if not self._owned:
            return  # canceled or taken away: its clients hear that from the move itself
        self.writes += 1
        job.seq, job.progress, job.stage, job.progress_details = job.seq + 1, percent, stage, details
        relay.publish(job, "progress", at=at)
