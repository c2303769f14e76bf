"""Batches: submit rate, last completion → callback latency, and the cost per job of
belonging to a batch.

    python bench/batch.py [--jobs 10000] [--compare 1000] [--workers 2]

Uses DATABASE_URL (a throwaway SQLite file when unset) and starts its own Redis.

1. A batch of ``--jobs`` no-op jobs submitted in one call (``jobs.create_batch``), beside
   the same jobs through ``submit_many`` without a batch: jobs/s (goal >= 2,000).
2. That batch run to its callback by ``--workers`` burst workers: the time from the
   last job's ``finished_at`` to the callback's ``started_at`` (goal < 1 s).
3. ``--compare`` no-op jobs in a batch alternating in one queue with as many without,
   drained by one burst worker: the median time from a job's claim to the next one's of
   each kind and their ratio (goal: a batch costs <= 10 % more per job). Alternating in
   one run, both kinds meet the same load; separate runs on a shared machine did not.
"""

from __future__ import annotations

import argparse
import itertools
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
    from jobs import JobSpec, close_batch, create_batch, submit_many
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

    # 3. Cost per job of belonging to a batch: batch and plain jobs alternate in one queue
    # drained by one worker, so both kinds meet the same machine at the same moment; a
    # job's cost is the time from its claim to the next job's claim (fork, handler,
    # outcome, the batch check, the relay), compared by median.
    if not args.compare:
        return
    reset()
    from jobs import add_to_batch
    from jobs.core.batches import open_batch

    mixed = open_batch(on_complete=batch_done)
    for _ in range(args.compare):
        submit_many([JobSpec("diagnostics.noop")])
        add_to_batch(mixed.pk, [JobSpec("diagnostics.noop")])
    close_batch(mixed.pk)
    drain(1, args.worker_class)
    rows = list(
        Job.objects.filter(type="diagnostics.noop").order_by("started_at").values_list("started_at", "batch_id")
    )
    claims = [(claimed, in_batch) for claimed, in_batch in rows if claimed is not None]
    if len(claims) != 2 * args.compare:
        raise SystemExit("not every job ran")
    cost: dict[bool, list[float]] = {True: [], False: []}
    for (claimed, in_batch), (next_claimed, _) in itertools.pairwise(claims):
        cost[in_batch is not None].append((next_claimed - claimed).total_seconds())
    batch_cost, plain_cost = statistics.median(cost[True]), statistics.median(cost[False])
    print(f"per job, {args.compare} batch jobs alternating with {args.compare} plain ones, 1 worker: in a batch "
          f"{batch_cost * 1000:.2f} ms, without {plain_cost * 1000:.2f} ms (medians, claim to next claim), "
          f"ratio {batch_cost / plain_cost:.3f} (goal <= 1.10)")  # fmt: skip


if __name__ == "__main__":
    main()
