"""Progress reports from handlers: throttled writes to the job row, each relayed to
WebSocket clients (SPEC §7).

A handler may report thousands of times a second; the row is written (and the report
relayed) at most once per ``PROGRESS_WRITE_INTERVAL`` seconds. A report that arrives
sooner is held, and written when the interval is up by a timer thread, so a handler that
reports and then works silently for a minute is still shown where it is. The last report
is flushed before the outcome is recorded, so the final state is never lost to throttling.
Each write is the job's next event (``seq`` + 1): clients see every written report, in
order, and can tell a gap from silence.

Two rules keep a report from ever hurting the job:
- a report made inside the handler's own transaction is not written in it (a rollback
  would take back an event clients were already told about): the timer writes it, on
  its own connection, once the row is free;
- no lock the handler waits on is held during a database write: if the timer is busy
  writing, the handler's report simply stays held for the next write.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from jobs import lifecycle, relay
from jobs.models import Job

logger = logging.getLogger("jobs.progress")

_RETRY_AFTER_ERROR = 1.0  # seconds before the timer tries a failed write again


class ProgressReporter:
    def __init__(self, job: Job, dispatch: str, interval: float | None = None) -> None:
        self.job = job  # the handler's copy: its progress fields follow the writes
        self.dispatch = dispatch
        self.interval = settings.PROGRESS_WRITE_INTERVAL if interval is None else interval
        self.writes = 0
        self._last_write = float("-inf")
        self._pending: tuple[int, str, dict, datetime] | None = None
        self._owned = True  # False once a write finds the run no longer owns the job
        self._state = threading.Lock()  # guards the fields above; never held while writing
        self._writing = threading.Lock()  # one write at a time, in seq order
        self._timer: threading.Timer | None = None

    def report(self, percent: float, stage: str = "", details: dict | None = None) -> None:
        clamped = max(0, min(100, int(percent)))
        with self._state:
            self._pending = (clamped, stage[:200], details or {}, timezone.now())
            wait = self._last_write + self.interval - time.monotonic()
        if wait <= 0 and not connection.in_atomic_block and self._writing.acquire(blocking=False):
            try:
                self._write_pending()
            finally:
                self._writing.release()
            return
        self._arm(max(wait, 0.0))

    def flush(self, timeout: float = 10.0) -> None:
        """Write what is held now (the run is ending; no handler transaction is open)."""
        with self._state:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        if self._writing.acquire(timeout=timeout):
            try:
                self._write_pending()
            finally:
                self._writing.release()

    def _arm(self, wait: float) -> None:
        with self._state:
            if self._timer is None and self._pending is not None:
                self._timer = threading.Timer(wait, self._write_when_due)
                self._timer.daemon = True
                self._timer.start()

    def _write_when_due(self) -> None:
        with self._state:
            self._timer = None
        try:
            with self._writing:
                self._write_pending()
        except DatabaseError:  # e.g. SQLite busy behind the handler's transaction
            logger.warning("progress write failed; retrying", extra={"job_id": str(self.job.id)}, exc_info=True)
            self._arm(_RETRY_AFTER_ERROR)
        finally:
            connection.close()  # the timer thread's own connection

    def _write_pending(self) -> None:
        """Write and relay the held report. The caller holds ``_writing``."""
        with self._state:
            if self._pending is None or not self._owned:
                return
            held = self._pending
            self._pending = None
            self._last_write = time.monotonic()
        percent, stage, details, at = held
        job = self.job
        try:
            owned = lifecycle.record_progress(
                job.id, self.dispatch, seq=job.seq, percent=percent, stage=stage, details=details
            )
        except DatabaseError:
            with self._state:
                self._pending = self._pending or held  # a newer report wins; else retry this one
            raise
        if not owned:
            # Canceled or taken away: its clients hear that from the move itself.
            with self._state:
                self._owned = False
            return
        self.writes += 1
        job.seq, job.progress, job.stage, job.progress_details = job.seq + 1, percent, stage, details
        relay.publish(job, "progress", at=at)
