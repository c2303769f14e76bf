"""Batches in the database: counts, progress, callbacks exactly once, fan-out, cancel,
retry-failed, the reconciler's repair, the context manager and the task API. Jobs are
moved through the lifecycle here (a worker's claim and outcome); the worker processes
are in test_batch_workers."""

from __future__ import annotations

import pytest

from jobs.core import batches, lifecycle, outcomes
from jobs.core.errors import ActionRefused, BatchCanceled, SubmitError
from jobs.core.models import Batch, Job, Status
from jobs.core.submit import JobSpec, submit, submit_many
from jobs.core.tests import batchtasks
from jobs.upkeep import reconcile

pytestmark = pytest.mark.django_db

NOOP = JobSpec("diagnostics.noop")


def run(job: Job, *, ok: bool = True, category: str = "user_fixable", settle: bool = True) -> Job:
    """A worker's run of ``job``: claim, then its outcome; ``settle=False`` stops after
    the outcome's commit, as a worker killed right then."""
    job.refresh_from_db()
    lifecycle.claim(job.id, job.rq_job_id, "test-worker")
    if ok:
        done = lifecycle.complete(job.id, job.rq_job_id, {"n": 1})
    else:
        done = lifecycle.fail(job.id, job.rq_job_id, category=category, message="bad input")
    if settle:
        outcomes.finished(done)
    return done


def callbacks(type_name: str = batchtasks.CALLBACK) -> list[Job]:
    return list(Job.objects.filter(type=type_name))


def test_a_batch_of_no_jobs_finishes_at_once_with_both_callbacks(alice):
    batch, submitted = batches.create_batch(
        [], owner=alice, description="nothing", on_complete=batchtasks.CALLBACK, on_success=batchtasks.SUCCESS
    )
    assert submitted == []
    assert batch.closed_at and batch.completed_at and batch.succeeded_at
    (done,) = callbacks()
    (succeeded,) = callbacks(batchtasks.SUCCESS)
    assert str(batch.complete_job) == str(done.id) and str(batch.success_job) == str(succeeded.id)
    assert done.owner == alice and done.batch_id is None  # a callback is not in its batch
    assert done.payload["total"] == 0 and done.payload["succeeded"] is True and done.payload["callback"] == "complete"


def test_the_callback_fires_once_after_the_last_job_with_the_summary(alice):
    batch, submitted = batches.create_batch(
        [NOOP] * 3 + [JobSpec("diagnostics.sleep", {"seconds": 0})],
        owner=alice,
        description="four",
        on_complete=batchtasks.CALLBACK,
        on_success=batchtasks.SUCCESS,
        context={"set": 7},
    )
    jobs = [s.job for s in submitted]
    assert {j.batch_id for j in jobs} == {batch.id}
    run(jobs[0])
    run(jobs[1])
    run(jobs[2], ok=False)
    assert callbacks() == []  # one still queued
    assert batches.batch_progress(batch.id).percent == 75.0
    run(jobs[3])
    (done,) = callbacks()
    assert callbacks(batchtasks.SUCCESS) == []  # one failed: no success
    summary = done.payload
    assert summary["counts"] == {"complete": 3, "failed": 1}
    assert (summary["total"], summary["complete"], summary["failed"], summary["succeeded"]) == (4, 3, 1, False)
    assert summary["context"] == {"set": 7} and summary["description"] == "four"
    # Every later settle finds the guard taken.
    assert batches.settle(batch.id) == [] and batches.settle(batch.id) == []
    outcomes.finished(Job.objects.get(pk=jobs[3].id))  # a replayed end
    assert len(callbacks()) == 1
    batch.refresh_from_db()
    assert batches.state(batch) == "finished"


@pytest.mark.redis  # a requeue asks Redis whether the last run is still stopping
def test_retry_failed_then_success_fires_on_success_once(alice):
    batch, submitted = batches.create_batch(
        [NOOP, NOOP], owner=alice, on_complete=batchtasks.CALLBACK, on_success=batchtasks.SUCCESS
    )
    first, second = (s.job for s in submitted)
    run(first)
    run(second, ok=False)
    assert len(callbacks()) == 1 and callbacks(batchtasks.SUCCESS) == []
    assert batches.retry_failed(batch.id, actor=alice) == 1
    batch.refresh_from_db()
    assert batches.state(batch) == "running"
    done = run(second, settle=False)
    batch.refresh_from_db()
    # every job complete again, on_success not submitted yet: not "complete" (its
    # followers were told so before the callback existed)
    assert batches.state(batch) == "running"
    outcomes.finished(done)
    assert len(callbacks()) == 1  # on_complete ran once, when every job was first final
    (succeeded,) = callbacks(batchtasks.SUCCESS)
    assert succeeded.payload["succeeded"] is True
    batch.refresh_from_db()
    assert batches.state(batch) == "complete"


@pytest.mark.redis  # a requeue asks Redis whether the last run is still stopping
def test_a_batch_all_complete_again_is_running_only_while_a_success_callback_can_still_come(alice):
    """No on_success to wait for, or past the reconciler's watch for a late one: complete
    (a batch stayed "running" for good, its followers never told it ended)."""
    from datetime import timedelta

    from django.utils import timezone

    for on_success, age, shown in (("", timedelta(0), "complete"), (batchtasks.SUCCESS, timedelta(0), "running"),
                                   (batchtasks.SUCCESS, batches.SUCCESS_WATCH * 2, "complete")):  # fmt: skip
        batch, (submitted,) = batches.create_batch([NOOP], owner=alice, on_success=on_success)
        run(submitted.job, ok=False)
        batches.retry_failed(batch.id, actor=alice)
        run(submitted.job, settle=False)  # its worker died before the settle
        Batch.objects.filter(pk=batch.id).update(updated_at=timezone.now() - age)
        batch.refresh_from_db()
        assert batches.state(batch) == shown, (on_success, age)


def test_an_open_batch_waits_for_close(alice):
    opened = batches.open_batch(owner=alice, on_complete=batchtasks.CALLBACK)
    (job,) = (s.job for s in batches.add_to_batch(opened.id, [NOOP], owner=alice))
    run(job)
    assert callbacks() == []  # open: more may come
    (later,) = (s.job for s in batches.add_to_batch(opened.id, [NOOP], owner=alice))
    batches.close_batch(opened.id)
    assert callbacks() == []
    run(later)
    assert len(callbacks()) == 1 and callbacks()[0].payload["total"] == 2


def test_a_closed_batch_takes_jobs_only_from_its_own_running_jobs(alice):
    batch, submitted = batches.create_batch([NOOP], owner=alice, on_complete=batchtasks.CALLBACK)
    (parent,) = (s.job for s in submitted)
    with pytest.raises(ActionRefused, match="closed"):
        batches.add_to_batch(batch.id, [NOOP], owner=alice)
    outsider = submit("diagnostics.noop", owner=alice).job
    with pytest.raises(ActionRefused, match="closed"):
        batches.add_to_batch(batch.id, [NOOP], owner=alice, from_job=outsider.id)
    parent.refresh_from_db()
    lifecycle.claim(parent.id, parent.rq_job_id, "w")
    children = [s.job for s in batches.add_to_batch(batch.id, [NOOP] * 2, owner=alice, from_job=parent.id)]
    done = lifecycle.complete(parent.id, parent.rq_job_id, None)
    outcomes.finished(done)
    assert callbacks() == []  # the fan-out's jobs are still queued
    run(children[0])
    assert callbacks() == []
    run(children[1])
    assert callbacks()[0].payload["total"] == 3
    with pytest.raises(ActionRefused, match="finished"):
        batches.add_to_batch(batch.id, [NOOP], owner=alice, from_job=parent.id)


def test_cancel_cancels_the_waiting_jobs_and_closes(alice):
    opened = batches.open_batch(owner=alice, on_complete=batchtasks.CALLBACK)
    jobs = [s.job for s in batches.add_to_batch(opened.id, [NOOP] * 3, owner=alice)]
    jobs[0].refresh_from_db()
    lifecycle.claim(jobs[0].id, jobs[0].rq_job_id, "w")  # running: it finishes
    assert batches.cancel(opened.id, actor=alice) == 2
    assert callbacks() == []
    with pytest.raises(BatchCanceled, match="canceled"):  # running, but it may not fan out any more
        batches.add_to_batch(opened.id, [NOOP], owner=alice, from_job=jobs[0].id)
    run_done = lifecycle.complete(jobs[0].id, jobs[0].rq_job_id, None)
    outcomes.finished(run_done)
    (done,) = callbacks()
    assert done.payload["counts"] == {"complete": 1, "canceled": 2}


@pytest.mark.redis  # the canceled step's follow-up would queue its dependent
def test_a_canceled_batch_never_queues_a_step_that_runs_after_a_failure(alice):
    """The cancel followed each canceled job up before canceling the next: the first's
    follow-up released its dependent (on_dependency_failure="run") to its queue, where a
    worker started it before the loop came to it (the dependency, submitted first, is
    canceled first)."""
    from datetime import timedelta

    from django.utils import timezone

    later = timezone.now() + timedelta(hours=1)
    batch, submitted = batches.create_batch(
        [
            JobSpec("diagnostics.noop", ref="a", run_at=later),
            JobSpec("diagnostics.noop", ref="b", depends_on=["a"], on_dependency_failure="run"),
        ],
        owner=alice,
    )  # fmt: skip
    step = submitted[1].job
    assert batches.cancel(batch.id, actor=alice) == 2
    moves = list(Job.objects.get(pk=step.id).events.values_list("to_status", flat=True))
    assert Status.QUEUED not in moves and Job.objects.get(pk=step.id).status == Status.CANCELED, moves


@pytest.mark.redis  # a requeue asks Redis whether the last run is still stopping
def test_retry_failed_requeues_each_job_once_even_when_it_fails_again_meanwhile(alice, monkeypatch):
    """Passes go on while one requeues something: a job that failed again at once (a fast
    worker) was requeued again by the next pass, without end while another stayed refused."""
    from jobs.core import actions

    batch, submitted = batches.create_batch([NOOP, JobSpec("diagnostics.noop", ref="p")], owner=alice)
    quick, refused_one = (s.job for s in submitted)
    run(quick, ok=False)
    run(refused_one, ok=False)
    requeue = actions.requeue
    requeued: list = []

    def fails_again_at_once(job_id, **kwargs):
        if job_id == refused_one.id:
            raise ActionRefused("its dependency is still broken")  # as a dependency outside the batch would
        job = requeue(job_id, **kwargs)
        requeued.append(job_id)
        run(job, ok=False)
        return job

    monkeypatch.setattr(actions, "requeue", fails_again_at_once)
    assert batches.retry_failed(batch.id, actor=alice) == 1
    assert requeued == [quick.id]


@pytest.mark.redis  # a requeue asks Redis whether the last run is still stopping
def test_retry_failed_brings_a_whole_chain_back_whatever_order_its_rows_are_in(alice):
    """Requeued oldest first, a step whose dependency was still canceled was refused and
    skipped, and on_success never came. Here "load" is the oldest row (as a step added
    from another submit, or a keyed bulk's rows before their order was kept, can be)."""
    from datetime import timedelta

    from django.db.models import F

    batch, submitted = batches.create_batch(
        [
            JobSpec("diagnostics.noop", ref="fetch", idempotency_key="etl-fetch"),
            JobSpec("diagnostics.noop", ref="transform", depends_on=["fetch"], idempotency_key="etl-transform"),
            JobSpec("diagnostics.noop", ref="load", depends_on=["transform"], idempotency_key="etl-load"),
        ],
        owner=alice,
        on_success=batchtasks.SUCCESS,
    )
    fetch, load = submitted[0].job, submitted[2].job
    Job.objects.filter(pk=load.id).update(created_at=F("created_at") - timedelta(seconds=10))
    run(fetch, ok=False)  # its dependents are canceled
    assert set(Job.objects.filter(batch=batch).values_list("status", flat=True)) == {Status.FAILED, Status.CANCELED}
    assert batches.retry_failed(batch.id, actor=alice) == 3
    for step in (s.job for s in submitted):
        run(step)
    assert len(callbacks(batchtasks.SUCCESS)) == 1


def test_retry_failed_lets_a_canceled_batchs_jobs_fan_out_again(alice):
    batch, submitted = batches.create_batch([NOOP, NOOP], owner=alice)
    running, waiting = (s.job for s in submitted)
    running.refresh_from_db()
    lifecycle.claim(running.id, running.rq_job_id, "w")
    batches.cancel(batch.id, actor=alice)
    with pytest.raises(BatchCanceled):
        batches.add_to_batch(batch.id, [NOOP], owner=alice, from_job=running.id)
    assert batches.retry_failed(batch.id, actor=alice) == 1  # the waiting one, canceled
    (added,) = batches.add_to_batch(batch.id, [NOOP], owner=alice, from_job=running.id)
    assert added.job.batch_id == batch.id
    with pytest.raises(ActionRefused, match="closed"):  # still closed to jobs from outside
        batches.add_to_batch(batch.id, [NOOP], owner=alice)


def test_the_reconciler_submits_a_callback_a_dead_worker_never_did(alice):
    batch, submitted = batches.create_batch([NOOP, NOOP], owner=alice, on_complete=batchtasks.CALLBACK)
    first, last = (s.job for s in submitted)
    run(first)
    run(last, settle=False)  # the worker died between the outcome and the callback
    assert callbacks() == []
    assert batches.unsettled() == [batch.id]
    report = reconcile.Report()
    reconcile._settle_batches(report)
    assert report.batches_settled == [str(batch.id)]
    assert len(callbacks()) == 1
    reconcile._settle_batches(report := reconcile.Report())
    assert report.batches_settled == [] and len(callbacks()) == 1
    outcomes.finished(Job.objects.get(pk=last.id))  # the dead worker's settle, late: nothing
    assert len(callbacks()) == 1


def test_unknown_callbacks_and_bad_batches_are_refused(alice):
    with pytest.raises(SubmitError) as refused:
        batches.create_batch([NOOP], owner=alice, on_complete="no.such.type")
    assert refused.value.field == "on_complete"
    assert not Batch.objects.exists()
    with pytest.raises(SubmitError):
        batches.create_batch([JobSpec("no.such.type")], owner=alice)
    assert not Batch.objects.exists() and not Job.objects.exists()  # one transaction


def test_the_context_manager_collects_submits_and_task_enqueues(alice):
    with batches.batch(owner=alice, description="block", on_complete=batchtasks.task_callback) as made:
        first = submit("diagnostics.noop", owner=alice).job
        more = submit_many([NOOP, NOOP], owner=alice)
        result = batchtasks.task_step.enqueue(1)
        outside = submit("diagnostics.noop", owner=alice, batch=None).job
        assert Batch.objects.get(pk=made.id).closed_at is None  # open while the block runs
    made.refresh_from_db()
    assert made.closed_at is not None and made.on_complete == batchtasks.task_callback.module_path
    members = set(Job.objects.filter(batch=made).values_list("id", flat=True))
    assert members == {first.id, more[0].job.id, more[1].job.id, Job.objects.get(pk=result.id).id}
    assert Job.objects.get(pk=outside.id).batch_id is None
    assert submit("diagnostics.noop", owner=alice).job.batch_id is None  # after the block: none
    for job in Job.objects.filter(batch=made):
        run(job)
    (done,) = callbacks(batchtasks.task_callback.module_path)
    assert done.payload["args"][0]["total"] == 4 and done.payload["kwargs"] == {}  # the task's one argument


def test_a_block_that_raises_cancels_its_batch(alice):
    with pytest.raises(RuntimeError), batches.batch(owner=alice) as made:
        submit("diagnostics.noop", owner=alice)
        raise RuntimeError("boom")
    assert set(Job.objects.filter(batch=made).values_list("status", flat=True)) == {Status.CANCELED}
    made.refresh_from_db()
    assert made.completed_at is not None


def test_progress_is_the_mean_of_the_jobs_and_counts_come_from_the_rows(alice):
    batch, submitted = batches.create_batch([NOOP] * 4, owner=alice)
    jobs = [s.job for s in submitted]
    run(jobs[0])
    jobs[1].refresh_from_db()
    lifecycle.claim(jobs[1].id, jobs[1].rq_job_id, "w")
    lifecycle.record_progress(jobs[1].id, jobs[1].rq_job_id, seq=jobs[1].seq + 1, percent=50, stage="", details={})
    measured = batches.batch_progress(batch.id)
    assert measured.total == 4 and measured.unfinished == 3
    assert measured.counts["complete"] == 1 and measured.counts["active"] == 1 and measured.counts["queued"] == 2
    assert measured.percent == 37.5  # (100 + 50 + 0 + 0) / 4


def test_pruning_takes_a_finished_batch_once_its_jobs_are_gone(alice, settings):
    from datetime import timedelta

    from django.utils import timezone

    from jobs.upkeep import pruning

    long_ago = timezone.now() - timedelta(days=settings.JOB_RETENTION_DAYS + 1)
    old, old_jobs = batches.create_batch([NOOP], owner=alice)
    recent, recent_jobs = batches.create_batch([NOOP], owner=alice)
    for submitted in (*old_jobs, *recent_jobs):
        run(submitted.job)
    kept_job, _ = batches.create_batch([NOOP], owner=alice)  # its job still queued
    Job.objects.filter(batch=old).update(finished_at=long_ago)
    Batch.objects.filter(pk__in=[old.id, kept_job.id]).update(completed_at=long_ago)
    result = pruning.prune_jobs(None)
    assert result == {"deleted_jobs": 1, "deleted_batches": 1}
    assert set(Batch.objects.values_list("id", flat=True)) == {recent.id, kept_job.id}


def test_unsettled_batches_are_found_in_one_query(alice, django_assert_num_queries):
    done, done_jobs = batches.create_batch([NOOP], owner=alice, on_complete=batchtasks.CALLBACK)
    busy, _ = batches.create_batch([NOOP], owner=alice, on_complete=batchtasks.CALLBACK)
    run(done_jobs[0].job, settle=False)
    with django_assert_num_queries(1):
        assert batches.unsettled() == [done.id]
    assert busy.id not in batches.unsettled()


@pytest.mark.redis  # a requeue asks Redis whether the last run is still stopping
def test_the_reconciler_submits_a_late_on_success_a_dead_worker_never_did(alice):
    batch, submitted = batches.create_batch(
        [NOOP, NOOP], owner=alice, on_complete=batchtasks.CALLBACK, on_success=batchtasks.SUCCESS
    )
    first, second = (s.job for s in submitted)
    run(first)
    run(second, ok=False)
    assert batches.retry_failed(batch.id) == 1
    run(second, settle=False)  # every job complete now, and the worker died before settling
    assert callbacks(batchtasks.SUCCESS) == []
    report = reconcile.Report()
    reconcile._settle_batches(report)
    assert report.batches_settled == [str(batch.id)]
    assert len(callbacks(batchtasks.SUCCESS)) == 1 and len(callbacks()) == 1
    reconcile._settle_batches(report := reconcile.Report())
    assert report.batches_settled == [] and len(callbacks(batchtasks.SUCCESS)) == 1


def test_jobs_submitted_without_an_owner_into_a_users_batch_are_that_users(alice):
    """``with jobs.batch(owner=alice)`` around code that names no owner (a task's
    enqueue, as the README writes it): the jobs were nobody's, and alice's batch listed
    two jobs she could not see (an adversarial run)."""
    from jobs.core import access

    with batches.batch(owner=alice, description="block") as made:
        first = submit("diagnostics.noop").job
        result = batchtasks.task_step.enqueue(1)
    members = Job.objects.filter(batch=made)
    assert {job.owner_id for job in members} == {alice.pk}
    opened = batches.open_batch(owner=alice)  # named by its id (a review)
    by_id = submit("diagnostics.noop", batch=opened.pk).job
    (added,) = (s.job for s in batches.add_to_batch(opened.pk, [NOOP]))
    assert by_id.owner_id == added.owner_id == alice.pk
    seen = {str(pk) for pk in access.visible(Job.objects.all(), alice).values_list("id", flat=True)}
    assert seen >= {str(first.id), str(result.id)}


def test_a_fan_out_from_a_job_of_no_batch_fails_without_a_retry():
    """``ctx.add_to_batch`` outside a batch raised a plain refusal, taken for a temporary
    error: the job was retried until its attempts ran out (an adversarial run)."""
    from jobs.core import lifecycle, registry
    from jobs.execution import runner

    registry.job_type("t.fans_out_alone", max_attempts=3)(lambda ctx: ctx.add_to_batch([NOOP]))
    try:
        job = submit("t.fans_out_alone", batch=None).job
        claimed = lifecycle.claim(job.id, job.rq_job_id, "w1")
        outcome = runner.run_handler(claimed, job.rq_job_id)
    finally:
        registry.unregister("t.fans_out_alone")
    assert outcome["category"] == "user_fixable" and "in no batch" in outcome["message"], outcome


def test_a_canceled_batchs_running_job_that_fails_temporarily_is_not_retried(alice):
    """The cancel lets running jobs finish, not start again: one that failed with
    attempts left went to ``retrying`` and ran after the batch was canceled (an
    adversarial run). It ends dead-lettered, saying why it was not retried."""
    from jobs.core import lifecycle, outcomes

    made, _ = batches.create_batch([NOOP, NOOP], owner=alice)
    running, waiting = Job.objects.filter(batch=made).order_by("created_at", "id")
    claimed = lifecycle.claim(running.id, running.rq_job_id, "w1")
    assert claimed.max_attempts > 1
    batches.cancel(made.pk)
    ended = outcomes.temporary_failure(claimed, claimed.rq_job_id, message="boom")
    assert ended.status == Status.DEAD_LETTER and "its batch was canceled" in ended.error_message
    assert Job.objects.get(pk=waiting.id).status == Status.CANCELED


def test_a_batch_whose_callback_type_was_removed_still_finishes(alice, caplog):
    """The callback's type renamed or removed after the batch was made: its submit was
    refused at every settle, rolled the settle back, and the batch never finished."""
    from jobs.core import lifecycle, outcomes, registry

    registry.job_type("t.soon_removed")(lambda ctx: None)
    try:
        made, submitted = batches.create_batch([NOOP], owner=alice, on_complete="t.soon_removed")
    finally:
        registry.unregister("t.soon_removed")
    (job,) = (s.job for s in submitted)
    claimed = lifecycle.claim(job.id, job.rq_job_id, "w1")
    outcomes.finished(lifecycle.complete(claimed.id, claimed.rq_job_id, None))
    made.refresh_from_db()
    assert made.completed_at is not None and made.complete_job is None
    assert "could not be submitted" in caplog.text
