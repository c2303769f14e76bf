"""End-to-end throughput: Jobdesk vs raw RQ with the same worker class, in one run.

    python bench/throughput.py [--jobs 500] [--rounds 3] [--worker-class rq.Worker]

Uses DATABASE_URL (a throwaway SQLite file when unset) and starts its own Redis. For
each worker class it times N no-op jobs through Jobdesk (submit → complete, checked in
the database) and N raw RQ no-op jobs, both drained by `manage.py rqworker --burst`,
and prints both rates and the ratio; also the bulk submit rate and the worker's peak RSS.
Then the default ``JobdeskWorker`` drains N ``diagnostics.noop_inline`` jobs (``fork=False``:
no work-horse) against the same N ``diagnostics.noop`` jobs forked. Each comparison runs
``--rounds`` times, its two sides alternating; the table gives the medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
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
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs per comparison (median)")
    parser.add_argument(
        "--worker-class",
        action="append",
        help="default: Jobdesk's forking and simple classes, and RQ's own Worker and SimpleWorker",
    )
    parser.add_argument("--no-inline", action="store_true", help="skip the fork=False vs forked comparison")
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

    def jobdesk_side(worker_class: str, job_type: str = "diagnostics.noop") -> tuple[float, int]:
        reset()
        submit_many([JobSpec(job_type)] * args.jobs)
        seconds, rss = drain(worker_class, env)
        done = Job.objects.filter(status=Status.COMPLETE).count()
        if done != args.jobs:
            raise SystemExit(f"only {done}/{args.jobs} Jobdesk jobs completed")
        return args.jobs / seconds, rss

    def raw_side(worker_class: str) -> tuple[float, int]:
        reset()
        queue = django_rq.get_queue("normal")
        queue.enqueue_many([queue.prepare_data(noop) for _ in range(args.jobs)])
        seconds, rss = drain(worker_class, env)
        if queue.count:
            raise SystemExit("raw RQ left jobs behind")
        return args.jobs / seconds, rss

    def compare(label: str, ours, theirs) -> tuple[float, float, float, list[float]]:
        """Median rates of ``args.rounds`` alternating runs of each side, the ratio of
        the medians, and each round's own ratio (the spread)."""
        ours_rates, their_rates, rss = [], [], []
        for _ in range(args.rounds):
            rate, peak = ours()
            ours_rates.append(rate)
            rss.append(peak)
            their_rates.append(theirs()[0])
        a, b = statistics.median(ours_rates), statistics.median(their_rates)
        ratios = [x / y for x, y in zip(ours_rates, their_rates, strict=True)]
        print(
            f"{label:44s} {a:7.1f} vs {b:7.1f} jobs/s   ratio {a / b:.2f} "
            f"(rounds {', '.join(f'{r:.2f}' for r in ratios)})   peak RSS {max(rss) / 1024:.0f} MiB",
            flush=True,
        )
        return a, b, a / b, ratios

    rows = []
    goals = {"jobs.execution.worker.JobdeskWorker": 0.9, "jobs.execution.worker.JobdeskSimpleWorker": 0.8}
    for worker_class in worker_classes:
        a, b, ratio, ratios = compare(
            f"{worker_class} vs raw RQ", lambda c=worker_class: jobdesk_side(c), lambda c=worker_class: raw_side(c)
        )
        rows.append((f"`{worker_class}`, Jobdesk vs raw RQ, same class", a, b, ratio, ratios, goals.get(worker_class)))
    if not args.no_inline:
        forking = "jobs.execution.worker.JobdeskWorker"
        a, b, ratio, ratios = compare(
            "JobdeskWorker, fork=False vs forked",
            lambda: jobdesk_side(forking, "diagnostics.noop_inline"),
            lambda: jobdesk_side(forking, "diagnostics.noop"),
        )
        rows.append(("`JobdeskWorker`, `fork=False` type vs the same jobs forked", a, b, ratio, ratios, 3.0))

    print(f"\n{args.jobs} no-op jobs per side, median of {args.rounds} alternating runs ({connection.vendor})\n")
    print("| worker | jobs/s | baseline jobs/s | ratio | each round | goal |")
    print("|---|---|---|---|---|---|")
    for label, a, b, ratio, ratios, goal in rows:
        each = ", ".join(f"{r:.2f}" for r in ratios)
        print(f"| {label} | {a:.1f} | {b:.1f} | **{ratio:.2f}** | {each} | {f'≥ {goal}' if goal else ''} |")


if __name__ == "__main__":
    main()
