"""Job logs: what a handler logs while it runs, kept with the run (``JobLog``).

Two sources, one buffer per run:
- ``logging`` records of any logger, emitted in the thread running the handler while
  it runs (a handler on the root logger, there only for the run; records of other
  threads — the relay, a progress timer, another job's thread — are not this run's);
- ``ctx.log("message", level=...)``, kept whatever the logging configuration says, and
  passed on to the ``jobs.handler.<type>`` logger so the worker's output has it too.

Bounded: the last ``JOB_LOG_LINES`` lines (a deque), each cut to ``JOB_LOG_LINE_CHARS``;
the row counts what was dropped. Cheap: a line costs an append in memory; the buffer is
written in batches — at most every ``JOB_LOG_WRITE_INTERVAL`` seconds while the handler
runs (so the job page shows lines live), and once at the end — never once per line. A
run shorter than the interval costs one INSERT; a run that logs nothing costs nothing.
The writes follow the progress reporter's two rules (``jobs.execution.progress``): never
inside the handler's own transaction (a timer thread writes instead), and never failing
the job (a failed write is logged and tried again with the next batch).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

from django.conf import settings
from django.db import DatabaseError, connection

from jobs.core import logbook
from jobs.core.models import Job

logger = logging.getLogger("jobs.execution.capture")

_CAPTURED = "_jobdesk_captured"  # set on ctx.log's records: the root handler skips them
_formatter = logging.Formatter()  # for tracebacks (``logger.exception``)

Held = tuple[int, float, str, str, str]  # (n, created, level, logger, message)


def level_name(level: int | str) -> tuple[int, str]:
    """(number, name) for ``level`` given as 20, "info" or "INFO"; unknown names are INFO."""
    if isinstance(level, str):
        number = logging.getLevelName(level.upper())
        return (number, level.upper()) if isinstance(number, int) else (logging.INFO, "INFO")
    return int(level), logging.getLevelName(int(level))


class LogCapture(logging.Handler):
    def __init__(self, job: Job, dispatch: str, *, limit: int | None = None, interval: float | None = None) -> None:
        super().__init__(level=logging.NOTSET)
        self.job = job
        self.dispatch = dispatch
        self.limit = settings.JOB_LOG_LINES if limit is None else limit
        self.chars = settings.JOB_LOG_LINE_CHARS
        self.interval = settings.JOB_LOG_WRITE_INTERVAL if interval is None else interval
        self.total = 0  # lines emitted in this run, kept or not
        self.writes = 0
        self._lines: collections.deque[Held] = collections.deque(maxlen=max(self.limit, 1))
        self._thread: int | None = None  # the handler's thread, while capturing
        self._attached = False
        self._dirty = False
        self._row: int | None = None  # the JobLog row once written
        self._gone = False  # the job was deleted while it ran: stop writing
        self._in_write = False  # the handler thread is writing: its own records are not the job's
        self._next_write = 0.0
        self._state = threading.Lock()  # guards the fields above; never held while writing
        self._writing = threading.Lock()  # one write at a time
        self._timer: threading.Timer | None = None

    @property
    def enabled(self) -> bool:
        return self.limit > 0

    # --- capturing --------------------------------------------------------------------

    @contextlib.contextmanager
    def capture_block(self) -> Iterator[None]:
        """Capture the calling thread's ``logging`` records while the block runs."""
        if not self.enabled:
            yield
            return
        self._thread = threading.get_ident()
        # The first batch is due one interval after the start: a short run is one write.
        self._next_write = time.monotonic() + self.interval
        logging.root.addHandler(self)
        self._attached = True
        try:
            yield
        finally:
            logging.root.removeHandler(self)
            self._attached = False

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self._thread or self._in_write or getattr(record, _CAPTURED, False):
            return
        try:
            message = record.getMessage()
        except Exception:  # a bad format string is the handler's bug, not the run's end
            message = f"{record.msg!r} (unformattable with args {record.args!r})"
        if record.exc_info:
            record.exc_text = record.exc_text or _formatter.formatException(record.exc_info)
        if record.exc_text:
            message = f"{message}\n{record.exc_text}"
        self.add(record.created, record.levelname, record.name, message)

    def log(self, message: str, level: int | str = logging.INFO) -> None:
        """``ctx.log``: always kept; also handed to the ``jobs.handler.<type>`` logger."""
        number, name = level_name(level)
        target = logging.getLogger(f"jobs.handler.{self.job.type}")
        if target.isEnabledFor(number):
            record = target.makeRecord(target.name, number, "(ctx.log)", 0, "%s", (message,), None)
            setattr(record, _CAPTURED, True)
            record.job_id = str(self.job.id)  # the JSON log line says whose it is
            target.handle(record)
        if self.enabled:
            self.add(time.time(), name, f"jobs.handler.{self.job.type}", str(message))

    def add(self, created: float, level: str, name: str, message: str) -> None:
        if len(message) > self.chars:
            message = message[: self.chars - 1] + "…"
        if "\x00" in message:  # PostgreSQL's jsonb cannot hold NUL
            message = message.replace("\x00", "")
        with self._state:
            self.total += 1
            self._lines.append((self.total, created, level, name, message))
            self._dirty = True
            wait = self._next_write - time.monotonic()
            timer_set = self._timer is not None
        if wait > 0:
            if not timer_set:  # the common case, a timer already waits: nothing more per line
                self._arm(wait)
        elif not connection.in_atomic_block and self._writing.acquire(blocking=False):
            try:
                self._write()
            finally:
                self._writing.release()
        else:
            self._arm(0.0)

    # --- writing ----------------------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> None:
        """Write what is held (the run is ending). Never raises."""
        with self._state:
            if self._timer is not None:
                self._timer.cancel()
        if not self._writing.acquire(timeout=timeout):
            logger.warning("last job log lines not written (a write is stuck)", extra={"job_id": str(self.job.id)})
            return
        try:
            self._write()
        finally:
            self._writing.release()

    def _arm(self, wait: float) -> None:
        """One timer at a time: lines that come while it waits join its batch."""
        with self._state:
            if self._timer is None and self._dirty and not self._gone:
                self._timer = threading.Timer(max(wait, 0.0), self._write_when_due)
                self._timer.daemon = True
                self._timer.start()

    def _write_when_due(self) -> None:
        try:
            with self._writing:
                self._write()
        finally:
            connection.close()  # the timer thread's own connection
            with self._state:
                self._timer = None
                wait = self._next_write - time.monotonic()
        self._arm(wait)  # lines that came while this batch was written

    def _write(self) -> None:
        """Write the kept lines. The caller holds ``_writing``. A failed write is logged
        (outside the capture) and left for the next batch or the final flush."""
        with self._state:
            if not self._dirty or self._gone:
                return
            held, total = list(self._lines), self.total
            self._dirty = False
            self._next_write = time.monotonic() + self.interval
        lines: list[logbook.Line] = [
            {"n": n, "at": datetime.fromtimestamp(created, UTC).isoformat(), "level": level, "logger": name,
             "message": message}
            for n, created, level, name, message in held
        ]  # fmt: skip
        mine = threading.get_ident() == self._thread
        self._in_write = mine  # the handler thread's own records while it writes are ours, not the job's
        try:
            row = logbook.write_run(
                self._row, job_id=self.job.id, dispatch=self.dispatch, attempt=self.job.attempts, lines=lines,
                total=total,
            )  # fmt: skip
        except DatabaseError:
            with self._state:
                self._dirty = True  # the next batch (or the flush) carries these lines too
            logger.warning("job log write failed", extra={"job_id": str(self.job.id)}, exc_info=True)
            return
        finally:
            if mine:
                self._in_write = False
        self.writes += 1
        with self._state:
            self._row = row
            self._gone = row is None
