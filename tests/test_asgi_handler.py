"""apikit.asgi.Handler: Django's ASGI handler with one trip to a thread per request — the
middleware chain, the view and the request signals in one long-lived thread of the
event loop's pool, the answer sent from the loop. Driven in-process (no server)."""

from __future__ import annotations

import asyncio
import threading

import pytest
from asgiref.testing import ApplicationCommunicator
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.http import HttpResponse, StreamingHttpResponse
from django.urls import path

from apikit.asgi import Handler
from apikit.views import pooled

seen: dict[str, list] = {}


def _record(where: str) -> None:
    try:
        asyncio.get_running_loop()
        on_loop = True
    except RuntimeError:
        on_loop = False
    seen.setdefault(where, []).append((threading.current_thread(), on_loop))


class Recording:
    """A sync-only middleware: Django's own handler would hop to a thread around it."""

    sync_capable, async_capable = True, False

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        _record("middleware")
        return self.get_response(request)


def plain(request):
    _record("view")
    return HttpResponse(b"plain")


def failing(request):
    raise RuntimeError("the view fails")


def streamed(request):
    def parts():
        _record("stream")
        yield b"one,"
        yield b"two"

    response = StreamingHttpResponse(parts())
    response.close = lambda: _record("closed")
    return response


urlpatterns = [
    path("plain/", plain),
    path("pooled/", pooled(plain)),
    path("failing/", failing),
    path("streamed/", streamed),
]


@pytest.fixture
def handler(settings):
    settings.ROOT_URLCONF = __name__
    settings.ALLOWED_HOSTS = ["testserver"]
    settings.DEBUG = False
    settings.MIDDLEWARE = [f"{__name__}.Recording", "apikit.timing.ServerTiming"]
    seen.clear()
    return Handler()


def request(app, path: str) -> tuple[int, dict, bytes]:
    return asyncio.run(served(app, path))


async def served(app, path: str) -> tuple[int, dict, bytes]:
    scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
            "headers": [(b"host", b"testserver")], "client": ("127.0.0.1", 5000), "server": ("testserver", 80),
        }  # fmt: skip
    talk = ApplicationCommunicator(app, scope)
    await talk.send_input({"type": "http.request", "body": b""})
    start = await talk.receive_output(5)
    body = b""
    while True:
        message = await talk.receive_output(5)
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await talk.wait(5)
    return start["status"], {k.decode().lower(): v.decode() for k, v in start["headers"]}, body


def test_middleware_and_view_run_in_one_lasting_thread_off_the_loop(handler):
    async def three_in_turn() -> None:
        for _ in range(3):
            status, headers, body = await served(handler, "/plain/")
            assert (status, body) == (200, b"plain")
            assert float(headers["server-timing"].partition("dur=")[2]) > 0

    asyncio.run(three_in_turn())
    threads = [thread for thread, _ in seen["view"]]
    assert [thread for thread, _ in seen["middleware"]] == threads
    assert not any(on_loop for _, on_loop in seen["middleware"] + seen["view"])
    # Threads of the loop's own pool ("asyncio_N"), which outlive a request: Django's own
    # handler ran each request's sync work in a new executor's thread, ended with the
    # request (and so were its database connections). Which pool thread takes the next
    # request is the pool's choice: one still handing back its last answer is not idle
    # yet, and the pool starts another (a CI run saw asyncio_0, asyncio_0, asyncio_1).
    assert all(thread is not threading.main_thread() and thread.name.startswith("asyncio_") for thread in threads)


def test_request_finished_is_sent_in_the_thread_that_served_the_request(handler):
    finished: list[threading.Thread] = []

    def note(**kwargs) -> None:
        finished.append(threading.current_thread())

    request_finished.connect(note)
    try:
        request(handler, "/plain/")
    finally:
        request_finished.disconnect(note)
    assert finished == [seen["view"][0][0]]


def test_a_pooled_view_runs_as_its_plain_view(handler):
    status, _, body = request(handler, "/pooled/")
    assert (status, body) == (200, b"plain")
    assert seen["view"][0][0] is seen["middleware"][0][0]  # no second trip for the wrapper


def test_a_failing_view_is_a_500_and_the_handler_serves_on(handler):
    status, _, _ = request(handler, "/failing/")
    assert status == 500
    assert request(handler, "/plain/")[0] == 200


@pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume synchronous iterators")
def test_a_streamed_answer_is_sent_whole_then_closed(handler):
    status, _, body = request(handler, "/streamed/")
    assert (status, body) == (200, b"one,two")
    assert "closed" in seen and "stream" in seen


def _wsgi_get(app, path: str) -> tuple[str, bytes]:
    from wsgiref.util import setup_testing_defaults

    environ: dict = {"PATH_INFO": path, "HTTP_HOST": "testserver"}
    setup_testing_defaults(environ)
    answer: list[str] = []
    body = b"".join(app(environ, lambda status, headers, exc_info=None: answer.append(status)))
    return answer[0], body


@pytest.mark.parametrize("use_apikit, loops", [(True, 0), (False, 1)])
def test_under_wsgi_a_pooled_view_runs_plain_in_the_request_s_thread(handler, monkeypatch, use_apikit, loops):
    """Django's own WSGI handler ran a pooled (coroutine) view through async_to_sync: a
    new event loop, in a new thread, per request (the second case shows it still does)."""
    from asgiref.sync import AsyncToSync
    from django.core.handlers.wsgi import WSGIHandler

    from apikit.wsgi import Handler as WsgiHandler

    through_loops: list[object] = []
    original = AsyncToSync.__call__

    def counted(self, *args, **kwargs):
        through_loops.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(AsyncToSync, "__call__", counted)
    app = WsgiHandler() if use_apikit else WSGIHandler()
    # As Django's test client: no ageing of this thread's database connections around
    # the request. In this (the main) thread an earlier test may have left one open,
    # and this test has no database access to check it with.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        status, body = _wsgi_get(app, "/pooled/")
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    assert (status, body) == ("200 OK", b"plain")
    assert len(through_loops) == loops and seen["view"][0][0] is threading.main_thread()
