"""Job logs' cost: does capturing what a handler logs slow the job?

    [DATABASE_URL=postgresql://…] python bench/joblogs.py [--jobs 60] [--seconds 0.1] [--rounds 2]

The same job, ``diagnostics.sleep`` (``seconds`` of work in one step), run through a real
worker process (``rqworker --burst``, Jobdesk's forking worker) in three ways:
- quiet: it logs nothing;
- logging, capture off: it logs 100 lines (1 ``ctx.log`` + 99 ``logging`` INFO records,
  the worker's LOG_LEVEL=INFO lets them through) with ``JOB_LOG_LINES=0``;
- logging, captured: the same with capture on (the default ``JOB_LOG_LINES=1000``).
Run time per job is read from the database (claim to outcome: ``finished_at −
started_at``), averaged over the jobs, best of ``--rounds`` (rounds interleave the
cases, so a busy machine hurts them alike). Printed: each case's mean, the capture's
cost against the same logging uncaptured (goal: a few percent) and against not logging
at all; then the 100,000-line case (a few jobs) captured and not, with the lines kept
and dropped.
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=60, help="jobs per case and round")
    parser.add_argument("--seconds", type=float, default=0.1, help="each job's work, in seconds")
    parser.add_argument("--lines", type=int, default=100, help="lines each logging job logs")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--flood-jobs", type=int, default=3, help="jobs of the 100,000-line case")
    args = parser.parse_args()
    with environment(LOG_LEVEL="INFO"):
        run(args)


def run(args) -> None:
    import django

    django.setup()
    import logging

    import django_rq
    from django.core.management import call_command
    from django.db import connection

    logging.getLogger("jobs").setLevel(logging.WARNING)  # this process's own submit lines (workers: INFO)
    call_command("migrate", verbosity=0)
    print(f"database: {connection.vendor}   {args.jobs} jobs of {args.seconds * 1000:.0f} ms per case, "
          f"{args.rounds} rounds, one worker process")  # fmt: skip
    cases = {
        "quiet": ({"log_lines": 0}, "1000"),
        "logging, capture off": ({"log_lines": args.lines}, "0"),
        "logging, captured": ({"log_lines": args.lines}, "1000"),
    }
    best: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, (payload, keep) in cases.items():
            django_rq.get_connection("normal").flushall()
            mean, _ = batch(args.jobs, {"seconds": args.seconds, "steps": 1, **payload}, keep)
            best[name] = min(best.get(name, mean), mean)
    for name, mean in best.items():
        print(f"  {name:<22} {mean * 1000:8.2f} ms per job")
    off, on, quiet = best["logging, capture off"], best["logging, captured"], best["quiet"]
    print(
        f"capture of {args.lines} lines per job: {on / off:.3f}x the same logging uncaptured "
        f"(+{(on - off) * 1000:.2f} ms, goal <= a few %); {on / quiet:.3f}x not logging at all"
    )

    flood = {"seconds": 0, "steps": 1, "log_lines": 100_000}
    plain, _ = batch(args.flood_jobs, flood, "0")
    captured, kept = batch(args.flood_jobs, flood, "1000")
    print(
        f"100,000 lines per job: {plain:.2f} s uncaptured, {captured:.2f} s captured ({captured / plain:.3f}x); "
        f"kept {kept['kept']} lines, dropped {kept['dropped']:,} per job"
    )


def batch(count: int, payload: dict, keep: str) -> tuple[float, dict]:
    """Submit ``count`` jobs, drain them with one worker process; (mean run time, a log row)."""
    from jobs.core.models import Job, JobLog, Status
    from jobs.core.submit import JobSpec, submit_many

    Job.objects.all().delete()
    submit_many([JobSpec("diagnostics.sleep", payload) for _ in range(count)])
    env = {**os.environ, "JOB_LOG_LINES": keep}
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "manage.py", "rqworker", "--burst", "immediate", "normal", "low"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=1800,
    )  # fmt: skip
    left = Job.objects.exclude(status=Status.COMPLETE).count()
    if left:
        raise SystemExit(f"{left} jobs did not complete (after {time.monotonic() - started:.0f} s)")
    runs = [(finish - start).total_seconds() for start, finish in Job.objects.values_list("started_at", "finished_at")]
    row = JobLog.objects.values("total", "dropped").first() or {"total": 0, "dropped": 0}
    return statistics.fmean(runs), {"kept": row["total"] - row["dropped"], "dropped": row["dropped"]}


if __name__ == "__main__":
    main()
