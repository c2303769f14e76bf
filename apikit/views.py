"""The conventions every API view of ours carries itself, so an app installed into a
host project behaves the same whatever the host's ``REST_FRAMEWORK`` defaults are (and
the host's own views keep theirs): token (or Bearer) and session authentication,
authenticated users only, JSON bodies, strict pagination, django-filter, the rate
limits, drf-spectacular's schema and the one error shape."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.db import close_old_connections
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework.authentication import BaseAuthentication, SessionAuthentication
from rest_framework.pagination import BasePagination
from rest_framework.parsers import BaseParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.schemas.inspectors import ViewInspector
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from apikit.auth import ApiTokenAuthentication
from apikit.errors import exception_handler
from apikit.pagination import Pagination
from apikit.parsers import JSONParser
from apikit.schema import EndpointSchema
from apikit.throttling import AnonRate, UserRate


class Conventions(APIView):
    """Mix in first: ``class MyView(Conventions, APIView)`` (or a viewset); a view may
    still narrow any of these (its permission classes, its parsers) as usual."""

    authentication_classes: Sequence[type[BaseAuthentication]] = [ApiTokenAuthentication, SessionAuthentication]
    permission_classes: Sequence[Any] = [IsAuthenticated]
    parser_classes: Sequence[type[BaseParser]] = [JSONParser]
    pagination_class: type[BasePagination] | None = Pagination
    filter_backends: Sequence[Any] = [DjangoFilterBackend]
    throttle_classes: Sequence[type[BaseThrottle]] = [AnonRate, UserRate]
    schema: ViewInspector | None = EndpointSchema()

    def get_exception_handler(self):
        return exception_handler


def pooled(view: Callable) -> Callable:
    """``view`` served from the event loop's pool of threads under ASGI.

    Django runs a sync view in a new thread per request under ASGI, and a database
    connection belongs to its thread: every API request opened a new PostgreSQL
    connection (a new server process on PostgreSQL's side; ``CONN_MAX_AGE`` could not
    keep it). The pool's threads live on, and so do their connections — reused, aged and
    health-checked per request as Django's request signals would (``close_old_connections``
    before and after), several requests at once. Under WSGI (the test client) the view
    runs in the calling thread, as before; under ``apikit.asgi.Handler`` (Jobdesk's own
    ASGI application) the whole request is in a pool's thread already, and the plain
    view (``plain_view``) runs there."""

    def with_connections(request, *args, **kwargs):
        close_old_connections()
        try:
            return view(request, *args, **kwargs)
        finally:
            close_old_connections()

    in_pool = sync_to_async(with_connections, thread_sensitive=False)
    here = sync_to_async(view, thread_sensitive=True)

    @functools.wraps(view)  # keeps csrf_exempt, and the view class and actions the schema reads
    async def threaded(request, *args, **kwargs):
        return await (in_pool if isinstance(request, ASGIRequest) else here)(request, *args, **kwargs)

    threaded.plain_view = view  # type: ignore[attr-defined]
    return threaded


def plain(match):
    """A resolved URL whose view is ``pooled``, with the plain view it wraps: for a
    handler that already runs the request in a thread of its own (``apikit.asgi``,
    ``apikit.wsgi``), where the wrapper only costs a trip through an event loop."""
    unwrapped = getattr(match.func, "plain_view", None)
    if unwrapped is not None:
        match.func = unwrapped
    return match


def pooled_urls(patterns: list) -> list:
    """The URL patterns with each view ``pooled``."""
    for pattern in patterns:
        pattern.callback = pooled(pattern.callback)
    return patterns
