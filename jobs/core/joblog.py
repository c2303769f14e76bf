"""Structured log lines about jobs: always job id, type, status, attempt (and duration)."""

from __future__ import annotations

import logging

from jobs.core.models import Job

logger = logging.getLogger("jobs")


def job_fields(job: Job, **extra) -> dict:
    fields = {
        "job_id": str(job.id),
        "job_type": job.type,
        "status": job.status,
        "attempt": job.attempts,
        "priority": job.priority,
    }
    if job.duration_seconds is not None:
        fields["duration"] = round(job.duration_seconds, 3)
    fields.update(extra)
    return fields


def log_job(message: str, job: Job, *, level: int = logging.INFO, **extra) -> None:
    if logger.isEnabledFor(level):  # the fields cost more than the check (two lines a job)
        logger.log(level, message, extra=job_fields(job, **extra))
