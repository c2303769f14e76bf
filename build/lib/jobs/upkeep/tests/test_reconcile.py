"""The reconciler against a real Redis and database (in-process; see test_chaos for processes)."""

from __future__ import annotations

import os
import subprocess
from datetime import timedelta

import django_rq
import pytest
from django.utils import timezone

from conftest import run_at_once
from jobs.core import lifecycle, queueing
from jobs.core.models import Job, Status
from jobs.core.submit import submit
from jobs.upkeep import reconcile

pytestmark = pytest.mark.django_db(transaction=True)


def redis_remembers_liveness_for_a_while(redis_conn) -> None:
    """As if Redis had not been flushed recently (the suite flushes it before each test)."""
    redis_conn.set("jobdesk:liveness-epoch", (timezone.now() - timedelta(minutes=5)).isoformat())


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


def test_active_job_whose_process_is_gone_is_retried(settings):
    settings.RETRY_BASE_DELAY = 3600
    job = submit("diagnostics.noop").job
    lifecycle.claim(job.id, job.rq_job_id, "worker-that-died")
    Job.objects.filter(pk=job.id).update(runner_pid=dead_pid())
    report = reconcile.run(grace_seconds=0)
    job.refresh_from_db()
    assert report.lost == [str(job.id)]
    assert job.status == Status.RETRYING
    assert job.events.filter(to_status=Status.RETRYING, message__contains="worker-that-died").exists()


def test_lost_job_on_its_last_attempt_is_dead_lettered():
    job = submit("diagnostics.noop", max_attempts=1).job
    lifecycle.claim(job.id, job.rq_job_id, "w")
    Job.objects.filter(pk=job.id).update(runner_pid=dead_pid())
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


def test_a_slow_job_on_a_remote_worker_that_heartbeats_is_never_declared_lost(redis_conn):
    from rq import Worker

    redis_remembers_liveness_for_a_while(redis_conn)
    job = submit("diagnostics.noop").job
    worker = Worker([queueing.queue("normal")], connection=redis_conn, name="remote-alive")
    worker.register_birth()
    worker.set_current_job_id(job.rq_job_id)
    worker.heartbeat()
    lifecycle.claim(job.id, job.rq_job_id, "remote-alive")
    Job.objects.filter(pk=job.id).update(runner_host="another-host", started_at=timezone.now() - timedelta(days=2))
    assert reconcile.run(grace_seconds=0).lost == []
    worker.set_current_job_id(None)  # its work-horse died and it moved on
    assert reconcile.run(grace_seconds=0).lost == [str(job.id)]
    assert "moved on" in Job.objects.get(pk=job.id).error_message


def test_a_recycled_pid_does_not_keep_a_lost_job_alive():
    job = submit("diagnostics.noop").job
    lifecycle.claim(job.id, job.rq_job_id, "w")
    sleeper = subprocess.Popen(["sleep", "30"])  # alive, but started after the claim
    try:
        Job.objects.filter(pk=job.id).update(runner_pid=sleeper.pid, started_at=timezone.now() - timedelta(minutes=5))
        assert reconcile.run(grace_seconds=0).lost == [str(job.id)]
    finally:
        sleeper.kill()
        sleeper.wait()


def test_right_after_a_flush_remote_jobs_are_not_judged(redis_conn):
    """A flush wipes every worker's registration and hold; live workers refresh their
    holds within seconds. Judging before that would run remote jobs twice at once."""
    job = submit("diagnostics.noop").job
    lifecycle.claim(job.id, job.rq_job_id, "remote-worker")
    Job.objects.filter(pk=job.id).update(runner_host="another-host")
    redis_conn.flushall()
    assert reconcile.run(grace_seconds=0).lost == []
    redis_remembers_liveness_for_a_while(redis_conn)
    queueing.mark_in_hand(job.rq_job_id, "remote-worker", 10)  # its worker refreshed its hold
    assert reconcile.run(grace_seconds=0).lost == []
    queueing.release_in_hand(job.rq_job_id)  # …and then stopped refreshing it
    assert reconcile.run(grace_seconds=0).lost == [str(job.id)]


def test_remote_worker_without_registration_is_lost(redis_conn):
    redis_remembers_liveness_for_a_while(redis_conn)
    job = submit("diagnostics.noop").job
    lifecycle.claim(job.id, job.rq_job_id, "remote-worker")
    Job.objects.filter(pk=job.id).update(runner_host="another-host")
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


def test_runner_pid_is_recorded_at_claim(run_worker):
    job = submit("diagnostics.noop").job
    run_worker()
    job.refresh_from_db()
    assert job.runner_pid == os.getpid() and job.runner_host


def test_job_whose_worker_moved_on_is_lost_even_if_the_process_lives(redis_conn):
    """The parent-side bookkeeping could not record an outcome (database blip) and the
    worker went on to other work: the job must not stay active forever."""
    from rq import Worker

    job = submit("diagnostics.noop").job
    lifecycle.claim(job.id, job.rq_job_id, "busy-elsewhere")  # runner pid: this live process
    worker = Worker([queueing.queue("normal")], connection=redis_conn, name="busy-elsewhere")
    worker.register_birth()
    worker.set_current_job_id("some-other-dispatch")
    assert reconcile.run(grace_seconds=0).lost == []  # just claimed: RQ may not have caught up
    Job.objects.filter(pk=job.id).update(started_at=timezone.now() - timedelta(minutes=1))
    assert reconcile.run(grace_seconds=0).lost == [str(job.id)]


def test_a_job_being_recorded_after_its_horse_finished_is_not_lost(redis_conn):
    """RQ clears the worker's current job before the parent has written the outcome;
    the parent's hold on the dispatch covers that gap."""
    from rq import Worker

    job = submit("diagnostics.noop").job
    lifecycle.claim(job.id, job.rq_job_id, "recording")
    worker = Worker([queueing.queue("normal")], connection=redis_conn, name="recording")
    worker.register_birth()  # current job: none any more
    redis_remembers_liveness_for_a_while(redis_conn)
    Job.objects.filter(pk=job.id).update(runner_host="another-host", started_at=timezone.now() - timedelta(minutes=1))
    queueing.mark_in_hand(job.rq_job_id, "recording", 10)
    assert reconcile.run(grace_seconds=0).lost == []
    queueing.release_in_hand(job.rq_job_id)  # without the hold, "moved on" is the verdict
    assert reconcile.run(grace_seconds=0).lost == [str(job.id)]


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
    actions.cancel(job.id)
    queueing.mark_in_hand(job.rq_job_id, "w", 10)  # its worker has not stopped the horse yet
    with pytest.raises(ActionRefused, match="still stopping"):
        actions.requeue(job.id)
    queueing.release_in_hand(job.rq_job_id)
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
