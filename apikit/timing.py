"""``Server-Timing: app;dur=<ms>, cpu;dur=<ms>`` on every response, when
``SERVER_TIMING`` is on: the time Django took for the request inside the process (all
middleware, the view, the serialization; without the web server, the network or the
client), and the CPU time its thread spent on it (which other processes on a busy
machine do not inflate). Off by default (a client has no use for it); ``bench/api.py``
turns it on to read the server's share of each request's time."""

from __future__ import annotations

import time


class ServerTiming:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        started, cpu = time.perf_counter(), time.thread_time()
        response = self.get_response(request)
        took, spent = time.perf_counter() - started, time.thread_time() - cpu
        response["Server-Timing"] = f"app;dur={took * 1000:.3f}, cpu;dur={spent * 1000:.3f}"
        return response
