"""Real `manage.py rqworker` / `rqworker-pool` processes against the test database."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from django.db import connection
from rq import Worker
from rq.job import Job as RQJob

from conftest import exits, wait_for
from jobs.core import actions, lifecycle, queueing, registry
from jobs.core.models import Job, JobEvent, Status
from jobs.core.submit import JobSpec, submit, submit_many
from jobs.insight import estimates

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

QUEUES = ("immediate", "normal", "low")


def statuses(ids) -> list[str]:
    return list(Job.objects.filter(pk__in=ids).values_list("status", flat=True))


def max_overlap(intervals) -> int:
    """Largest number of [start, end] intervals that cover one instant."""
    edges = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1]))
    current = peak = 0
    for _, step in edges:
        current += step
        peak = max(peak, current)
    return peak


def test_worker_pool_of_two_never_runs_more_than_two_at_once(spawn):
    jobs = [r.job for r in submit_many([JobSpec("diagnostics.sleep", {"seconds": 1.0, "steps": 4})] * 6)]
    spawn("rqworker-pool", *QUEUES, "--num-workers", "2")
    ids = [j.id for j in jobs]
    wait_for(lambda: statuses(ids).count(Status.COMPLETE) == 6, timeout=90, what="6 jobs to complete")
    intervals = list(Job.objects.filter(pk__in=ids).values_list("started_at", "finished_at"))
    # Exactly two: never more than WORKER_CONCURRENCY, and the pool really ran in parallel.
    assert max_overlap(intervals) == 2
    assert all(j.attempts == 1 for j in Job.objects.filter(pk__in=ids))


def test_cancel_stops_an_active_job_within_seconds(spawn, redis_conn):
    job = submit("diagnostics.sleep", {"seconds": 120, "steps": 1200}).job
    spawn("rqworker", *QUEUES)
    wait_for(lambda: Job.objects.get(pk=job.id).status == Status.ACTIVE, timeout=30, what="job to start")

    actions.cancel(job.id, reason="operator changed their mind")

    def worker_idle():
        workers = Worker.all(connection=redis_conn)
        return workers and all(w.get_current_job_id() is None for w in workers)

    wait_for(worker_idle, timeout=5, what="the worker to drop the canceled job")
    job.refresh_from_db()
    assert job.status == Status.CANCELED
    assert job.result is None and job.progress < 100
    assert job.events.filter(to_status=Status.CANCELED, message__contains="operator changed their mind").exists()


def test_sigterm_lets_the_running_job_finish(spawn):
    job = submit("diagnostics.sleep", {"seconds": 2, "steps": 4}).job
    worker = spawn("rqworker", *QUEUES)
    wait_for(lambda: Job.objects.get(pk=job.id).status == Status.ACTIVE, timeout=30, what="job to start")
    worker.send_signal(signal.SIGTERM)
    assert exits(worker, 30, "the worker") == 0
    job.refresh_from_db()
    assert job.status == Status.COMPLETE and job.attempts == 1


def test_priorities_with_a_real_worker_process(spawn):
    low = submit("diagnostics.noop", priority="low").job
    normal = submit("diagnostics.noop", priority="normal").job
    first = submit("diagnostics.noop", priority="immediate").job
    spawn("rqworker", *QUEUES, "--burst")
    ids = [low.id, normal.id, first.id]
    wait_for(lambda: statuses(ids).count(Status.COMPLETE) == 3, timeout=60, what="3 jobs to complete")
    order = list(Job.objects.filter(pk__in=ids).order_by("started_at").values_list("id", flat=True))
    assert order == [first.id, normal.id, low.id]
    assert queueing.queue_depths() == {"immediate": 0, "normal": 0, "low": 0}


def test_a_canceled_run_is_stopped_by_its_worker_even_without_the_stop_command(spawn, redis_conn):
    """If the cancel lands before RQ considers the job started, the stop-job command is
    refused; the Jobdesk worker's lease renewal is refused and stops the horse anyway."""
    from jobs.core import lifecycle

    job = submit("diagnostics.sleep", {"seconds": 120, "steps": 1}).job  # no cooperative checks
    spawn("rqworker", *QUEUES)
    wait_for(lambda: Job.objects.get(pk=job.id).status == Status.ACTIVE, timeout=30, what="job to start")
    lifecycle.cancel(job.id, reason="cancel that raced the start")  # the row only: no stop-job command

    def worker_idle():
        workers = Worker.all(connection=redis_conn)
        return workers and all(w.get_current_job_id() is None for w in workers)

    wait_for(worker_idle, timeout=10, what="the worker to stop the canceled run")
    wait_for(lambda: Job.objects.get(pk=job.id).lease_expires_at is None, timeout=5, what="its lease to be given back")
    assert Job.objects.get(pk=job.id).status == Status.CANCELED


def test_an_inline_run_whose_lease_renewal_is_refused_is_stopped_and_the_worker_lives_on(spawn, redis_conn):
    """An inline (fork=False) handler that never checks for cancel: the refused renewal
    interrupts it in the worker's own process, and the same worker takes the next job."""
    from jobs.core import lifecycle

    job = submit("diagnostics.sleep_inline", {"seconds": 120, "steps": 1}).job
    worker = spawn(
        "rqworker", *QUEUES, JOB_LEASE_RENEW_SECONDS="0.5", JOB_LEASE_STOP_SECONDS="2", JOB_LEASE_SECONDS="5"
    )
    wait_for(lambda: Job.objects.get(pk=job.id).status == Status.ACTIVE, timeout=30, what="job to start")
    lifecycle.cancel(job.id, reason="the row only: no stop-job command")
    wait_for(lambda: worker_idle_in(redis_conn), timeout=10, what="the inline run to be stopped")
    wait_for(lambda: Job.objects.get(pk=job.id).lease_expires_at is None, timeout=5, what="its lease to be given back")
    after = submit("diagnostics.noop_inline").job
    wait_for(lambda: Job.objects.get(pk=after.id).status == Status.COMPLETE, timeout=30, what="the next job")
    assert worker.poll() is None and Job.objects.get(pk=after.id).runner_pid == worker.pid


def worker_idle_in(redis_conn):
    workers = Worker.all(connection=redis_conn)
    return workers and all(w.get_current_job_id() is None for w in workers)


def test_fork_false_types_run_in_the_worker_process_while_other_types_get_a_horse(spawn):
    inline = submit("diagnostics.sleep_inline", {"seconds": 0.3, "steps": 3}).job
    forked = submit("diagnostics.sleep", {"seconds": 0.3, "steps": 3}).job
    inline_again = submit("diagnostics.sleep_inline", {"seconds": 0, "steps": 1}).job
    worker = spawn("rqworker", *QUEUES, "--burst")
    ids = [inline.id, forked.id, inline_again.id]
    wait_for(lambda: statuses(ids).count(Status.COMPLETE) == 3, timeout=60, what="3 jobs to complete")
    assert exits(worker, 30, "the worker") == 0

    rows = {j.id: j for j in Job.objects.filter(pk__in=ids)}
    for job_id in (inline.id, inline_again.id):
        # The handler ran in the worker's own process, which also holds the claim.
        assert rows[job_id].result["pid"] == worker.pid == rows[job_id].runner_pid
        assert rows[job_id].progress == 100 and rows[job_id].attempts == 1
    assert rows[forked.id].runner_pid == worker.pid != rows[forked.id].result["pid"]  # its horse
    moves = list(JobEvent.objects.filter(job_id=inline.id).values_list("to_status", flat=True).order_by("seq"))
    assert moves[-2:] == [Status.ACTIVE, Status.COMPLETE]


def test_an_inline_job_is_stopped_at_its_timeout_and_the_worker_lives_on(spawn, redis_conn):
    job = submit("diagnostics.sleep_inline", {"seconds": 60, "steps": 1}, max_attempts=1).job
    # RQ's death penalty fires at the dispatch's timeout (the type's + a bookkeeping
    # grace): shorten it, as a short-timeout type would have it.
    dispatch = RQJob.fetch(job.rq_job_id, connection=redis_conn)
    dispatch.timeout = 2
    dispatch.save()
    worker = spawn("rqworker", *QUEUES)
    wait_for(lambda: Job.objects.get(pk=job.id).status == Status.ACTIVE, timeout=30, what="job to start")
    wait_for(lambda: Job.objects.get(pk=job.id).status == Status.DEAD_LETTER, timeout=20, what="the timeout")
    job.refresh_from_db()
    assert "timed out" in job.error_message and job.finished_at is not None
    assert (job.finished_at - job.started_at).total_seconds() < 10  # stopped, not slept out

    assert worker.poll() is None  # the worker survived its job's timeout
    after = submit("diagnostics.noop_inline").job
    wait_for(lambda: Job.objects.get(pk=after.id).status == Status.COMPLETE, timeout=20, what="the next job")
    assert Job.objects.get(pk=after.id).runner_pid == worker.pid


def test_canceling_an_inline_job_stops_it_cooperatively_and_the_worker_lives_on(spawn, redis_conn):
    # 3 s between its checks: the stop-job command arrives while it sleeps.
    job = submit("diagnostics.sleep_inline", {"seconds": 120, "steps": 40, "trace": True}).job
    worker = spawn("rqworker", *QUEUES)
    runs = f"jobdesk:diag:runs:{job.id}"
    wait_for(lambda: redis_conn.llen(runs) == 1, timeout=30, what="the handler to start")

    actions.cancel(job.id, reason="not this one")  # sends RQ's stop-job command too
    wait_for(lambda: worker_idle_in(redis_conn), timeout=10, what="the worker to drop the canceled job")
    job.refresh_from_db()
    assert job.status == Status.CANCELED and job.progress < 100
    # RQ's stop-job command kills the horse's process group; with no horse it must not
    # take the worker itself.
    assert worker.poll() is None
    after = submit("diagnostics.noop").job
    wait_for(lambda: Job.objects.get(pk=after.id).status == Status.COMPLETE, timeout=20, what="the next job")


def test_first_etas_hold_against_a_real_worker_pool(spawn):
    """Every job's first estimate, made at submit, is within 0.5 s + 20 % of its wait of
    when a real pool of two workers started it."""
    spawn("rqworker-pool", *QUEUES, "--num-workers", "2")
    wait_for(lambda: estimates.live_workers() == 2, timeout=60, what="two live workers")
    warm = [r.job.id for r in submit_many([JobSpec("diagnostics.sleep", {"seconds": 0.4, "steps": 1})] * 4)]
    wait_for(lambda: statuses(warm).count(Status.COMPLETE) == 4, timeout=60, what="the warm-up jobs")
    estimates.clear_cache()  # learn what a 0.4 s sleep really takes here

    specs = [JobSpec("diagnostics.sleep", {"seconds": 0.4, "steps": 1}, priority=p) for p in ["normal"] * 8 + ["low"]]
    jobs = [r.job for r in submit_many(specs)]
    ids = [j.id for j in jobs]
    wait_for(lambda: statuses(ids).count(Status.COMPLETE) == len(ids), timeout=90, what="the jobs to complete")

    for job in Job.objects.filter(pk__in=ids):
        wait = (job.started_at - job.created_at).total_seconds()
        assert job.first_estimated_start_at is not None
        assert abs(job.eta_error_seconds) <= 0.5 + 0.2 * wait, (job.priority, wait, job.eta_error_seconds)
    last = max(Job.objects.filter(pk__in=ids), key=lambda j: j.started_at)
    assert (last.started_at - last.created_at).total_seconds() > 1.5  # a real line, not all at once


def _followed_through_a_jobdesk_worker(job, user, run_worker) -> tuple[list[dict], int]:
    """Every message a WebSocket follower of ``job`` gets while a JobdeskWorker (in this
    process) drains the queues, and the code it is closed with."""
    from asgiref.sync import async_to_sync, sync_to_async

    from jobs.execution.worker import JobdeskWorker
    from jobs.live.tests.test_websockets import connect, follow, token_header

    @async_to_sync
    async def watch():
        communicator, _ = await connect(f"/ws/jobs/{job.id}/", [await sync_to_async(token_header)(user)])
        # The snapshot first: the consumer reads it after accepting, and a worker started
        # before that read (a loaded machine) would claim first; the snapshot then shows
        # the job active, and the "active" event it covers is rightly not sent.
        snapshot = await communicator.receive_json_from(timeout=5)
        await sync_to_async(run_worker)(worker_class=JobdeskWorker)
        rest, code = await follow(communicator)
        return [snapshot, *rest], code

    return watch()


def test_an_inline_jobs_events_reach_its_follower_in_order_and_complete(alice, run_worker):
    """No drain after an inline job: the worker's relay thread still delivers every
    event in order, the last one before the worker exits."""
    job = submit("diagnostics.sleep_inline", {"seconds": 0.2, "steps": 4}, owner=alice).job
    messages, code = _followed_through_a_jobdesk_worker(job, alice, run_worker)
    seqs = [m["seq"] for m in messages if "seq" in m]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), messages
    assert any(m["type"] == "progress" and m.get("progress") == 100 for m in messages), messages
    assert messages[-1]["type"] == "completed" and code == 1000
    assert Job.objects.get(pk=job.id).result["pid"] == os.getpid()  # ran in this process


# The two ways a forking worker keeps its books: itself, or through its bookkeeper (a
# process of its own, jobs.execution.bookkeeper, on PostgreSQL only).
KEEPERS = [
    pytest.param(False, id="the-worker"),
    pytest.param(
        True,
        id="its-bookkeeper",
        marks=pytest.mark.skipif(connection.vendor != "postgresql", reason="the bookkeeper works on PostgreSQL"),
    ),
]


def claims_for_the_worker(parent: int) -> bool:
    """Is this process the one that claims for the worker (the worker itself, or its bookkeeper)?"""
    return os.getpid() == parent or lifecycle.claiming_for() == parent


@pytest.mark.parametrize("books", KEEPERS)
def test_a_forked_jobs_progress_follows_its_active_message_when_the_parents_send_is_slow(
    books, alice, run_worker, settings, monkeypatch
):
    """The parent no longer waits for "active" to be sent before it forks: the horse's
    relay waits for it instead (relay.handover). With the sends of the process that
    claims slowed, a horse that reports at once still reaches its follower after
    "active", in seq order."""
    from jobs.core import relay

    settings.PROGRESS_WRITE_INTERVAL = 0  # every report written and relayed
    settings.WORKER_BOOKKEEPER = books
    monkeypatch.setattr(relay, "HANDOVER_WAIT", 10.0)  # the horse (a fork of this process) waits long enough
    parent, send = os.getpid(), relay._Sender._send

    def slow_in_the_parent(self, batch):
        if claims_for_the_worker(parent):
            time.sleep(0.3)  # longer than a send at once takes; within HANDOVER_WAIT
        send(self, batch)

    monkeypatch.setattr(relay._Sender, "_send", slow_in_the_parent)
    job = submit("diagnostics.sleep", {"seconds": 0, "steps": 3}, owner=alice).job
    messages, code = _followed_through_a_jobdesk_worker(job, alice, run_worker)
    assert [m["type"] for m in messages] == ["snapshot", "status"] + ["progress"] * 3 + ["completed"], messages
    assert messages[1]["status"] == Status.ACTIVE
    seqs = [m["seq"] for m in messages]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "one more per event, no gap"
    assert Job.objects.get(pk=job.id).result["pid"] != os.getpid()  # ran in a work-horse
    assert code == 1000


def test_a_forked_runs_outcome_reaches_its_parent_even_when_rqs_result_is_lost(run_worker, monkeypatch):
    """The horse hands its outcome to its parent through a pipe: the parent does not read
    it back from RQ's result in Redis (a round trip per job, and a run that succeeded was
    recorded as a dead horse, and retried, when that result was gone — a flush)."""
    from jobs.execution.worker import JobdeskWorker

    monkeypatch.setattr(RQJob, "latest_result", lambda self, *args, **kwargs: None)  # as after a FLUSHALL
    job = submit("diagnostics.sleep", {"seconds": 0, "steps": 1, "result": {"order": "A-1042"}}).job
    run_worker(worker_class=JobdeskWorker)
    job.refresh_from_db()
    assert (job.status, job.attempts) == (Status.COMPLETE, 1), job.error_message
    assert job.result["result"] == {"order": "A-1042"} and job.result["pid"] != os.getpid()  # from a work-horse


def test_an_outcome_that_does_not_load_back_from_the_pipe_is_read_from_rqs_result(run_worker, monkeypatch):
    """A review found an error reading the pipe stopping the worker with the job still
    active: it falls back to RQ's result, as for an outcome that does not fit."""
    from jobs.execution import runner
    from jobs.execution.worker import JobdeskWorker

    def broken(data):
        raise TypeError("cannot load this back")

    # pickle's loads, in this process: the worker's parent (horses only dump)
    monkeypatch.setattr(runner.pickle, "loads", broken)
    jobs = [submit("diagnostics.sleep", {"seconds": 0, "steps": 1, "result": n}).job for n in range(2)]
    run_worker(worker_class=JobdeskWorker)
    for job in jobs:
        job.refresh_from_db()
        assert (job.status, job.attempts) == (Status.COMPLETE, 1), job.error_message
    assert [job.result["result"] for job in jobs] == [0, 1], "both ran: the worker went on"


def test_an_outcome_too_big_for_the_pipe_is_read_from_rqs_result(run_worker):
    from jobs.execution.worker import JobdeskWorker

    big = "x" * 200_000  # more than a pipe holds
    job = submit("diagnostics.sleep", {"seconds": 0, "steps": 1, "result": big}).job
    run_worker(worker_class=JobdeskWorker)
    job.refresh_from_db()
    assert (job.status, job.attempts) == (Status.COMPLETE, 1), job.error_message
    assert job.result["result"] == big


def test_a_type_whose_code_fails_to_load_ends_its_job_not_the_worker(spawn):
    """A broken deploy: the type's module raises at import in the worker. The job ends
    as admin_required at its first attempt; the worker lives on (a review found the
    worker ending, and the job sent to the next worker for ever, when the type was
    resolved before the claim)."""
    broken = "jobs.execution.tests.brokentasks.task"
    registry.job_type(broken)(lambda ctx: None)  # known here (as on the web's side), not in the worker
    try:
        job = submit(broken, max_attempts=2).job
    finally:
        registry.unregister(broken)
    worker = spawn("rqworker", *QUEUES, "--burst")
    assert exits(worker, 60, "the worker") == 0
    job.refresh_from_db()
    assert (job.status, job.attempts, job.error_category) == (Status.FAILED, 1, "admin_required"), job.error_message
    assert "fails to load: RuntimeError: this module is broken at import" in job.error_message
    assert "found an unhandled exception" not in Path(worker.log_path).read_text()


@pytest.mark.parametrize("books", KEEPERS)
def test_a_claim_that_fails_in_the_parent_leaves_the_horse_to_claim_for_itself(
    books, run_worker, settings, monkeypatch
):
    """When the parent's claim (or its bookkeeper's) fails (the database hiccups), the
    horse it forks anyway claims, runs and records the job itself: one attempt, complete."""
    from django.db import DatabaseError

    from jobs.execution import runner
    from jobs.execution.worker import JobdeskWorker

    settings.WORKER_BOOKKEEPER = books
    parent, claim = os.getpid(), runner.claim

    def failing_in_the_parent(*args, **kwargs):
        if claims_for_the_worker(parent):
            raise DatabaseError("connection lost")
        return claim(*args, **kwargs)

    monkeypatch.setattr(runner, "claim", failing_in_the_parent)
    job = submit("diagnostics.sleep", {"seconds": 0}).job
    run_worker(worker_class=JobdeskWorker)  # the forking class, in this process
    job.refresh_from_db()
    assert (job.status, job.attempts) == (Status.COMPLETE, 1)
    assert job.result["pid"] != parent  # ran in a horse,
    assert job.runner_pid == job.result["pid"]  # which claimed it


@pytest.mark.parametrize("books", KEEPERS)
def test_a_claim_in_the_parent_that_committed_but_whose_answer_was_lost_is_taken_up(
    books, run_worker, settings, monkeypatch
):
    """The parent's claim (or its bookkeeper's) commits, then its connection drops: the
    horse's own claim would be refused and the run left to its lease (a second attempt,
    or a dead letter for a type of one). The parent adopts it: one attempt, complete."""
    from django.db import DatabaseError

    from jobs.execution import runner
    from jobs.execution.worker import JobdeskWorker

    settings.WORKER_BOOKKEEPER = books
    parent, claim = os.getpid(), runner.claim

    def committed_then_lost(*args, **kwargs):
        claimed = claim(*args, **kwargs)
        if claims_for_the_worker(parent):
            raise DatabaseError("server closed the connection unexpectedly")
        return claimed

    monkeypatch.setattr(runner, "claim", committed_then_lost)
    job = submit("diagnostics.sleep", {"seconds": 0}).job
    run_worker(worker_class=JobdeskWorker)
    job.refresh_from_db()
    assert (job.status, job.attempts) == (Status.COMPLETE, 1)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="ends a PostgreSQL session")
def test_a_claim_whose_connection_really_ended_after_its_commit_is_taken_up(run_worker, settings, monkeypatch):
    """As above, but the parent's session is ended by the server after the commit: the
    adoption must not go through the dead connection."""
    from jobs.execution import runner
    from jobs.execution.worker import JobdeskWorker

    settings.WORKER_BOOKKEEPER = False
    parent, claim = os.getpid(), runner.claim

    def committed_then_cut(*args, **kwargs):
        claimed = claim(*args, **kwargs)
        if os.getpid() == parent:
            backend = connection.connection.info.backend_pid
            with _other_session() as other:
                other.execute("SELECT pg_terminate_backend(%s)", [backend])
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")  # the answer is lost: raises
        return claimed

    monkeypatch.setattr(runner, "claim", committed_then_cut)
    job = submit("diagnostics.sleep", {"seconds": 0}).job
    run_worker(worker_class=JobdeskWorker)
    connection.close()
    job.refresh_from_db()
    assert (job.status, job.attempts) == (Status.COMPLETE, 1)


def _other_session():
    import psycopg

    params = connection.get_connection_params()
    return psycopg.connect(**{**params, "autocommit": True})


def test_a_stopping_worker_ends_its_pubsub_thread_even_when_the_unsubscribe_reply_comes_first(redis_conn):
    """RQ sends UNSUBSCRIBE, then stops its pub/sub thread and waits a second for it. A
    thread that reads the reply before the stop goes back to waiting (60 s) for a
    subscription: the worker's exit then waits the whole second for it. Forced here: the
    reply is read before RQ's stop."""
    from jobs.execution.worker import JobdeskSimpleWorker

    worker = JobdeskSimpleWorker([queueing.queue("normal")], connection=redis_conn)
    worker.subscribe()
    pubsub, unsubscribe = worker.pubsub, worker.pubsub.unsubscribe

    def the_reply_read_first(*args):
        unsubscribe(*args)
        wait_for(lambda: not pubsub.subscribed, timeout=10, what="the thread reading the reply")

    pubsub.unsubscribe = the_reply_read_first
    worker.unsubscribe()
    assert not worker.pubsub_thread.is_alive(), "the thread ended, not left behind by a timed-out join"
