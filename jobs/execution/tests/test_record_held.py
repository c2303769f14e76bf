"""A simple worker's record is held on the recorder's thread until the next run's claim is
asked, so the thread wakes once a job (jobs.execution.worker: ``RecordBehind``, ``held``).
It must still go at once whenever no claim comes soon: no job waiting, a suspension,
RQ's maintenance, the worker stopping; and within ``_IDLE_LOOK`` seconds whatever
happens (another worker took the job it saw waiting)."""

from __future__ import annotations

import threading
import time

import django_rq
import pytest
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from rq.exceptions import StopRequested
from rq.suspension import resume, suspend
from rq.utils import now as rq_now

from jobs.core.models import Job, Status
from jobs.core.submit import submit
from jobs.execution import worker as worker_module
from jobs.execution.worker import JobdeskSimpleWorker, RecordBehind

DEADLINE = 5.0  # seconds: far more than any release takes, far less than the idle look below


@pytest.fixture
def recorder(monkeypatch):
    """A recorder whose idle look would come only after the test: what lets a held task go
    is the release under test."""
    monkeypatch.setattr(worker_module, "_IDLE_LOOK", 60.0)
    made = RecordBehind()
    yield made
    made.close(timeout=DEADLINE)


def held_task(recorder: RecordBehind, ran: list[str], name: str = "record") -> threading.Event:
    done = threading.Event()

    def task() -> None:
        ran.append(name)
        done.set()

    recorder.submit(task, held=True)
    return done


def test_a_held_task_goes_just_before_the_next_one(recorder):
    ran: list[str] = []
    recorder.submit(lambda: None).result(timeout=DEADLINE)  # the thread is started and idle
    record = held_task(recorder, ran)
    assert not record.wait(0.3) and recorder.holding()
    recorder.submit(ran.append, "claim").result(timeout=DEADLINE)
    assert ran == ["record", "claim"] and not recorder.holding()


def test_release_lets_a_held_task_go(recorder):
    ran: list[str] = []
    recorder.submit(lambda: None).result(timeout=DEADLINE)
    record = held_task(recorder, ran)
    recorder.release()
    assert record.wait(DEADLINE) and ran == ["record"]


def test_waiting_for_the_recorder_lets_a_held_task_go(recorder):
    ran: list[str] = []
    recorder.submit(lambda: None).result(timeout=DEADLINE)
    held_task(recorder, ran)
    assert recorder.wait(timeout=DEADLINE) and ran == ["record"]


def test_a_held_task_nobody_releases_goes_after_the_idle_look(monkeypatch):
    monkeypatch.setattr(worker_module, "_IDLE_LOOK", 0.2)
    recorder = RecordBehind()
    try:
        ran: list[str] = []
        recorder.submit(lambda: None).result(timeout=DEADLINE)
        assert held_task(recorder, ran).wait(DEADLINE) and ran == ["record"]
    finally:
        recorder.close(timeout=DEADLINE)


@pytest.fixture
def idle_worker(recorder, redis_conn):
    """A simple worker on the test's queues, its recorder holding a task."""
    queues = [django_rq.get_queue(name) for name in ("immediate", "normal", "low")]
    made = JobdeskSimpleWorker(queues, connection=django_rq.get_connection("normal"))
    made._recorder = recorder
    made.register_birth()  # as work() does: its beats check the registration
    made.last_cleaned_at = rq_now()  # RQ's maintenance (which lets a held record go) is not due
    yield made
    made.connection = django_rq.get_connection("normal")  # a test may have pointed it elsewhere
    made.register_death()


def test_a_worker_with_no_job_waiting_lets_its_held_record_go_before_the_long_wait(idle_worker):
    ran: list[str] = []
    record = held_task(idle_worker._recorder, ran)
    idle_worker.check_for_suspension(burst=False)  # RQ's step just before its long wait for a job
    assert record.wait(DEADLINE) and ran == ["record"]


@pytest.mark.django_db(transaction=True)  # the job is dispatched once its row is committed
def test_a_worker_with_a_job_waiting_keeps_its_record_held_for_that_job_s_claim(idle_worker):
    job = submit("diagnostics.noop").job
    ran: list[str] = []
    held_task(idle_worker._recorder, ran)
    idle_worker.check_for_suspension(burst=False)
    found = idle_worker.dequeue_job_and_maintain_ttl(3, max_idle_time=3)
    assert found is not None and found[0].args[0] == str(job.id)
    assert idle_worker._recorder.holding() and ran == []


def test_rq_s_maintenance_lets_a_held_record_go(idle_worker):
    ran: list[str] = []
    record = held_task(idle_worker._recorder, ran)
    idle_worker.run_maintenance_tasks()
    assert record.wait(DEADLINE) and ran == ["record"]


@pytest.fixture
def suspended(redis_conn):
    """`rq suspend`, with a job waiting (what would otherwise keep the record held)."""
    redis_conn.rpush(django_rq.get_queue("normal").key, "a-job-waiting")
    suspend(redis_conn)
    yield redis_conn
    resume(redis_conn)


def test_a_burst_worker_suspended_stops_and_lets_its_held_record_go(idle_worker, suspended):
    ran: list[str] = []
    record = held_task(idle_worker._recorder, ran)
    with pytest.raises(StopRequested):
        idle_worker.check_for_suspension(burst=True)
    assert record.wait(DEADLINE) and ran == ["record"]


def test_a_worker_suspended_lets_its_held_record_go_while_it_waits_for_the_resume(idle_worker, suspended):
    ran: list[str] = []
    record = held_task(idle_worker._recorder, ran)
    checking = threading.Thread(target=idle_worker.check_for_suspension, args=(False,))
    checking.start()
    try:
        assert record.wait(DEADLINE) and ran == ["record"]
        assert checking.is_alive(), "RQ's check returned while the worker was still suspended"
    finally:
        resume(suspended)
        checking.join(DEADLINE)
    assert not checking.is_alive()
    assert suspended.llen(django_rq.get_queue("normal").key) == 1  # nothing was taken meanwhile


def test_redis_failing_the_check_lets_a_held_record_go(idle_worker):
    ran: list[str] = []
    record = held_task(idle_worker._recorder, ran)
    idle_worker.connection = Redis.from_url("redis://127.0.0.1:1/0")  # nothing listens there
    with pytest.raises(RedisConnectionError):
        idle_worker.check_for_suspension(burst=False)  # as RQ's own check raises it, to its loop
    assert record.wait(DEADLINE) and ran == ["record"]


def test_a_worker_asked_to_stop_checks_nothing_more_and_keeps_the_record_for_its_exit(idle_worker):
    ran: list[str] = []
    record = held_task(idle_worker._recorder, ran)
    idle_worker.connection = Redis.from_url("redis://127.0.0.1:1/0")  # RQ's own check asks Redis nothing now
    idle_worker._stop_requested = True  # a warm stop asked during the last job
    idle_worker.check_for_suspension(burst=False)
    assert idle_worker._recorder.holding() and ran == []
    idle_worker._recorder.close(timeout=DEADLINE)  # what work() does on its way out
    assert record.is_set() and ran == ["record"]


@pytest.mark.django_db(transaction=True)
def test_a_worker_that_stops_after_a_job_records_it_before_it_exits(run_worker, monkeypatch):
    monkeypatch.setattr(worker_module, "_IDLE_LOOK", 60.0)  # only the worker's exit lets the record go
    first, second = submit("diagnostics.noop").job, submit("diagnostics.noop").job
    started = time.monotonic()
    run_worker(max_jobs=1)  # the first run's record was held for a claim that never came
    assert time.monotonic() - started < DEADLINE
    assert Job.objects.get(pk=first.pk).status == Status.COMPLETE
    assert Job.objects.get(pk=second.pk).status == Status.QUEUED
