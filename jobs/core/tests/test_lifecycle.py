"""The lifecycle against its table: every move from every status does what
``jobs.core.transitions`` says, and nothing else writes ``Job.status``.

Fast layer: the database only, in a rolled-back transaction (no commit, so no
follow-up reaches Redis)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from conftest import past_job
from jobs.core import lifecycle, transitions
from jobs.core.errors import TransitionError
from jobs.core.models import Job, Status, StatusWriteRefused

pytestmark = pytest.mark.django_db

DISPATCH = "d-1"


def _call(name: str, job: Job) -> Job:
    """Ask the lifecycle for the move ``name`` on ``job``, as its callers do."""
    later = timezone.now() + timedelta(hours=1)
    calls = {
        "claim": lambda: lifecycle.claim(job.id, DISPATCH, "w"),
        "complete": lambda: lifecycle.complete(job.id, DISPATCH, {"ok": 1}),
        "fail": lambda: lifecycle.fail(job.id, DISPATCH, category="user_fixable", message="no"),
        "dead_letter": lambda: lifecycle.dead_letter(job.id, DISPATCH, message="gone"),
        "retry_later": lambda: lifecycle.retry_later(job.id, DISPATCH, delay=5, message="later"),
        "defer": lambda: lifecycle.defer(job.id, DISPATCH, until=later),
        "cancel": lambda: lifecycle.cancel(job.id),
        "requeue": lambda: lifecycle.requeue(job.id),
        "promote": lambda: lifecycle.promote(job.id),
        "run_now": lambda: lifecycle.run_now(job.id),
        "release": lambda: lifecycle.release(job.id),
        "reschedule": lambda: lifecycle.reschedule(job.id, dispatch=DISPATCH, until=later),
        "redispatch": lambda: lifecycle.redispatch(job.id, dispatch=DISPATCH, actor_label="t", reason="test"),
        "hold": lambda: lifecycle.hold(job.id, DISPATCH, hold="concurrency", reason="test"),
        "unhold": lambda: lifecycle.unhold(job.id, reason="test"),
    }
    return calls[name]()


MOVES = [name for name in transitions.MOVES if name != "submit"]


def test_every_move_is_callable():
    assert set(MOVES) == {"claim", "complete", "fail", "dead_letter", "retry_later", "defer", "cancel", "requeue",
                          "promote", "run_now", "release", "reschedule", "redispatch", "hold", "unhold"}  # fmt: skip


@pytest.mark.parametrize("status", Status.values)
@pytest.mark.parametrize("name", MOVES)
def test_each_move_from_each_status_follows_the_table(name, status):
    lifecycle.USE_FAST_PATH = False  # the ORM path here; the one-statement path has its own test
    try:
        held = "concurrency" if name == "unhold" else ""  # only a held job can be released
        job = past_job(type="diagnostics.noop", status=status, rq_job_id=DISPATCH, seq=3, hold=held)
        move = transitions.move(name)
        if not move.allows(status):
            with pytest.raises(TransitionError):
                _call(name, job)
            assert Job.objects.get(pk=job.id).status == status and Job.objects.get(pk=job.id).seq == 3
            return
        moved = _call(name, job)
        stored = Job.objects.get(pk=job.id)
        assert stored.status == moved.status and stored.status in move.targets, (name, status, stored.status)
        assert stored.seq == 4, "one event per move"
        event = stored.events.get(seq=4)
        assert (event.from_status, event.to_status) == (status, stored.status)
    finally:
        lifecycle.USE_FAST_PATH = True


def test_a_worker_move_needs_the_current_dispatch():
    job = past_job(type="diagnostics.noop", status=Status.QUEUED, rq_job_id="current")
    with pytest.raises(TransitionError):
        lifecycle.claim(job.id, "stale", "w")
    assert lifecycle.claim(job.id, "current", "w").status == Status.ACTIVE
    assert lifecycle.still_owns(job.id, "current") and not lifecycle.still_owns(job.id, "stale")


def test_the_console_offers_exactly_the_moves_the_table_allows():
    from jobs.console.views import MOVE_OF

    offered = {status: {verb for verb, move in MOVE_OF.items() if transitions.allowed(move, status)}
               for status in Status.values}  # fmt: skip
    assert offered[Status.FAILED] == {"requeue"}
    assert offered[Status.RETRYING] == {"cancel", "promote", "run-now"}
    assert offered[Status.COMPLETE] == set()


def test_a_status_write_outside_the_lifecycle_is_refused():
    job = past_job(type="diagnostics.noop", status=Status.QUEUED)
    writes = [
        lambda: Job.objects.filter(pk=job.id).update(status=Status.COMPLETE),
        lambda: Job.objects.bulk_update([Job(id=job.id, status=Status.COMPLETE)], ["status"]),
        lambda: Job.objects.create(type="diagnostics.noop", status=Status.ACTIVE),
        lambda: Job.objects.bulk_create([Job(type="diagnostics.noop")]),
        lambda: Job.objects.get(pk=job.id).save(),
        lambda: Job._base_manager.filter(pk=job.id).update(status=Status.COMPLETE),
    ]
    for write in writes:
        with pytest.raises(StatusWriteRefused):
            write()
    assert Job.objects.get(pk=job.id).status == Status.QUEUED and Job.objects.count() == 1
    # Other fields are anybody's to write (the lifecycle owns the status, not the row).
    assert Job.objects.filter(pk=job.id).update(hooks_done=True) == 1


def test_backoff_stops_growing_at_its_cap():
    import random

    from jobs.core.retry import backoff_delay

    assert backoff_delay(1, 30, jitter=0) == 30
    assert backoff_delay(3, 30, jitter=0, cap=86400) == 120
    assert 86400 <= backoff_delay(34, 30, rng=random.Random(1), cap=86400) <= 86400 * 1.1  # the jitter too
    assert backoff_delay(100, 30, jitter=0, cap=86400) == 86400  # 30·2^99 s: past any date


@pytest.mark.django_db
def test_a_run_failing_late_in_many_attempts_is_retried_within_the_cap(settings):
    """The 34th failure of a 100-attempt job raised OverflowError writing its retry: the
    job stayed active, and the reconciler failed the same way every minute."""
    from jobs.core import outcomes

    job = past_job(type="diagnostics.noop", status=Status.ACTIVE, rq_job_id="d-34", attempts=34, max_attempts=100)
    moved = outcomes.temporary_failure(job, "d-34", message="flaky")
    assert moved.status == Status.RETRYING
    assert moved.scheduled_for <= timezone.now() + timedelta(seconds=1.1 * settings.RETRY_MAX_DELAY)  # and the jitter


def test_a_retry_waits_for_a_failed_dependency_unless_the_job_runs_after_failures():
    """A dependent that asked to run whatever its dependency ended in is retried on its
    own; one that is canceled by a failed dependency must have that one retried first."""
    from jobs.core import actions
    from jobs.core.errors import ActionRefused

    failed = past_job(type="diagnostics.noop", status=Status.FAILED)
    runs_anyway = past_job(type="diagnostics.noop", status=Status.FAILED, on_dependency_failure="run")
    canceled_by_it = past_job(type="diagnostics.noop", status=Status.CANCELED)
    for dependent in (runs_anyway, canceled_by_it):
        dependent.depends_on.add(failed)

    assert actions.requeue(runs_anyway.id).status == Status.QUEUED
    with pytest.raises(ActionRefused, match=f"its dependency {failed.id} is failed"):
        actions.requeue(canceled_by_it.id)
