"""A worker's bookkeeping in a process of its own, which never forks.

Every fork write-protects all of the forking process's memory, so each page the
worker's parent writes between two forks faults once per job. The claim and the record
(psycopg, the row read back as a ``Job``, the relay's message) wrote about 600 pages a
job: some 1.5 ms of the parent's CPU over what the same statements cost in a process
that does not fork. ``JobdeskWorker`` asks its bookkeeper instead: a child forked once,
at the worker's start, with its own database connection and relay, which claims and
records the worker's runs in the order asked, one request at a time. The parent still
forks the work-horses (they inherit its warm memory, as before) and keeps each run's
lease. An inline run (``fork=False``, and every run of ``JobdeskSimpleWorker``) goes
through it too: there the claim, the record and the outcome's messages leave the
worker's interpreter lock for another core. Such a run's "active" comes back with the
claim's answer for the worker to relay, before the run's progress
(``jobs.core.relay.kept_back``); the outcome's messages wait for the worker's relay to
send what it held at the record (``jobs.core.relay.follow``).

The bookkeeper ends when the worker closes its end (after the last record), and dies
with the worker (PR_SET_PDEATHSIG). When it is gone (a slow answer is waited for), the worker
claims and records for itself from then on, as without one.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

from django.db import DatabaseError, connections

from jobs.core import lifecycle, relay, tracing
from jobs.core.models import Job

logger = logging.getLogger("jobs.execution.bookkeeper")

_FRAME = 4  # a message's length prefix, in bytes


class BookkeeperGone(Exception):
    """The bookkeeper is gone (its end of the socket closed: it died): the worker keeps
    its own books from now on. A slow answer is waited for, as the worker would wait for
    its own claim or record (a record runs the type's hooks, which take what they take)."""


class ClaimFailed(DatabaseError):
    """The bookkeeper's claim met a database error (it logged it): as a claim here would."""


class Bookkeeper:
    """The worker's side. One request at a time, each waiting for its answer: the worker's
    main thread claims only once the recorder's thread has its record answered."""

    def __init__(self, sock: socket.socket, pid: int) -> None:
        self._sock = sock
        self.pid = pid

    @classmethod
    def start(cls, serve: Callable[[socket.socket], None]) -> Bookkeeper | None:
        """Fork the bookkeeper, which runs ``serve(its end)`` and exits; None if it cannot."""
        try:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            pid = os.fork()
        except OSError:
            logger.exception("no bookkeeper: the worker keeps its own books")
            return None
        if pid == 0:
            ours.close()
            code = 0
            try:
                serve(theirs)
            except BaseException:
                logger.exception("the bookkeeper failed")
                code = 1
            finally:
                os._exit(code)
        theirs.close()
        return cls(ours, pid)

    def ask_to_claim(self, job_id: str, dispatch: str, worker_name: str, known, *, inline: bool) -> None:
        """Ask for a claim (as ``runner.claim``); ``claim_answer`` takes the answer.
        ``inline``: the run is the worker's own (no work-horse), and so is its relaying."""
        self._call(send, self._sock, ("claim", job_id, dispatch, worker_name, known, inline))

    def claim_answer(self, dispatch: str) -> tuple[Job | None, int | None, list]:
        """The claimed row (None: refused); for a horse, the read end of the bookkeeper's
        relay handover (its messages go after the claim's); for an inline run, the
        claim's messages, for the worker to relay before the run's own (``relay.resend``)."""
        answer, fds = self._call(receive, self._sock)
        handover = fds[0] if fds else None
        try:
            if answer[0] == "failed":
                raise ClaimFailed(answer[1])
            if answer[0] == "refused":
                return None, handover, []
            _, claimed, attempt, messages = answer
            tracing.adopt_attempt(dispatch, attempt)  # the run's spans are the claim's children
        except BaseException:
            if handover is not None:
                os.close(handover)
            raise
        return claimed, handover, messages

    def record(self, dispatch: str, outcome: dict, *, follows: int | None = None) -> None:
        """Record the outcome of the run it claimed (retrying as the worker would).
        ``follows``: the worker's relay handover (jobs.core.relay), which the bookkeeper's
        message of the outcome waits for; closed here."""
        try:
            self._ask(("record", dispatch, outcome), [follows] if follows is not None else None)
        finally:
            if follows is not None:
                os.close(follows)  # the bookkeeper has its own copy, if it got one

    def forget(self) -> None:
        """In a work-horse: let go of the inherited socket (the bookkeeper sees the
        worker's end close only when no process holds a copy)."""
        self._sock.close()

    def close(self, timeout: float) -> None:
        """End it once it has done what it was asked (up to ``timeout`` seconds)."""
        self._sock.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                done, _ = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                return
            if done:
                return
            if time.monotonic() >= deadline:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
                return
            time.sleep(0.01)

    def _ask(self, request: tuple, fds: list[int] | None = None) -> tuple[Any, list[int]]:
        self._call(send, self._sock, request, fds)
        return self._call(receive, self._sock)

    def _call(self, function, *args, **kwargs):
        try:
            return function(*args, **kwargs)
        except BaseException as error:
            # Gone, or interrupted mid-answer (a cold shutdown's SystemExit): a later answer
            # could be taken for the wrong request, so never ask this one again.
            self.close(timeout=0)
            if isinstance(error, (OSError, EOFError, pickle.PickleError)):
                raise BookkeeperGone(f"{type(error).__name__}: {error}") from error
            raise


def send(sock: socket.socket, message: Any, fds: list[int] | None = None) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    frame = len(data).to_bytes(_FRAME, "big") + data
    sent = socket.send_fds(sock, [frame], fds) if fds else 0
    sock.sendall(frame[sent:])


def receive(sock: socket.socket) -> tuple[Any, list[int]]:
    """The next message and the descriptors sent with it; EOFError once the peer is gone."""
    head, fds, _, _ = socket.recv_fds(sock, _FRAME, 1)
    data = _exactly(sock, _FRAME, head)
    return pickle.loads(_exactly(sock, int.from_bytes(data, "big"))), fds


def _exactly(sock: socket.socket, size: int, start: bytes = b"") -> bytes:
    chunks, have = [start], len(start)
    while have < size:
        chunk = sock.recv(min(size - have, 1 << 20))
        if not chunk:
            raise EOFError("the peer is gone")
        chunks.append(chunk)
        have += len(chunk)
    return b"".join(chunks)


def serve(
    sock: socket.socket,
    *,
    worker_pid: int,
    claim: Callable[..., Job | None],
    record: Callable[[Job, str, dict], None],
) -> None:
    """The bookkeeper's life: claims and records as asked, until the worker's end closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C: the worker ends it, after its last record
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    detach_inherited_connections()
    lifecycle.claim_for(worker_pid)  # its claims name the worker's process, which operators see
    claimed: dict[str, Job] = {}
    try:
        for request, fds in _requests(sock):
            if request[0] == "claim":
                _claim(sock, request[1:], claimed, claim)
            elif request[0] == "record":
                _, dispatch, outcome = request
                relay.follow(fds[0] if fds else None)  # the outcome's message after the run's progress
                try:
                    record(claimed.pop(dispatch), dispatch, outcome)
                except Exception:  # as the recorder's thread would: the lease and the reconciler cover the run
                    logger.exception("recording an outcome failed", extra={"dispatch": dispatch})
                send(sock, ("recorded",))
    finally:
        relay.drain()
        tracing.flush(tracing.EXIT_FLUSH_SECONDS)
        connections.close_all()


def _claim(sock: socket.socket, request: tuple, claimed: dict[str, Job], claim) -> None:
    job_id, dispatch, worker_name, known, inline = request
    failed: Exception | None = None
    job: Job | None = None
    with relay.kept_back() as kept:
        try:
            job = claim(job_id, dispatch, worker_name, known)
        except Exception as error:  # a database error, or a bug: the run claims for itself, as after one here
            failed = error
    # An inline run's messages are the worker's to relay: its claim's "active" goes back
    # with the answer, and the worker's relay sends the run's progress after it. A
    # work-horse's relay follows this process's handover instead.
    if not inline or job is None:
        relay.resend(kept)
        kept = []
    if failed is not None:
        logger.error("claim failed", extra={"job_id": job_id, "dispatch": dispatch}, exc_info=failed)
        send(sock, ("failed", f"{type(failed).__name__}: {failed}"))
        return
    if job is None:
        send(sock, ("refused",))
        return
    claimed[dispatch] = job
    handover = None if inline else relay.handover()  # the horse's messages wait for "active" to go from here
    try:
        send(sock, ("claimed", job, tracing.attempt_of(dispatch), kept), [handover] if handover is not None else None)
    finally:
        if handover is not None:
            os.close(handover)  # the worker has its own copy now


def _requests(sock: socket.socket) -> Iterator[tuple[Any, list[int]]]:
    while True:
        try:
            yield receive(sock)
        except EOFError:
            return


# The forking process's database connections, inherited by a child (a work-horse, the
# bookkeeper). Kept referenced (never closed or garbage-collected) until the child's
# os._exit, so the child cannot disturb its parent's sessions; it opens its own.
_inherited: list = []


def detach_inherited_connections() -> None:
    """In a forked child, first: leave the parent's connections alone."""
    for connection in connections.all(initialized_only=True):
        if connection.connection is not None:
            _inherited.append(connection.connection)
            connection.connection = None
