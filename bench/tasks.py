"""The standard task API's cost next to Jobdesk's own submit, in one run.

    python bench/tasks.py [--jobs 1000] [--rounds 3]

Uses DATABASE_URL (a throwaway SQLite file when unset) and starts its own Redis. Times
N no-op ``@task`` enqueues — each in its own transaction, then all inside one
``atomic()`` — beside N ``submit("diagnostics.noop")`` the same two ways, and N of each
run to completion by ``rqworker --burst`` (JobdeskWorker). Each pair alternates within
a round; the median of the rounds is printed with the ratio task / submit (goal: the
standard API costs at most 10 % more, i.e. a rate ratio >= 0.9).
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


def drain(env: dict) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "manage.py", "rqworker", "immediate", "normal", "low", "--burst"],
        cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with environment():
        run(args)


def run(args) -> None:
    import django

    django.setup()
    import django_rq
    from django.core.management import call_command
    from django.db import connection, transaction

    from bench.tasknoop import noop
    from jobs import Job, Status, submit

    call_command("migrate", verbosity=0)
    redis = django_rq.get_connection("normal")
    env = dict(os.environ)
    n = args.jobs

    def reset() -> None:
        redis.flushall()
        Job.objects.all().delete()

    def by_task() -> None:
        for _ in range(n):
            noop.enqueue()

    def by_submit() -> None:
        for _ in range(n):
            submit("diagnostics.noop")

    def in_one_transaction(enqueue_all):
        def timed() -> None:
            with transaction.atomic():
                enqueue_all()

        return timed

    def rate(action) -> float:
        reset()
        started = time.perf_counter()
        action()
        return n / (time.perf_counter() - started)

    def completion(action) -> float:
        reset()
        action()
        seconds = drain(env)
        done = Job.objects.filter(status=Status.COMPLETE).count()
        if done != n:
            raise SystemExit(f"only {done}/{n} jobs completed")
        return n / seconds

    measures = {
        "enqueue, one transaction each": (rate, by_task, by_submit),
        "enqueue, all in one atomic()": (rate, in_one_transaction(by_task), in_one_transaction(by_submit)),
        "enqueued and run by JobdeskWorker": (completion, by_task, by_submit),
    }
    print(f"database: {connection.vendor}   jobs per side: {n}   rounds: {args.rounds} (median)")
    for name, (measure, task_side, submit_side) in measures.items():
        tasks, submits = [], []
        for _ in range(args.rounds):
            tasks.append(measure(task_side))
            submits.append(measure(submit_side))
        task_rate, submit_rate = statistics.median(tasks), statistics.median(submits)
        print(
            f"{name:36s} @task {task_rate:8.1f}/s   submit {submit_rate:8.1f}/s   "
            f"ratio {task_rate / submit_rate:.2f} (goal >= 0.90)"
        )


if __name__ == "__main__":
    main()
