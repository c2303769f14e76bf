"""Chaos with real processes: SIGKILLed workers, a flushed or stopped Redis, restarted
schedulers. The database is the truth; the reconciler repairs; nothing runs twice at once."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import time

import pytest

from conftest import exits, wait_for
from devtools import pytest_redis
from jobs.core import liveness, queueing, registry
from jobs.core.models import FINAL_STATUSES, Job, JobEvent, Schedule, Status
from jobs.core.submit import JobSpec, submit, submit_many
from jobs.upkeep import reconcile

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

QUEUES = ("immediate", "normal", "low")
FAST_RETRIES = {"RETRY_BASE_DELAY": "0.1"}
SHORT_LEASES = {"JOB_LEASE_SECONDS": "4", "JOB_LEASE_RENEW_SECONDS": "0.5", "JOB_LEASE_STOP_SECONDS": "2"}


def child_pids(parent: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split()]


def horse_pids(worker: subprocess.Popen) -> list[int]:
    """The worker's work-horses: its children in a process group of their own (its
    bookkeeper, jobs.execution.bookkeeper, stays in the worker's)."""
    return [pid for pid in child_pids(worker.pid) if _own_group(pid)]


def _own_group(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except ProcessLookupError:  # ended meanwhile
        return False


def sigkill_worker(worker: subprocess.Popen, *, with_horse: bool = True) -> None:
    """What the OOM killer or a lost node does: no warm shutdown, no bookkeeping."""
    victims = horse_pids(worker) if with_horse else []
    os.killpg(worker.pid, signal.SIGKILL)
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    worker.wait(10)


def overlaps(redis_conn) -> int:
    return int(redis_conn.get("jobdesk:diag:overlaps") or 0)


def runs(redis_conn, job: Job) -> int:
    return redis_conn.llen(f"jobdesk:diag:runs:{job.id}")


def lost_once_its_lease_passed() -> list[str]:
    """Reconcile until a pass declares runs lost (a killed worker's lease must pass first)."""
    return wait_for(lambda: reconcile.run(grace_seconds=0).lost, timeout=20, what="the run's lease to pass")


def test_sigkilled_worker_mid_job_is_repaired_and_the_job_completes(spawn, settings, redis_conn):
    settings.RETRY_BASE_DELAY = 0.1
    job = submit("diagnostics.sleep", {"seconds": 3, "steps": 6, "trace": True}).job
    worker = spawn("rqworker", *QUEUES, **FAST_RETRIES, **SHORT_LEASES)
    wait_for(lambda: runs(redis_conn, job) == 1, timeout=30, what="the handler to start")
    wait_for(lambda: horse_pids(worker), timeout=10, what="the work-horse")
    lost_worker = Job.objects.get(pk=job.id).worker_name

    sigkill_worker(worker)
    assert lost_once_its_lease_passed() == [str(job.id)]

    job.refresh_from_db()
    assert job.status == Status.RETRYING
    assert job.events.filter(to_status=Status.RETRYING, message__contains=lost_worker).exists()
    spawn("rqworker", *QUEUES, **FAST_RETRIES, **SHORT_LEASES)
    spawn("rqscheduler", "--queue", "normal", "--interval", "1")
    wait_for(lambda: Job.objects.get(pk=job.id).status == Status.COMPLETE, timeout=60, what="the retry to complete")
    job.refresh_from_db()
    assert job.attempts == 2 and runs(redis_conn, job) == 2
    assert overlaps(redis_conn) == 0


def test_sigkilled_worker_mid_inline_job_is_repaired_and_the_job_completes(spawn, settings, redis_conn):
    """A fork=False job runs in the worker's own process: killing it kills the run, and
    its lease, no longer renewed, passes."""
    settings.RETRY_BASE_DELAY = 0.1
    job = submit("diagnostics.sleep_inline", {"seconds": 3, "steps": 6, "trace": True}).job
    worker = spawn("rqworker", *QUEUES, **FAST_RETRIES, **SHORT_LEASES)
    wait_for(lambda: runs(redis_conn, job) == 1, timeout=30, what="the handler to start")
    assert horse_pids(worker) == []  # no work-horse: the worker runs it
    assert redis_conn.lrange(f"jobdesk:diag:runs:{job.id}", 0, -1) == [str(worker.pid).encode()]
    assert Job.objects.get(pk=job.id).runner_pid == worker.pid

    sigkill_worker(worker)
    assert lost_once_its_lease_passed() == [str(job.id)]
    assert Job.objects.get(pk=job.id).status == Status.RETRYING
    spawn("rqworker", *QUEUES, **FAST_RETRIES, **SHORT_LEASES)
    spawn("rqscheduler", "--queue", "normal", "--interval", "1")
    wait_for(lambda: Job.objects.get(pk=job.id).status == Status.COMPLETE, timeout=60, what="the retry to complete")
    assert Job.objects.get(pk=job.id).attempts == 2 and runs(redis_conn, job) == 2
    assert overlaps(redis_conn) == 0


def test_killing_only_the_worker_parent_takes_its_work_horse_along(spawn, settings, redis_conn):
    """Jobdesk's worker ties the horse to its parent: no orphan keeps running a job
    that the reconciler then retries."""
    settings.RETRY_BASE_DELAY = 0.1
    job = submit("diagnostics.sleep", {"seconds": 3, "steps": 6, "trace": True}).job
    worker = spawn("rqworker", *QUEUES, **FAST_RETRIES, **SHORT_LEASES)
    wait_for(lambda: runs(redis_conn, job) == 1, timeout=30, what="the handler to start")
    horse = wait_for(lambda: horse_pids(worker), timeout=10, what="the work-horse")[0]
    sigkill_worker(worker, with_horse=False)

    wait_for(lambda: liveness.process_started_at(horse) is None, timeout=10, what="the horse to die with its parent")
    assert lost_once_its_lease_passed() == [str(job.id)]
    spawn("rqworker", *QUEUES, **FAST_RETRIES, **SHORT_LEASES)
    spawn("rqscheduler", "--queue", "normal", "--interval", "1")
    wait_for(lambda: Job.objects.get(pk=job.id).status == Status.COMPLETE, timeout=60, what="the retry to complete")
    assert Job.objects.get(pk=job.id).attempts == 2 and runs(redis_conn, job) == 2
    assert overlaps(redis_conn) == 0


def test_plain_rq_worker_orphan_finishes_its_job_and_is_not_run_again(spawn, redis_conn):
    """With RQ's own worker class the horse outlives a killed parent (own process
    group) and records the outcome itself: the job is in hand, not lost."""
    job = submit("diagnostics.sleep", {"seconds": 3, "steps": 6, "trace": True}).job
    worker = spawn("rqworker", *QUEUES, "--worker-class", "rq.Worker")
    wait_for(lambda: runs(redis_conn, job) == 1, timeout=30, what="the handler to start")
    horse = wait_for(lambda: horse_pids(worker), timeout=10, what="the work-horse")[0]
    sigkill_worker(worker, with_horse=False)

    assert reconcile.run(grace_seconds=0).lost == []
    wait_for(lambda: Job.objects.get(pk=job.id).status == Status.COMPLETE, timeout=30, what="the orphan to finish")
    assert Job.objects.get(pk=job.id).attempts == 1 and runs(redis_conn, job) == 1
    wait_for(lambda: liveness.process_started_at(horse) is None, timeout=10, what="the orphan to exit")


def test_flushall_loses_nothing(spawn, redis_conn, settings):
    from datetime import timedelta

    from django.utils import timezone

    queued = [r.job for r in submit_many([JobSpec("diagnostics.sleep", {"seconds": 0, "trace": True})] * 50)]
    soon = timezone.now() + timedelta(seconds=2)
    scheduled = [r.job for r in submit_many([JobSpec("diagnostics.sleep", {"seconds": 0, "trace": True},
                                                     run_at=soon)] * 5)]  # fmt: skip
    redis_conn.flushall()

    report = reconcile.run(grace_seconds=0)
    assert len(report.requeued) == 50 and len(report.rescheduled) == 5

    spawn("rqworker", *QUEUES)
    spawn("rqscheduler", "--queue", "normal", "--interval", "1")
    ids = [j.id for j in queued + scheduled]
    wait_for(lambda: Job.objects.filter(pk__in=ids, status=Status.COMPLETE).count() == 55, timeout=90,
             what="all 55 jobs to complete")  # fmt: skip
    assert set(Job.objects.filter(pk__in=ids).values_list("attempts", flat=True)) == {1}
    assert all(runs(redis_conn, j) == 1 for j in queued + scheduled)  # none twice
    claims = JobEvent.objects.filter(job_id__in=ids, to_status=Status.ACTIVE).count()
    assert claims == 55
    assert all(Job.objects.get(pk=j.id).started_at >= soon for j in scheduled)


def test_submits_while_redis_is_down_complete_after_it_returns(spawn, redis_conn):
    server = pytest_redis.own_server()
    server.stop()
    try:
        jobs = [submit("diagnostics.sleep", {"seconds": 0}).job for _ in range(5)]
        assert all(Job.objects.get(pk=j.id).status == Status.QUEUED for j in jobs)
        assert all(j.events.filter(message__contains="Redis unreachable").exists() for j in jobs)
    finally:
        server.start()
    assert reconcile.run(grace_seconds=0).requeued
    spawn("rqworker", *QUEUES, "--burst")
    wait_for(lambda: Job.objects.filter(status=Status.COMPLETE).count() == 5, timeout=60, what="5 jobs to complete")


def test_a_redis_outage_leaves_the_scheduler_running_and_retries_still_happen(spawn, redis_conn):
    server = pytest_redis.own_server()
    scheduler = spawn("rqscheduler", "--interval", "1")  # the plain command, as a Django-RQ user types it
    wait_for(lambda: redis_conn.keys("rq:scheduler_instance:*"), timeout=20, what="the scheduler to register")
    server.stop()
    try:

        def log() -> str:
            with open(scheduler.log_path) as output:
                return output.read()

        wait_for(lambda: "cannot reach Redis" in log(), timeout=20, what="the scheduler to meet the outage")
        assert scheduler.poll() is None, log()
    finally:
        server.start()
    wait_for(lambda: "scheduler reconnected" in log(), timeout=30, what="the scheduler to reconnect")
    assert scheduler.poll() is None and "Traceback" not in log()

    job = submit("diagnostics.sleep", {"seconds": 0, "fail_mode": "temporary", "fail_times": 1}).job
    spawn("rqworker", *QUEUES, **FAST_RETRIES, **SHORT_LEASES)
    wait_for(lambda: Job.objects.get(pk=job.id).status == Status.COMPLETE, timeout=60, what="the retry to run")
    assert Job.objects.get(pk=job.id).attempts == 2
    assert redis_conn.get("jobdesk:scheduler:heartbeat"), "the heartbeat is back"


def test_cron_entries_exist_once_after_repeated_syncs_and_a_scheduler_restart(spawn, redis_conn):
    for _ in range(3):
        result = subprocess.run(
            [os.sys.executable, "manage.py", "sync_schedules"], env=_env(), capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
    scheduler = spawn("rqscheduler", "--queue", "normal", "--interval", "1")
    wait_for(lambda: redis_conn.keys("rq:scheduler_instance:*"), timeout=20, what="the scheduler to register")
    scheduler.send_signal(signal.SIGTERM)
    exits(scheduler, 60, "the first scheduler, after SIGTERM")  # a graceful stop: generous for a loaded machine
    spawn("rqscheduler", "--queue", "normal", "--interval", "1")
    wait_for(lambda: redis_conn.get("jobdesk:scheduler:heartbeat"), timeout=20, what="the new scheduler's poll")
    names = list(Schedule.objects.values_list("name", flat=True))
    assert sorted(names) == sorted(registry.cron_entries())  # once each, however often synced
    assert {
        "reconcile",
        "scheduler-heartbeat",
        "prune-events",
        "prune-jobs",
        "stats-rollup",
        "ingestion.cleanup",
    } == set(registry.cron_entries())


def _env():
    from conftest import subprocess_env

    return subprocess_env()


EXPECTED = {"none": Status.COMPLETE, "temporary": Status.COMPLETE, "user_fixable": Status.FAILED,
            "crash": Status.DEAD_LETTER}  # fmt: skip


def test_soak_300_jobs_while_workers_are_killed(spawn, redis_conn, settings):
    settings.RETRY_BASE_DELAY = 0.1
    mix = ["none"] * 150 + ["temporary"] * 60 + ["user_fixable"] * 45 + ["crash"] * 45
    random.Random(7).shuffle(mix)
    specs = [
        JobSpec(
            "diagnostics.sleep",
            {"seconds": 0.05, "steps": 1, "fail_mode": mode, "fail_times": 1 if mode == "temporary" else 0,
             "trace": True},
            max_attempts=2 if mode == "crash" else 6,
        )
        for mode in mix
    ]  # fmt: skip
    jobs = [r.job for r in submit_many(specs)]
    ids = [j.id for j in jobs]
    workers = [spawn("rqworker", *QUEUES, **FAST_RETRIES, **SHORT_LEASES) for _ in range(2)]
    spawn("rqscheduler", "--queue", "normal", "--interval", "1")

    def finished() -> int:
        return Job.objects.filter(pk__in=ids, status__in=FINAL_STATUSES).count()

    kills, deadline = 0, time.monotonic() + 240
    while finished() < len(ids):
        assert time.monotonic() < deadline, f"only {finished()}/{len(ids)} final"
        if kills < 4 and finished() > 40 * (kills + 1):
            victim = workers.pop(0)
            wait_for(lambda v=victim: horse_pids(v), timeout=10, what="a busy work-horse")
            sigkill_worker(victim)
            kills += 1
            workers.append(spawn("rqworker", *QUEUES, **FAST_RETRIES, **SHORT_LEASES))
        reconcile.run(grace_seconds=2)
        time.sleep(0.5)

    assert kills == 4
    by_id = {j.id: j for j in Job.objects.filter(pk__in=ids)}
    wrong = [(mode, by_id[j.id].status) for mode, j in zip(mix, jobs, strict=True)
             if by_id[j.id].status != EXPECTED[mode]]  # fmt: skip
    assert wrong == []
    assert overlaps(redis_conn) == 0
    assert all(runs(redis_conn, j) <= by_id[j.id].attempts for j in jobs)
    assert Job.objects.filter(pk__in=ids, events__message__contains="lost: ").distinct().count() >= 1


def test_a_worker_parent_paused_past_its_lease_loses_the_job_and_its_late_outcome_is_refused(
    spawn, redis_conn, settings
):
    """SIGSTOP the parent (a frozen VM) while a short job runs: the horse finishes, but
    nobody renews the lease. Once it has passed, the reconciler retries the job; the
    parent's outcome, when it resumes, names a dispatch the row no longer has."""
    settings.RETRY_BASE_DELAY = 0.1  # the reconciler's retry, from this process
    job = submit("diagnostics.sleep", {"seconds": 1, "steps": 2, "trace": True}).job
    worker = spawn("rqworker", *QUEUES, **FAST_RETRIES, **SHORT_LEASES)
    spawn("rqscheduler", "--queue", "normal", "--interval", "1", **SHORT_LEASES)
    wait_for(lambda: runs(redis_conn, job) == 1, timeout=30, what="the handler to start")
    first_dispatch = Job.objects.get(pk=job.id).rq_job_id
    os.kill(worker.pid, signal.SIGSTOP)
    try:
        wait_for(lambda: reconcile.run(grace_seconds=0).lost, timeout=30, what="the lease to pass")
        assert Job.objects.get(pk=job.id).rq_job_id != first_dispatch
    finally:
        os.kill(worker.pid, signal.SIGCONT)
    wait_for(lambda: Job.objects.get(pk=job.id).status == Status.COMPLETE, timeout=30, what="the retry")
    assert Job.objects.get(pk=job.id).attempts == 2 and runs(redis_conn, job) == 2
    assert overlaps(redis_conn) == 0
    assert job.events.filter(message__contains="lease expired").exists()


def test_a_horse_whose_parent_is_frozen_stops_itself_before_the_job_is_taken_over(spawn, redis_conn, settings):
    """SIGSTOP only the parent while a long job runs in its horse (a handler that never
    asks ``is_canceled``): nobody renews the lease or kills the horse. The horse stops
    itself by its parent's stop time, so the retry elsewhere never runs beside it."""
    settings.RETRY_BASE_DELAY = 0.1  # the reconciler's retry, from this process
    job = submit("diagnostics.sleep", {"seconds": 40, "steps": 1, "trace": True}).job
    worker = spawn("rqworker", *QUEUES, **FAST_RETRIES, **SHORT_LEASES)
    wait_for(lambda: runs(redis_conn, job) == 1, timeout=30, what="the handler to start")
    horse = wait_for(lambda: horse_pids(worker), timeout=10, what="the work-horse")[0]
    os.kill(worker.pid, signal.SIGSTOP)
    try:
        # Well before the lease passes (JOB_LEASE_SECONDS): the horse is gone.
        wait_for(lambda: liveness.process_started_at(horse) is None, timeout=10, what="the horse to stop itself")
        assert lost_once_its_lease_passed() == [str(job.id)]
        spawn("rqworker", *QUEUES, **FAST_RETRIES, **SHORT_LEASES)
        spawn("rqscheduler", "--queue", "normal", "--interval", "1", **SHORT_LEASES)
        wait_for(lambda: runs(redis_conn, job) == 2, timeout=30, what="the retry to start")
        assert overlaps(redis_conn) == 0, "two runs of one job at once"
    finally:
        os.kill(worker.pid, signal.SIGCONT)


def test_a_worker_whose_registration_vanished_registers_again(spawn, redis_conn):
    """Paused past its TTL (or Redis flushed), a worker's registration is gone: it
    registers again at its next heartbeat instead of counting as dead for good."""
    job = submit("diagnostics.sleep", {"seconds": 6, "steps": 6, "trace": True}).job
    spawn("rqworker", *QUEUES)
    wait_for(lambda: runs(redis_conn, job) == 1, timeout=30, what="the handler to start")
    name = Job.objects.get(pk=job.id).worker_name
    redis_conn.delete(f"rq:worker:{name}")  # what expiry does to a paused worker's key
    redis_conn.srem("rq:workers", f"rq:worker:{name}")
    assert name not in queueing.workers()
    found = wait_for(lambda: queueing.workers().get(name), timeout=10, what="the worker to register again")
    assert found.current_job == job.rq_job_id
    wait_for(lambda: Job.objects.get(pk=job.id).status == Status.COMPLETE, timeout=30, what="the job to finish")


def test_killing_the_pool_takes_its_workers_along(spawn, redis_conn):
    """Nobody would respawn or stop a pool's workers once the pool's process is gone."""
    pool = spawn("rqworker-pool", *QUEUES, "--num-workers", "2")
    workers = wait_for(lambda: len(child_pids(pool.pid)) == 2 and child_pids(pool.pid), timeout=30, what="two workers")
    wait_for(lambda: len(queueing.workers()) == 2, timeout=30, what="the workers to register")
    pool.send_signal(signal.SIGKILL)
    pool.wait(10)
    wait_for(lambda: all(liveness.process_started_at(pid) is None for pid in workers), timeout=30,
             what="the pool's workers to leave with it")  # fmt: skip
