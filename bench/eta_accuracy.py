"""How right are first ETAs, and are their ranges honest? Real workers, real sleeps.

    DATABASE_URL=postgresql://… python bench/eta_accuracy.py [--jobs 160] [--workers 2]

Starts its own Redis and an `rqworker-pool`, then submits a mixed workload in bursts and
one by one, mostly normal priority with some immediate and low:

* `diagnostics.sleep`, 0.2–1.2 s (uniform);
* a bimodal type: 0.2 s seven times in ten, else 2.0 s;
* a sized type: 0.1 s + 0.2 ms per unit, 100–6,000 units, enqueued with its size;
* a type limited to one at once (flow control), 0.2–1.2 s (``--limited-share``);
* a *cold* type, 0.8–1.6 s, first submitted in the measured part (no history).

After a warm-up part of the stream (recorded, so calibration and durations learn, not
measured), prints for the measured jobs: |first estimated start − real start| / wait
(wait = submit → real start, at least 1 s), median and p90, for warm and cold estimates
apart and per type, and the coverage of the 80 % range (the share of jobs that waited
whose real start fell inside it). Goals: warm median ≤ 10 %, p90 ≤ 30 %; cold p90 ≤
100 %; coverage 75–85 %.
"""

from __future__ import annotations

import argparse
import math
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
from typing import cast

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import environment  # noqa: E402

QUEUES = ("immediate", "normal", "low")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=160)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--warm-up", type=int, default=120, help="jobs submitted first and not measured")
    parser.add_argument("--limited-share", type=float, default=0.1, help="share of submits of the limited type")
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

    from bench.tasksleep import bimodal_sleep, cold_sleep, limited_sleep, sized_sleep
    from jobs.core import flow
    from jobs.core.models import FINAL_STATUSES, FlowControl, Job
    from jobs.core.submit import JobSpec, submit, submit_many
    from jobs.insight import calibration, estimates
    from jobs.tasks.backend import JobdeskTask

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
        sized = lambda units: cast(JobdeskTask, sized_sleep).options(size=units)  # noqa: E731

        def sleep(priority: str = "normal") -> JobSpec:
            return JobSpec("diagnostics.sleep", {"seconds": round(rng.uniform(0.2, 1.2), 2)}, priority=priority)

        def one_of_the_others(cold: bool) -> list:
            kinds = ["bimodal", "sized", "limited"] + (["cold"] if cold else [])
            weights = [3, 3, 10 * args.limited_share] + ([2] if cold else [])
            kind = rng.choices(kinds, weights)[0]
            if kind == "bimodal":
                return [bimodal_sleep.enqueue(0.2 if rng.random() < 0.7 else 2.0).id]
            if kind == "sized":
                units = int(10 ** rng.uniform(2, math.log10(6000)))
                return [sized(units).enqueue(units).id]
            if kind == "limited":
                return [limited_sleep.enqueue(round(rng.uniform(0.2, 1.2), 2)).id for _ in range(rng.randint(1, 3))]
            return [cold_sleep.enqueue(round(rng.uniform(0.8, 1.6), 2)).id]

        def submit_some(cold: bool) -> list:
            if rng.random() < 0.35:
                return one_of_the_others(cold)
            if rng.random() < 0.25:  # a burst
                return [r.job.id for r in submit_many([sleep() for _ in range(rng.randint(4, 10))])]
            priority = rng.choices(["immediate", "normal", "low"], [1, 6, 2])[0]
            return [submit("diagnostics.sleep", sleep(priority).payload, priority=priority).job.id]

        # The service learns durations, arrival rates and its ranges' calibration from
        # what it has been running: each warm type runs a few first, then the same stream
        # runs for a while before the measured part.
        primed = [limited_sleep.enqueue(0.5).id for _ in range(4)]
        primed += [bimodal_sleep.enqueue(0.2 if i % 3 else 2.0).id for i in range(6)]
        primed += [sized(u).enqueue(u).id for u in (100, 500, 1500, 3000, 6000)]
        finished = Job.objects.filter(pk__in=primed, status__in=FINAL_STATUSES)
        wait_until(lambda: finished.count() == len(primed), 180, "the first runs of each type")
        started = time.monotonic()
        warm: list[uuid.UUID] = []
        ids: list[uuid.UUID] = []
        while len(warm) < args.warm_up:
            warm += submit_some(cold=False)
            time.sleep(rng.uniform(0.0, 1.0))
        while len(ids) < args.jobs:
            ids += submit_some(cold=True)
            time.sleep(rng.uniform(0.0, 1.0))
        wait_until(lambda: Job.objects.filter(pk__in=ids, status__in=FINAL_STATUSES).count() == len(ids), 900, "jobs")
        elapsed = time.monotonic() - started
    finally:
        os.killpg(pool.pid, signal.SIGTERM)
        try:
            pool.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(pool.pid, signal.SIGKILL)
    report(Job.objects.filter(pk__in=ids, eta_error_seconds__isnull=False), len(ids), args, elapsed)
    print(f"the service's own report (last 1,000 started, warm-up included): {calibration.accuracy()}")


def report(rows, submitted: int, args, elapsed: float) -> None:
    from jobs.insight.calibration import COVERAGE_SLACK, TRIVIAL_WAIT

    samples = []
    for job in rows:
        assert job.first_estimated_start_at is not None and job.eta_error_seconds is not None
        wait = _seconds(job.created_at, job.started_at)
        estimated_wait = (job.first_estimated_start_at - job.created_at).total_seconds()
        low, high = job.first_estimated_start_low, job.first_estimated_start_high
        inside = None
        if low and high and max(wait, estimated_wait) >= TRIVIAL_WAIT:  # a job that waited, with a range
            inside = (
                _seconds(low, job.started_at) >= -COVERAGE_SLACK and _seconds(job.started_at, high) >= -COVERAGE_SLACK
            )
        samples.append(
            (
                job.type.rsplit(".", 1)[-1],
                bool(job.first_estimate_cold),
                abs(job.eta_error_seconds) / max(1.0, wait),
                inside,
                wait,
            )
        )
    q = lambda values, p: sorted(values)[min(len(values) - 1, int(p * len(values)))]  # noqa: E731

    def line(label: str, chosen: list) -> str:
        if not chosen:
            return f"{label:<28} —"
        fractions = [s[2] for s in chosen]
        judged = [s[3] for s in chosen if s[3] is not None]
        coverage = f"{sum(judged) / len(judged):.0%} of {len(judged)}" if judged else "—"
        return (f"{label:<28} {len(chosen):>4}  median {statistics.median(fractions):>6.1%}  "
                f"p90 {q(fractions, 0.9):>7.1%}  range held the start {coverage}")  # fmt: skip

    print(f"{submitted} jobs on {args.workers} workers in {elapsed:.0f}s; {len(samples)} with a first estimate")
    print(f"wait (submit → start): median {statistics.median(s[4] for s in samples):.1f}s, "
          f"p90 {q([s[4] for s in samples], 0.9):.1f}s")  # fmt: skip
    print("|error| / wait                jobs")
    print(line("all", samples))
    print(line("warm   (goal ≤ 10 %, ≤ 30 %)", [s for s in samples if not s[1]]))
    print(line("cold   (goal p90 ≤ 100 %)", [s for s in samples if s[1]]))
    for kind in sorted({s[0] for s in samples}):
        print(line(f"  {kind}", [s for s in samples if s[0] == kind]))
    judged = [s[3] for s in samples if s[3] is not None]
    if judged:
        print(
            f"coverage of the 80 % range: {sum(judged) / len(judged):.1%} of {len(judged)} that waited (goal 75–85 %)"
        )


if __name__ == "__main__":
    main()
