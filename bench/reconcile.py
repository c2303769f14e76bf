"""Reconciler cost at scale: one pass over 100k jobs of which few need repair.

    python bench/reconcile.py [--jobs 100000] [--missing 100]

Uses DATABASE_URL (a throwaway SQLite file when unset) and starts its own Redis. Seeds
mostly-complete history plus some queued jobs whose RQ entries are missing (as after a
Redis flush) and some active jobs held by this (alive) process, times a repairing pass
and a clean pass, and checks the repairs. Goal: < 5 s per pass on PostgreSQL.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import environment  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--missing", type=int, default=100, help="queued jobs missing from Redis")
    parser.add_argument("--active", type=int, default=20, help="active jobs whose process is alive")
    args = parser.parse_args()
    with environment():
        run(args)


def seed(args) -> None:
    import socket

    from django.utils import timezone

    from jobs.core.models import Job, Status, status_writes

    Job.objects.all().delete()
    now = timezone.now()
    complete = args.jobs - args.missing - args.active
    rows = []
    for i in range(args.jobs):
        job_id = uuid.uuid4()
        job = Job(id=job_id, type="diagnostics.noop", rq_job_id=str(job_id), attempts=1, seq=3)
        if i < complete:
            job.status, job.started_at, job.finished_at, job.hooks_done = Status.COMPLETE, now, now, True
        elif i < complete + args.missing:
            job.status, job.enqueued_at = Status.QUEUED, now - timedelta(minutes=5)
        else:
            job.status, job.started_at = Status.ACTIVE, now
            job.runner_host, job.runner_pid, job.worker_name = socket.gethostname(), os.getpid(), "bench"
        rows.append(job)
    with status_writes():  # a past built directly, as the benchmark needs it (not through the lifecycle)
        for start in range(0, len(rows), 5000):
            Job.objects.bulk_create(rows[start : start + 5000])
    # Rows must look old enough to be outside the reconciler's grace period.
    Job.objects.update(updated_at=now - timedelta(minutes=5))


def run(args) -> None:
    import django

    django.setup()
    import django_rq
    from django.core.management import call_command
    from django.db import connection

    from jobs.upkeep import reconcile

    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    seed(args)
    print(f"database: {connection.vendor}; seeded {args.jobs:,} jobs in {time.perf_counter() - started:.1f}s")

    for label in ("repairing pass", "clean pass"):
        started = time.perf_counter()
        report = reconcile.run(grace_seconds=0)
        elapsed = time.perf_counter() - started
        print(
            f"{label:15s} {elapsed:6.2f}s  ({args.jobs / elapsed:,.0f} jobs/s)  repairs {report.repairs} "
            f"(requeued {len(report.requeued)}, lost {len(report.lost)})  goal < 5 s"
        )
        if label == "repairing pass" and (len(report.requeued) != args.missing or report.lost):
            raise SystemExit("unexpected repairs")
    assert django_rq.get_queue("normal").count == args.missing


if __name__ == "__main__":
    main()
