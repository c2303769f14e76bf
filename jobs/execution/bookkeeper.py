"""A forking worker's bookkeeping in a process of its own, which never forks.

Every fork write-protects all of the forking process's memory, so each page the
worker's parent writes between two forks faults once per job. The claim and the record
(psycopg, the row read back as a ``Job``, the relay's message) wrote about 600 pages a
job: some 1.5 ms of the parent's CPU over what the same statements cost in a process
that does not fork. ``JobdeskWorker`` asks its bookkeeper instead: a child forked once,
at the worker's start, with its own database connection and relay, which claims and
records forked runs in the order asked, one request at a time. The parent still forks
the work-horses (they inherit its warm memory, as before) and keeps each run's lease.

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

    def ask_to_claim(self, job_id: str, dispatch: str, worker_name: str, known) -> None:
        """Ask for a claim (as ``runner.claim``); ``claim_answer`` takes the answer."""
        self._call(send, self._sock, ("claim", job_id, dispatch, worker_name, known))

    def claim_answer(self, dispatch: str) -> tuple[Job | None, int | None]:
        """The claimed row (None: refused) and the read end of its relay's handover (for
        the horse: its messages go after the claim's)."""
        answer, fds = self._call(receive, self._sock)
        handover = fds[0] if fds else None
        if answer[0] == "failed":
            raise ClaimFailed(answer[1])
        if answer[0] == "refused":
            return None, handover
        _, claimed, attempt = answer
        try:
            tracing.adopt_attempt(dispatch, attempt)  # the horse's spans are the claim's children
        except BaseException:
            if handover is not None:
                os.close(handover)
            raise
        return claimed, handover

    def record(self, dispatch: str, outcome: dict) -> None:
        """Record the outcome of the run it claimed (retrying as the worker would)."""
        self._ask(("record", dispatch, outcome))

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

    def _ask(self, request: tuple) -> tuple[Any, list[int]]:
        self._call(send, self._sock, request)
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
        for request, _ in _requests(sock):
            if request[0] == "claim":
                _claim(sock, request[1:], claimed, claim)
            elif request[0] == "record":
                _, dispatch, outcome = request
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
    job_id, dispatch, worker_name, known = request
    try:
        job = claim(job_id, dispatch, worker_name, known)
    except Exception as error:  # a database error, or a bug: the horse claims for itself, as after one here
        logger.exception("claim failed", extra={"job_id": job_id, "dispatch": dispatch})
        send(sock, ("failed", f"{type(error).__name__}: {error}"))
        return
    if job is None:
        send(sock, ("refused",))
        return
    claimed[dispatch] = job
    # The horse's messages wait for "active" to go from here: sent once the answer is.
    handover = relay.handover(wake=False)
    try:
        send(sock, ("claimed", job, tracing.attempt_of(dispatch)), [handover] if handover is not None else None)
    finally:
        if handover is not None:
            os.close(handover)  # the worker has its own copy now
            relay.wake()


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
