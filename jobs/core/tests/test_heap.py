"""The cyclic collector paused while a bulk submit builds its jobs (jobs.core.heap)."""

from __future__ import annotations

import gc
import threading

import pytest

from jobs.core import heap, registry
from jobs.core.models import Job
from jobs.core.submit import JobSpec, submit_many


@pytest.fixture
def collector_on():
    was = gc.isenabled()
    gc.enable()
    yield
    (gc.enable if was else gc.disable)()


def test_paused_stops_the_collector_for_the_block_and_starts_it_again(collector_on):
    with heap.paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_overlapping_pauses_start_it_again_only_when_the_last_one_ends(collector_on):
    """Two threads of one web process may submit bulks at once: the first to end must
    not start the collector under the other."""
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: list[bool] = []

    def first():
        with heap.paused():
            first_in.set()
            second_in.wait(10)
        first_out.set()

    thread = threading.Thread(target=first)
    thread.start()
    first_in.wait(10)
    with heap.paused():
        second_in.set()
        first_out.wait(10)
        seen.append(gc.isenabled())
    thread.join(10)
    assert seen == [False]  # still paused after the first block ended
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off_and_an_error_still_ends_the_pause(collector_on):
    gc.disable()
    with heap.paused():
        pass
    assert not gc.isenabled()
    gc.enable()
    with pytest.raises(RuntimeError), heap.paused():
        raise RuntimeError("a submit refused half-way")
    assert gc.isenabled()


@pytest.mark.django_db
def test_a_bulk_submit_builds_with_the_collector_paused_and_a_small_one_without(collector_on):
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
        submit_many([JobSpec("t.gc_probe")] * 3)
        assert seen == [True] * 3
    finally:
        registry.unregister("t.gc_probe")
    assert Job.objects.count() == 103
