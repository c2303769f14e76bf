"""Batches and chains with real workers: worker processes running a batch to its
callback, a forced race of the last two jobs, a worker SIGKILLed between the last job
and the callback, fan-out from inside a job, and chains passing results."""

from __future__ import annotations

import threading

import pytest

from conftest import exits, wait_for
from jobs.core import batches, lifecycle, outcomes
from jobs.core.dependencies import chain
from jobs.core.models import Batch, Job, Status
from jobs.core.submit import JobSpec
from jobs.core.tests import batchtasks
from jobs.tasks.backend import task_spec
from jobs.upkeep import reconcile

pytestmark = pytest.mark.django_db(transaction=True)

QUEUES = ("immediate", "normal", "low")
CALLBACK = batchtasks.task_callback.module_path
SUCCESS = batchtasks.task_success.module_path
FAST_RETRIES = {"RETRY_BASE_DELAY": "0.1"}


def sleep(**payload) -> JobSpec:
    return JobSpec("diagnostics.sleep", {"seconds": 0, "steps": 1, **payload})


def callback_jobs(type_name: str = CALLBACK) -> list[Job]:
    return list(Job.objects.filter(type=type_name))


def settled(batch: Batch):
    """The batch's on_complete job once it has run."""
    batch.refresh_from_db()
    return batch.complete_job and Job.objects.filter(pk=batch.complete_job, status=Status.COMPLETE).first()


def test_a_batch_on_two_workers_ends_with_one_callback_and_the_right_counts(spawn, alice):
    ok, user_fixable, retried = 170, 15, 15  # the 200 jobs
    specs = [sleep()] * ok + [sleep(fail_mode="user_fixable")] * user_fixable
    specs += [sleep(fail_mode="temporary", fail_times=1)] * retried
    batch, _ = batches.create_batch(
        specs,
        owner=alice,
        description="mixed",
        on_complete=batchtasks.task_callback,
        on_success=batchtasks.task_success,
    )
    clean, _ = batches.create_batch(
        [sleep()] * 10, owner=alice, on_complete=batchtasks.task_callback, on_success=batchtasks.task_success
    )
    for _ in range(2):
        spawn("rqworker", *QUEUES, **FAST_RETRIES)
    spawn("rqscheduler", "--queue", "normal", "--interval", "1", **FAST_RETRIES)

    wait_for(lambda: Job.objects.filter(type=CALLBACK, status=Status.COMPLETE).count() == 2, timeout=120,
             what="both batches' on_complete to run")  # fmt: skip
    wait_for(lambda: Job.objects.filter(type=SUCCESS, status=Status.COMPLETE).count() == 1, timeout=30,
             what="the clean batch's on_success")  # fmt: skip
    batch.refresh_from_db()
    clean.refresh_from_db()
    mixed_done = Job.objects.get(pk=batch.complete_job)
    summary = mixed_done.result
    assert summary["total"] == ok + user_fixable + retried
    assert summary["counts"] == {"complete": ok + retried, "failed": user_fixable}
    assert summary["succeeded"] is False and summary["description"] == "mixed"
    retried_jobs = Job.objects.filter(batch=batch, payload__fail_mode="temporary")
    assert {j.attempts for j in retried_jobs} == {2}  # each retried once, inside the batch
    assert batch.success_job is None and batch.succeeded_at is None  # one failed: no on_success
    assert str(clean.success_job) == str(Job.objects.get(type=SUCCESS).id)
    assert Job.objects.get(pk=clean.complete_job).result["succeeded"] is True
    reconcile.run(grace_seconds=0)  # nothing for the reconciler to add
    assert len(callback_jobs()) == 2 and len(callback_jobs(SUCCESS)) == 1


def test_the_last_two_jobs_finishing_at_once_fire_one_callback(alice, monkeypatch):
    batch, submitted = batches.create_batch([sleep(), sleep()], owner=alice, on_complete=batchtasks.CALLBACK)
    jobs = [s.job for s in submitted]
    for job in jobs:
        lifecycle.claim(job.id, job.rq_job_id, "w")
    both_recorded = threading.Barrier(2, timeout=30)
    settles: list[list] = []
    real_settle = batches.settle

    def counted_settle(batch_id):
        fired = real_settle(batch_id)
        settles.append(fired)
        return fired

    monkeypatch.setattr(batches, "settle", counted_settle)
    errors: list[BaseException] = []

    def finish(job: Job) -> None:
        from django.db import connection

        try:
            done = lifecycle.complete(job.id, job.rq_job_id, None)
            both_recorded.wait()  # both outcomes committed: each sees no unfinished job
            outcomes.finished(done)
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=finish, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert len(settles) == 2, "both workers raced for the callback"
    assert sorted(len(fired) for fired in settles) == [0, 1]
    assert Job.objects.filter(type=batchtasks.CALLBACK).count() == 1


def test_a_worker_killed_after_the_last_job_before_the_callback_is_made_good_by_the_reconciler(spawn, alice):
    batch, _ = batches.create_batch([sleep()] * 3, owner=alice, on_complete=batchtasks.task_callback)
    worker = spawn("rqworker", *QUEUES, JOBDESK_FAILPOINT="batch.before_settle")
    # It kills itself with SIGKILL right after the last job's end is committed.
    exits(worker, 60, "the worker at its failpoint")
    assert worker.returncode == -9
    assert set(Job.objects.filter(batch=batch).values_list("status", flat=True)) == {Status.COMPLETE}
    assert callback_jobs() == []
    assert Batch.objects.get(pk=batch.id).completed_at is None

    report = reconcile.run(grace_seconds=0)
    assert report.batches_settled == [str(batch.id)]
    spawn("rqworker", *QUEUES)
    wait_for(lambda: settled(batch), timeout=60, what="the callback to run")
    assert reconcile.run(grace_seconds=0).batches_settled == []
    (callback,) = callback_jobs()
    assert callback.result["total"] == 3 and callback.result["complete"] == 3


def test_fan_out_from_inside_a_job_then_close_waits_for_the_added_jobs(alice, run_worker):
    opened = batches.open_batch(owner=alice, on_complete=batchtasks.task_callback)
    batches.add_to_batch(opened.id, [task_spec(batchtasks.task_fan_out, 4, 0)], owner=alice)
    run_worker(max_jobs=1)  # the parent runs and adds four jobs to its (still open) batch
    assert Job.objects.filter(batch=opened).count() == 5
    batches.close_batch(opened.id)
    assert callback_jobs() == []  # four still queued
    run_worker()
    (callback,) = callback_jobs()
    assert callback.status == Status.COMPLETE and callback.result["total"] == 5


def test_fan_out_into_a_closed_batch_from_its_running_job(alice, run_worker):
    batch, _ = batches.create_batch(
        [task_spec(batchtasks.task_fan_out, 3, 0)], owner=alice, on_complete=batchtasks.task_callback
    )
    assert batch.closed_at is not None
    run_worker()
    assert Job.objects.filter(batch=batch, status=Status.COMPLETE).count() == 4
    (callback,) = callback_jobs()
    assert callback.result["total"] == 4  # the callback waited for the added jobs
    assert callback.created_at > max(Job.objects.filter(batch=batch).values_list("finished_at", flat=True))


def test_a_running_job_of_a_canceled_batch_adds_nothing_and_fails_without_a_retry(alice, run_worker):
    batch, submitted = batches.create_batch(
        [JobSpec(batchtasks.FAN_OUT_AFTER_CANCEL)], owner=alice, on_complete=batchtasks.task_callback
    )
    run_worker()
    (job,) = Job.objects.filter(batch=batch)
    assert (job.status, job.error_category, job.attempts) == (Status.FAILED, "user_fixable", 1)
    assert "was canceled" in job.error_message
    (callback,) = callback_jobs()
    assert callback.status == Status.COMPLETE and callback.result["total"] == 1
    # Retried after the batch finished, it is refused again: failed once more, not retried.
    assert batches.retry_failed(batch.id) == 1
    run_worker()
    job.refresh_from_db()
    assert (job.status, job.error_category, job.attempts) == (Status.FAILED, "user_fixable", 1)
    assert "has finished" in job.error_message


def test_a_three_step_chain_passes_results(alice, run_worker):
    steps = chain([JobSpec(batchtasks.STEP, {"add": n}) for n in (1, 10, 100)], owner=alice)
    run_worker()
    first, second, third = (Job.objects.get(pk=s.job.id) for s in steps)
    assert [first.result["total"], second.result["total"], third.result["total"]] == [1, 11, 111]
    assert list(second.depends_on.values_list("id", flat=True)) == [first.id]


def test_a_chain_of_standard_tasks_passes_results(alice, run_worker):
    steps = chain([task_spec(batchtasks.task_step, n) for n in (2, 3, 4)], owner=alice)
    run_worker()
    assert [Job.objects.get(pk=s.job.id).result for s in steps] == [2, 5, 9]


def test_a_failing_middle_step_cancels_the_rest_by_default(alice, run_worker):
    steps = chain(
        [JobSpec(batchtasks.STEP, {"add": 1}), JobSpec(batchtasks.STEP, {"fail": True}), JobSpec(batchtasks.STEP)],
        owner=alice,
    )
    run_worker()
    statuses = [Job.objects.get(pk=s.job.id).status for s in steps]
    assert statuses == [Status.COMPLETE, Status.FAILED, Status.CANCELED]


def test_a_step_that_opts_in_runs_after_a_failure_and_sees_it(alice, run_worker):
    steps = chain(
        [
            JobSpec(batchtasks.STEP, {"add": 1}),
            JobSpec(batchtasks.STEP, {"fail": True}),
            JobSpec(batchtasks.STEP, {"add": 5}, on_dependency_failure="run"),
        ],
        owner=alice,
    )
    run_worker()
    first, middle, last = (Job.objects.get(pk=s.job.id) for s in steps)
    assert (first.status, middle.status, last.status) == (Status.COMPLETE, Status.FAILED, Status.COMPLETE)
    assert last.result["seen"] == [
        {"status": "failed", "error": {"category": "user_fixable", "message": "this step was told to fail"}}
    ]
    assert last.result["total"] == 5  # nothing complete to add to


def test_a_redis_flushall_mid_batch_still_ends_in_one_callback(alice, run_worker, redis_conn):
    batch, _ = batches.create_batch([sleep()] * 6, owner=alice, on_complete=batchtasks.task_callback)
    run_worker(max_jobs=2)
    redis_conn.flushall()  # the four queued dispatches are gone; the batch never was in Redis
    assert len(reconcile.run(grace_seconds=0).requeued) == 4
    run_worker()
    (callback,) = callback_jobs()
    assert callback.status == Status.COMPLETE
    assert callback.result["total"] == 6 and callback.result["counts"] == {"complete": 6}
    assert reconcile.run(grace_seconds=0).batches_settled == []
    assert len(callback_jobs()) == 1
