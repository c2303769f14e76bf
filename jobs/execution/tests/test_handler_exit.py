"""A handler that calls ``sys.exit()`` is a bug in its code, recorded as its error like any
other — not as a work-horse that died (which advised checking the worker's memory). A
cold stop of the worker (RQ raises SystemExit from its signal handler, wherever the main
thread is) is still RQ's to handle, inline handler or not."""

from __future__ import annotations

import sys

import pytest

from jobs.core import registry
from jobs.core.models import Job, Status
from jobs.core.submit import submit
from jobs.execution import runner
from jobs.execution.worker import JobdeskSimpleWorker, JobdeskWorker

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def exiting_type():
    registry.job_type("tests.exits", max_attempts=1)(lambda ctx: sys.exit(3))
    yield "tests.exits"
    registry.unregister("tests.exits")


@pytest.mark.parametrize("worker_class", [JobdeskSimpleWorker, JobdeskWorker], ids=["inline", "forked"])
def test_a_handler_s_sys_exit_is_recorded_as_its_own_error(run_worker, exiting_type, worker_class):
    job = submit(exiting_type).job
    run_worker(worker_class=worker_class)
    job = Job.objects.get(pk=job.pk)
    assert job.status in (Status.FAILED, Status.DEAD_LETTER), job.status
    assert job.error_message == "SystemExit: 3", job.error_message
    assert "work-horse died" not in job.error_message and "SystemExit" in job.error_details


def test_a_cold_stop_during_an_inline_handler_is_not_taken_for_the_handler_s_exit(run_worker, monkeypatch):
    """The stop's SystemExit goes on to RQ, as before: RQ fails the execution and the
    worker leaves after it; the run is retried as one whose worker stopped under it."""
    monkeypatch.setattr(runner, "_cold_stop", False)  # restored after the test

    def stopped_cold(ctx) -> None:
        runner.cold_stop_under_way()  # as the worker's request_force_stop does, just before RQ raises
        raise SystemExit()

    registry.job_type("tests.stopped_cold", fork=False)(stopped_cold)
    try:
        job = submit("tests.stopped_cold").job
        run_worker()
        job = Job.objects.get(pk=job.pk)
        assert job.status == Status.RETRYING, job.status
        assert job.error_message.startswith("work-horse died"), job.error_message  # not "SystemExit: …" of a handler
    finally:
        registry.unregister("tests.stopped_cold")
