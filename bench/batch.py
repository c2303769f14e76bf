"""Batches: submit rate, last completion → callback latency, and the cost per job of
belonging to a batch.

    python bench/batch.py [--jobs 10000] [--compare 2000] [--rounds 2] [--workers 2]

Uses DATABASE_URL (a throwaway SQLite file when unset) and starts its own Redis.

1. A batch of ``--jobs`` no-op jobs submitted in one call (``jobs.create_batch``), beside
   the same jobs through ``submit_many`` without a batch: jobs/s (goal >= 2,000).
2. That batch run to its callback by ``--workers`` burst workers: the time from the
   last job's ``finished_at`` to the callback's ``started_at`` (goal < 1 s).
3. ``--compare`` no-op jobs drained by one burst worker with and without a batch,
   alternating (ABBA) for ``--rounds`` rounds; the median seconds per job of each and their
   ratio (goal: a batch costs <= 10 % more per job).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import environment  # noqa: E402

QUEUES = ("immediate", "normal", "low")


def drain(workers: int, worker_class: str) -> float:
    """Burst workers until the queues are empty; seconds taken."""
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, "manage.py", "rqworker", *QUEUES, "--burst", "--worker-class", worker_class],
            cwd=ROOT,
            env=dict(os.environ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(workers)
    ]
    for proc in procs:
        if proc.wait() != 0:
            raise SystemExit(f"worker exited with status {proc.returncode}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs in the batch submitted and run to its callback")
    parser.add_argument(
        "--compare", type=int, default=2000, help="jobs per run of the with/without comparison (0: skip it)"
    )
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-class", default="jobs.execution.worker.JobdeskWorker")
    args = parser.parse_args()
    with environment():
        run(args)


def run(args) -> None:
    import django

    django.setup()
    import django_rq
    from django.core.management import call_command
    from django.db import connection
    from django.db.models import Max

    from bench.batchtasks import batch_done
    from jobs import JobSpec, create_batch, submit_many
    from jobs.core.models import Batch, Job, Status

    call_command("migrate", verbosity=0)
    conn = django_rq.get_connection("normal")
    print(f"database: {connection.vendor}   workers: {args.workers} × {args.worker_class}")

    def reset() -> None:
        conn.flushall()
        Job.objects.all().delete()
        Batch.objects.all().delete()

    # 1. Submit rate, with and without a batch.
    reset()
    started = time.perf_counter()
    submit_many([JobSpec("diagnostics.noop")] * args.jobs)
    plain_rate = args.jobs / (time.perf_counter() - started)
    reset()
    started = time.perf_counter()
    batch, _ = create_batch([JobSpec("diagnostics.noop")] * args.jobs, description="bench", on_complete=batch_done)
    batch_rate = args.jobs / (time.perf_counter() - started)
    print(f"submit {args.jobs} jobs: in a batch {batch_rate:,.0f} jobs/s, without {plain_rate:,.0f} jobs/s "
          "(goal >= 2,000)")  # fmt: skip

    # 2. Run it to its callback.
    seconds = drain(args.workers, args.worker_class)
    batch.refresh_from_db()
    callback = Job.objects.filter(pk=str(batch.complete_job)).first()
    if callback is None or callback.status != Status.COMPLETE or callback.result != args.jobs:
        raise SystemExit(f"the callback did not run as expected: {callback and callback.status}")
    last = Job.objects.filter(batch=batch).aggregate(last=Max("finished_at"))["last"]
    assert callback.started_at is not None and last is not None
    latency = (callback.started_at - last).total_seconds()
    print(f"ran {args.jobs} jobs in {seconds:.1f} s ({args.jobs / seconds:,.0f} jobs/s); last completion → "
          f"callback start {latency * 1000:.0f} ms (goal < 1 s)")  # fmt: skip

    # 3. Cost per job of belonging to a batch: one worker, alternating rounds.
    if not args.compare:
        return
    per_job: dict[str, list[float]] = {"batch": [], "plain": []}
    for round_number in range(args.rounds):
        # ABBA: a load that drifts during a round weighs on both sides alike.
        for kind in ("plain", "batch") if round_number % 2 == 0 else ("batch", "plain"):
            reset()
            specs = [JobSpec("diagnostics.noop")] * args.compare
            if kind == "batch":
                create_batch(specs, on_complete=batch_done)
            else:
                submit_many(specs)
            seconds = drain(1, args.worker_class)
            done = Job.objects.filter(status=Status.COMPLETE, type="diagnostics.noop").count()
            if done != args.compare:
                raise SystemExit(f"only {done}/{args.compare} jobs completed")
            per_job[kind].append(seconds / args.compare)
    batch_cost, plain_cost = statistics.median(per_job["batch"]), statistics.median(per_job["plain"])
    rounds = " ".join(f"{b / p:.3f}" for b, p in zip(per_job["batch"], per_job["plain"], strict=True))
    print(f"per round, batch / plain: {rounds}")
    print(f"per job, {args.compare} jobs × {args.rounds} rounds, 1 worker: in a batch {batch_cost * 1000:.2f} ms, "
          f"without {plain_cost * 1000:.2f} ms, ratio {batch_cost / plain_cost:.3f} (goal <= 1.10)")  # fmt: skip


if __name__ == "__main__":
    main()
