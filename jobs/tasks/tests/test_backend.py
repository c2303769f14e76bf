"""The standard task API on Jobdesk, with a real Redis, a real worker and the database:
what an app's ``@task`` gets (results, retries, errors per attempt, async, context and
progress, priorities, run_after, signals, transactions)."""

from __future__ import annotations

import datetime as dt
import logging
import os
import uuid

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.db import transaction
from django.utils import timezone

from conftest import wait_for
from jobs import FINAL_STATUSES, Job, Status
from jobs.live.tests.test_websockets import connect, follow, token_header
from jobs.tasks import JobdeskBackend, JobdeskTask, UnstorableArgument, queue_of
from jobs.tasks.compat import (
    InvalidTask,
    TaskResultDoesNotExist,
    TaskResultStatus,
    default_task_backend,
    task_backends,
    task_enqueued,
    task_finished,
    task_started,
)
from jobs.tasks.tests import tasks

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]


def test_the_default_backend_is_jobdesk():
    backend = task_backends["default"]
    assert isinstance(backend, JobdeskBackend) and default_task_backend == backend
    assert isinstance(tasks.add, JobdeskTask)
    assert all([backend.supports_defer, backend.supports_priority, backend.supports_async_task,
                backend.supports_get_result])  # fmt: skip


def test_enqueue_runs_to_successful_with_its_return_value(run_worker):
    result = tasks.add.enqueue(2, 3)
    assert result.status == TaskResultStatus.READY and result.args == [2, 3] and result.kwargs == {}
    job = Job.objects.get(pk=result.id)
    assert job.type == "jobs.tasks.tests.tasks.add" and job.status == Status.QUEUED
    run_worker()
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 5
    assert result.started_at and result.finished_at and result.attempts == 1 and len(result.worker_ids) == 1
    assert tasks.add.get_result(result.id).return_value == 5


def test_a_claim_deferred_to_the_work_window_is_no_attempt_of_the_result(run_worker):
    from jobs.core import window
    from workwindow.models import WorkWindow

    now = timezone.now()
    hours = [(now + dt.timedelta(hours=h)).time() for h in (-1, 1, 2, 3)]
    opened = WorkWindow.objects.create(name="now", time_zone="UTC", start_time=hours[0], end_time=hours[1])
    result = tasks.add.options(heavy=True).enqueue(1, 2)
    assert Job.objects.get(pk=result.id).status == Status.QUEUED  # its window is open
    WorkWindow.objects.filter(pk=opened.pk).update(start_time=hours[2], end_time=hours[3])
    run_worker()  # claimed, and the window found closed: deferred
    assert Job.objects.get(pk=result.id).status == Status.DEFERRED
    WorkWindow.objects.filter(pk=opened.pk).update(enabled=False)
    window.reschedule_deferred()  # no window left: it runs now
    run_worker()
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.attempts == Job.objects.get(pk=result.id).attempts == 1


def test_a_raising_task_retries_then_fails_with_each_attempts_error(run_worker, scheduler_tick, settings):
    settings.RETRY_BASE_DELAY = 0
    result = tasks.failing.options(max_attempts=3).enqueue()

    def ended() -> bool:  # retries are scheduled to the next whole second: tick until due
        scheduler_tick()
        run_worker()
        return Job.objects.get(pk=result.id).status in FINAL_STATUSES

    wait_for(ended, timeout=30, interval=0.2, what="three attempts")
    result.refresh()
    assert result.status == TaskResultStatus.FAILED and result.attempts == 3
    assert [e.exception_class_path for e in result.errors] == ["builtins.ValueError"] * 3
    assert "this task failed" in result.errors[0].traceback and result.errors[0].exception_class is ValueError
    assert Job.objects.get(pk=result.id).status == Status.DEAD_LETTER
    with pytest.raises(ValueError, match="failed"):
        result.return_value  # noqa: B018
    # django.tasks: started_at is when the task first started, last_attempted_at its last try.
    from jobs.core.models import JobEvent

    claims = JobEvent.objects.filter(job_id=result.id, to_status=Status.ACTIVE).order_by("seq")
    first = claims.values_list("created_at", flat=True).first()
    assert result.started_at == first < result.last_attempted_at == Job.objects.get(pk=result.id).started_at
    from jobs.tasks import results

    as_the_running_task_sees_it = results.from_job(  # its context's, without the timeline's errors
        Job.objects.get(pk=result.id), tasks.failing, result.backend, fresh=True, running_on="w"
    )
    assert as_the_running_task_sees_it.started_at == first


def test_jobdesk_errors_keep_their_meaning_and_task_options_apply(run_worker):
    fixable = tasks.not_for_you.enqueue()
    twice = tasks.fails_twice.enqueue()
    run_worker()
    assert Job.objects.get(pk=fixable.id).error_category == "user_fixable"
    assert tasks.not_for_you.get_result(fixable.id).status == TaskResultStatus.FAILED
    assert Job.objects.get(pk=fixable.id).attempts == 1, "user_fixable: no retry"
    assert Job.objects.get(pk=twice.id).max_attempts == 2


def test_an_async_task_runs_on_its_own_loop(run_worker):
    result = tasks.add_async.enqueue(20, 22)
    run_worker()
    assert tasks.add_async.get_result(result.id).return_value == 42


def test_context_gives_the_attempt_progress_and_cancel_check(run_worker):
    result = tasks.reports_progress.enqueue(4)
    run_worker()
    done = tasks.reports_progress.get_result(result.id)
    assert done.return_value == {"attempt": 1, "id": result.id, "canceled": False}
    job = Job.objects.get(pk=result.id)
    assert job.progress == 100 and job.seq > 3, "progress was written as it went"

    from_async = tasks.reports_progress_async.enqueue()
    run_worker()
    assert tasks.reports_progress_async.get_result(from_async.id).return_value == {"attempt": 1}
    assert Job.objects.get(pk=from_async.id).progress == 100


def test_progress_reaches_a_websocket_follower(alice, run_worker):
    result = tasks.reports_progress.options().enqueue(3)
    Job.objects.filter(pk=result.id).update(owner=alice)

    @async_to_sync
    async def watch():
        communicator, _ = await connect(f"/ws/jobs/{result.id}/", [await sync_to_async(token_header)(alice)])
        await sync_to_async(run_worker)()
        return await follow(communicator)

    messages, code = watch()
    stages = [m["stage"] for m in messages if m["type"] == "progress"]
    assert "step 3/3" in stages or any(s.startswith("step") for s in stages), messages
    assert messages[-1]["type"] == "completed" and code == 1000


def test_priorities_map_onto_the_queues_and_the_highest_runs_first(run_worker):
    assert [queue_of(tasks.noop.using(priority=p)) for p in (-100, -34, -33, 0, 33, 34, 100)] == [
        "low", "low", "normal", "normal", "normal", "immediate", "immediate"
    ]  # fmt: skip
    assert queue_of(tasks.noop.using(priority=100, queue_name="low")) == "low", "a queue by name wins"
    first = [tasks.echo.enqueue(n) for n in range(3)]
    urgent = tasks.echo.using(priority=100).enqueue("urgent")
    run_worker()
    started = {j.id: j.started_at for j in Job.objects.filter(pk__in=[r.id for r in [*first, urgent]])}
    assert min(started, key=started.get).hex == urgent.id.replace("-", "")


def test_an_unknown_queue_is_refused_when_the_task_is_made():
    with pytest.raises(InvalidTask, match="Queue 'urgent' is not valid"):
        tasks.noop.using(queue_name="urgent")


def test_run_after_schedules_it(run_worker, scheduler_tick):
    later = timezone.now() + dt.timedelta(hours=1)
    result = tasks.noop.using(run_after=later).enqueue()
    job = Job.objects.get(pk=result.id)
    assert job.status == Status.SCHEDULED and job.scheduled_for >= later and result.status == TaskResultStatus.READY
    run_worker()
    assert Job.objects.get(pk=result.id).status == Status.SCHEDULED, "not before its time"


def test_an_unknown_result_id_does_not_exist():
    for unknown in ("123", "00000000-0000-0000-0000-000000000000"):
        with pytest.raises(TaskResultDoesNotExist):
            tasks.noop.get_result(unknown)
    plain = Job.objects.none()  # a job that is not a task's is no task result either
    assert not plain.exists()


def test_arguments_that_do_not_round_trip_are_refused_naming_them():
    with pytest.raises(UnstorableArgument, match=r"Unsupported type: <class 'datetime.datetime'> in args\[1\]"):
        tasks.noop.enqueue(1, dt.datetime.now())
    with pytest.raises(TypeError, match=r"kwargs\['when'\]"):
        tasks.noop.enqueue(when={1, 2})
    with pytest.raises(TypeError, match="non-string keys"):
        tasks.noop.enqueue({1: "a"})
    with pytest.raises(TypeError, match="non-string keys"):
        tasks.noop.enqueue([({1: "a"},)])
    assert not Job.objects.exists()


def test_tuples_at_any_depth_are_stored_as_lists_as_django_normalizes_them():
    result = tasks.echo.enqueue((1, 2), [(3, 4)], key={"pair": (5, (6,))})
    assert (result.args, result.kwargs) == ([[1, 2], [[3, 4]]], {"key": {"pair": [5, [6]]}})


def test_a_return_value_that_cannot_be_stored_fails_saying_why(run_worker):
    result = tasks.unstorable_result.enqueue()
    run_worker()
    job = Job.objects.get(pk=result.id)
    assert job.status == Status.FAILED and job.error_category == "user_fixable" and "JSON" in job.error_message


@pytest.mark.parametrize("which", ["nul", "surrogate"])
def test_a_return_value_the_database_cannot_store_fails_user_fixable(run_worker, which):
    """JSON, but PostgreSQL's jsonb refuses it: a NUL failed the job admin_required (not
    as docs/tasks.md says), half a surrogate pair failed its record at every retry."""
    result = tasks.text_postgres_cannot_store.enqueue(which)
    run_worker()
    job = Job.objects.get(pk=result.id)
    assert (job.status, job.error_category) == (Status.FAILED, "user_fixable"), job.error_message
    assert "The task returned a result that contains" in job.error_message


def test_enqueue_inside_a_rolled_back_transaction_leaves_nothing(redis_conn):
    class Rollback(Exception):
        pass

    with pytest.raises(Rollback), transaction.atomic():
        tasks.noop.enqueue()
        assert redis_conn.llen("rq:queue:normal") == 0, "nothing reaches Redis before the commit"
        raise Rollback
    assert not Job.objects.exists() and redis_conn.llen("rq:queue:normal") == 0


def test_the_standard_signals_fire(run_worker):
    seen = []

    def record(signal_name):
        def receiver(sender, task_result, **kwargs):
            seen.append((signal_name, task_result.status))

        return receiver

    receivers = {name: record(name) for name in ("enqueued", "started", "finished")}
    task_enqueued.connect(receivers["enqueued"])
    task_started.connect(receivers["started"])
    task_finished.connect(receivers["finished"])
    try:
        tasks.noop.enqueue()
        run_worker()
    finally:
        task_enqueued.disconnect(receivers["enqueued"])
        task_started.disconnect(receivers["started"])
        task_finished.disconnect(receivers["finished"])
    assert seen == [
        ("enqueued", TaskResultStatus.READY),
        ("started", TaskResultStatus.RUNNING),
        ("finished", TaskResultStatus.SUCCESSFUL),
    ]


def test_a_failed_task_is_logged_with_what_it_raised_and_where(run_worker, caplog):
    """The standard receiver logs a failure with logger.exception (for error monitoring);
    the task raised in the work-horse, so there was no exception to log: "NoneType: None"."""
    result = tasks.failing.options(max_attempts=1).enqueue()
    with caplog.at_level(logging.ERROR, logger="django_tasks"):
        run_worker()
    [record] = [r for r in caplog.records if r.name == "django_tasks" and result.id in r.getMessage()]
    assert "FAILED" in record.getMessage() and record.exc_info is not None
    logged = caplog.text
    assert "ValueError: this task failed" in logged and 'raise ValueError("this task failed")' in logged
    assert "NoneType: None" not in logged


def test_the_finished_signal_comes_once_when_the_task_has_finished_not_per_attempt(
    run_worker, scheduler_tick, settings
):
    settings.RETRY_BASE_DELAY = 0
    finished = []

    def note(sender, task_result, **kwargs):
        finished.append(task_result.status)

    result = tasks.failing.options(max_attempts=2).enqueue()
    task_finished.connect(note)
    try:

        def ended() -> bool:
            scheduler_tick()
            run_worker()
            return Job.objects.get(pk=result.id).status in FINAL_STATUSES

        wait_for(ended, timeout=30, interval=0.2, what="two attempts")
    finally:
        task_finished.disconnect(note)
    assert finished == [TaskResultStatus.FAILED]  # not READY after the first attempt too


def test_a_key_that_finds_a_finished_task_answers_its_whole_result_and_enqueues_nothing(run_worker):
    enqueued = []

    def note(sender, task_result, **kwargs):
        enqueued.append(task_result.id)

    first = tasks.echo.options(idempotency_key="once-only").enqueue(1)
    run_worker()
    task_enqueued.connect(note)
    try:
        again = tasks.echo.options(idempotency_key="once-only").enqueue(1)
    finally:
        task_enqueued.disconnect(note)
    assert again.id == first.id and again.status == TaskResultStatus.SUCCESSFUL
    assert again.attempts == 1 and again.worker_ids, (again.attempts, again.worker_ids)  # not a fresh result's 0
    assert enqueued == []  # nothing was enqueued


def test_idempotency_keys_and_dependencies_ride_on_options(run_worker):
    first = tasks.noop.options(idempotency_key="nightly-1").enqueue()
    again = tasks.noop.options(idempotency_key="nightly-1").enqueue()
    assert first.id == again.id
    after = tasks.noop.options(depends_on=[first.id]).enqueue()
    assert Job.objects.get(pk=after.id).status == Status.WAITING
    run_worker()
    assert Job.objects.get(pk=after.id).status == Status.COMPLETE


def test_a_fork_false_task_runs_inside_the_default_workers_own_process(run_worker):
    from jobs.core import registry
    from jobs.execution.worker import JobdeskWorker

    assert registry.get(tasks.light_pid.module_path).fork is False
    assert registry.get(tasks.add.module_path).fork is True
    result = tasks.light_pid.enqueue()
    run_worker(worker_class=JobdeskWorker)  # the forking class, in this process
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == os.getpid()


def test_an_async_task_reaches_the_orm_in_a_horse_forked_after_an_inline_one_did(run_worker, alice):
    """The inline task started asgiref's thread for thread-sensitive calls in the worker;
    a horse inherited that executor without its thread, and the forked task's ORM call
    waited on it until the task's timeout (1,800 s by default)."""
    import time

    from jobs.execution.worker import JobdeskWorker

    inline, forked = tasks.count_users_inline.enqueue(), tasks.count_users.enqueue()
    started = time.monotonic()
    run_worker(worker_class=JobdeskWorker)  # the forking class, in this process
    for result in (inline, forked):
        result.refresh()
        assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 1, result.status
    assert time.monotonic() - started < 15, "no wait on a thread that is not there"


@pytest.mark.parametrize(
    "options, named",
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 101}, "max_attempts"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": "x"}, "timeout"),
        ({"fork": "no"}, "fork"),
    ],
)
def test_a_task_s_options_out_of_range_are_refused_where_it_is_defined(options, named):
    """Not silently the default (max_attempts=0 ran 4 times, timeout=0 got 1800 s), nor a
    database error at the first enqueue (timeout="x")."""
    from jobs.core import registry
    from jobs.tasks.compat import task

    with pytest.raises(InvalidTask, match=f"task {tasks.__name__}.never_a_task: {named} must be"):
        task(**options)(tasks.never_a_task)
    assert not registry.is_registered(f"{tasks.__name__}.never_a_task")


@pytest.mark.django_db
def test_max_attempts_0_for_one_enqueue_is_refused_not_the_default():
    from jobs.core.errors import SubmitError

    with pytest.raises(SubmitError, match="max_attempts must be a whole number from 1"):
        tasks.noop.options(max_attempts=0).enqueue()
    assert not Job.objects.exists()


def test_a_task_whose_module_path_is_too_long_to_store_is_refused_where_it_is_defined():
    """Its name (the module path) is the job's type, of at most 100 characters: accepted,
    it failed every enqueue on PostgreSQL with a raw DataError (an adversarial run)."""
    import sys
    import types

    from jobs.core import registry
    from jobs.tasks.compat import task

    module = types.ModuleType("billing_" + "integrations_" * 8)  # 112 characters with the name
    exec("def handler():\n    pass\n", module.__dict__)
    sys.modules[module.__name__] = module
    try:
        with pytest.raises(InvalidTask, match="at most 100 are stored"):
            task()(module.handler)
    finally:
        del sys.modules[module.__name__]
    assert not registry.is_registered(f"{module.__name__}.handler")


def test_options_take_one_dependency_as_a_list_of_one_and_refuse_a_heavy_that_is_not_a_bool():
    """``depends_on="<id>"`` was split into its characters; ``heavy="no"`` made the job
    heavy (an adversarial review)."""
    first = tasks.noop.enqueue()
    for one in (first.id, uuid.UUID(first.id), first):
        assert tasks.noop.options(depends_on=one).depends_on == (first.id,)
    with pytest.raises(InvalidTask, match="heavy must be True or False"):
        tasks.noop.options(heavy="no")
