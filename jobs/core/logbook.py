"""Job logs: where a run's captured lines are stored and how they are read back.

The capture (``jobs.execution.capture``) buffers a run's lines in the worker and calls
``write_run`` in batches; the API, the console and ``watch_job`` read through ``read``.
One ``JobLog`` row per run (see the model for why not one row per line).
"""

from __future__ import annotations

from typing import Any, TypedDict

from django.db import IntegrityError, transaction

from jobs.core.models import Job, JobLog


class Line(TypedDict):
    n: int  # the line's number in its run, from 1 (dropped lines keep their numbers)
    at: str  # ISO 8601, UTC
    level: str
    logger: str
    message: str


def write_run(log_id: int | None, *, job_id, dispatch: str, attempt: int, lines: list[Line], total: int) -> int | None:
    """Store the run's kept lines (the whole bounded list, replacing the last batch's).
    Returns the row's id for the next batch, or None when the job is gone (deleted while
    it ran): the caller stops writing."""
    fields: dict[str, Any] = {"lines": lines, "total": total, "dropped": max(0, total - len(lines))}
    if log_id is not None:
        written = JobLog.objects.filter(pk=log_id).update(**fields)
        return log_id if written else None  # 0: the row went with its job (cascade)
    try:
        with transaction.atomic():
            return JobLog.objects.create(job_id=job_id, dispatch=dispatch, attempt=attempt, **fields).pk
    except IntegrityError:
        # The run's row exists already (a batch whose answer was lost), or the job is gone.
        row = JobLog.objects.filter(job_id=job_id, dispatch=dispatch).values_list("pk", flat=True).first()
        if row is None:
            return None
        JobLog.objects.filter(pk=row).update(**fields)
        return row


def read(job: Job, attempt: int | None = None) -> dict[str, Any]:
    """A job's log lines, oldest run first, each line with its attempt; per run how many
    lines it emitted and how many of the oldest were dropped (over ``JOB_LOG_LINES``)."""
    rows = JobLog.objects.filter(job=job).order_by("created_at", "id")
    if attempt is not None:
        rows = rows.filter(attempt=attempt)
    runs: list[dict[str, Any]] = []
    lines: list[dict[str, Any]] = []
    for row in rows:
        runs.append(
            {"attempt": row.attempt, "started_at": row.created_at, "updated_at": row.updated_at,
             "total": row.total, "kept": len(row.lines), "dropped": row.dropped}
        )  # fmt: skip
        # Keys named one by one: PostgreSQL's jsonb does not keep a stored object's key order.
        lines.extend(
            {"attempt": row.attempt, "n": line["n"], "time": line["at"], "level": line["level"],
             "logger": line["logger"], "message": line["message"]}
            for line in row.lines
        )  # fmt: skip
    return {
        "job_id": str(job.id),
        "status": job.status,
        "dropped": sum(run["dropped"] for run in runs),
        "runs": runs,
        "lines": lines,
    }


def since(job_id, cursor: dict[int, int]) -> list[dict[str, Any]]:
    """The job's lines not seen yet, oldest run first, for a follower polling them
    (``watch_job``). ``cursor`` (run row id → last line number seen) is updated in place.
    A line ``{"dropped": k, "attempt": …}`` stands for k lines the run dropped unseen."""
    fresh: list[dict[str, Any]] = []
    for row in JobLog.objects.filter(job_id=job_id).order_by("created_at", "id"):
        seen = cursor.get(row.pk, 0)
        if row.total <= seen:
            continue
        first_kept = row.total - len(row.lines) + 1
        if first_kept > seen + 1:
            fresh.append({"attempt": row.attempt, "dropped": first_kept - seen - 1})
        fresh.extend(
            {"attempt": row.attempt, "n": line["n"], "time": line["at"], "level": line["level"],
             "logger": line["logger"], "message": line["message"]}
            for line in row.lines
            if line["n"] > seen
        )  # fmt: skip
        cursor[row.pk] = row.total
    return fresh
