"""The fork server on its own: real processes, no database, no Redis."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from pathlib import Path

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
        dispatch="d", claimed=None, attempt_span=None, outcome_pipe=False, handover=False, relay_down_until=0.0,
    )  # fmt: skip


def _sleep_long(request, descriptors) -> None:
    time.sleep(30)  # tied to its server by the server itself, before this runs
    os._exit(0)


class _Interrupted(Exception):
    """What RQ's monitor alarm raises from its signal handler."""


class _RaisingOnce:
    """The server's socket, with a signal handler's raise forced once: right after a reply
    was peeked at (``after="peek"``) or taken off the socket (``after="take"``)."""

    def __init__(self, sock, after: str) -> None:
        self._sock, self._after, self.raised = sock, after, False

    def recv(self, size: int, flags: int = 0) -> bytes:
        message = self._sock.recv(size, flags)
        peeked = bool(flags & socket.MSG_PEEK)
        if not self.raised and peeked == (self._after == "peek"):
            self.raised = True
            raise _Interrupted
        return message

    def __getattr__(self, name):
        return getattr(self._sock, name)


def _gone(pid: int) -> bool:
    """The process has exited (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"


def _wait_gone(pid: int, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while not _gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


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


@pytest.mark.parametrize("after", ["peek", "take"])
def test_a_wait_interrupted_after_the_reply_came_loses_nothing(after):
    """RQ's monitor alarm (or a force stop) raising between the read of the horse's exit
    and its use: the next wait still gets it. A review found the reply taken off the
    socket first, and the worker waiting for ever on a horse long gone."""
    server = forkserver.ForkServer(_exit_with(5), lambda parent: None)
    assert server.start()
    try:
        assert server.fork(_request(), [])
        real = server._socket
        real.settimeout(10)  # a lost reply: the wait gives up (and reports the horse killed) instead of hanging
        server._socket = _RaisingOnce(real, after)
        with pytest.raises(_Interrupted):
            server.wait()
        assert os.WEXITSTATUS(server.wait()) == 5
        server._socket = real
        assert os.WEXITSTATUS(server.fork(_request(), []) and server.wait()) == 5, "the next run's reply is its own"
    finally:
        server.stop()


def test_the_server_imports_what_the_worker_imported_before_it_forks():
    def tell_whether_imported(request, descriptors) -> None:
        os._exit(0 if "tabnanny" in sys.modules else 1)

    assert "tabnanny" not in sys.modules, "this test needs a module nobody imported yet"
    server = forkserver.ForkServer(tell_whether_imported, lambda parent: None)
    assert server.start()
    try:
        assert server.fork(_request(), []) and os.WEXITSTATUS(server.wait()) == 1
        request = _request()
        request.imports = ("tabnanny",)
        assert server.fork(request, []) and os.WEXITSTATUS(server.wait()) == 0
    finally:
        server.stop()


def test_a_request_too_large_for_a_message_is_left_to_the_worker_and_the_server_stays():
    server = forkserver.ForkServer(_exit_with(0), lambda parent: None)
    assert server.start()
    try:
        request = _request()
        request.claimed = {"payload": "x" * 300_000}  # a job's row, with a large payload
        assert server.fork(request, []) is None
        assert server.running
        assert server.fork(_request(), []) and server.wait() == 0
    finally:
        server.stop()


def test_a_server_killed_under_its_horse_reports_it_killed_and_is_dropped():
    server = forkserver.ForkServer(_sleep_long, _die_with_parent)
    assert server.start()
    horse = server.fork(_request(), [])
    assert horse
    os.kill(server.pid, signal.SIGKILL)
    status = server.wait()
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert not server.running
    assert _wait_gone(horse), "the horse died with its server"
    assert server.fork(_request(), []) is None, "gone: the worker forks itself until it starts another"


def test_stopping_a_server_whose_horse_still_runs_kills_it_at_once():
    server = forkserver.ForkServer(_sleep_long, _die_with_parent)
    assert server.start()
    horse = server.fork(_request(), [])
    assert horse
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 5, "killed after its second to stop, not after the horse's 30"
    assert not server.running
    assert _wait_gone(horse), "and its horse with it"


def test_a_horse_never_outlives_a_server_killed_as_it_forks():
    """The server killed right after a fork (the worker SIGKILLed, its server with it):
    the horse is tied to the server before anything else, or finds it gone and leaves.
    A review found 3 horses in 30 left running when the horse tied itself later."""
    for _ in range(20):
        server = forkserver.ForkServer(_sleep_long, _die_with_parent)
        assert server.start()
        horse = server.fork(_request(), [])
        assert horse
        os.kill(server.pid, signal.SIGKILL)
        server.wait()
        assert _wait_gone(horse, 5), "a horse outlived its server"
