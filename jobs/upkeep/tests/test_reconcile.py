"""The reconciler against a real Redis and database (in-process; see test_chaos for processes)."""

from __future__ import annotations

import os
import subprocess
import time
from datetime import timedelta

import django_rq
import pytest
from django.utils import timezone
from rq.executions import Execution
from rq.job import Job as RQJob

from conftest import run_at_once
from jobs.core import leases, lifecycle, queueing
from jobs.core.models import Job, Status
from jobs.core.submit import submit
from jobs.upkeep import reconcile

pytestmark = pytest.mark.django_db(transaction=True)


def expire_lease(job: Job) -> None:
    Job.objects.filter(pk=job.id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_queued_jobs_missing_after_a_flush_are_re_enqueued(redis_conn, run_worker):
    jobs = [submit("diagnostics.noop").job for _ in range(5)]
    redis_conn.flushall()
    report = reconcile.run(grace_seconds=0)
    assert sorted(report.requeued) == sorted(str(j.id) for j in jobs)
    assert django_rq.get_queue("normal").count == 5
    run_worker()
    assert set(Job.objects.values_list("status", flat=True)) == {Status.COMPLETE}
    assert all(j.events.filter(message__contains="missing from Redis").exists() for j in Job.objects.all())
    assert reconcile.run(grace_seconds=0).repairs == 0  # nothing left to repair


def taken_up_by_a_worker(job: Job, *, seconds_ago: float) -> None:
    """What RQ leaves of a worker that popped the job's dispatch (and died before its
    claim): no longer on its queue, "started" until the job's timeout has passed."""
    rq_job = RQJob.fetch(job.rq_job_id, connection=queueing.connection())
    queueing.queue(job.priority).remove(rq_job.id)
    with queueing.connection().pipeline() as pipe:
        execution = Execution.create(rq_job, ttl=3600, pipeline=pipe, worker_name="gone")
        pipe.execute()
    queueing.connection().hset(execution.key, "last_heartbeat", time.time() - seconds_ago)


def test_a_dispatch_taken_by_a_worker_that_died_before_its_claim_is_dispatched_again(redis_conn, run_worker):
    """A worker killed while its claim waited behind the last run's record: the row is
    queued, its dispatch "started" in RQ for the job's timeout (an hour for some types)."""
    fresh, stale = submit("diagnostics.noop").job, submit("diagnostics.noop").job
    taken_up_by_a_worker(fresh, seconds_ago=5)  # its worker may still be claiming it
    taken_up_by_a_worker(stale, seconds_ago=reconcile.UNCLAIMED_AFTER + 5)
    report = reconcile.run(grace_seconds=0)
    assert report.requeued == [str(stale.id)]
    stale_dispatch = stale.rq_job_id
    stale.refresh_from_db()
    assert stale.status == Status.QUEUED and stale.rq_job_id != stale_dispatch  # the old one is fenced off
    run_worker()
    assert Job.objects.get(pk=stale.id).status == Status.COMPLETE
    assert Job.objects.get(pk=fresh.id).status == Status.QUEUED  # left to the worker that took it


def test_recent_rows_are_spared_by_the_grace_period(redis_conn):
    submit("diagnostics.noop")
    redis_conn.flushall()
    assert reconcile.run(grace_seconds=60).repairs == 0


def test_scheduled_and_retrying_jobs_missing_from_the_scheduler_are_rescheduled(redis_conn, settings, run_worker):
    settings.RETRY_BASE_DELAY = 3600
    later = submit("diagnostics.noop", run_at=timezone.now() + timedelta(hours=1)).job
    retrying = submit("diagnostics.sleep", {"seconds": 0, "fail_mode": "temporary", "fail_times": 1}).job
    run_worker()
    assert Job.objects.get(pk=retrying.id).status == Status.RETRYING
    redis_conn.flushall()
    report = reconcile.run(grace_seconds=0)
    assert sorted(report.rescheduled) == sorted([str(later.id), str(retrying.id)])
    scheduled_ids = {j.id for j in queueing.scheduler().get_jobs()}
    assert scheduled_ids == {Job.objects.get(pk=later.id).rq_job_id, Job.objects.get(pk=retrying.id).rq_job_id}


def test_active_job_whose_lease_passed_is_retried(settings):
    settings.RETRY_BASE_DELAY = 3600
    job = submit("diagnostics.noop").job
    lifecycle.claim(job.id, job.rq_job_id, "worker-that-died")
    Job.objects.filter(pk=job.id).update(runner_pid=dead_pid())
    assert reconcile.run(grace_seconds=0).lost == []  # a dead pid proves nothing: another host may share the name
    expire_lease(job)
    report = reconcile.run(grace_seconds=0)
    job.refresh_from_db()
    assert report.lost == [str(job.id)]
    assert job.status == Status.RETRYING
    assert job.events.filter(to_status=Status.RETRYING, message__contains="worker-that-died").exists()


def test_lost_job_on_its_last_attempt_is_dead_lettered():
    job = submit("diagnostics.noop", max_attempts=1).job
    lifecycle.claim(job.id, job.rq_job_id, "w")
    expire_lease(job)
    reconcile.run(grace_seconds=0)
    job.refresh_from_db()
    assert job.status == Status.DEAD_LETTER and "lost" in job.error_message


def test_a_slow_job_whose_process_is_alive_is_never_declared_lost():
    job = submit("diagnostics.noop", max_attempts=1).job
    lifecycle.claim(job.id, job.rq_job_id, "slow-but-alive")  # claimed by this (alive) process
    # No timeout applies: the row has not changed for two days.
    Job.objects.filter(pk=job.id).update(updated_at=timezone.now() - timedelta(days=2))
    assert reconcile.run(grace_seconds=0).lost == []
    assert Job.objects.get(pk=job.id).status == Status.ACTIVE


def test_a_remote_run_whose_lease_is_renewed_is_never_declared_lost_and_is_once_it_passes(redis_conn):
    job = submit("diagnostics.noop").job
    lifecycle.claim(job.id, job.rq_job_id, "remote-alive")
    Job.objects.filter(pk=job.id).update(runner_host="another-host", started_at=timezone.now() - timedelta(days=2))
    redis_conn.flushall()  # Redis forgetting every worker says nothing about a leased run
    assert reconcile.run(grace_seconds=0).lost == []
    assert leases.renew(job.id, job.rq_job_id)  # its worker renews: still not lost
    assert reconcile.run(grace_seconds=0).lost == []
    expire_lease(job)  # …then stops renewing (cut off, or gone)
    assert reconcile.run(grace_seconds=0).lost == [str(job.id)]
    assert "lease expired" in Job.objects.get(pk=job.id).error_message


def test_a_pass_reads_only_the_runs_whose_lease_passed_and_asks_redis_for_no_worker(monkeypatch):
    """Runs holding their leases are not even read; RQ's worker registry is read only
    for a run claimed before leases."""
    jobs = [submit("diagnostics.noop").job for _ in range(3)]
    for job in jobs:
        lifecycle.claim(job.id, job.rq_job_id, "w")
    expire_lease(jobs[0])

    def no_registry():
        raise AssertionError("the worker registry was read")

    monkeypatch.setattr(queueing, "workers", no_registry)
    read = []
    monkeypatch.setattr(reconcile.liveness, "lost_reason", lambda job, *args: read.append(job.id) or "lost")
    reconcile._rescue_lost_active(timezone.now(), reconcile.Report())
    assert read == [jobs[0].id]


def test_a_lease_that_passed_cannot_be_renewed_nor_can_a_run_that_was_taken_away():
    job = submit("diagnostics.noop").job
    lifecycle.claim(job.id, job.rq_job_id, "w")
    assert leases.renew(job.id, job.rq_job_id)
    assert not leases.renew(job.id, "another-dispatch")
    expire_lease(job)
    assert not leases.renew(job.id, job.rq_job_id)  # the reconciler may be taking it over


def test_only_the_worker_a_run_was_claimed_for_adopts_it_while_its_lease_holds():
    """A bookkeeper's claim is adopted by its worker: by name, host and pid together (a
    container elsewhere may have the same host name and pid 1), never once it passed."""
    import socket

    job = submit("diagnostics.noop").job
    lifecycle.claim(job.id, job.rq_job_id, "w")  # in this process's name, as a bookkeeper claims in its worker's
    host, pid = socket.gethostname(), os.getpid()
    assert leases.adopt(job.id, job.rq_job_id, "another-worker", host, pid) is None
    assert leases.adopt(job.id, job.rq_job_id, "w", "another-host", pid) is None
    assert leases.adopt(job.id, "another-dispatch", "w", host, pid) is None
    adopted = leases.adopt(job.id, job.rq_job_id, "w", host, pid)
    assert adopted is not None and adopted.status == Status.ACTIVE and adopted.attempts == 1
    expire_lease(job)
    assert leases.adopt(job.id, job.rq_job_id, "w", host, pid) is None  # the reconciler may be taking it over


def test_a_run_claimed_before_leases_on_a_vanished_worker_is_lost_once_it_would_have_timed_out(redis_conn):
    job = submit("diagnostics.noop").job
    lifecycle.claim(job.id, job.rq_job_id, "remote-worker")
    Job.objects.filter(pk=job.id).update(runner_host="another-host", lease_expires_at=None)
    assert reconcile.run(grace_seconds=0).lost == []  # no registration: maybe just a flush
    Job.objects.filter(pk=job.id).update(started_at=timezone.now() - timedelta(seconds=job.timeout + 600))
    report = reconcile.run(grace_seconds=0)
    assert report.lost == [str(job.id)]
    assert "no RQ worker registration" in Job.objects.get(pk=job.id).error_message


def test_waiting_job_with_complete_dependencies_is_released(run_worker):
    a = submit("diagnostics.noop").job
    b = submit("diagnostics.noop", depends_on=[a.id]).job
    # A lost release: A completes, and what should follow (releasing B) never runs.
    lifecycle.claim(a.id, a.rq_job_id, "w")
    lifecycle.complete(a.id, a.rq_job_id, None)
    report = reconcile.run(grace_seconds=0)
    assert str(b.id) in report.released
    run_worker()
    assert Job.objects.get(pk=b.id).status == Status.COMPLETE


def test_concurrent_passes_do_not_repair_twice(redis_conn):
    jobs = [submit("diagnostics.noop").job for _ in range(20)]
    redis_conn.flushall()
    reports, errors = run_at_once(2, lambda: reconcile.run(grace_seconds=0))
    assert errors == [] and len(reports) == 2
    requeued = [job_id for r in reports for job_id in r.requeued]
    assert sorted(requeued) == sorted(str(j.id) for j in jobs)  # each exactly once
    assert django_rq.get_queue("normal").count == 20


def test_reconcile_command_prints_the_repairs(redis_conn):
    from io import StringIO

    from django.core.management import call_command

    submit("diagnostics.noop")
    redis_conn.flushall()
    out = StringIO()
    call_command("reconcile", "--grace", "0", stdout=out)
    assert '"requeued": [' in out.getvalue() and '"repairs": 1' in out.getvalue()


@pytest.mark.parametrize("grace", ["nan", "inf", "1e12", "-1"])
def test_reconcile_refuses_a_grace_no_date_can_hold(grace):
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="--grace"):
        call_command("reconcile", "--grace", grace)


def test_runner_pid_is_recorded_at_claim(run_worker):
    job = submit("diagnostics.noop").job
    run_worker()
    job.refresh_from_db()
    assert job.runner_pid == os.getpid() and job.runner_host


def test_a_run_whose_lease_passed_is_lost_even_if_its_process_lives():
    """A worker that stopped renewing (it gave the run up, or it is frozen) has had its
    run stopped by its own watchdog: the job must not stay active forever."""
    job = submit("diagnostics.noop").job
    lifecycle.claim(job.id, job.rq_job_id, "gave-up")  # runner pid: this live process
    assert reconcile.run(grace_seconds=0).lost == []
    expire_lease(job)
    assert reconcile.run(grace_seconds=0).lost == [str(job.id)]
    assert Job.objects.get(pk=job.id).lease_expires_at is None  # the retry ended the lease


def test_one_unrepairable_row_does_not_stop_the_pass(redis_conn):
    from datetime import UTC, datetime

    bad = submit("diagnostics.noop", run_at=timezone.now() + timedelta(hours=1)).job
    good = submit("diagnostics.noop").job
    Job.objects.filter(pk=bad.id).update(scheduled_for=datetime(9999, 12, 31, 23, 59, 59, 500000, tzinfo=UTC))
    redis_conn.flushall()
    report = reconcile.run(grace_seconds=0)
    assert report.requeued == [str(good.id)]
    assert report.errors == [str(bad.id)]


def test_requeue_waits_while_the_last_run_is_still_stopping(redis_conn):
    from jobs.core import actions
    from jobs.core.errors import ActionRefused

    job = submit("diagnostics.noop").job
    lifecycle.claim(job.id, job.rq_job_id, "w")
    actions.cancel(job.id)  # its worker has not stopped the run yet: it still holds the lease
    with pytest.raises(ActionRefused, match="still stopping"):
        actions.requeue(job.id)
    leases.release(job.id, job.rq_job_id)  # the run stopped, its outcome refused
    assert actions.requeue(job.id).status == Status.QUEUED


def test_hooks_lost_to_a_dying_worker_are_replayed_once(run_worker):
    from jobs.core import registry

    calls: list[str] = []
    registry.job_type("tests.hooked_replay", on_success=lambda job: calls.append(str(job.id)))(lambda ctx: {})
    try:
        job = submit("tests.hooked_replay").job
        run_worker()
        assert calls == [str(job.id)] and Job.objects.get(pk=job.id).hooks_done
        # A worker that died after committing "complete" but before its hooks:
        Job.objects.filter(pk=job.id).update(hooks_done=False, finished_at=timezone.now() - timedelta(minutes=5))
        report = reconcile.run(grace_seconds=0)
        assert report.hooks_replayed == [str(job.id)]
        assert calls == [str(job.id)] * 2 and Job.objects.get(pk=job.id).hooks_done
        assert reconcile.run(grace_seconds=0).hooks_replayed == []
    finally:
        registry.unregister("tests.hooked_replay")


def test_a_hook_that_breaks_in_the_database_does_not_stop_a_lost_run_from_being_repaired():
    """The reconciler ends a lost last attempt inside its repair's transaction: a hook
    whose query fails must not roll the repair back (every pass, for good)."""
    from django.db import connection

    from jobs.core import registry

    def broken_hook(job: Job) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM no_such_table_of_the_hook")

    registry.job_type("tests.broken_hook", max_attempts=1, on_failure=broken_hook)(lambda ctx: {})
    try:
        job = submit("tests.broken_hook").job
        lifecycle.claim(job.id, job.rq_job_id, "gone")
        expire_lease(job)
        report = reconcile.run(grace_seconds=0)
        assert report.lost == [str(job.id)] and report.errors == []
        job.refresh_from_db()
        assert job.status == Status.DEAD_LETTER and job.hooks_done
    finally:
        registry.unregister("tests.broken_hook")
