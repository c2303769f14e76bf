"""``Server-Timing: app;dur=<ms>`` on every response, when ``SERVER_TIMING`` is on: the
time Django took for the request inside the process — all middleware, the view, the
serialization; not the web server's parsing, the network or the client. Off by default
(a client has no use for it); ``bench/api.py`` turns it on.

Async-capable, so under Django's own ASGI handler it adds no hop between the event loop
and a thread of its own: it times the request as Django serves it. Under Jobdesk's
(``apikit.asgi.Handler``) it counts from the moment the request left the event loop for
a thread: the wait for the thread, the request-started signal and the parsing of the
request are in it too. With many requests at once, each one's time also holds the
others' turns on the CPU.
"""

from __future__ import annotations

import time

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

from apikit.asgi import TRIP_STARTED


class ServerTiming:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self._timed(request)
        # Under apikit.asgi.Handler: from the request's trip to a thread, so the wait
        # for a thread, the request signal and the request's parsing count too.
        started = getattr(request, TRIP_STARTED, None) or time.perf_counter()
        return self._stamp(self.get_response(request), started)

    async def _timed(self, request):
        started = time.perf_counter()
        return self._stamp(await self.get_response(request), started)

    @staticmethod
    def _stamp(response, started: float):
        response["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.3f}"
        return response
