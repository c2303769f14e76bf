"""The RQ entry point end to end with a real RQ worker, real Redis and the real database."""

from __future__ import annotations

import contextlib
import os
from datetime import datetime

import django_rq
import pytest

from jobs.core import queueing, registry
from jobs.core.errors import TemporaryError, TransitionError
from jobs.core.models import Job, JobEvent, Status
from jobs.core.submit import submit

pytestmark = pytest.mark.django_db(transaction=True)


def refreshed(job: Job) -> Job:
    job.refresh_from_db()
    return job


def transitions(job: Job) -> list[tuple[str, str]]:
    return list(
        JobEvent.objects.filter(job=job, kind=JobEvent.Kind.TRANSITION)
        .order_by("created_at", "id")
        .values_list("from_status", "to_status")
    )


def one_statement_path_only() -> None:
    """Skip the test but on PostgreSQL, whose moves are one statement (jobs.core.fastpath)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("the one-statement path is PostgreSQL's")


@contextlib.contextmanager
def job_changed(monkeypatch, name: str, value):
    """Job with ``name`` set to ``value`` for the block; the moved row's builder, which
    looks at Job once, looks again (before and after)."""
    from jobs.core import fastpath

    monkeypatch.setattr(Job, name, value)
    fastpath._built_as_any_model.cache_clear()
    try:
        yield
    finally:
        monkeypatch.undo()
        fastpath._built_as_any_model.cache_clear()


def test_queued_job_runs_to_complete(run_worker):
    job = submit("diagnostics.sleep", {"seconds": 0.05, "steps": 2, "result": "hi"}).job
    assert job.status == Status.QUEUED
    assert django_rq.get_queue("normal").job_ids == [str(job.id)]  # Job id is the RQ job id

    run_worker()

    job = refreshed(job)
    assert job.status == Status.COMPLETE
    assert job.attempts == 1
    assert job.progress == 100
    assert job.result["result"] == "hi"
    assert job.started_at <= job.finished_at
    assert transitions(job) == [("", "queued"), ("queued", "active"), ("active", "complete")]
    # submit, claim, 2 progress writes (first report + final flush), complete
    assert job.seq == 5
    assert JobEvent.objects.filter(job=job).latest("seq").seq == job.seq


def test_progress_is_written_and_throttled(run_worker, settings):
    settings.PROGRESS_WRITE_INTERVAL = 3600  # only the first report and the final flush may write
    seen: list[int] = []

    @registry.job_type("tests.chatty")
    def chatty(ctx):
        for i in range(1000):
            ctx.progress(i / 10, "counting", i=i)
        seen.append(Job.objects.get(pk=ctx.job.id).seq)
        return {}

    try:
        job = submit("tests.chatty").job
        run_worker()
    finally:
        registry.unregister("tests.chatty")
    job = refreshed(job)
    assert job.status == Status.COMPLETE
    # submit (1) + claim (2) + one throttled progress write (3): not 1000 writes.
    assert seen == [3]


def test_progress_with_half_a_surrogate_pair_is_stored_with_it_replaced(run_worker):
    """PostgreSQL stores no lone surrogate (text or jsonb): the progress write failed
    every time it was tried (a review)."""

    @registry.job_type("tests.odd_text")
    def odd_text(ctx):
        ctx.progress(50, "half \ud800 pair", name="a\ud800b")
        ctx.flush()
        seen = Job.objects.get(pk=ctx.job.id)
        return {"stage": seen.stage, "details": seen.progress_details}

    try:
        job = submit("tests.odd_text").job
        run_worker()
    finally:
        registry.unregister("tests.odd_text")
    job = refreshed(job)
    assert job.status == Status.COMPLETE, job.error_message
    assert job.result == {"stage": "half ? pair", "details": {"name": "a?b"}}


def test_temporary_failures_retry_with_backoff_then_dead_letter(run_worker, scheduler_tick, settings):
    from conftest import wait_for

    settings.RETRY_BASE_DELAY = 0.2
    job = submit("diagnostics.sleep", {"seconds": 0, "steps": 1, "fail_mode": "temporary"}, max_attempts=3).job

    def drive():
        scheduler_tick()
        run_worker()
        return refreshed(job).status in (Status.DEAD_LETTER, Status.COMPLETE)

    wait_for(drive, timeout=20, what="dead letter")
    job = refreshed(job)
    assert job.status == Status.DEAD_LETTER
    assert job.attempts == 3
    assert job.error_category == "temporary"
    assert "simulated temporary failure" in job.error_message
    retries = JobEvent.objects.filter(job=job, to_status=Status.RETRYING).order_by("created_at")
    delays = [e.details["delay_seconds"] for e in retries]
    assert len(delays) == 2
    # base·2^(n-1) plus up to 10% jitter: 0.2..0.22 then 0.4..0.44
    assert 0.2 <= delays[0] <= 0.22 and 0.4 <= delays[1] <= 0.44
    assert [t for _f, t in transitions(job)] == [
        "queued", "active", "retrying", "active", "retrying", "active", "dead_letter",
    ]  # fmt: skip


def test_temporary_failure_then_success(run_worker, scheduler_tick, settings):
    from conftest import wait_for

    settings.RETRY_BASE_DELAY = 0.05
    job = submit("diagnostics.sleep", {"seconds": 0, "fail_mode": "temporary", "fail_times": 1}).job

    def drive():
        scheduler_tick()
        run_worker()
        return refreshed(job).status == Status.COMPLETE

    wait_for(drive, timeout=20, what="complete after one retry")
    assert refreshed(job).attempts == 2
    assert refreshed(job).rq_job_id.startswith(f"{job.id}_")  # a fresh dispatch for the retry


def test_retry_is_not_run_before_its_backoff(run_worker, settings):
    settings.RETRY_BASE_DELAY = 3600
    job = submit("diagnostics.sleep", {"seconds": 0, "fail_mode": "temporary"}).job
    run_worker()
    assert refreshed(job).status == Status.RETRYING
    # The original RQ entry pushed again is stale: it must not run the retry early.
    queueing.queue("normal").enqueue(queueing.ENTRY_POINT, str(job.id), str(job.id))
    run_worker()
    job = refreshed(job)
    assert job.status == Status.RETRYING and job.attempts == 1
    assert queueing.scheduler().count() == 1


@pytest.mark.parametrize("mode", ["user_fixable", "admin_required"])
def test_permanent_errors_fail_without_retry(run_worker, mode):
    job = submit("diagnostics.sleep", {"seconds": 0, "fail_mode": mode}).job
    run_worker()
    job = refreshed(job)
    assert job.status == Status.FAILED
    assert job.attempts == 1
    assert job.error_category == mode
    assert job.recovery_actions
    assert "Traceback" in job.error_details
    assert queueing.scheduler().count() == 0


def test_crash_is_treated_as_temporary(run_worker, settings):
    settings.RETRY_BASE_DELAY = 3600
    job = submit("diagnostics.sleep", {"seconds": 0, "fail_mode": "crash"}).job
    run_worker()
    job = refreshed(job)
    assert job.status == Status.RETRYING
    assert job.error_category == "temporary"
    assert "RuntimeError: diagnostics: simulated crash" in job.error_message
    assert "RuntimeError" in job.error_details


def test_same_job_pushed_twice_runs_its_handler_once(run_worker, redis_conn):
    @registry.job_type("tests.count_runs")
    def count_runs(ctx):
        redis_conn.incr(f"runs:{ctx.job.id}")
        return {}

    try:
        job = submit("tests.count_runs").job
        assert queueing.enqueue(job)  # a second push of the very same dispatch
        assert django_rq.get_queue("normal").count == 2
        run_worker()
    finally:
        registry.unregister("tests.count_runs")
    assert int(redis_conn.get(f"runs:{job.id}")) == 1
    job = refreshed(job)
    assert job.status == Status.COMPLETE and job.attempts == 1


def test_completed_job_never_runs_again(run_worker, redis_conn):
    @registry.job_type("tests.count_again")
    def count_again(ctx):
        redis_conn.incr(f"runs:{ctx.job.id}")
        return {}

    try:
        job = submit("tests.count_again").job
        run_worker()
        queueing.enqueue(refreshed(job))
        run_worker()
    finally:
        registry.unregister("tests.count_again")
    assert int(redis_conn.get(f"runs:{job.id}")) == 1


def test_unserialisable_result_fails_for_operators(run_worker):
    @registry.job_type("tests.bad_result")
    def bad_result(ctx):
        return {"value": object()}

    try:
        job = submit("tests.bad_result").job
        run_worker()
    finally:
        registry.unregister("tests.bad_result")
    job = refreshed(job)
    assert job.status == Status.FAILED and job.error_category == "admin_required"


def test_hooks_run_on_success_and_failure(run_worker):
    calls: list[tuple[str, str]] = []

    @registry.job_type(
        "tests.hooked",
        on_success=lambda job: calls.append(("ok", job.status)),
        on_failure=lambda job: calls.append(("failed", job.status)),
    )
    def hooked(ctx):
        if ctx.payload.get("fail"):
            raise TemporaryError("nope")
        return {}

    try:
        submit("tests.hooked", {})
        submit("tests.hooked", {"fail": True}, max_attempts=1)
        run_worker()
    finally:
        registry.unregister("tests.hooked")
    assert sorted(calls) == [("failed", "dead_letter"), ("ok", "complete")]


def test_a_retry_while_the_failure_hook_runs_leaves_the_new_round_its_hooks_and_dependents(run_worker):
    """The operator's retry lands while the hook of the failed round still runs: that
    round's end marked followed-up must not mark the new round's too."""
    from jobs.core import actions

    calls: list[tuple[str, str]] = []
    runs: list = []

    def retried_meanwhile(job: Job) -> None:
        calls.append(("failed", str(job.id)))
        actions.requeue(job.id, actor=None)

    @registry.job_type(
        "tests.retried_in_hook",
        on_success=lambda job: calls.append(("ok", str(job.id))),
        on_failure=retried_meanwhile,
        max_attempts=1,
    )
    def flaky(ctx):
        runs.append(ctx.job.id)
        if len(runs) == 1:
            raise TemporaryError("the first round fails")
        return {}

    try:
        job = submit("tests.retried_in_hook", {}).job
        dependent = submit("diagnostics.noop", {}, depends_on=[job.id]).job
        run_worker()
    finally:
        registry.unregister("tests.retried_in_hook")
    assert refreshed(job).status == Status.COMPLETE
    assert calls == [("failed", str(job.id)), ("ok", str(job.id))]
    assert refreshed(job).hooks_done
    assert refreshed(dependent).status == Status.COMPLETE


def test_priorities_run_in_strict_order(run_worker):
    low = submit("diagnostics.noop", priority="low").job
    normal = submit("diagnostics.noop", priority="normal").job
    immediate = submit("diagnostics.noop", priority="immediate").job
    run_worker()
    order = list(Job.objects.order_by("started_at").values_list("id", flat=True))
    assert order == [immediate.id, normal.id, low.id]


@pytest.mark.parametrize("mode, status", [("none", Status.COMPLETE), ("user_fixable", Status.FAILED)])
def test_a_plain_rq_worker_runs_jobs_too(run_worker, mode, status):
    """Without Jobdesk's worker class the entry point claims and records by itself."""
    from rq import SimpleWorker

    job = submit("diagnostics.sleep", {"seconds": 0, "fail_mode": mode}).job
    run_worker(worker_class=SimpleWorker)
    job.refresh_from_db()
    assert job.status == status and job.attempts == 1


def test_a_work_horse_that_dies_is_recorded_by_its_parent(run_worker, settings):
    """The parent reads the horse's fate from RQ: a crash outside the handler (here:
    the entry point itself blowing up) is a temporary failure, retried."""
    settings.RETRY_BASE_DELAY = 3600
    from unittest import mock

    job = submit("diagnostics.noop").job
    with mock.patch("jobs.execution.runner.run_handler", side_effect=SystemError("horse exploded")):
        run_worker()
    job.refresh_from_db()
    assert job.status == Status.RETRYING and job.attempts == 1
    assert "work-horse died" in job.error_message and "horse exploded" in job.error_message


@pytest.mark.parametrize("result", [{"n": 1, "text": "ü"}, None])
def test_fast_and_orm_paths_write_the_same_rows_and_events(run_worker, result):
    """On PostgreSQL claim/complete run as single statements (jobs.core.fastpath); they must
    leave exactly what the ORM path leaves."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from jobs.core import lifecycle

    one_statement_path_only()
    snapshots = []
    for fast in (True, False):
        lifecycle.USE_FAST_PATH = fast
        try:
            job = submit("diagnostics.noop").job
            with CaptureQueriesContext(connection) as statements:
                claimed = lifecycle.claim(job.id, job.rq_job_id, "w1")
            # The path under test really ran (the ORM path reads back the lease the database dated).
            assert len(statements) == (1 if fast else 6)
            assert claimed.previous_status == Status.QUEUED and claimed.attempts == 1
            done = lifecycle.complete(job.id, job.rq_job_id, result)
            assert done.previous_status == Status.ACTIVE
            with pytest.raises(TransitionError):
                lifecycle.complete(job.id, job.rq_job_id, result)  # refused the second time
        finally:
            lifecycle.USE_FAST_PATH = True
        row = Job.objects.filter(pk=job.id).values(
            "status", "attempts", "seq", "progress", "result", "worker_name", "runner_pid", "error_message"
        )[0]
        events = list(
            JobEvent.objects.filter(job=job).order_by("seq").values_list("seq", "kind", "from_status", "to_status")
        )
        snapshots.append((row, events, done.result, done.status))
    assert snapshots[0] == snapshots[1]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "nul\u0000here"])
def test_results_the_database_cannot_store_fail_for_operators(run_worker, bad):
    registry.job_type("tests.bad_value")(lambda ctx: {"value": bad})
    try:
        job = submit("tests.bad_value").job
        run_worker()
    finally:
        registry.unregister("tests.bad_value")
    job.refresh_from_db()
    assert job.status == Status.FAILED and job.error_category == "admin_required"


def test_a_sigterm_during_the_claim_lets_the_claimed_job_finish(monkeypatch):
    """Found in CI: a SIGTERM between the claim and the run stopped the worker and left the
    row active. The worker is busy from the claim on, so RQ's warm shutdown waits."""
    import signal

    from jobs.execution import runner
    from jobs.execution.worker import JobdeskSimpleWorker

    job = submit("diagnostics.noop").job
    queues = [django_rq.get_queue(name) for name in ("immediate", "normal", "low")]
    worker = JobdeskSimpleWorker(queues, connection=django_rq.get_connection("normal"))
    real_claim = runner.claim

    def claim_then_sigterm(*args, **kwargs):
        claimed = real_claim(*args, **kwargs)
        # A real signal: its handler (RQ's) runs on the main thread, wherever the claim runs
        # (an inline run's is made on the recorder's thread).
        os.kill(os.getpid(), signal.SIGTERM)
        return claimed

    monkeypatch.setattr(runner, "claim", claim_then_sigterm)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        worker.work(burst=True, with_scheduler=False)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert refreshed(job).status == Status.COMPLETE and refreshed(job).attempts == 1


def test_a_job_deleted_while_it_runs_is_discarded_and_the_worker_lives_on(run_worker, monkeypatch):
    """Found by a README trial: deleting a running job in the admin killed the worker."""
    from jobs.execution import runner

    doomed = submit("diagnostics.noop").job
    after = submit("diagnostics.noop").job
    real_handler = runner.run_handler

    def delete_while_running(job, dispatch):
        outcome = real_handler(job, dispatch)
        Job.objects.filter(pk=job.id, pk__in=[doomed.id]).delete()
        return outcome

    monkeypatch.setattr(runner, "run_handler", delete_while_running)
    run_worker()
    assert not Job.objects.filter(pk=doomed.id).exists()
    assert refreshed(after).status == Status.COMPLETE  # the same worker went on


def test_a_dead_letter_does_not_promise_a_retry(run_worker, settings):
    settings.RETRY_BASE_DELAY = 0
    job = submit("diagnostics.sleep", {"seconds": 0, "fail_mode": "temporary"}, max_attempts=1).job
    run_worker()
    job = refreshed(job)
    assert job.status == Status.DEAD_LETTER
    assert not any("Wait for the retry" in action for action in job.recovery_actions)
    assert "requeue" in job.recovery_actions[0]


def test_a_success_after_a_retry_leaves_no_advice_of_the_failure(run_worker, scheduler_tick, settings):
    from conftest import wait_for

    settings.RETRY_BASE_DELAY = 0.1
    job = submit("diagnostics.sleep", {"seconds": 0, "steps": 1, "fail_mode": "temporary", "fail_times": 1}).job
    run_worker()
    assert refreshed(job).recovery_actions, "advice while it waits for the retry"

    def retried():
        scheduler_tick()
        run_worker()
        return refreshed(job).status == Status.COMPLETE

    wait_for(retried, timeout=20, what="the retry to complete")
    done = refreshed(job)
    assert (done.error_category, done.error_message, done.error_details, done.recovery_actions) == ("", "", "", [])
    assert JobEvent.objects.filter(job=job, message__startswith="temporary error").exists(), "the timeline keeps it"


@pytest.mark.parametrize("prepared", [True, False])
def test_a_moved_row_reads_as_the_orm_reads_it_prepared_or_not(run_worker, settings, prepared):
    """The one-statement claim reads its row straight into a Job (jobs.core.fastpath):
    every field as the ORM would load it; with DB_PREPARED_STATEMENTS the server keeps the
    statement prepared, without it nothing is."""
    from django.db import connection

    from jobs.core import lifecycle

    one_statement_path_only()
    settings.DB_PREPARED_STATEMENTS = prepared
    connection.close()  # a fresh session: its prepared statements are this test's
    job = submit("diagnostics.noop", payload={"n": 1, "text": "ü"}).job
    claimed = lifecycle.claim(job.id, job.rq_job_id, "w1")
    loaded = Job.objects.get(pk=job.id)
    for field in Job._meta.concrete_fields:
        value, expected = getattr(claimed, field.attname), getattr(loaded, field.attname)
        assert value == expected, field.name
        assert type(value) is type(expected), field.name
        if isinstance(expected, datetime):  # the same zone, not only the same instant
            assert value.tzinfo is expected.tzinfo, field.name
    assert claimed._state.adding is False and claimed._state.db == loaded._state.db
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s", ["%locked%"])
        (kept,) = cursor.fetchone()
    assert kept == (1 if prepared else 0)


def test_a_moved_row_sends_the_init_signals_when_something_listens(run_worker):
    """The moved row skips Model.__init__ only while nothing listens to a Job's init
    signals: a listener connected later hears every moved row."""
    from django.db.models.signals import post_init

    from jobs.core import lifecycle

    one_statement_path_only()
    heard = []

    def listener(sender, instance, **kwargs):
        heard.append(instance.id)

    job = submit("diagnostics.noop").job
    post_init.connect(listener, sender=Job)
    try:
        claimed = lifecycle.claim(job.id, job.rq_job_id, "w1")
    finally:
        post_init.disconnect(listener, sender=Job)
    assert claimed.id in heard


def test_a_moved_row_is_built_by_django_when_a_field_has_a_descriptor_of_its_own(run_worker, monkeypatch):
    """A field whose attribute does more than store its value (a file's does) is set
    through it: the moved row is then built as Django builds it."""
    from django.db.models.query_utils import DeferredAttribute

    from jobs.core import lifecycle

    one_statement_path_only()
    stages = []

    class Recorded(DeferredAttribute):
        def __set__(self, instance, value):
            stages.append(value)
            instance.__dict__[self.field.attname] = value

    with job_changed(monkeypatch, "stage", Recorded(Job._meta.get_field("stage"))):
        job = submit("diagnostics.noop").job
        stages.clear()  # the submit's own
        lifecycle.claim(job.id, job.rq_job_id, "w1")
    assert stages, "the moved row was built without the field's own attribute"


def test_a_moved_row_is_loaded_by_django_when_the_model_loads_itself(run_worker, monkeypatch):
    """A model that overrides ``from_db`` (as Django's docs show, to keep the loaded
    values) gets every moved row through it."""

    from jobs.core import lifecycle

    one_statement_path_only()
    loaded_by_django = Job.from_db.__func__

    def from_db(cls, db, field_names, values):
        job = loaded_by_django(cls, db, field_names, values)
        job.loaded_through_from_db = True
        return job

    job = submit("diagnostics.noop").job
    with job_changed(monkeypatch, "from_db", classmethod(from_db)):
        claimed = lifecycle.claim(job.id, job.rq_job_id, "w1")
    assert getattr(claimed, "loaded_through_from_db", False)


def test_a_moved_rows_times_are_read_as_django_reads_them_in_another_session_zone(run_worker):
    """psycopg's own timestamp loader reads a time in the session's zone: it is used
    only while that zone is UTC, as Django's. In another, the row is read as Django
    reads it (whatever that gives: the same as the ORM's)."""
    from django.db import connection

    from jobs.core import lifecycle

    one_statement_path_only()
    job = submit("diagnostics.noop").job
    try:
        with connection.cursor() as cursor:
            cursor.execute("SET TIME ZONE 'Asia/Tokyo'")
        claimed = lifecycle.claim(job.id, job.rq_job_id, "w1")
        loaded = Job.objects.get(pk=job.id)
    finally:
        connection.close()  # the next session is in UTC again
    assert claimed.started_at is not None
    for name in ("created_at", "updated_at", "started_at", "lease_expires_at"):
        value, expected = getattr(claimed, name), getattr(loaded, name)
        assert value == expected and value.tzinfo is expected.tzinfo, name


def test_a_prepared_move_gone_stale_after_a_migration_runs_again_unprepared(run_worker, settings):
    """A migration from another host changes a column the move returns: the server
    refuses the statement prepared before ("cached plan must not change result type")
    on every later run on that connection. The move runs again unprepared, and that
    connection prepares no more; nothing is left unclaimed."""
    import psycopg
    from django.db import connection

    from jobs.core import lifecycle

    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's here")
    settings.DB_PREPARED_STATEMENTS = True
    connection.close()
    params = connection.get_connection_params()
    dsn = {key: params[key] for key in ("host", "port", "user", "password", "dbname") if params.get(key)}

    def alter(length: int) -> None:
        with psycopg.connect(**dsn, autocommit=True) as other:
            other.execute(f"ALTER TABLE jobs_job ALTER COLUMN stage TYPE varchar({length})")

    first = submit("diagnostics.noop").job
    lifecycle.claim(first.id, first.rq_job_id, "w1")  # prepared on this connection
    lifecycle.complete(first.id, first.rq_job_id, None)
    alter(201)
    try:
        second = submit("diagnostics.noop").job
        assert lifecycle.claim(second.id, second.rq_job_id, "w1").status == Status.ACTIVE
        assert lifecycle.complete(second.id, second.rq_job_id, None).status == Status.COMPLETE
        assert connection.connection.prepare_threshold is None  # this connection prepares no more
    finally:
        connection.close()
        alter(200)


@pytest.mark.parametrize("text", ["a\x00b", "a\ud800b"])
def test_a_handler_result_the_database_cannot_store_is_refused_before_its_record(text):
    """Half a surrogate pair is JSON, but PostgreSQL's jsonb refuses it: the record failed
    at every retry. Refused with the NUL character, as the handler's bug it is."""
    from jobs.core.errors import AdminRequiredError
    from jobs.execution import runner

    with pytest.raises(AdminRequiredError, match="The handler returned a result that contains"):
        runner._json_safe({"text": text})
