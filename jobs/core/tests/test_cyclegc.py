"""The cyclic collector paused while a bulk submit builds its jobs (jobs.core.cyclegc)."""

from __future__ import annotations

import contextlib
import gc
import os
import threading

import pytest

from jobs.core import cyclegc, registry
from jobs.core.models import Job
from jobs.core.submit import JobSpec, submit_many


@pytest.fixture(autouse=True)
def collector_on():
    was = gc.isenabled()
    gc.enable()
    yield
    cyclegc._open.clear()  # a failed test leaves no pause to the next
    (gc.enable if was else gc.disable)()


def test_paused_stops_the_collector_for_the_block_and_starts_it_again():
    with cyclegc.paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_overlapping_pauses_start_it_again_only_when_the_last_one_ends():
    """Two threads of one web process may submit bulks at once: the first to end must
    not start the collector under the other."""
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: list[bool] = []

    def first():
        with cyclegc.paused():
            first_in.set()
            assert second_in.wait(10)
        first_out.set()

    thread = threading.Thread(target=first)
    thread.start()
    assert first_in.wait(10)
    with cyclegc.paused():
        second_in.set()
        assert first_out.wait(10)
        seen.append(gc.isenabled())
    thread.join(10)
    assert seen == [False]  # still paused after the first block ended
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off_and_an_error_still_ends_the_pause():
    gc.disable()
    with cyclegc.paused():
        pass
    assert not gc.isenabled()
    gc.enable()
    with pytest.raises(RuntimeError), cyclegc.paused():
        raise RuntimeError("a submit refused half-way")
    assert gc.isenabled()


@contextlib.contextmanager
def another_thread_pausing():
    """Another thread holds a pause for the block."""
    holding, done = threading.Event(), threading.Event()

    def other():
        with cyclegc.paused():
            holding.set()
            assert done.wait(10)

    thread = threading.Thread(target=other)
    thread.start()
    assert holding.wait(10)
    try:
        yield
    finally:
        done.set()
        thread.join(10)


def test_a_pause_left_open_by_an_interrupted_thread_is_released_by_that_thread_only():
    """A job's timeout (SIGALRM) raised between a pause's steps leaves it open: the
    worker releases its thread's pauses after each inline job, not another thread's."""
    with another_thread_pausing():
        cyclegc._begin()  # as an interrupted pause leaves it: begun, never ended
        cyclegc.release_thread()
        assert not gc.isenabled()  # the other thread's pause still holds
    assert gc.isenabled()


def test_a_collector_the_program_turned_off_after_a_pause_stays_off():
    """Only the end of a pause starts it again: not a worker's release after each job,
    nor a fork, when no pause was open."""
    with cyclegc.paused():
        pass
    gc.disable()
    cyclegc.release_thread()
    assert not gc.isenabled()
    pid = os.fork()
    if pid == 0:
        os._exit(0 if not gc.isenabled() else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_overlapping_pauses_without_a_break_still_collect_every_longest_pause(monkeypatch):
    """A web process under a stream of bulks would otherwise never collect a cycle."""
    monkeypatch.setattr(cyclegc, "LONGEST_PAUSE", 0.0)
    with cyclegc.paused():
        gc.collect()
        cycle: list = []
        cycle.append(cycle)  # garbage only a collection frees
        del cycle
        before = gc.get_stats()[2]["collections"]
        with cyclegc.paused():
            pass  # ends while the outer pause still holds
        assert gc.get_stats()[2]["collections"] == before + 1
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_forked_child_keeps_only_the_forking_thread_s_pauses():
    with another_thread_pausing():
        pid = os.fork()
        if pid == 0:  # the child: the other thread's pause did not come along
            os._exit(0 if gc.isenabled() and not cyclegc._open else 1)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.django_db
def test_a_bulk_submit_builds_with_the_collector_paused_and_a_smaller_one_without():
    seen: list[bool] = []

    def probe(payload: dict) -> dict:
        seen.append(gc.isenabled())
        return payload

    registry.job_type("t.gc_probe", validate=probe)(lambda ctx: None)
    try:
        submit_many([JobSpec("t.gc_probe")] * 100)
        assert seen == [False] * 100
        assert gc.isenabled()
        seen.clear()
        submit_many([JobSpec("t.gc_probe")] * 99)
        assert seen == [True] * 99
    finally:
        registry.unregister("t.gc_probe")
    assert Job.objects.count() == 199


@pytest.mark.django_db(transaction=True)
def test_a_worker_ends_a_pause_its_inline_job_left_open(run_worker):
    """As a job's timeout raised between a pause's steps would leave it: the collector
    is on again once the worker has recorded the job."""

    def interrupted(ctx):
        cyclegc._begin()  # begun, never ended
        raise TimeoutError("the job's time ran out mid-pause")

    registry.job_type("t.gc_interrupted", max_attempts=1)(interrupted)
    try:
        job = submit_many([JobSpec("t.gc_interrupted")])[0].job
        run_worker()
    finally:
        registry.unregister("t.gc_interrupted")
    job.refresh_from_db()
    assert job.finished_at is not None  # it ran and was recorded
    assert gc.isenabled()
    assert not cyclegc._open
