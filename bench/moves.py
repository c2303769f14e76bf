"""What a job's bookkeeping costs the process that keeps it: a claim and a record per job,
as a worker's recorder (or its bookkeeper) makes them, with nothing else in the way.

    DATABASE_URL=postgresql://… python bench/moves.py [--jobs 2000] [--rounds 3]

Uses DATABASE_URL (a throwaway SQLite file when unset; on PostgreSQL each move is one
prepared statement, jobs.core.fastpath) and starts its own Redis. Each round submits
``--jobs`` no-op jobs, then claims each and records it complete in this process, one
after the other (``runner.claim``, ``runner.record``); the relay's messages go from its
thread and are drained before the clock stops. Printed per job, median of the rounds:
the process's CPU (both threads), the main thread's for the claim and for the record
apart, and the wall time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import environment  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=2000, help="claims and records per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with environment():
        run(args)


def queued_jobs(count: int) -> list[tuple[str, str, tuple[str, str]]]:
    """``count`` new queued no-op jobs: (id, dispatch, (type, queue)), as a worker knows them."""
    from jobs.core.models import Job, Status
    from jobs.core.submit import JobSpec, submit_many

    Job.objects.all().delete()
    submit_many([JobSpec("diagnostics.noop")] * count)
    rows = Job.objects.filter(status=Status.QUEUED).values_list("id", "rq_job_id", "type", "priority")
    return [(str(job_id), dispatch, (job_type, queue)) for job_id, dispatch, job_type, queue in rows]


def one_round(count: int) -> dict[str, float]:
    """Milliseconds per job: process CPU, the claim's and the record's CPU on this thread, wall."""
    from jobs.core import relay
    from jobs.execution import runner

    jobs = queued_jobs(count)
    claiming = recording = 0.0
    wall, cpu = time.perf_counter(), time.process_time()
    for job_id, dispatch, known in jobs:
        started = time.thread_time()
        claimed = runner.claim(job_id, dispatch, "bench-worker", known)
        claimed_at = time.thread_time()
        assert claimed is not None, "refused"
        runner.record(claimed, dispatch, {"ok": True, "result": None})
        recording += time.thread_time() - claimed_at
        claiming += claimed_at - started
    relay.drain()
    per_job = 1000 / count
    return {
        "cpu": (time.process_time() - cpu) * per_job,
        "claim": claiming * per_job,
        "record": recording * per_job,
        "wall": (time.perf_counter() - wall) * per_job,
    }


def run(args) -> None:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    one_round(min(args.jobs, 200))  # warm: prepared statements, caches
    rounds = [one_round(args.jobs) for _ in range(args.rounds)]
    median = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    print(f"database: {connection.vendor}   jobs per round: {args.jobs}   rounds: {args.rounds}")
    print(
        f"per job (claim + record): CPU {median['cpu']:.3f} ms (claim {median['claim']:.3f}, "
        f"record {median['record']:.3f} on this thread; the rest is the relay's thread), "
        f"wall {median['wall']:.3f} ms"
    )
    print("each round, CPU ms per job: " + ", ".join(f"{r['cpu']:.3f}" for r in rounds))


if __name__ == "__main__":
    main()
