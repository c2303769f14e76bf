"""The fork server on its own: real processes, no database, no Redis."""

from __future__ import annotations

import os
import signal
import socket
import time

import pytest

from jobs.execution import forkserver
from jobs.execution.worker import _die_with_parent

pytestmark = pytest.mark.skipif(not forkserver.AVAILABLE, reason="the fork server is Linux's")


def _exit_with(code: int):
    def become_horse(request, descriptors) -> None:
        os._exit(code)

    return become_horse


def _request() -> forkserver.HorseRequest:
    return forkserver.HorseRequest(
        rq_job_id="j", rq_job_hash={}, queue_name="normal", execution_id="e", execution_started=None,
        dispatch="d", claimed=None, attempt_span=None, outcome_pipe=False, handover=False,
    )  # fmt: skip


class _Interrupted(Exception):
    """What RQ's monitor alarm raises from its signal handler."""


class _RaisingOnceTaken:
    """The server's socket, with a signal handler's raise forced right after a reply was
    taken off it."""

    def __init__(self, sock) -> None:
        self._sock, self.raised = sock, False

    def recv(self, size: int, flags: int = 0) -> bytes:
        message = self._sock.recv(size, flags)
        if not flags & socket.MSG_PEEK and not self.raised:
            self.raised = True
            raise _Interrupted
        return message

    def __getattr__(self, name):
        return getattr(self._sock, name)


def test_a_horses_exit_status_reaches_the_parent():
    server = forkserver.ForkServer(_exit_with(3), lambda parent: None)
    assert server.start()
    try:
        pid = server.fork(_request(), [])
        assert pid and pid != server.pid
        assert os.WEXITSTATUS(server.wait()) == 3
        assert os.WEXITSTATUS(server.fork(_request(), []) and server.wait()) == 3, "the server goes on"
    finally:
        server.stop()
    assert not server.running and server.pid == 0


def test_a_wait_interrupted_after_the_reply_came_loses_nothing():
    """RQ's monitor alarm (or a force stop) raising between the read of the horse's exit
    and its use: the next wait still gets it. A review found the reply taken off the
    socket first, and the worker waiting for ever on a horse long gone."""
    server = forkserver.ForkServer(_exit_with(5), lambda parent: None)
    assert server.start()
    try:
        assert server.fork(_request(), [])
        real = server._socket
        real.settimeout(10)  # a lost reply: the wait gives up (and reports the horse killed) instead of hanging
        server._socket = _RaisingOnceTaken(real)
        with pytest.raises(_Interrupted):
            server.wait()
        assert os.WEXITSTATUS(server.wait()) == 5
        server._socket = real
        assert os.WEXITSTATUS(server.fork(_request(), []) and server.wait()) == 5, "the next run's reply is its own"
    finally:
        server.stop()


def test_a_server_killed_under_its_horse_reports_it_killed_and_is_dropped():
    def sleep_long(request, descriptors) -> None:
        _die_with_parent(os.getppid())  # as a worker's horse: gone with its server
        time.sleep(30)
        os._exit(0)

    server = forkserver.ForkServer(sleep_long, lambda parent: None)
    assert server.start()
    assert server.fork(_request(), [])
    os.kill(server.pid, signal.SIGKILL)
    status = server.wait()
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert not server.running
    assert server.fork(_request(), []) is None, "gone: the worker forks itself until it starts another"


def test_stopping_a_server_whose_horse_still_runs_kills_it_at_once():
    def sleep_long(request, descriptors) -> None:
        _die_with_parent(os.getppid())  # as a worker's horse: gone with its server
        time.sleep(30)
        os._exit(0)

    server = forkserver.ForkServer(sleep_long, lambda parent: None)
    assert server.start()
    assert server.fork(_request(), [])
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 5, "killed after its second to stop, not after the horse's 30"
    assert not server.running
