"""End-to-end throughput: Jobdesk vs raw RQ with the same worker class, in one run.

    python bench/throughput.py [--jobs 500] [--worker-class rq.Worker]

Uses DATABASE_URL (a throwaway SQLite file when unset) and starts its own Redis. For
each worker class it times N no-op jobs through Jobdesk (submit → complete, checked in
the database) and N raw RQ no-op jobs, both drained by `manage.py rqworker --burst`,
and prints both rates and the ratio; also the bulk submit rate and the worker's peak RSS.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devtools.redis_server import RedisServer  # noqa: E402


def drain(worker_class: str, env: dict) -> tuple[float, int]:
    """Run one burst worker until the queues are empty; seconds taken and peak RSS (KiB)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "rqworker", "immediate", "normal", "low", "--burst",
         "--worker-class", worker_class],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    _pid, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"worker exited with status {status}")
    return elapsed, usage.ru_maxrss


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--bulk", type=int, default=5000, help="jobs in the bulk submit measurement")
    parser.add_argument(
        "--worker-class",
        action="append",
        help="default: Jobdesk's forking and simple classes, and RQ's own Worker and SimpleWorker",
    )
    args = parser.parse_args()
    worker_classes = args.worker_class or [
        "jobs.execution.worker.JobdeskWorker",
        "jobs.execution.worker.JobdeskSimpleWorker",
        "rq.Worker",
        "rq.SimpleWorker",
    ]

    tmp = Path(tempfile.mkdtemp(prefix="jobdesk-bench-"))
    redis_server = RedisServer(directory=tmp / "redis").start()
    os.environ["REDIS_URL"] = redis_server.url
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{tmp / 'bench.sqlite3'}")
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    try:
        run(args, worker_classes)
    finally:
        redis_server.stop()


def run(args, worker_classes: list[str]) -> None:
    import django

    django.setup()
    import django_rq
    from django.core.management import call_command
    from django.db import connection

    from bench.rawjobs import noop
    from jobs.core.models import Job, Status
    from jobs.core.submit import JobSpec, submit_many

    call_command("migrate", verbosity=0)
    env = dict(os.environ)
    conn = django_rq.get_connection("normal")
    print(f"database: {connection.vendor}   redis: {os.environ['REDIS_URL']}   jobs per run: {args.jobs}")

    def reset() -> None:
        conn.flushall()
        Job.objects.all().delete()

    reset()
    started = time.perf_counter()
    submit_many([JobSpec("diagnostics.noop")] * args.bulk)
    bulk_rate = args.bulk / (time.perf_counter() - started)
    print(f"bulk submit: {args.bulk} jobs at {bulk_rate:,.0f} jobs/s (goal >= 2,000)")

    for worker_class in worker_classes:
        reset()
        submit_many([JobSpec("diagnostics.noop")] * args.jobs)
        jobdesk_seconds, jobdesk_rss = drain(worker_class, env)
        done = Job.objects.filter(status=Status.COMPLETE).count()
        if done != args.jobs:
            raise SystemExit(f"only {done}/{args.jobs} Jobdesk jobs completed")

        reset()
        queue = django_rq.get_queue("normal")
        queue.enqueue_many([queue.prepare_data(noop) for _ in range(args.jobs)])
        raw_seconds, raw_rss = drain(worker_class, env)
        if queue.count:
            raise SystemExit("raw RQ left jobs behind")

        jobdesk_rate, raw_rate = args.jobs / jobdesk_seconds, args.jobs / raw_seconds
        print(
            f"{worker_class:33s} jobdesk {jobdesk_rate:7.1f} jobs/s   raw RQ {raw_rate:7.1f} jobs/s   "
            f"ratio {jobdesk_rate / raw_rate:.2f} (goal >= 0.8)   "
            f"peak worker RSS jobdesk {jobdesk_rss / 1024:.0f} MiB, raw {raw_rss / 1024:.0f} MiB"
        )


if __name__ == "__main__":
    main()
