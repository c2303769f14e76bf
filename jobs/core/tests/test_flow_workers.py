"""Flow control with real worker processes, a real scheduler and Redis: limits hold
across workers, slots come back after a SIGKILL, rates keep their window, pauses survive
a flush and a restart."""

from __future__ import annotations

import threading
import time

import pytest

from conftest import exits, wait_for
from jobs.core import flow
from jobs.core.models import FlowControl, Hold, Job, Status
from jobs.core.submit import JobSpec, submit_many
from jobs.core.tests import flowtasks
from jobs.upkeep import reconcile
from jobs.upkeep.tests.test_chaos import sigkill_worker

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

QUEUES = ("immediate", "normal", "low")
LIMITED = flowtasks.limited_sleep.module_path
FREE = flowtasks.free_sleep.module_path


def enqueue(task, seconds: float, count: int, **options) -> list[str]:
    task = task.using(**options) if options else task
    return [task.enqueue(seconds).id for _ in range(count)]


def statuses(ids) -> list[str]:
    return list(Job.objects.filter(pk__in=ids).values_list("status", flat=True))


def all_complete(ids) -> bool:
    return statuses(ids).count(Status.COMPLETE) == len(ids)


def intervals(ids) -> list[tuple]:
    return list(Job.objects.filter(pk__in=ids).values_list("started_at", "finished_at"))


def max_overlap(spans) -> int:
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans], key=lambda x: (x[0], x[1]))
    current = peak = 0
    for _, step in edges:
        current += step
        peak = max(peak, current)
    return peak


class ActiveSampler:
    """Counts a type's active rows every few milliseconds while the test runs."""

    def __init__(self, job_type: str) -> None:
        self.job_type, self.peak, self.samples = job_type, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from django.db import connection

        try:
            while not self._stop.is_set():
                active = Job.objects.filter(type=self.job_type, status=Status.ACTIVE).count()
                self.peak, self.samples = max(self.peak, active), self.samples + 1
                time.sleep(0.01)
        finally:
            connection.close()

    def __enter__(self) -> ActiveSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)


def test_a_concurrency_limit_holds_across_four_workers_and_the_other_type_runs_meanwhile(spawn):
    flow.set_limits(LIMITED, concurrency=2, actor_label="test")
    limited = enqueue(flowtasks.limited_sleep, 1.0, 12)
    free = enqueue(flowtasks.free_sleep, 0.5, 12)
    with ActiveSampler(LIMITED) as sampler:
        spawn("rqworker-pool", *QUEUES, "--num-workers", "4")
        wait_for(lambda: all_complete(limited + free), timeout=120, what="all 24 jobs to complete")
    # Never more than 2 of the limited type at once: sampled, and from the recorded runs.
    assert sampler.samples > 100 and sampler.peak == 2
    assert max_overlap(intervals(limited)) == 2
    # The other type did not wait behind the held ones: it used the other workers and
    # was done while the limited line (12 × 1 s over 2 slots ≈ 6 s) was still running.
    assert max_overlap(intervals(free)) >= 2
    last_free = max(end for _, end in intervals(free))
    last_limited_start = max(start for start, _ in intervals(limited))
    assert last_free < last_limited_start
    # No attempt was spent on being held.
    assert set(Job.objects.filter(pk__in=limited).values_list("attempts", flat=True)) == {1}
    assert Job.objects.filter(pk__in=limited, events__message__startswith="held:").exists()


def test_a_canceled_inline_run_gives_its_slot_on_only_once_it_has_stopped(spawn, redis_conn):
    """A fork=False run that ignores the cancel goes on until its worker stops it: the
    held job of its type must not start before then (two runs of a limit of one)."""
    from jobs.core import actions, leases

    inline = flowtasks.inline_beating
    flow.set_limits(inline.module_path, concurrency=1, actor_label="test")
    first = inline.enqueue("first", 30.0).id
    spawn("rqworker-pool", *QUEUES, "--num-workers", "2")
    wait_for(lambda: redis_conn.get("flow:first:beat"), timeout=60, what="the first run to beat")
    second = inline.enqueue("second", 0.1).id  # now: the first has the slot, whichever worker is quicker
    wait_for(lambda: Job.objects.filter(pk=second, hold=Hold.CONCURRENCY).exists(), timeout=30, what="the second held")
    actions.cancel(first, reason="test")
    wait_for(lambda: not leases.still_running(first), timeout=30, what="the canceled run to stop")
    wait_for(lambda: all_complete([second]), timeout=30, what="the second to run")
    last_beat, second_start = float(redis_conn.get("flow:first:beat")), float(redis_conn.get("flow:second:start"))
    assert last_beat < second_start, f"the two runs overlapped for {last_beat - second_start:.2f} s"
    assert statuses([first]) == [Status.CANCELED]


SHORT_LEASES = {"JOB_LEASE_SECONDS": "4", "JOB_LEASE_RENEW_SECONDS": "0.5", "JOB_LEASE_STOP_SECONDS": "2"}


def test_a_slot_held_by_a_sigkilled_worker_comes_back(spawn, settings):
    settings.RETRY_BASE_DELAY = 0.1
    flow.set_limits(LIMITED, concurrency=1, actor_label="test")
    # The victim's run lasts long enough to be killed while it runs: at 2 s, a loaded
    # machine's pool took longer to start and hold the others, and the run had ended.
    first = enqueue(flowtasks.limited_sleep, 15.0, 1)
    victim = spawn("rqworker", *QUEUES, RETRY_BASE_DELAY="0.1", **SHORT_LEASES)
    wait_for(lambda: statuses(first) == [Status.ACTIVE], timeout=30, what="the first job to start")
    ids = first + enqueue(flowtasks.limited_sleep, 0.5, 2)
    spawn("rqworker-pool", *QUEUES, "--num-workers", "2", RETRY_BASE_DELAY="0.1")
    wait_for(
        lambda: Job.objects.filter(pk__in=ids, hold=Hold.CONCURRENCY).count() == 2, timeout=30, what="the others held"
    )
    assert statuses(first) == [Status.ACTIVE], "the first run ended before its worker was killed"

    sigkill_worker(victim)
    # Once its lease passed: finds the run lost, frees its slot, releases.
    lost = wait_for(lambda: reconcile.run(grace_seconds=0).lost, timeout=20, what="the run's lease to pass")
    assert len(lost) == 1
    spawn("rqscheduler", "--interval", "1", RETRY_BASE_DELAY="0.1")  # the lost one's retry
    wait_for(lambda: all_complete(ids), timeout=90, what="all three to complete")
    assert max_overlap(intervals(ids)) == 1


def test_a_rate_limit_keeps_its_sliding_window_and_loses_nothing(spawn):
    flow.set_limits(LIMITED, rate="5/2s", actor_label="test")
    ids = enqueue(flowtasks.limited_sleep, 0.0, 20)
    spawn("rqworker-pool", *QUEUES, "--num-workers", "4")
    spawn("rqscheduler", "--interval", "1")
    wait_for(lambda: all_complete(ids), timeout=90, what="20 rate-limited jobs to complete")

    starts = sorted(Job.objects.filter(pk__in=ids).values_list("started_at", flat=True))
    # In any 2 s, at most 5 starts: the 6th start after any start is 2 s or more later.
    sixth_after = [(starts[i + 5] - starts[i]).total_seconds() for i in range(len(starts) - 5)]
    assert min(sixth_after) >= 2.0, sixth_after
    # And no slower than the window allows, give or take the scheduler's 1 s poll.
    assert (starts[-1] - starts[0]).total_seconds() < (20 / 5 - 1) * 2 + 4
    assert set(Job.objects.filter(pk__in=ids).values_list("attempts", flat=True)) == {1}


def test_a_paused_queue_starts_nothing_survives_a_flush_and_a_restart_and_resumes(spawn, redis_conn):
    normal = [r.job.id for r in submit_many([JobSpec("diagnostics.sleep", {"seconds": 0.3})] * 30)]
    low = [r.job.id for r in submit_many([JobSpec("diagnostics.sleep", {"seconds": 0.3}, priority="low")] * 10)]
    workers = spawn("rqworker-pool", *QUEUES, "--num-workers", "2")
    wait_for(lambda: statuses(normal).count(Status.COMPLETE) >= 3, timeout=60, what="a few normal jobs done")

    flow.pause(FlowControl.Kind.QUEUE, "normal", actor_label="test", reason="fixing the database")
    paused_at = time.time()
    wait_for(lambda: all_complete(low), timeout=60, what="the low queue to run on while normal is paused")
    # Every waiting job of the paused queue was met by a worker and parked, none started.
    wait_for(
        lambda: not Job.objects.filter(pk__in=normal, status=Status.QUEUED, hold="").exists(),
        timeout=60,
        what="the workers to park the paused queue's jobs",
    )
    started_late = Job.objects.filter(pk__in=normal, started_at__gt=_at(paused_at + 1.0)).count()
    assert started_late == 0
    assert Job.objects.filter(pk__in=normal, hold=Hold.QUEUE_PAUSED).exists()

    # The pause lives in the database: a flush and new worker processes do not lift it.
    workers.terminate()
    exits(workers, 60, "the workers, after SIGTERM")  # a graceful stop: generous for a loaded machine
    redis_conn.flushall()
    reconcile.run(grace_seconds=0)  # re-dispatches what the flush lost (held ones stay held)
    spawn("rqworker-pool", *QUEUES, "--num-workers", "2")
    submit_many([JobSpec("diagnostics.noop", priority="low")])  # proof the new pool is taking work
    wait_for(lambda: Job.objects.filter(type="diagnostics.noop", status=Status.COMPLETE).exists(), timeout=30)
    assert Job.objects.filter(pk__in=normal, started_at__gt=_at(paused_at + 1.0)).count() == 0

    flow.resume(FlowControl.Kind.QUEUE, "normal", actor_label="test")
    wait_for(lambda: all_complete(normal), timeout=90, what="the paused queue to drain after resume")
    assert set(Job.objects.filter(pk__in=normal).values_list("attempts", flat=True)) == {1}


def _at(epoch: float):
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC)
