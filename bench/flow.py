"""Flow control's cost: does a limited type slow the rest, and what does a claim pay?

    DATABASE_URL=postgresql://… python bench/flow.py [--free 400] [--limited 100] [--workers 2]

Two runs of the same mix — ``diagnostics.noop`` (free) interleaved with
``diagnostics.sleep`` of 20 ms (the type to limit) — through real worker processes:
first with no limit, then with the sleep type limited to 1 at once. It prints the free
type's rate in both (from its jobs' start and finish times in the database) and the
ratio (goal >= 0.9: a limit must not slow the rest), and how long the limited line took.
Then, in this process, the claim's cost per job: plain ``lifecycle.claim`` (baseline),
``flow.claim`` with no lever in force (the fast path every unlimited job takes), and
``flow.claim`` of a limited type (row lock + count), with the overhead of each.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import environment  # noqa: E402

LIMITED = "diagnostics.sleep"
FREE = "diagnostics.noop"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--free", type=int, default=400, help="free jobs per run")
    parser.add_argument("--limited", type=int, default=100, help="limited jobs per run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--claims", type=int, default=500, help="claims per in-process measurement")
    args = parser.parse_args()
    with environment():
        run(args)


def run(args) -> None:
    import django

    django.setup()
    import django_rq
    from django.core.management import call_command
    from django.db import connection

    from jobs.core import flow
    from jobs.core.models import FlowChange, FlowControl, Job

    call_command("migrate", verbosity=0)
    conn = django_rq.get_connection("normal")
    print(f"database: {connection.vendor}   workers: {args.workers}   free {args.free} + limited {args.limited}")

    def reset() -> None:
        conn.flushall()
        Job.objects.all().delete()
        FlowChange.objects.all().delete()
        FlowControl.objects.all().delete()
        flow.forget_rules()

    reset()
    baseline = mixed_run(args)
    reset()
    flow.set_limits(LIMITED, concurrency=1, actor_label="bench")
    limited = mixed_run(args)
    print(
        f"free type: no limit {baseline['free_rate']:6.1f} jobs/s   with {LIMITED} limited to 1 "
        f"{limited['free_rate']:6.1f} jobs/s   ratio {limited['free_rate'] / baseline['free_rate']:.2f} (goal >= 0.9)"
    )
    print(
        f"limited line: {args.limited} jobs in {baseline['limited_span']:.1f} s without a limit, "
        f"{limited['limited_span']:.1f} s at 1 at once (peak active {limited['limited_peak']}); "
        f"held on the way: {limited['held_events']}"
    )
    reset()
    claim_costs(args.claims)


def mixed_run(args) -> dict:
    """Submit the interleaved mix, drain it with real workers, read the timings back."""
    from jobs.core.models import Job, JobEvent, Status
    from jobs.core.submit import JobSpec, submit_many

    total = args.free + args.limited
    step = total // args.limited  # every step-th job is of the limited type
    specs = [
        JobSpec(LIMITED, {"seconds": 0.02, "steps": 1}) if i % step == 0 and i // step < args.limited else JobSpec(FREE)
        for i in range(total)
    ]
    submit_many(specs)
    env = dict(os.environ)
    pool = subprocess.Popen(
        [sys.executable, "manage.py", "rqworker-pool", "immediate", "normal", "low",
         "--num-workers", str(args.workers)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    scheduler = subprocess.Popen(
        [sys.executable, "manage.py", "rqscheduler", "--interval", "1"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 600
        while Job.objects.exclude(status=Status.COMPLETE).exists():
            if time.monotonic() > deadline:
                raise SystemExit(f"not done after 600 s: {Job.objects.exclude(status=Status.COMPLETE).count()} left")
            time.sleep(0.2)
    finally:
        for proc in (pool, scheduler):
            proc.terminate()
            proc.wait(30)
    free = _spans(Job.objects.filter(type=FREE))
    limited = _spans(Job.objects.filter(type=LIMITED))
    return {
        "free_rate": args.free / free["span"],
        "limited_span": limited["span"],
        "limited_peak": limited["peak"],
        "held_events": JobEvent.objects.filter(message__startswith="held:").count(),
    }


def _spans(jobs) -> dict:
    rows = list(jobs.values_list("started_at", "finished_at"))
    first = min(start for start, _ in rows)
    last = max(finish for _, finish in rows)
    edges = sorted([(start, 1) for start, _ in rows] + [(finish, -1) for _, finish in rows])
    active = peak = 0
    for _, step in edges:
        active += step
        peak = max(peak, active)
    return {"span": (last - first).total_seconds(), "peak": peak}


def claim_costs(count: int, rounds: int = 3) -> None:
    """Per-claim time in this process, as the worker's parent claims (it knows the
    type and queue from the dispatch): the lifecycle alone, the gate with no lever in
    force, a free type's claim while another type is limited, and a limited type's
    (row lock + count). The median of ``rounds``, each one interleaved."""
    import statistics

    from jobs.core import flow, lifecycle
    from jobs.core.models import FlowControl
    from jobs.core.submit import JobSpec, submit_many

    def timed(job_type: str, gate: bool) -> float:
        jobs = [r.job for r in submit_many([JobSpec(job_type)] * count)]
        started = time.perf_counter()
        for job in jobs:
            if gate:
                flow.claim(job.id, job.rq_job_id, "bench", known=(job.type, job.priority))
            else:
                lifecycle.claim(job.id, job.rq_job_id, "bench")
        return (time.perf_counter() - started) / count * 1e6

    found: dict[str, list[float]] = {"plain": [], "open": [], "beside": [], "locked": []}
    for _ in range(rounds):
        FlowControl.objects.all().delete()
        flow.forget_rules()
        found["plain"].append(timed(FREE, gate=False))
        found["open"].append(timed(FREE, gate=True))
        flow.set_limits(LIMITED, concurrency=100 * count, actor_label="bench")  # a limit none of these reaches
        found["beside"].append(timed(FREE, gate=True))
        found["locked"].append(timed(LIMITED, gate=True))
    plain, fast, beside, locked = (statistics.median(found[key]) for key in ("plain", "open", "beside", "locked"))
    print(f"claim per job (median of {rounds}): lifecycle.claim {plain:6.0f} µs (baseline)")
    for label, value in (
        ("flow.claim, no lever in force", fast),
        ("flow.claim, a free type while another is limited", beside),
        ("flow.claim, a limited type (lock + count)", locked),
    ):
        print(f"  {label:50s} {value:6.0f} µs   overhead {value - plain:+6.0f} µs ({value / plain:.2f}x)")


if __name__ == "__main__":
    main()
