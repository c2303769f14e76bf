"""The django-tasks project's own task tests (tests/tests/test_tasks.py there), adapted to
run against JobdeskBackend: the API's semantics, not our reading of them. Left out: the
dummy backend's in-memory result list, and tests about other backends."""

from __future__ import annotations

import dataclasses
from datetime import datetime

import pytest
from django.utils import timezone
from django.utils.module_loading import import_string

from jobs.tasks.compat import (
    DEFAULT_TASK_QUEUE_NAME,
    InvalidTask,
    Task,
    TaskResultDoesNotExist,
    TaskResultStatus,
    default_task_backend,
    task,
)
from jobs.tasks.tests import tasks as test_tasks

TASK_MIN_PRIORITY, TASK_MAX_PRIORITY = -100, 100


def test_task_decorator():
    assert isinstance(test_tasks.noop, Task)
    assert isinstance(test_tasks.add_async, Task)
    assert isinstance(test_tasks.noop_bare, Task)


@pytest.mark.django_db(transaction=True)
@pytest.mark.redis
def test_enqueue_task():
    result = test_tasks.noop.enqueue()
    assert result.status == TaskResultStatus.READY
    assert result.task == test_tasks.noop
    assert result.args == [] and result.kwargs == {}


@pytest.mark.django_db(transaction=True)
@pytest.mark.redis
def test_enqueue_task_async():
    from asgiref.sync import async_to_sync

    result = async_to_sync(test_tasks.noop.aenqueue)()
    assert result.status == TaskResultStatus.READY and result.task == test_tasks.noop


def test_enqueue_with_invalid_argument():
    with pytest.raises(TypeError, match="Unsupported type: <class 'datetime.datetime'>"):
        test_tasks.noop.enqueue(datetime.now())


def test_using_priority():
    assert test_tasks.noop.priority == 0
    assert test_tasks.noop.using(priority=1).priority == 1
    assert test_tasks.noop.priority == 0


def test_using_queue_name():
    assert test_tasks.noop.queue_name == DEFAULT_TASK_QUEUE_NAME
    assert test_tasks.noop.using(queue_name="low").queue_name == "low"
    assert test_tasks.noop.queue_name == DEFAULT_TASK_QUEUE_NAME


def test_using_run_after():
    now = timezone.now()
    assert test_tasks.noop.run_after is None
    assert test_tasks.noop.using(run_after=now).run_after == now
    assert test_tasks.noop.run_after is None


def test_using_creates_new_instance():
    new_task = test_tasks.noop.using()
    assert new_task == test_tasks.noop and new_task is not test_tasks.noop


def test_chained_using():
    now = timezone.now()
    run_after_task = test_tasks.noop.using(run_after=now)
    priority_task = run_after_task.using(priority=10)
    assert priority_task.priority == 10 and priority_task.run_after == now
    assert run_after_task.priority == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.redis
def test_refresh_result():
    result = test_tasks.noop.enqueue()
    original = dataclasses.asdict(result)
    result.refresh()
    refreshed = dataclasses.asdict(result)
    # Jobdesk reads the row back: the same result, with the moments the database stored.
    assert {k: v for k, v in refreshed.items() if k != "enqueued_at"} == {
        k: v for k, v in original.items() if k != "enqueued_at"
    }


def test_naive_datetime():
    with pytest.raises(InvalidTask, match="run_after must be an aware datetime"):
        test_tasks.noop.using(run_after=datetime.now())


def test_invalid_priority():
    message = f"priority must be a whole number between {TASK_MIN_PRIORITY} and {TASK_MAX_PRIORITY}"
    for bad in (-101, 101, 3.1):
        with pytest.raises(InvalidTask, match=message):
            test_tasks.noop.using(priority=bad)
    for good in (100, -100, 0):
        test_tasks.noop.using(priority=good)


def test_unknown_queue_name():
    with pytest.raises(InvalidTask, match="Queue 'queue-2' is not valid for backend"):
        test_tasks.noop.using(queue_name="queue-2")


def test_call_task():
    assert test_tasks.add.call(40, 2) == 42


def test_call_async_task_sync():
    assert test_tasks.add_async.call(1, 2) == 3


@pytest.mark.django_db(transaction=True)
@pytest.mark.redis
def test_get_result():
    result = default_task_backend.enqueue(test_tasks.noop, (), {})
    new_result = test_tasks.noop.get_result(result.id)
    assert new_result.id == result.id and new_result.task == result.task and new_result.status == result.status


def test_get_missing_result():
    with pytest.raises(TaskResultDoesNotExist):
        test_tasks.noop.get_result("123")


@pytest.mark.django_db(transaction=True)
@pytest.mark.redis
def test_get_incorrect_result():
    from jobs.tasks.compat import TaskResultMismatch

    result = default_task_backend.enqueue(test_tasks.add_async, (1, 2), {})
    with pytest.raises(TaskResultMismatch, match="Task does not match"):
        test_tasks.noop.get_result(result.id)


def test_invalid_function():
    def local():
        return None

    for invalid_function in (any, local):
        with pytest.raises(InvalidTask, match="Task function must be defined at a module level"):
            task()(invalid_function)


def test_get_backend():
    assert test_tasks.noop.backend == "default"
    assert test_tasks.noop.get_backend() is not None


def test_name_and_module_path():
    assert test_tasks.noop.name == "noop"
    assert test_tasks.noop.module_path == "jobs.tasks.tests.tasks.noop"
    assert import_string(test_tasks.noop.module_path) is test_tasks.noop
    assert import_string(test_tasks.add_async.module_path) is test_tasks.add_async


def test_takes_context_without_taking_context():
    with pytest.raises(InvalidTask, match="Task takes context but does not have a first argument of 'context'"):
        task(takes_context=True)(test_tasks.add.func)
