"""How right are first ETAs? Real workers, real sleep jobs of varied length.

    DATABASE_URL=postgresql://… python bench/eta_accuracy.py [--jobs 120] [--workers 2]

Starts its own Redis and an `rqworker-pool`, then submits a mixed workload —
`diagnostics.sleep` jobs of 0.2–1.2 s, mostly normal priority with some immediate and
low, in bursts and one by one, and a share (``--limited-share``) of a task type limited
to 1 at once (flow control) — waits for all to finish, and prints, for the jobs after
a warm-up part of the stream, the median and p90 of |first estimated start − real
start| / wait (wait = submit → real start, at least 1 s), for all and for the limited
type alone. Goal: median ≤ 15 %.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import environment  # noqa: E402

QUEUES = ("immediate", "normal", "low")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=120)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--warm-up", type=int, default=60, help="jobs submitted first and not measured")
    parser.add_argument("--limited-share", type=float, default=0.2, help="share of submits of the limited type")
    args = parser.parse_args()
    with environment():
        run(args)


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.1)


def _seconds(start: datetime | None, end: datetime | None) -> float:
    """From ``start`` to ``end``: both set on the jobs measured here (started, then final)."""
    assert start is not None and end is not None
    return (end - start).total_seconds()


def run(args) -> None:
    import django

    django.setup()
    from django.core.management import call_command

    from bench.tasksleep import limited_sleep
    from jobs.core import flow
    from jobs.core.models import FINAL_STATUSES, FlowControl, Job
    from jobs.core.submit import JobSpec, submit, submit_many
    from jobs.insight import calibration, estimates

    call_command("migrate", verbosity=0)
    Job.objects.all().delete()
    FlowControl.objects.all().delete()
    flow.set_limits(limited_sleep.module_path, concurrency=1, actor_label="bench")
    pool = subprocess.Popen(
        [sys.executable, "manage.py", "rqworker-pool", *QUEUES, "--num-workers", str(args.workers)],
        cwd=ROOT, env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        wait_until(lambda: estimates.live_workers() == args.workers, 60, "the workers")
        rng = random.Random(args.seed)

        def sleep(priority: str = "normal") -> JobSpec:
            return JobSpec("diagnostics.sleep", {"seconds": round(rng.uniform(0.2, 1.2), 2)}, priority=priority)

        def submit_some() -> list:
            if rng.random() < args.limited_share:  # the limited type, one or a few
                return [limited_sleep.enqueue(round(rng.uniform(0.2, 1.2), 2)).id for _ in range(rng.randint(1, 3))]
            if rng.random() < 0.3:  # a burst
                return [r.job.id for r in submit_many([sleep() for _ in range(rng.randint(5, 15))])]
            priority = rng.choices(["immediate", "normal", "low"], [1, 6, 2])[0]
            return [submit("diagnostics.sleep", sleep(priority).payload, priority=priority).job.id]

        # The service learns durations and arrival rates from what it has been running:
        # the same stream runs for a while before the measured part. The limited type
        # runs a few first on its own: in the stream it waits so long behind the rest
        # that it would still be unseen (ETA_DEFAULT_DURATION) when the measuring starts.
        if args.limited_share:
            primed = [limited_sleep.enqueue(0.5).id for _ in range(5)]
            finished = Job.objects.filter(pk__in=primed, status__in=FINAL_STATUSES)
            wait_until(lambda: finished.count() == len(primed), 120, "the limited type's first runs")
        started = time.monotonic()
        warm: list[uuid.UUID] = []
        ids: list[uuid.UUID] = []
        while len(warm) < args.warm_up:
            warm += submit_some()
            time.sleep(rng.uniform(0.0, 0.6))
        while len(ids) < args.jobs:
            ids += submit_some()
            time.sleep(rng.uniform(0.0, 0.6))
        wait_until(lambda: Job.objects.filter(pk__in=ids, status__in=FINAL_STATUSES).count() == len(ids), 900, "jobs")
        elapsed = time.monotonic() - started
    finally:
        os.killpg(pool.pid, signal.SIGTERM)
        try:
            pool.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(pool.pid, signal.SIGKILL)

    rows = Job.objects.filter(pk__in=ids, eta_error_seconds__isnull=False)
    fractions, errors, waits, limited_fractions = [], [], [], []
    for job in rows:
        error = job.eta_error_seconds
        assert error is not None  # filtered not null
        wait = max(1.0, _seconds(job.created_at, job.started_at))
        errors.append(abs(error))
        fractions.append(abs(error) / wait)
        waits.append(wait)
        if job.type == limited_sleep.module_path:
            limited_fractions.append(abs(error) / wait)
    q = lambda values, p: sorted(values)[min(len(values) - 1, int(p * len(values)))]  # noqa: E731
    print(f"{len(ids)} jobs on {args.workers} workers in {elapsed:.0f}s; {len(fractions)} with a first estimate")
    actual = statistics.fmean(_seconds(j.started_at, j.finished_at) for j in rows)
    print(f"mean duration in the workload {actual:.2f}s")
    print(f"wait (submit → start): median {statistics.median(waits):.1f}s, p90 {q(waits, 0.9):.1f}s")
    print(f"|error|: median {statistics.median(errors):.2f}s, p90 {q(errors, 0.9):.2f}s")
    print(
        f"|error| / wait: median {statistics.median(fractions):.1%}, p90 {q(fractions, 0.9):.1%}   goal: median ≤ 15%"
    )
    if limited_fractions:
        print(
            f"the limited type alone ({len(limited_fractions)} jobs, 1 at once): |error| / wait median "
            f"{statistics.median(limited_fractions):.1%}, p90 {q(limited_fractions, 0.9):.1%}"
        )
    print(f"the service's own report: {calibration.accuracy()}")


if __name__ == "__main__":
    main()
