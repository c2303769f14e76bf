"""End-to-end throughput: Jobdesk vs raw RQ with the same worker class, in one run.

    python bench/throughput.py [--jobs 500] [--rounds 3] [--worker-class rq.Worker]

Uses DATABASE_URL (a throwaway SQLite file when unset) and starts its own Redis. For
each worker class it times N no-op jobs through Jobdesk (submit → complete, checked in
the database) and N raw RQ no-op jobs, both drained by `manage.py rqworker --burst`,
and prints both rates and the ratio; also the bulk submit rate and the worker's peak RSS.
Then the default ``JobdeskWorker`` drains N ``diagnostics.noop_inline`` jobs (``fork=False``:
no work-horse) against the same N ``diagnostics.noop`` jobs forked. Each comparison runs
``--rounds`` times, its two sides alternating (and which of them goes first); the table
gives the medians, end to end (each side's worker start-up included, as before) and
without the start-up (an empty burst worker of the same class, timed in each round).

For Jobdesk's own classes each round also drains the raw RQ jobs with RQ's own class of
the same kind (``rq.Worker``, ``rq.SimpleWorker``): the last column compares Jobdesk with
what a team on plain django-rq runs today.

``--payload-bytes N`` gives every job on both sides a payload of about N bytes of JSON
(an order's items, as real work carries): what a payload costs each side — RQ keeps it
in the job's hash, Jobdesk also in its row and in the search's text.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devtools.redis_server import RedisServer  # noqa: E402

# RQ's own worker class of the same kind as each of Jobdesk's: what a team on plain
# django-rq runs today (Jobdesk's classes also trim RQ's own loop, for raw RQ jobs too).
RQ_CLASS_OF = {
    "jobs.execution.worker.JobdeskWorker": "rq.Worker",
    "jobs.execution.worker.JobdeskSimpleWorker": "rq.SimpleWorker",
}


def drain(worker_class: str, env: dict) -> tuple[float, int, float]:
    """Run one burst worker until the queues are empty; seconds taken, peak RSS (KiB) and
    the CPU seconds it used (its own and its bookkeeper's, which it waits for)."""
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
    return elapsed, usage.ru_maxrss, usage.ru_utime + usage.ru_stime


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
    parser.add_argument("--payload-bytes", type=int, default=0, help="a payload of about this size on every job")
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
    os.environ.setdefault("DEBUG", "false")  # as deployed: with it on, Django keeps every query's SQL
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
    payloads = [payload_of(args.payload_bytes, seed) for seed in range(args.jobs)]
    conn = django_rq.get_connection("normal")
    print(
        f"database: {connection.vendor}   redis: {os.environ['REDIS_URL']}   jobs per run: {args.jobs}   "
        f"payload: {len(json.dumps(payloads[0])) if payloads[0] else 0} bytes"
    )

    def reset() -> None:
        conn.flushall()
        Job.objects.all().delete()

    reset()
    started = time.perf_counter()
    submit_many([JobSpec("diagnostics.noop")] * args.bulk)
    bulk_rate = args.bulk / (time.perf_counter() - started)
    # The same number of raw RQ jobs put on a queue in one call (RQ's enqueue_many, one
    # pipeline): this machine's pace today, for the absolute goal (a bulk submit is that
    # and the rows, their events and their commit).
    conn.flushall()
    started = time.perf_counter()
    queue = django_rq.get_queue("normal")
    queue.enqueue_many([queue.prepare_data(noop) for _ in range(args.bulk)])
    raw_rate = args.bulk / (time.perf_counter() - started)
    print(
        f"bulk submit: {args.bulk} jobs at {bulk_rate:,.0f} jobs/s (goal >= 2,000); "
        f"raw RQ's enqueue_many of as many: {raw_rate:,.0f} jobs/s, ratio {bulk_rate / raw_rate:.2f}"
    )

    def jobdesk_side(worker_class: str, job_type: str = "diagnostics.noop") -> tuple[float, int, float]:
        reset()
        submit_many([JobSpec(job_type, payloads[n]) for n in range(args.jobs)])
        drained = drain(worker_class, env)
        done = Job.objects.filter(status=Status.COMPLETE).count()
        if done != args.jobs:
            raise SystemExit(f"only {done}/{args.jobs} Jobdesk jobs completed")
        return drained

    def raw_side(worker_class: str) -> tuple[float, int, float]:
        reset()
        queue = django_rq.get_queue("normal")
        queue.enqueue_many([queue.prepare_data(noop, (payloads[n],) if payloads[n] else ()) for n in range(args.jobs)])
        drained = drain(worker_class, env)
        if queue.count:
            raise SystemExit("raw RQ left jobs behind")
        return drained

    def startup(worker_class: str) -> tuple[float, float]:
        """Seconds a burst worker of this class takes on empty queues (start, exit), and
        the CPU seconds it uses doing so."""
        reset()
        seconds, _, cpu = drain(worker_class, env)
        return seconds, cpu

    def compare(label: str, worker_class: str, ours, theirs, plain=None) -> dict:
        """``args.rounds`` alternating runs of each side (and of an empty burst worker, the
        start-up both sides pay): median rates end to end and without the start-up, the
        ratios of the medians, and each round's own end-to-end ratio (the spread). With
        ``plain``, a third side in each round: raw RQ on RQ's own worker class."""
        ours_s, theirs_s, plain_s, starts, rss = [], [], [], [], []
        ours_cpu, theirs_cpu, start_cpu = [], [], []

        def their_run() -> None:
            seconds, _, cpu = theirs()
            theirs_s.append(seconds)
            theirs_cpu.append(cpu)

        for number in range(args.rounds):
            # Which side goes first alternates (ABBA…): a machine that slows or speeds
            # up over a run (a shared VM, autovacuum behind the last run) weighs on both.
            if number % 2:
                their_run()
            seconds, peak, cpu = ours()
            ours_s.append(seconds)
            ours_cpu.append(cpu)
            rss.append(peak)
            if not number % 2:
                their_run()
            if plain is not None:
                plain_s.append(plain()[0])
            started, cpu = startup(worker_class)
            starts.append(started)
            start_cpu.append(cpu)
        n = args.jobs
        a, b = statistics.median(n / x for x in ours_s), statistics.median(n / x for x in theirs_s)
        c = statistics.median(n / x for x in plain_s) if plain_s else None
        start = statistics.median(starts)
        a_run, b_run = (
            n / max(statistics.median(ours_s) - start, 1e-3),
            n / max(statistics.median(theirs_s) - start, 1e-3),
        )
        ratios = [y / x for x, y in zip(ours_s, theirs_s, strict=True)]
        # The worker's CPU a job past its start-up's, in ms: on a GIL-bound worker the
        # steadier figure, where the wall clock also carries the machine's noise.
        idle_cpu = statistics.median(start_cpu)
        a_cpu, b_cpu = (1000 * (statistics.median(cpu) - idle_cpu) / n for cpu in (ours_cpu, theirs_cpu))
        against_plain = f"   vs {c:.1f} on RQ's own class, ratio {a / c:.2f}" if c else ""
        print(
            f"{label:44s} {a:7.1f} vs {b:7.1f} jobs/s   ratio {a / b:.2f} "
            f"(rounds {', '.join(f'{r:.2f}' for r in ratios)})   without the {start:.2f} s start-up: "
            f"{a_run:.1f} vs {b_run:.1f}, ratio {a_run / b_run:.2f}{against_plain}   "
            f"CPU a job {a_cpu:.2f} vs {b_cpu:.2f} ms   peak RSS {max(rss) / 1024:.0f} MiB",
            flush=True,
        )
        return {
            "a": a, "b": b, "ratio": a / b, "ratios": ratios, "run_ratio": a_run / b_run, "start": start,
            "plain_ratio": a / c if c else None, "cpu": (a_cpu, b_cpu),
        }  # fmt: skip

    rows = []
    goals = {"jobs.execution.worker.JobdeskWorker": 0.9, "jobs.execution.worker.JobdeskSimpleWorker": 0.8}
    for worker_class in worker_classes:
        row = compare(
            f"{worker_class} vs raw RQ",
            worker_class,
            lambda c=worker_class: jobdesk_side(c),
            lambda c=worker_class: raw_side(c),
            (lambda c=RQ_CLASS_OF[worker_class]: raw_side(c)) if worker_class in RQ_CLASS_OF else None,
        )
        rows.append((f"`{worker_class}`, Jobdesk vs raw RQ, same class", row, goals.get(worker_class)))
    if not args.no_inline:
        forking = "jobs.execution.worker.JobdeskWorker"
        row = compare(
            "JobdeskWorker, fork=False vs forked",
            forking,
            lambda: jobdesk_side(forking, "diagnostics.noop_inline"),
            lambda: jobdesk_side(forking, "diagnostics.noop"),
        )
        rows.append(("`JobdeskWorker`, `fork=False` type vs the same jobs forked", row, 3.0))

    with_payload = f", a {args.payload_bytes:,}-byte payload each" if args.payload_bytes else ""
    runs = f"median of {args.rounds} alternating runs ({connection.vendor})"
    print(f"\n{args.jobs} no-op jobs per side{with_payload}, {runs}\n")
    print(
        "| worker | jobs/s | baseline jobs/s | ratio | each round | ratio without start-up "
        "| ratio to raw RQ on RQ's own class | worker CPU a job, ms (baseline) | goal |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for label, row, goal in rows:
        each = ", ".join(f"{r:.2f}" for r in row["ratios"])
        plain = f"{row['plain_ratio']:.2f}" if row["plain_ratio"] else ""
        print(
            f"| {label} | {row['a']:.1f} | {row['b']:.1f} | **{row['ratio']:.2f}** | {each} | "
            f"{row['run_ratio']:.2f} (start-up {row['start']:.2f} s) | {plain} | "
            f"{row['cpu'][0]:.2f} ({row['cpu'][1]:.2f}) | {f'≥ {goal}' if goal else ''} |"
        )


def payload_of(size: int, seed: int) -> dict:
    """About ``size`` bytes of JSON (none for 0): a customer and an order's items."""
    if size <= 0:
        return {}
    rng = random.Random(seed)
    items: list[dict] = []
    payload = {"customer": f"C-{rng.randrange(100_000)}", "items": items}
    while len(json.dumps(payload)) < size:
        words = " ".join("".join(rng.choices(string.ascii_lowercase, k=6)) for _ in range(8))
        items.append({"sku": "".join(rng.choices(string.ascii_uppercase, k=8)), "note": words})
    return payload


if __name__ == "__main__":
    main()
