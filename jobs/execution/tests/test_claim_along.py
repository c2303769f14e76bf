"""A simple worker's next claim goes in its last run's record's statement (jobs.core.fastpath:
``riding``; jobs.core.lifecycle: ``claim_along``): one round trip to PostgreSQL where the
next run waited for two. The record still comes first, the claim's own call takes the
answer made ahead, and the two moves are made both or neither."""

from __future__ import annotations

import pytest
from django.db import DataError, OperationalError, connection

from jobs.core import fastpath as fastpath_module
from jobs.core import flow, lifecycle, registry
from jobs.core.errors import TransitionError
from jobs.core.models import Job, JobEvent, Status
from jobs.core.submit import submit
from jobs.execution import runner

pytestmark = pytest.mark.django_db(transaction=True)  # the one-statement path runs outside a transaction


@pytest.fixture(autouse=True)
def one_statement_path_only():
    if connection.vendor != "postgresql":
        pytest.skip("the one-statement path is PostgreSQL's")


@pytest.fixture
def statements(monkeypatch) -> list[str]:
    """The one-statement moves' statements, as sent (not submits' inserts)."""
    sent: list[str] = []
    execute = fastpath_module._execute

    def counted(db, sql, params, **kwargs):
        if "moved" in sql:
            sent.append(sql)
        return execute(db, sql, params, **kwargs)

    monkeypatch.setattr(fastpath_module, "_execute", counted)
    return sent


@pytest.fixture
def types():
    """Throwaway job types."""
    made: list[str] = []

    def make(name: str, handler, **options) -> str:
        registry.job_type(name, **options)(handler)
        made.append(name)
        return name

    yield make
    for name in made:
        registry.unregister(name)


def running_and_next() -> tuple[Job, Job]:
    """A job this worker runs (claimed) and the next one, queued."""
    running, following = submit("diagnostics.noop").job, submit("diagnostics.noop").job
    lifecycle.claim(running.id, running.rq_job_id, "w")
    return running, following


def along(running: Job, following: Job):
    """The following job's claim, to go with the running one's record."""
    return lifecycle.claim_along(following.id, following.rq_job_id, "w", record=(running.id, running.rq_job_id))


def status_of(job: Job) -> str:
    return Job.objects.values_list("status", flat=True).get(pk=job.pk)


def test_a_claim_taken_along_goes_in_the_record_s_statement_and_is_not_made_again(statements):
    running, following = running_and_next()
    statements.clear()  # the first run's claim
    with along(running, following):
        done = lifecycle.complete(running.id, running.rq_job_id, None)
    assert len(statements) == 1 and "r_moved" in statements[0]  # both moves, one statement
    assert done.status == Status.COMPLETE and status_of(following) == Status.ACTIVE  # made already
    claimed = lifecycle.claim(following.id, following.rq_job_id, "w")
    assert len(statements) == 1  # its answer, not a statement of its own
    assert claimed.pk == following.pk and claimed.status == Status.ACTIVE and claimed.attempts == 1
    assert claimed.started_at >= done.finished_at  # the record first: runs of one worker never overlap
    moves = JobEvent.objects.filter(job=following, kind=JobEvent.Kind.TRANSITION).values_list("to_status", flat=True)
    assert list(moves.order_by("seq")) == [Status.QUEUED, Status.ACTIVE]


def test_a_claim_taken_along_that_is_refused_is_refused_at_its_own_call(statements):
    running, following = running_and_next()
    lifecycle.cancel(following.id, actor_label="t")
    statements.clear()
    with along(running, following):
        assert lifecycle.complete(running.id, running.rq_job_id, None).status == Status.COMPLETE
    with pytest.raises(TransitionError):
        lifecycle.claim(following.id, following.rq_job_id, "w")
    assert len(statements) == 1  # refused in the shared statement: not asked again
    assert status_of(following) == Status.CANCELED


def test_a_refused_record_still_takes_its_claim_along(statements):
    running, following = running_and_next()
    lifecycle.cancel(running.id, actor_label="t")
    statements.clear()
    with along(running, following), pytest.raises(TransitionError):
        lifecycle.complete(running.id, running.rq_job_id, None)
    assert len(statements) == 1 and status_of(following) == Status.ACTIVE
    assert lifecycle.claim(following.id, following.rq_job_id, "w").status == Status.ACTIVE
    assert len(statements) == 1


def test_a_shared_statement_the_server_refuses_makes_neither_move_and_the_claim_makes_its_own(statements, monkeypatch):
    pair = fastpath_module._pair_sql

    def failing(first, second) -> str:  # the server fails the statement after both moves were made in it
        return pair(first, second) + " WHERE 1 / (SELECT count(*) - count(*) FROM r_moved) = 1"

    monkeypatch.setattr(fastpath_module, "_pair_sql", failing)
    running, following = running_and_next()
    with along(running, following), pytest.raises(DataError):
        lifecycle.complete(running.id, running.rq_job_id, None)
    assert status_of(running) == Status.ACTIVE and status_of(following) == Status.QUEUED  # neither
    assert lifecycle.claim(following.id, following.rq_job_id, "w").status == Status.ACTIVE  # made by its call


def test_a_shared_statement_whose_answer_is_lost_tells_the_claim_so(statements, monkeypatch):
    execute = fastpath_module._execute

    def connection_lost(db, sql, params, **kwargs):
        if "r_moved" in sql:
            raise OperationalError("server closed the connection unexpectedly")
        return execute(db, sql, params, **kwargs)

    monkeypatch.setattr(fastpath_module, "_execute", connection_lost)
    running, following = running_and_next()
    with along(running, following), pytest.raises(OperationalError):
        lifecycle.complete(running.id, running.rq_job_id, None)
    with pytest.raises(OperationalError):  # maybe made: a worker looks (worker._adopted), as after a lost answer
        lifecycle.claim(following.id, following.rq_job_id, "w")
    assert lifecycle.claim(following.id, following.rq_job_id, "w").status == Status.ACTIVE  # asked afresh


def test_nothing_made_inside_leaves_the_claim_to_its_own_call(statements):
    running, following = running_and_next()
    statements.clear()
    with along(running, following):
        pass  # e.g. the record failed its run through the ORM's path
    assert status_of(following) == Status.QUEUED and not lifecycle.claim_made_along(following.id, following.rq_job_id)
    assert lifecycle.claim(following.id, following.rq_job_id, "w").status == Status.ACTIVE
    assert len(statements) == 1 and "r_moved" not in statements[0]


def test_only_the_named_record_takes_the_claim_along(statements):
    running, following = running_and_next()
    other = submit("diagnostics.noop").job
    statements.clear()
    with along(running, following):
        lifecycle.claim(other.id, other.rq_job_id, "w")  # another move on the way: goes alone
        assert status_of(following) == Status.QUEUED
        lifecycle.complete(running.id, running.rq_job_id, None)
    assert ["r_moved" in sql for sql in statements] == [False, True]
    assert lifecycle.claim_made_along(following.id, following.rq_job_id)


def test_no_claim_rides_along_a_move_of_its_own_job(statements):
    running, _following = running_and_next()
    statements.clear()
    with lifecycle.claim_along(running.id, "another-dispatch", "w", record=(running.id, running.rq_job_id)):
        lifecycle.complete(running.id, running.rq_job_id, None)
    assert len(statements) == 1 and "r_moved" not in statements[0]


def test_an_answer_not_taken_by_the_next_move_is_dropped(statements):
    running, following = running_and_next()
    other = submit("diagnostics.noop").job
    with along(running, following):
        lifecycle.complete(running.id, running.rq_job_id, None)
    lifecycle.claim(other.id, other.rq_job_id, "w")  # not the claim's own call
    assert not lifecycle.claim_made_along(following.id, following.rq_job_id)
    with pytest.raises(TransitionError):  # asked afresh (it was made: refused), never a stale answer taken
        lifecycle.claim(following.id, following.rq_job_id, "w")


def test_a_limited_type_s_claim_waits_for_the_record_and_its_levers(statements):
    running, following = running_and_next()
    flow.set_limits("diagnostics.noop", concurrency=1, actor_label="t")
    flow.forget_rules()
    recorded = Job.objects.get(pk=running.pk)
    with runner.claim_along(
        str(following.id), following.rq_job_id, "w", ("diagnostics.noop", "normal"), recorded=recorded
    ):
        lifecycle.complete(running.id, running.rq_job_id, None)
    assert "r_moved" not in statements[-1] and status_of(following) == Status.QUEUED
    assert flow.claim(following.id, following.rq_job_id, "w").status == Status.ACTIVE  # the record first: room


def test_a_claim_made_along_is_taken_as_made_though_a_lever_came_since(statements):
    running, following = running_and_next()
    with along(running, following):
        lifecycle.complete(running.id, running.rq_job_id, None)
    flow.set_limits("diagnostics.noop", concurrency=1, actor_label="t")  # its own run fills the one slot
    flow.forget_rules()
    claimed = flow.claim(following.id, following.rq_job_id, "w", known=("diagnostics.noop", "normal"))
    assert claimed is not None and status_of(following) == Status.ACTIVE  # not left active, held by nobody


def test_no_claim_goes_along_a_record_that_runs_the_team_s_code(types):
    hooked = types("tests.hooked", lambda ctx: None, on_success=[lambda job: None])
    listened = types("tests.listened", lambda ctx: None, after_record=lambda job: None)
    plain = submit("diagnostics.noop").job
    for job in (submit(hooked).job, submit(listened).job):
        assert not runner._quick_to_follow_up(Job.objects.get(pk=job.pk))
    assert runner._quick_to_follow_up(Job.objects.get(pk=plain.pk))


def test_a_simple_worker_claims_along_its_records_and_every_run_is_recorded(run_worker, monkeypatch):
    ridden: list[str] = []
    move_with_rider = fastpath_module._move_with_rider

    def counted(db, shape, params, rider):
        ridden.append(str(rider.job_id))
        return move_with_rider(db, shape, params, rider)

    monkeypatch.setattr(fastpath_module, "_move_with_rider", counted)
    paired: list[str] = []
    pair_sql = fastpath_module._pair_sql
    monkeypatch.setattr(fastpath_module, "_pair_sql", lambda *shapes: paired.append(pair_sql(*shapes)) or paired[-1])
    jobs = [submit("diagnostics.noop").job for _ in range(6)]
    run_worker()
    assert ridden, "no claim went along a record"
    from psycopg._queries import MAX_CACHED_STATEMENT_LENGTH

    # Short enough for psycopg to keep what it parsed (over its limit, it parses it at every run).
    longest = max(len(sql.encode()) for sql in paired)
    print(f"the shared statement: {longest} bytes")
    assert longest <= MAX_CACHED_STATEMENT_LENGTH
    rows = sorted(Job.objects.filter(pk__in=[j.pk for j in jobs]), key=lambda j: j.started_at)
    assert all(j.status == Status.COMPLETE and j.attempts == 1 for j in rows)
    for before, after in zip(rows, rows[1:], strict=False):
        assert before.finished_at <= after.started_at  # one worker's runs never overlap
