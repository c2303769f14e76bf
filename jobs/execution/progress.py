"""Progress reports from handlers: throttled writes to the job row, each relayed to
WebSocket clients.

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

import json
import logging
import threading
import time
from datetime import datetime

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DatabaseError, connection
from django.utils import timezone

from jobs.core import lifecycle, relay, tracing
from jobs.core.models import Job

logger = logging.getLogger("jobs.execution.progress")

_RETRY_AFTER_ERROR = 1.0  # seconds before the timer tries a failed write again


def _clean_stage(stage: str) -> str:
    return _whole_characters(str(stage).replace("\x00", "")[:200])  # PostgreSQL text cannot hold NUL


def _whole_characters(text: str) -> str:
    """Half a UTF-16 surrogate pair ("\\ud800" from a handler) as "?": PostgreSQL stores
    none, and the write failed every time it was tried."""
    return text.encode("utf-8", "replace").decode("utf-8")


def _clean_details(details: dict | None) -> dict:
    """Details the job row can store (JSON, no NaN, no NUL, whole characters); otherwise a note saying so,
    rather than a write that fails every time it is tried."""
    if not details:
        return {}
    try:
        text = _whole_characters(json.dumps(details, cls=DjangoJSONEncoder, allow_nan=False, ensure_ascii=False))
    except (TypeError, ValueError) as error:
        return {"unstorable_details": str(error)[:200]}
    return json.loads(text.replace("\\u0000", "")) if "\\u0000" in text else json.loads(text)


class ProgressReporter:
    def __init__(self, job: Job, dispatch: str, interval: float | None = None) -> None:
        self.job = job  # the handler's copy: its progress fields follow the writes
        self.dispatch = dispatch
        self.interval = settings.PROGRESS_WRITE_INTERVAL if interval is None else interval
        self.writes = 0
        self._last_write = float("-inf")
        self._pending: tuple[int, str, dict | None, datetime] | None = None
        self._owned = True  # False once a write finds the run no longer owns the job
        self._state = threading.Lock()  # guards the fields above; never held while writing
        self._writing = threading.Lock()  # one write at a time, in seq order
        self._timer: threading.Timer | None = None

    def report(self, percent: float, stage: str = "", details: dict | None = None) -> None:
        if not self._owned:
            return  # canceled or taken away: nothing more to tell
        clamped = max(0, min(100, int(percent)))
        with self._state:
            self._pending = (clamped, stage, details, timezone.now())  # cleaned when written
            wait = self._last_write + self.interval - time.monotonic()
        if wait <= 0 and not connection.in_atomic_block and self._writing.acquire(blocking=False):
            try:
                self._write_pending()
            except DatabaseError:  # a report never fails the handler: the timer retries
                logger.warning("progress write failed", extra={"job_id": str(self.job.id)}, exc_info=True)
                self._arm(_RETRY_AFTER_ERROR)
            finally:
                self._writing.release()
            return
        self._arm(max(wait, 0.0))

    def flush(self, timeout: float = 10.0) -> None:
        """Write what is held now (the run is ending; no handler transaction is open).
        Never raises: a progress report must not turn a finished run into a failed one."""
        with self._state:
            if self._timer is not None:
                self._timer.cancel()
        if not self._writing.acquire(timeout=timeout):
            logger.warning("last progress report not written (a write is stuck)", extra={"job_id": str(self.job.id)})
            return
        try:
            self._write_pending()
        except DatabaseError:
            logger.warning("last progress report not written", extra={"job_id": str(self.job.id)}, exc_info=True)
        finally:
            self._writing.release()

    def _arm(self, wait: float) -> None:
        """One timer at a time: while it waits or writes, later reports just replace the
        held one (a slow database must not pile up threads)."""
        with self._state:
            if self._timer is None and self._pending is not None and self._owned:
                self._timer = threading.Timer(wait, self._write_when_due)
                self._timer.daemon = True
                self._timer.start()

    def _write_when_due(self) -> None:
        retry = 0.0
        try:
            with self._writing:
                self._write_pending()
        except DatabaseError:  # e.g. SQLite busy behind the handler's transaction
            logger.warning("progress write failed; retrying", extra={"job_id": str(self.job.id)}, exc_info=True)
            retry = _RETRY_AFTER_ERROR
        finally:
            connection.close()  # the timer thread's own connection
            with self._state:
                self._timer = None
                wait = max(retry, self._last_write + self.interval - time.monotonic())
        self._arm(max(wait, 0.0))  # a report that came while this one was written

    def _write_pending(self) -> None:
        """Write and relay the held report. The caller holds ``_writing``."""
        with self._state:
            if self._pending is None or not self._owned:
                return
            held = self._pending
            self._pending = None
            self._last_write = time.monotonic()
        percent, stage, details, at = held
        stage, details = _clean_stage(stage), _clean_details(details)
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
        tracing.progress(self.dispatch, percent, stage, at)
