"""The operator's time zone: every time the console shows is in it and says so.

Django's current time zone is the operator's choice when they made one (the ``jd_tz``
cookie, set by the switch in the console's header: their browser's zone, or UTC), else
``TIME_ZONE`` (UTC). An unknown name in the cookie is ignored, never an error.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from urllib.parse import unquote
from zoneinfo import ZoneInfo

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from workwindow.models import known_zones

COOKIE = "jd_tz"


def chosen_zone(request: HttpRequest) -> ZoneInfo | None:
    # The switch (zone.js) writes the name URL-encoded, as a cookie's value must be:
    # "America%2FNew_York".
    name = unquote(request.COOKIES.get(COOKIE, ""))
    return ZoneInfo(name) if name in known_zones() else None


class OperatorZoneMiddleware:
    """Async-capable: a sync-only middleware makes Django hop between the event loop and
    a thread of its own around it on every request under ASGI (the API's too)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest):
        if iscoroutinefunction(self):
            return self._in_zone_async(request)
        with _zone(request):
            return self.get_response(request)

    async def _in_zone_async(self, request: HttpRequest) -> HttpResponse:
        with _zone(request):
            return await self.get_response(request)


def _zone(request: HttpRequest):
    zone = chosen_zone(request)
    if zone is None:
        timezone.deactivate()
        return contextlib.nullcontext()
    return timezone.override(zone)
