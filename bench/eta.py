"""What an ETA costs with a long line: 100k queued jobs.

    DATABASE_URL=postgresql://… python bench/eta.py [--queued 100000] [--repeat 30]

Uses DATABASE_URL (a throwaway SQLite file when unset; the goals are for PostgreSQL) and
starts its own Redis with one registered worker. Times, median and max over repeats:
the ETA of a new job at the end of the line (goal < 20 ms), the detail of a queued job in
the middle of the line and of the last one (goal < 20 ms), and a page of 50 jobs with
ETAs through the API (goal < 100 ms, queries counted: no query per row).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import environment  # noqa: E402

TYPES = {"bench.small": 0.2, "bench.medium": 1.5, "bench.large": 6.0}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queued", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    with environment():
        run(args)


def seed(queued: int) -> None:
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from jobs.core.models import Job, Status, status_writes

    Job.objects.all().delete()
    operator = {"is_staff": True, "is_superuser": True}  # sees every job, as an operator's console does
    owner, _ = get_user_model().objects.update_or_create(username="bench", defaults=operator)
    now = timezone.now()
    names = list(TYPES)
    rows = [  # history: what each type usually takes
        Job(type=t, status=Status.COMPLETE, started_at=now - timedelta(seconds=d), finished_at=now, owner=owner)
        for t, d in TYPES.items()
        for _ in range(100)
    ]
    priorities = ["normal"] * 8 + ["immediate", "low"]
    for i in range(queued):
        job_id = uuid.uuid4()
        rows.append(
            Job(id=job_id, type=names[i % 3], status=Status.QUEUED, priority=priorities[i % 10], owner=owner,
                rq_job_id=str(job_id), enqueued_at=now - timedelta(seconds=queued - i), created_at=now)
        )  # fmt: skip
    with status_writes():  # a past built directly, as the benchmark needs it (not through the lifecycle)
        for start in range(0, len(rows), 5000):
            Job.objects.bulk_create(rows[start : start + 5000])
    # History from an hour ago: not "work arriving now" (created_at is set on insert).
    Job.objects.filter(status=Status.COMPLETE).update(created_at=now - timedelta(hours=1))


def timed(label: str, repeat: int, call, goal_ms: float) -> None:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    print(f"{label:42s} median {statistics.median(times):7.1f} ms  max {max(times):7.1f} ms  goal < {goal_ms:.0f} ms")


def run(args) -> None:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from rest_framework.test import APIClient
    from rq import Worker

    from jobs.core import queueing
    from jobs.core.models import Job, Status
    from jobs.insight import estimates

    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    seed(args.queued)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"VACUUM ANALYZE {Job._meta.db_table}")
    print(f"database: {connection.vendor}; seeded {args.queued:,} queued jobs in {time.perf_counter() - started:.1f}s")
    Worker(["normal"], connection=queueing.connection(), name="bench-worker").register_birth()
    assert estimates.live_workers() == 1

    normal = Job.objects.filter(status=Status.QUEUED, priority="normal").order_by("enqueued_at")
    middle = normal[normal.count() // 2]
    last = normal.last()
    assert last is not None  # seeded: the line is not empty

    def cold(call):
        def run_cold():
            estimates.clear_cache()
            call()

        return run_cold

    new = lambda: estimates.for_new_job("bench.medium", "normal")  # noqa: E731
    timed("new job ETA (duration cache warm)", args.repeat, new, 20)
    timed("new job ETA (cold: durations re-read)", args.repeat, cold(new), 20)
    timed("queued job in the middle of the line", args.repeat, lambda: estimates.for_job(middle), 20)
    timed("last queued job", args.repeat, lambda: estimates.for_job(last), 20)

    client = APIClient()
    owned = Job.objects.filter(owner__isnull=False).first()
    assert owned is not None  # seeded jobs have an owner
    client.force_authenticate(owned.owner)
    page = lambda: client.get("/api/jobs/?status=queued&page_size=50")  # noqa: E731
    timed("GET /api/jobs/ page of 50 with ETAs", args.repeat, page, 100)
    with CaptureQueriesContext(connection) as queries:
        response = page()
    results = response.json()["results"]
    assert len(results) == 50 and all(r["estimated_start_at"] for r in results), response.content[:300]
    print(f"  queries for one page of 50: {len(queries)}")
    first = results[0]
    print(f"  newest queued job: start {first['estimated_start_at']}, finish {first['estimated_finish_at']}")


if __name__ == "__main__":
    main()
