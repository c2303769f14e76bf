"""An inline run's claim is made on the worker's recorder thread, queued behind the last
run's record, while RQ prepares the run (jobs.execution.worker: ``_claim_behind``). A
real worker in this process (``run_worker``: ``JobdeskSimpleWorker``) drains the queues."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import DatabaseError
from redis.exceptions import RedisError

from jobs.core import queueing, registry
from jobs.core.models import Job, Status
from jobs.core.submit import submit
from jobs.execution import runner
from jobs.execution.worker import JobdeskSimpleWorker

pytestmark = pytest.mark.django_db(transaction=True)

SLOW_RECORD_SECONDS = 3.0


@pytest.fixture
def types():
    """Throwaway job types: one whose record is slow (its after-record listener), and
    the test's own."""
    made: list[str] = []

    def make(name: str, handler, **options) -> str:
        registry.job_type(name, **options)(handler)
        made.append(name)
        return name

    make("tests.slow_record", lambda ctx: None, after_record=lambda job: time.sleep(SLOW_RECORD_SECONDS))
    yield make
    for name in made:
        registry.unregister(name)


def statuses(*jobs: Job) -> list[tuple[str, int]]:
    found = Job.objects.filter(pk__in=[j.pk for j in jobs]).order_by("created_at")
    return [(job.status, job.attempts) for job in found]


def test_a_run_queued_behind_a_slow_record_keeps_its_lease(run_worker, types, settings):
    """Its lease runs from its claim, not from when it was asked for: a record longer
    than the lease's stop time must not cost the next run its lease."""
    settings.JOB_LEASE_SECONDS, settings.JOB_LEASE_RENEW_SECONDS, settings.JOB_LEASE_STOP_SECONDS = 6.0, 1.0, 2.0

    def two_seconds(ctx) -> None:
        for _ in range(20):
            time.sleep(0.1)  # the work itself: the lease must be renewed meanwhile

    types("tests.inline_two_seconds", two_seconds, fork=False)
    first = submit("tests.slow_record").job
    second = submit("tests.inline_two_seconds").job
    run_worker()
    assert statuses(first, second) == [(Status.COMPLETE, 1), (Status.COMPLETE, 1)]


def test_a_run_queued_behind_a_slow_record_is_not_timed_out_by_the_wait(run_worker, types, monkeypatch):
    """The wait for the claim is not the job's time: RQ's death penalty starts after it."""
    monkeypatch.setattr(queueing, "_BOOKKEEPING_GRACE", 1)  # the penalty: the type's timeout + 1 s
    types("tests.quick", lambda ctx: {"ran": True}, timeout=1)
    first = submit("tests.slow_record").job
    second = submit("tests.quick").job
    run_worker()
    assert statuses(first, second) == [(Status.COMPLETE, 1), (Status.COMPLETE, 1)]


def test_a_claim_that_fails_on_the_recorder_thread_is_made_again_by_the_run(run_worker, monkeypatch):
    real_claim = runner.claim

    def failing_on_the_recorder(*args, **kwargs):
        if threading.current_thread().name == "jobdesk-recorder":
            raise DatabaseError("connection lost")
        return real_claim(*args, **kwargs)

    monkeypatch.setattr(runner, "claim", failing_on_the_recorder)
    job = submit("diagnostics.noop").job
    run_worker()
    assert statuses(job) == [(Status.COMPLETE, 1)]


def test_a_claim_that_committed_but_whose_answer_was_lost_is_taken_up(run_worker, monkeypatch):
    """The connection drops after the claim's commit: the row is active in this worker's
    name, and a claim made again is refused. The worker adopts the run (it ran once)
    instead of leaving it to its lease and the reconciler (a second attempt)."""
    real_claim = runner.claim

    def committed_then_lost(*args, **kwargs):
        claimed = real_claim(*args, **kwargs)
        if threading.current_thread().name == "jobdesk-recorder":
            raise DatabaseError("server closed the connection unexpectedly")
        return claimed

    monkeypatch.setattr(runner, "claim", committed_then_lost)
    job = submit("diagnostics.noop").job
    run_worker()
    assert statuses(job) == [(Status.COMPLETE, 1)]


def test_a_claim_under_way_when_rq_fails_before_the_run_is_recorded_not_left_claimed(run_worker, monkeypatch):
    real_prepare = JobdeskSimpleWorker.prepare_execution
    calls: list[str] = []

    def failing_once(self, job):
        calls.append(job.id)
        if len(calls) == 1:
            raise RedisError("Redis went away")
        return real_prepare(self, job)

    monkeypatch.setattr(JobdeskSimpleWorker, "prepare_execution", failing_once)
    job = submit("diagnostics.noop").job
    run_worker()  # RQ's loop logs the error and stops the worker, as it did before
    assert calls == [job.rq_job_id]
    job.refresh_from_db()
    assert job.status == Status.RETRYING and job.attempts == 1  # its claim was taken and its outcome recorded
    assert job.lease_expires_at is None
    assert runner.preclaimed == {}


def test_a_dispatch_whose_claim_waits_behind_a_slow_record_keeps_beating(run_worker, types, monkeypatch):
    """RQ's execution of the next dispatch is heartbeat while its claim waits: the
    reconciler re-dispatches a queued row whose dispatch was taken up and not beaten for
    a while (its worker died before the claim)."""
    from jobs.execution import worker

    monkeypatch.setattr(worker, "_CLAIM_WAIT_BEAT", 0.2)
    beats: list[tuple[str, float]] = []
    real_beat = JobdeskSimpleWorker._beat_while_claiming

    def counted(self) -> None:
        real_beat(self)
        beats.append((self._job_in_hand.id, float(self.connection.hget(self.execution.key, "last_heartbeat"))))

    monkeypatch.setattr(JobdeskSimpleWorker, "_beat_while_claiming", counted)
    first = submit("tests.slow_record").job
    second = submit("diagnostics.noop").job
    run_worker()
    assert statuses(first, second) == [(Status.COMPLETE, 1), (Status.COMPLETE, 1)]
    assert len(beats) >= 5 and {dispatch for dispatch, _ in beats} == {Job.objects.get(pk=second.id).rq_job_id}
    times = [at for _, at in beats]
    assert times == sorted(times) and times[-1] - times[0] >= 0.5, "RQ's execution beat while the claim waited"
