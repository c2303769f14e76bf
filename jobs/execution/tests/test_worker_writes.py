"""What a worker writes to Redis about itself between two jobs: RQ's loop beats three
times and writes "idle" twice there; a worker sends each once a second at most."""

from __future__ import annotations

import pytest

from jobs.core import queueing
from jobs.execution.worker import JobdeskSimpleWorker


@pytest.fixture
def worker(redis_conn):
    made = JobdeskSimpleWorker([queueing.queue("normal")], connection=redis_conn)
    made.register_birth()
    made._registration_checked = float("inf")  # the registration check's round trips stay out of these
    yield made
    made.register_death()


def plain_ttl(worker) -> int:
    """The key's expiry after a plain beat (RQ's: the worker's TTL and a minute)."""
    return worker.worker_ttl + 60


def a_second_passes(worker) -> None:
    """As if the last writes were a second old (the worker reads a monotonic clock)."""
    worker._beaten_at -= 1.0
    if worker._state_written is not None:
        state, at = worker._state_written
        worker._state_written = (state, at - 1.0)


def test_a_heartbeat_within_a_second_of_the_last_one_is_not_sent(worker, redis_conn):
    worker.heartbeat()
    assert 0 < redis_conn.ttl(worker.key) <= plain_ttl(worker)
    redis_conn.expire(worker.key, 1000)  # a mark: a beat sent would set the TTL back
    worker.heartbeat()
    worker.heartbeat()
    assert redis_conn.ttl(worker.key) > plain_ttl(worker), "the two beats right after the first were not sent"
    a_second_passes(worker)
    worker.heartbeat()
    assert redis_conn.ttl(worker.key) <= plain_ttl(worker), "a second later, the beat is sent"


def test_a_heartbeat_with_a_ttl_of_its_own_is_always_sent(worker, redis_conn):
    worker.heartbeat()
    worker.heartbeat(plain_ttl(worker) + 500)  # a job's, within the second
    assert redis_conn.ttl(worker.key) > plain_ttl(worker)
    with redis_conn.pipeline() as pipe:
        worker.heartbeat(plain_ttl(worker) - 30, pipeline=pipe)
        pipe.execute()
    assert redis_conn.ttl(worker.key) <= plain_ttl(worker) - 30


def test_a_plain_heartbeat_in_a_pipeline_is_always_sent(worker, redis_conn):
    """RQ's suspension check beats so, just before each pop: the beat that keeps the key."""
    worker.heartbeat()
    redis_conn.expire(worker.key, 1000)
    with redis_conn.pipeline() as pipe:
        worker.heartbeat(pipeline=pipe)
        pipe.execute()
    assert redis_conn.ttl(worker.key) <= plain_ttl(worker)


def noop() -> None:
    """A raw RQ job's function."""


def test_the_key_outlives_every_wait_for_the_next_job_in_rqs_loop(redis_conn, monkeypatch):
    """A burst worker's loop, its TTL longer than a job's beat leaves: at every pop, the
    key has more life left than a pop may wait (a worker that is not bursting waits that
    long). What keeps it is RQ's suspension check's beat, just before the pop."""
    from rq import Queue

    queue = queueing.queue("normal")
    for _ in range(3):
        queue.enqueue(noop, job_timeout=1)  # its beat leaves the key 61 s
    worker = JobdeskSimpleWorker([queue], connection=redis_conn, worker_ttl=300)
    left: list[int] = []
    dequeue_any = Queue.dequeue_any.__func__

    def pop(cls, *args, **kwargs):
        left.append(redis_conn.ttl(worker.key))
        return dequeue_any(cls, *args, **kwargs)

    monkeypatch.setattr(Queue, "dequeue_any", classmethod(pop))
    assert worker.work(burst=True)
    assert len(left) >= 4, "three jobs and the empty pops"
    assert min(left) > worker.dequeue_timeout, left


def test_a_state_written_a_moment_ago_is_not_written_again(worker, redis_conn):
    worker.set_state("idle")
    assert redis_conn.hget(worker.key, "state") == b"idle"
    redis_conn.hset(worker.key, "state", "mark")  # a write would overwrite it
    worker._state = "busy"  # as a run sets it, without a write
    worker.set_state("idle")
    assert redis_conn.hget(worker.key, "state") == b"mark", "the same state, written once"
    assert worker.get_state() == "idle"
    worker.set_state("busy")
    assert redis_conn.hget(worker.key, "state") == b"busy", "another state is written at once"
    worker.set_state("idle")
    a_second_passes(worker)
    redis_conn.hset(worker.key, "state", "mark")
    worker.set_state("idle")
    assert redis_conn.hget(worker.key, "state") == b"idle", "a second later, written again"


def test_a_state_written_in_a_pipeline_is_written_again_alone(worker, redis_conn):
    with redis_conn.pipeline() as pipe:
        worker.set_state("idle", pipeline=pipe)
        pipe.execute()
    redis_conn.hset(worker.key, "state", "mark")
    worker.set_state("idle")
    assert redis_conn.hget(worker.key, "state") == b"idle"


def test_a_registration_written_again_lets_the_state_be_written_again(worker, redis_conn):
    worker.set_state("idle")
    redis_conn.delete(worker.key)  # a flush
    worker._registration_checked = float("-inf")
    worker.heartbeat()  # sees the registration gone and writes it again
    assert redis_conn.hget(worker.key, "birth") is not None
    redis_conn.hset(worker.key, "state", "mark")
    worker.set_state("idle")
    assert redis_conn.hget(worker.key, "state") == b"idle"


@pytest.mark.parametrize(("asked", "kept"), [(None, 60), (420, 60), (300, 300)])
def test_an_idle_worker_beats_every_45_seconds_unless_asked_otherwise(redis_conn, asked, kept):
    """django-rq's rqworker passes RQ's default TTL (420 s) when none is asked for: an idle
    worker then beat, and noticed its registration gone, every 405 s."""
    options = {} if asked is None else {"worker_ttl": asked}
    worker = JobdeskSimpleWorker([queueing.queue("normal")], connection=redis_conn, **options)
    assert worker.worker_ttl == kept
    assert worker.dequeue_timeout == kept - 15


def test_without_redis_a_worker_tries_again_at_least_every_few_seconds(worker, monkeypatch):
    """RQ doubles its wait between attempts to reach Redis, up to 60 s: a worker whose
    Redis came back after half a minute went on waiting up to 16 s more. Jobdesk's waits
    at most REDIS_RETRY_MAX_WAIT. RQ's own loop against the suite's Redis, stopped; only
    the waits are not waited (recorded instead)."""
    from devtools import pytest_redis
    from jobs.execution.worker import REDIS_RETRY_MAX_WAIT

    server = pytest_redis.own_server()
    waits: list[float] = []

    class Enough(Exception):
        pass

    def recorded(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 7:
            raise Enough

    worker.set_state("idle")  # written now: RQ's loop writes it first, before any retry
    server.stop()
    try:
        with monkeypatch.context() as patched, pytest.raises(Enough):
            patched.setattr("rq.worker.base.time.sleep", recorded)  # time.sleep itself, until Enough
            worker.dequeue_job_and_maintain_ttl(timeout=1)
    finally:
        server.start()
    assert waits == [1, 2, 4, REDIS_RETRY_MAX_WAIT, REDIS_RETRY_MAX_WAIT, REDIS_RETRY_MAX_WAIT, REDIS_RETRY_MAX_WAIT]
