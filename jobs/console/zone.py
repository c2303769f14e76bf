"""The operator's time zone: every time the console shows is in it and says so.

Django's current time zone is the operator's choice when they made one (the ``jd_tz``
cookie, set by the switch in the console's header: their browser's zone, or UTC), else
``TIME_ZONE`` (UTC). An unknown name in the cookie is ignored, never an error.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from zoneinfo import ZoneInfo, available_timezones

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

COOKIE = "jd_tz"


@functools.cache
def _known() -> frozenset[str]:
    return frozenset(available_timezones())


def chosen_zone(request: HttpRequest) -> ZoneInfo | None:
    name = request.COOKIES.get(COOKIE, "")
    return ZoneInfo(name) if name in _known() else None


class OperatorZoneMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        zone = chosen_zone(request)
        if zone is None:
            timezone.deactivate()
            return self.get_response(request)
        with timezone.override(zone):
            return self.get_response(request)
