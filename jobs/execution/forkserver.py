"""Work-horses forked by a lean process of the worker's own (a fork server), not by the
worker's parent.

A fork write-protects every page of the forking process: its next write to each one
faults, and copies the page while the horse lives. The parent of ``JobdeskWorker`` does
Jobdesk's bookkeeping (the claim and the record, the relay's and the lease keeper's
threads): forking each horse itself, it took ~1,700 such faults a job where raw RQ's
parent takes ~970, about 2 ms of CPU a job (README, "Speed"). The fork server is forked
once, when the worker starts (start-up done, imports in place, nothing held), and then
only waits, forks and reaps: the parent never forks again, so its pages stay writable,
and the server touches few of its own.

One horse at a time, as the worker runs one job at a time. The parent sends a request
(``HorseRequest``: what the horse needs of the parent's state, with the outcome pipe and
the relay's handover as descriptors); the server forks, answers with the horse's pid,
then with its wait status once it exits. The server dies with the worker
(PR_SET_PDEATHSIG) and its horses with it. When the server is gone (killed, out of
memory), the worker forks its horses itself, as RQ does, and starts another server at
its next job.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import pickle
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger("jobs.execution.forkserver")

# Linux: PR_SET_PDEATHSIG, and AF_UNIX sockets that keep messages whole (SOCK_SEQPACKET).
AVAILABLE = sys.platform.startswith("linux")
_STOP_SECONDS = 1.0  # for a stopping server to exit before it is killed
_MAX_REQUEST = 1 << 20  # bytes: a request carries a Jobdesk dispatch's RQ hash and row, a few KiB
_MAX_FDS = 4
# The wait status of a horse whose server died under it: killed by SIGKILL, as the server's
# death kills its horse (PR_SET_PDEATHSIG).
KILLED = signal.SIGKILL.value


@dataclass
class HorseRequest:
    """What a horse needs of its worker's parent, which claimed the job and prepared RQ's
    execution of it: the horse's own copy of the worker is the server's, from start-up."""

    rq_job_id: str
    rq_job_hash: dict[str, bytes]  # the RQ job as Redis holds it (RQ's Job.restore)
    queue_name: str
    execution_id: str
    execution_started: Any  # datetime: when the parent created RQ's execution
    dispatch: str
    claimed: Any  # the Jobdesk Job the parent claimed (runner.preclaimed)
    attempt_span: Any  # the claim's span context (jobs.core.tracing), or None
    outcome_pipe: bool  # the first descriptor sent is the write end of the outcome pipe
    handover: bool  # the next one is the relay's handover


class ForkServer:
    """The parent's end of a fork server. ``become_horse(request, descriptors)`` runs in
    each forked horse and never returns."""

    def __init__(self, become_horse: Callable[[HorseRequest, list[int]], None], die_with_parent) -> None:
        self._become_horse = become_horse
        self._die_with_parent = die_with_parent
        self._socket: socket.socket | None = None
        self._request = 0  # the number of the last request sent, which its replies carry
        self._status: int | None = None  # the last horse's wait status, once it exited
        self.pid = 0

    @property
    def running(self) -> bool:
        return self._socket is not None

    def start(self, close: list[int] | None = None) -> bool:
        """Fork the server; False when it cannot be (logged), or where there is none: only
        Linux ties a server's and its horses' lives to the worker's (PR_SET_PDEATHSIG).
        ``close``: the parent's descriptors the server must not keep."""
        if not AVAILABLE:
            return False
        try:
            parent_end, server_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        except OSError:
            logger.exception("no socket for a fork server: the worker forks its horses itself")
            return False
        parent_pid = os.getpid()
        try:
            pid = os.fork()
        except OSError:
            logger.exception("the fork server could not be started: the worker forks its horses itself")
            parent_end.close()
            server_end.close()
            return False
        if pid == 0:
            parent_end.close()
            for descriptor in close or ():
                os.close(descriptor)
            try:
                self._serve(server_end, parent_pid)
            except BaseException:
                logger.exception("the fork server failed")
            os._exit(0)
        server_end.close()
        self._socket, self.pid = parent_end, pid
        return True

    def fork(self, request: HorseRequest, descriptors: list[int]) -> int | None:
        """Have the server fork a horse for ``request``: its pid, or None when the server
        is gone (then dropped: the caller forks the horse itself)."""
        if self._socket is None:
            return None
        self._request, self._status = self._request + 1, None
        try:
            message = pickle.dumps((self._request, request), pickle.HIGHEST_PROTOCOL)
            socket.send_fds(self._socket, [message], descriptors)
            pid = self._reply("forked")
        except OSError:
            logger.exception("the fork server is gone: the worker forks its horses itself")
            pid = None
        if pid is None:
            self.stop()
        return pid

    def wait(self) -> int:
        """Until the horse forked last exits: its wait status (as os.waitpid's); asked
        again, the same. A signal handler may raise meanwhile (RQ's monitor alarm, every
        job_monitoring_interval; a second SIGTERM's force stop): see ``_reply``."""
        if self._status is None:
            try:
                status = self._reply("exited") if self._socket is not None else None
            except OSError:
                logger.exception("the fork server is gone while its horse ran")
                status = None
            if status is None:
                self._status = KILLED  # its horse died with it
                self.stop()
        assert self._status is not None
        return self._status

    def stop(self) -> None:
        """Close the parent's end: the server sees it and exits. One that does not (a horse
        still running under it, which is the worker's to stop) is killed, and its horse
        with it, as a worker's horse dies with the worker."""
        sock, self._socket = self._socket, None
        if sock is None:
            return
        sock.close()
        deadline = time.monotonic() + _STOP_SECONDS
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(self.pid, os.WNOHANG)[0] == 0:
                    time.sleep(0.005)
                    continue
            self.pid = 0
            return
        logger.warning("the fork server did not stop: killed", extra={"pid": self.pid})
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        self.pid = 0

    def _reply(self, kind: str) -> int | None:
        """The value of the server's ``kind`` reply to the request in hand (a pid, a wait
        status), or None when the server is gone. A reply is peeked at, noted, and only
        then taken off the socket: a signal handler that raises anywhere in between (the
        wait is interrupted) leaves it to be read again, and one that raises after it was
        noted loses nothing. Taken off as soon as it was read, a reply could be lost to
        such a raise, and the next wait would block for ever on a horse long gone."""
        assert self._socket is not None
        while True:
            reply = self._decode(self._socket.recv(_MAX_REQUEST, socket.MSG_PEEK))
            if reply is None:
                return None
            found, request, value = reply
            if found == kind and request == self._request:
                if kind == "exited":
                    self._status = value
                self._socket.recv(_MAX_REQUEST)
                return value
            self._socket.recv(_MAX_REQUEST)  # an earlier request's reply, read already: dropped

    @staticmethod
    def _decode(message: bytes) -> tuple | None:
        if not message:
            return None  # the server is gone
        try:
            return pickle.loads(message)
        except Exception:  # not a reply of this server's: treat it as gone
            logger.exception("the fork server's reply could not be read")
            return None

    # --- in the server ---------------------------------------------------------------

    def _serve(self, sock: socket.socket, parent_pid: int) -> None:
        self._die_with_parent(parent_pid)
        # The worker's signal handlers are not the server's: a Ctrl+C or a SIGTERM sent to
        # the whole group is the worker's to act on, and the server ends with it.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        gc.freeze()  # a collection here would touch (and copy) every page of start-up's objects
        while True:
            try:
                message, descriptors, _, _ = socket.recv_fds(sock, _MAX_REQUEST, _MAX_FDS)
            except OSError:
                return
            if not message:
                return  # the worker closed its end: it is stopping
            number, request = pickle.loads(message)
            pid = os.fork()
            if pid == 0:
                os.setpgid(0, 0)  # as RQ's horse: a kill takes its group, never the worker's
                sock.close()
                signal.signal(signal.SIGTERM, signal.SIG_DFL)  # as RQ's horse: set up again in main_work_horse
                self._become_horse(request, descriptors)
                os._exit(1)  # never reached: become_horse exits
            # Here too, before the worker hears of the horse: it may kill the horse's group
            # at once, and the horse may not have run yet.
            with contextlib.suppress(OSError):  # it has, or has exited already
                os.setpgid(pid, pid)
            for descriptor in descriptors:
                os.close(descriptor)
            sock.send(pickle.dumps(("forked", number, pid)))
            _, status = os.waitpid(pid, 0)
            sock.send(pickle.dumps(("exited", number, status)))
