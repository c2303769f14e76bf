"""Job logs' cost: does capturing what a handler logs slow the job?

    [DATABASE_URL=postgresql://…] python bench/joblogs.py [--jobs 30] [--seconds 0.1] [--rounds 4] [--inline 200]

The same job, ``diagnostics.sleep`` (``seconds`` of work in one step), run through a real
worker process (``rqworker --burst``, Jobdesk's forking worker) in three ways:
- quiet: it logs nothing;
- logging, capture off: it logs 100 lines (1 ``ctx.log`` + 99 ``logging`` INFO records,
  the worker's LOG_LEVEL=INFO lets them through) with ``JOB_LOG_LINES=0``;
- logging, captured: the same with capture on (the default ``JOB_LOG_LINES=1000``).
Run time per job is read from the database (claim to outcome: ``finished_at −
started_at``), the median over all rounds' jobs (rounds interleave the cases, so a busy
machine hurts them alike; on a loaded machine the spread is wider than the effect).
Then the same three in this process (``run_handler`` alone, no RQ, ``--inline`` times
each, alternating): the handler-side cost without the worker's noise. Printed: each case's mean, the capture's
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
    parser.add_argument("--jobs", type=int, default=30, help="jobs per case and round")
    parser.add_argument("--seconds", type=float, default=0.1, help="each job's work, in seconds")
    parser.add_argument("--lines", type=int, default=100, help="lines each logging job logs")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--inline", type=int, default=200, help="runs per case in this process")
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
    for name in ("jobs.diagnostics", "jobs.handler"):  # but the handler's lines, for the in-process cases
        logging.getLogger(name).setLevel(logging.INFO)
    call_command("migrate", verbosity=0)
    print(f"database: {connection.vendor}   {args.jobs} jobs of {args.seconds * 1000:.0f} ms per case, "
          f"{args.rounds} rounds, one worker process")  # fmt: skip
    cases = {
        "quiet": ({"log_lines": 0}, "1000"),
        "logging, capture off": ({"log_lines": args.lines}, "0"),
        "logging, captured": ({"log_lines": args.lines}, "1000"),
    }
    runs: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, (payload, keep) in cases.items():
            django_rq.get_connection("normal").flushall()
            runs[name] += batch(args.jobs, {"seconds": args.seconds, "steps": 1, **payload}, keep)[0]
    report("through a worker process", {name: statistics.median(times) for name, times in runs.items()}, args)
    report("in this process (run_handler)", inline(cases, args), args)

    flood = {"seconds": 0, "steps": 1, "log_lines": 100_000}
    plain = statistics.median(batch(args.flood_jobs, flood, "0")[0])
    captured_runs, kept = batch(args.flood_jobs, flood, "1000")
    captured = statistics.median(captured_runs)
    print(
        f"100,000 lines per job: {plain:.2f} s uncaptured, {captured:.2f} s captured ({captured / plain:.3f}x); "
        f"kept {kept['kept']} lines, dropped {kept['dropped']:,} per job"
    )


def report(title: str, medians: dict[str, float], args) -> None:
    print(title)
    for name, median in medians.items():
        print(f"  {name:<22} {median * 1000:8.2f} ms per job (median)")
    off, on, quiet = medians["logging, capture off"], medians["logging, captured"], medians["quiet"]
    print(
        f"  capture of {args.lines} lines per job: {on / off:.3f}x the same logging uncaptured "
        f"({(on - off) * 1000:+.2f} ms, goal <= a few %); {on / quiet:.3f}x not logging at all"
    )


def inline(cases: dict, args) -> dict[str, float]:
    """Each case ``--inline`` times in this process, alternating; medians."""
    import logging

    from django.conf import settings

    from jobs.core import relay
    from jobs.core.models import Job, Status, status_writes
    from jobs.execution import runner

    for handler in logging.root.handlers:  # the worker's output goes somewhere: here, nowhere
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 - for the life of the process
    relay.publish = lambda *a, **k: None  # no WebSocket clients to tell
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.inline):
        for name, (payload, keep) in cases.items():
            settings.JOB_LOG_LINES = int(keep)
            with status_writes():
                job = Job.objects.create(
                    type="diagnostics.sleep", status=Status.ACTIVE, attempts=1, rq_job_id="bench",
                    payload={"seconds": 0, "steps": 1, "fail_mode": "none", "fail_times": 0, **payload},
                )  # fmt: skip
            started = time.perf_counter()
            assert runner.run_handler(job, "bench")["ok"]
            times[name].append(time.perf_counter() - started + args.seconds)  # as if it had worked too
    return {name: statistics.median(values) for name, values in times.items()}


def batch(count: int, payload: dict, keep: str) -> tuple[list[float], dict]:
    """Submit ``count`` jobs, drain them with one worker process; (run times, a log row)."""
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
    runs = [
        (finish - start).total_seconds()
        for start, finish in Job.objects.values_list("started_at", "finished_at")
        if start is not None and finish is not None  # complete: both set
    ]
    row = JobLog.objects.values("total", "dropped").first() or {"total": 0, "dropped": 0}
    return runs, {"kept": row["total"] - row["dropped"], "dropped": row["dropped"]}


if __name__ == "__main__":
    main()
