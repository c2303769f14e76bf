"""What a handler gets: the job (read-only), progress reporting, its own log and a cancel check."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any

from jobs.core import batches, dependencies, lifecycle
from jobs.core.errors import NotInABatch
from jobs.core.models import Job
from jobs.execution.capture import LogCapture
from jobs.execution.progress import ProgressReporter

_CANCEL_CHECK_INTERVAL = 0.5  # seconds between database reads in is_canceled()


class JobContext:
    def __init__(self, job: Job, dispatch: str) -> None:
        self.job = job
        self.dispatch = dispatch
        self._reporter = ProgressReporter(job, dispatch)
        self._log = LogCapture(job, dispatch)
        self._canceled = False
        self._checked_at = float("-inf")
        self._dependency_results: dict[str, dict[str, Any]] | None = None

    @property
    def payload(self) -> dict[str, Any]:
        return self.job.payload

    @property
    def attempt(self) -> int:
        return self.job.attempts

    def progress(self, percent: float, stage: str = "", **details: Any) -> None:
        """Report progress (0–100) with a stage name and any JSON-serialisable details."""
        self._reporter.report(percent, stage, details)

    def log(self, message: str, level: int | str = logging.INFO) -> None:
        """A line for the job's log (the job page, ``GET /api/jobs/{id}/logs/``), e.g.
        ``ctx.log("fetched 20 rows")`` or ``ctx.log("slow peer", level="WARNING")``.
        Records the handler sends through ``logging`` are captured the same way."""
        self._log.log(message, level)

    @contextlib.contextmanager
    def capturing(self) -> Iterator[None]:
        """The runner wraps the handler in this: its thread's ``logging`` records are the job's."""
        with self._log.capture_block():
            yield

    def is_canceled(self) -> bool:
        """True once an operator canceled this job (or it was taken away from this run)."""
        if self._canceled:
            return True
        now = time.monotonic()
        if now - self._checked_at >= _CANCEL_CHECK_INTERVAL:
            self._checked_at = now
            self._canceled = not lifecycle.still_owns(self.job.id, self.dispatch)
        return self._canceled

    def dependency_results(self) -> dict[str, dict[str, Any]]:
        """What the jobs this one depends on ended with: ``{job id: {"type", "status",
        "result", "error"}}`` in the order they were submitted (``error`` is
        ``{"category", "message"}`` or None). Read once, on first use: a job that runs
        only when its dependencies are final sees their final state."""
        if self._dependency_results is None:
            self._dependency_results = dependencies.results_of(self.job.id)
        return self._dependency_results

    def add_to_batch(self, specs: Sequence[Any], *, owner: Any = None) -> list[Any]:
        """Submit more jobs into this job's batch (fan-out of unknown size): allowed
        while this job runs, even once the batch is closed; its callbacks wait for them.
        ``specs`` are ``jobs.JobSpec``; the new jobs belong to this job's owner."""
        if self.job.batch_id is None:
            raise NotInABatch(f"Job {self.job.id} is in no batch.")
        return batches.add_to_batch(
            self.job.batch_id, specs, owner=owner if owner is not None else self.job.owner, from_job=self.job.id
        )

    def flush(self) -> None:
        self._reporter.flush()
        self._log.flush()
