"""The forking worker's bookkeeper: a process of the worker's own that claims and records
its forked runs (jobs.execution.bookkeeper). The transport needs nothing but a socket; the
rest runs real `manage.py rqworker` processes on PostgreSQL, where the bookkeeper works."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
from datetime import timedelta

import pytest
from django.db import connection, connections, transaction
from django.db.models.functions import Now

from conftest import exits, readable_within, relay_asleep_until_due, wait_for
from jobs.core.models import Job, Status
from jobs.core.submit import JobSpec, submit, submit_many
from jobs.execution import bookkeeper
from workwindow.models import WorkWindow

QUEUES = ("immediate", "normal", "low")


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(child) for child in out.split()]


def books_of(worker: subprocess.Popen) -> list[int]:
    """The worker's children in its own process group: its bookkeeper (a horse makes its own)."""
    return [pid for pid in children(worker.pid) if _group_of(pid) == worker.pid]


def _group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:  # ended meanwhile
        return None


def bookkeeper_of(worker: subprocess.Popen) -> int:
    return wait_for(lambda: next(iter(books_of(worker)), None), timeout=20, what="the worker's bookkeeper")


def database_sockets(pid: int) -> int:
    """How many of the process's sockets are connected to the test database's server."""
    if (connection.settings_dict["HOST"] or "/").startswith("/"):
        pytest.skip("this check reads TCP sockets: DATABASE_URL names a Unix socket")
    port = int(connection.settings_dict["PORT"] or 5432)
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    found = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                found += remote_port == port and fields[9] in inodes
    return found


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1].startswith("Z")  # a zombie has ended
    except FileNotFoundError:
        return True


@pytest.mark.redis
def test_a_claims_answer_goes_first_and_then_its_messages_go(monkeypatch):
    """The bookkeeper wakes its relay's thread for what a claim's handover made due only
    once its answer is sent: the handover it passed on still opens at once, not when
    the gathering would have ended."""
    from jobs.core import relay

    monkeypatch.setattr(relay, "GATHER_SECONDS", 60.0)  # longer than any test waits
    relay.send({"type": "active", "job_id": "claimed-before", "batch_id": None})
    sender = relay._own_sender()
    assert sender is not None
    relay_asleep_until_due(sender)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours, theirs:
        job = Job(type="diagnostics.noop", rq_job_id="d1")
        bookkeeper._claim(theirs, (str(job.id), "d1", "w1", None), {}, lambda *asked: job)
        answer, fds = bookkeeper.receive(ours)
    assert answer[0] == "claimed" and fds, "a claim with messages gathering passes a handover on"
    try:
        assert readable_within(fds[0], 5), "the claim's messages wait for the gathering"
    finally:
        os.close(fds[0])
    assert sender.wait_idle(5)


# --- the transport (no database, no Redis) ----------------------------------------------


def test_a_message_bigger_than_any_socket_buffer_arrives_whole_with_its_descriptor():
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    read_end, write_end = os.pipe()
    payload = {"rows": "x" * (5 << 20)}  # a claimed row's payload can be megabytes
    pid = os.fork()
    if pid == 0:  # the sender: the reader drains the socket meanwhile
        try:
            bookkeeper.send(theirs, ("claimed", payload), [read_end])
        finally:
            os._exit(0)
    theirs.close()
    message, fds = bookkeeper.receive(ours)
    os.waitpid(pid, 0)
    assert message == ("claimed", payload)
    assert len(fds) == 1
    os.write(write_end, b"!")  # the descriptor that came is the pipe's read end
    assert os.read(fds[0], 1) == b"!"
    for fd in (read_end, write_end, fds[0]):
        os.close(fd)


def test_a_bookkeeper_that_dies_before_it_answers_is_given_up():
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pid = os.fork()
    if pid == 0:  # takes the request, then dies without an answer
        try:
            ours.close()
            bookkeeper.receive(theirs)
        finally:
            os._exit(0)
    theirs.close()
    books = bookkeeper.Bookkeeper(ours, pid)
    with pytest.raises(bookkeeper.BookkeeperGone):
        books.record("d1", {"ok": True})
    assert ours.fileno() == -1  # never asked again: a late answer would be taken for the next one
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # and reaped


def test_the_peer_closing_its_end_is_the_end_of_the_requests():
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    bookkeeper.send(theirs, ("record", "d1", {"ok": True}))
    theirs.close()
    assert bookkeeper.receive(ours) == (("record", "d1", {"ok": True}), [])
    with pytest.raises(EOFError):
        bookkeeper.receive(ours)


# --- real workers ------------------------------------------------------------------------


def with_real_workers(test):
    """Worker processes on the test database, committed: where the bookkeeper works."""
    marks = (
        pytest.mark.skipif(connection.vendor != "postgresql", reason="the bookkeeper works on PostgreSQL"),
        pytest.mark.slow,
        pytest.mark.django_db(transaction=True),
    )
    for mark in marks:
        test = mark(test)
    return test


@with_real_workers
def test_forked_runs_are_claimed_and_recorded_by_the_bookkeeper_in_the_workers_name(spawn):
    worker = spawn("rqworker", *QUEUES)
    books = bookkeeper_of(worker)
    jobs = [r.job for r in submit_many([JobSpec("diagnostics.noop")] * 5)]
    wait_for(
        lambda: Job.objects.filter(pk__in=[j.pk for j in jobs], status=Status.COMPLETE).count() == 5,
        timeout=30,
        what="the jobs to complete",
    )
    # Claimed and recorded by the bookkeeper, on its own connection (the worker opened
    # none), in the name of the worker, which runs them.
    assert database_sockets(books) >= 1 and database_sockets(worker.pid) == 0
    assert set(Job.objects.filter(pk__in=[j.pk for j in jobs]).values_list("runner_pid", flat=True)) == {worker.pid}
    assert bookkeeper_of(worker) == books  # one for the worker's life
    worker.send_signal(signal.SIGTERM)
    assert exits(worker, 20, "the worker") == 0
    assert gone(books)  # it ends with the worker


@with_real_workers
def test_a_killed_bookkeeper_loses_no_run_and_the_worker_keeps_its_own_books(spawn):
    worker = spawn("rqworker", *QUEUES)
    running = submit("diagnostics.sleep", {"seconds": 2, "steps": 4}).job
    wait_for(lambda: Job.objects.get(pk=running.pk).status == Status.ACTIVE, timeout=20, what="the job to start")
    os.kill(bookkeeper_of(worker), signal.SIGKILL)  # while the run it claimed is still going
    assert Job.objects.get(pk=running.pk).status == Status.ACTIVE
    later = [r.job for r in submit_many([JobSpec("diagnostics.noop")] * 3)]
    ids = [running.pk, *[j.pk for j in later]]
    wait_for(
        lambda: Job.objects.filter(pk__in=ids, status=Status.COMPLETE).count() == 4,
        timeout=40,
        what="every job to complete",
    )
    run = Job.objects.get(pk=running.pk)
    assert run.attempts == 1  # recorded by the worker itself, not left for the reconciler to retry
    assert worker.poll() is None
    assert books_of(worker) == []  # not started again


STOP = 1.5  # seconds a run may go unrenewed, in the worker of the next test


@with_real_workers
def test_a_bookkeeper_killed_between_its_claim_and_its_answer_leaves_the_run_to_its_worker(spawn):
    """Its claim committed (the job active in the worker's name), its answer never sent:
    the worker's own claim is refused, and it takes the run over. It sat active before,
    until its lease passed and the reconciler retried it (an attempt more). The bookkeeper
    hangs longer than a run may go unrenewed before it dies: the adopted run's lease
    counts from its adoption, not from the claim asked (it was stopped at once)."""
    job = submit("diagnostics.sleep", {"seconds": 0.2}, heavy=True).job
    locked, release, holder_backend = threading.Event(), threading.Event(), []

    def hold_the_windows() -> None:  # a heavy job's claim then reads the windows: it waits here
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(f"LOCK TABLE {WorkWindow._meta.db_table} IN ACCESS EXCLUSIVE MODE")
                cursor.execute("SELECT pg_backend_pid()")
                holder_backend.append(cursor.fetchone()[0])
                locked.set()
                release.wait(60)
        finally:
            connections.close_all()

    def waiting_behind_the_lock() -> bool:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", holder_backend
            )
            return cursor.fetchone()[0] > 0

    def hung_past_the_stop() -> bool:  # on the database's clock, as leases are judged
        stale = Now() - timedelta(seconds=STOP + 0.5)
        return Job.objects.filter(pk=job.pk, started_at__lt=stale).exists()

    holder = threading.Thread(target=hold_the_windows)
    holder.start()
    try:
        assert locked.wait(30)
        worker = spawn("rqworker", *QUEUES, JOB_LEASE_STOP_SECONDS=str(STOP), JOB_LEASE_RENEW_SECONDS="0.5")
        wait_for(lambda: Job.objects.get(pk=job.pk).status == Status.ACTIVE, timeout=30, what="the claim")
        wait_for(waiting_behind_the_lock, timeout=30, what="the bookkeeper's window check, after its claim")
        wait_for(hung_past_the_stop, timeout=30, what="the bookkeeper hung past the lease's stop")
        os.kill(bookkeeper_of(worker), signal.SIGKILL)
    finally:
        release.set()
        holder.join(30)
    wait_for(lambda: Job.objects.get(pk=job.pk).status == Status.COMPLETE, timeout=30, what="the run, by its worker")
    assert Job.objects.get(pk=job.pk).attempts == 1, "run once, not retried after its lease"
    assert worker.poll() is None


@with_real_workers
def test_the_bookkeeper_dies_with_its_worker(spawn):
    worker = spawn("rqworker", *QUEUES)
    books = bookkeeper_of(worker)
    worker.kill()  # the worker alone, as the OOM killer would
    worker.wait(10)
    wait_for(lambda: gone(books), timeout=10, what="the bookkeeper to die with its worker")


@with_real_workers
def test_a_worker_told_not_to_keeps_its_own_books(spawn):
    worker = spawn("rqworker", *QUEUES, WORKER_BOOKKEEPER="false")
    job = submit("diagnostics.noop").job
    wait_for(lambda: Job.objects.get(pk=job.pk).status == Status.COMPLETE, timeout=30, what="the job to complete")
    assert books_of(worker) == []
    assert database_sockets(worker.pid) >= 1  # it claimed and recorded itself
