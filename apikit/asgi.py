"""Django's ASGI handler, with one trip to a thread per HTTP request.

Django's own handler builds its middleware chain in async mode. Every middleware made
with ``MiddlewareMixin`` (most of Django's: security, sessions, common, CSRF,
authentication, messages, clickjacking) then runs its ``process_request`` and its
``process_response`` each through ``sync_to_async`` — two trips from the event loop to a
thread and back per middleware, seven of them here, plus one for the request-started
signal, one for the view and one to close the response. The thread is a new one per
request (a ``ThreadSensitiveContext`` per request), so its database connections were
new too. bench/api.py: about half of a submit's CPU in the web process went to those
trips and thread starts.

``Handler`` serves the same request in one trip: the body is read on the event loop (so
``apikit.bodylimit`` still refuses what is too large as it streams in), then the signal,
the whole middleware chain in its sync mode, the view and the closing of the answer run
in one go on the event loop's pool of threads — whose database connections last, as
Django's request signals age and health-check them, in the thread that owns them (as
under WSGI) — and the answer is sent from the loop. The rest follows Django's
``ASGIHandler.handle`` (5.2): a client that goes away meanwhile is not answered.

Views wrapped by ``apikit.views.pooled`` (for hosts on Django's own handler) run as
the plain views they wrap.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.base import BaseHandler
from django.http import FileResponse
from django.urls import set_script_prefix

from apikit.views import plain

# When the trip to the thread began, on the request (apikit.timing starts there).
TRIP_STARTED = "_apikit_trip_started"


class Handler(ASGIHandler):
    def __init__(self) -> None:
        BaseHandler.__init__(self)  # not ASGIHandler's: its chain would be the async one
        self.load_middleware(is_async=False)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        # As Django's: what asks for a thread-sensitive trip during this request gets
        # one thread of the request's own (nothing of ours does).
        async with ThreadSensitiveContext():
            await self.handle(scope, receive, send)

    async def handle(self, scope, receive, send) -> None:
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        trip = asyncio.ensure_future(_in_pool(self._respond)(scope, body_file, time.perf_counter()))

        async def process_request():
            response = await asyncio.shield(trip)  # cancelled or not, the thread finishes it
            with contextlib.suppress(asyncio.CancelledError):  # the client went away meanwhile
                await self.send_response(response, send)
            return response

        tasks = [
            asyncio.create_task(self.listen_for_disconnect(receive)),  # first: see Django's handle
            asyncio.create_task(process_request()),
        ]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            if task.done():
                try:
                    task.result()
                except RequestAborted:
                    pass
                except AssertionError:
                    body_file.close()
                    raise
            else:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if tasks[1].cancelled():
            # Never sent: a streaming answer is closed once made (the others close in
            # the thread, below).
            trip.add_done_callback(_close_streaming)
        else:
            response = tasks[1].result()
            if response.streaming:
                await _in_pool(response.close)()
        body_file.close()

    def _respond(self, scope, body_file, trip_started: float):
        """In the pool's thread: what Django's handler does between reading the body and
        sending the answer, as its WSGI handler does it."""
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, response = self.create_request(scope, body_file)
        if request is not None:
            _declare_length(request, body_file)
            setattr(request, TRIP_STARTED, trip_started)
            response = self.get_response(request)  # the sync chain, the view, the logging
            response._handler_class = self.__class__  # type: ignore[attr-defined]  # as Django's handler marks it
            if isinstance(response, FileResponse):
                response.block_size = self.chunk_size
        assert response is not None  # create_request gives one or the other
        if not response.streaming:
            # Its content is made: closing it now (request_finished: the connections'
            # age and health checked) is closing it in the thread that used them.
            response.close()
        return response

    def resolve_request(self, request):
        return plain(super().resolve_request(request))  # in a pool's thread already


def _declare_length(request, body_file) -> None:
    """A body sent without a length (``Transfer-Encoding: chunked``) is read whole all
    the same (``read_body``), but DRF and Django's form parsers take a request without
    ``CONTENT_LENGTH`` for one without a body: a chunked PATCH answered 200 and changed
    nothing. Its length, as read, is declared for them."""
    if "CONTENT_LENGTH" in request.META:
        return
    size = body_file.seek(0, io.SEEK_END)
    body_file.seek(0)
    if size:
        request.META["CONTENT_LENGTH"] = str(size)


def _in_pool(function):
    """``function`` on the event loop's pool of threads (not a thread per request)."""
    return sync_to_async(function, thread_sensitive=False)


def _close_streaming(trip: asyncio.Future) -> None:
    if not trip.cancelled() and trip.exception() is None and trip.result().streaming:
        asyncio.ensure_future(_in_pool(trip.result().close)())
