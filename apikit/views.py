"""The conventions every API view of ours carries itself, so an app installed into a
host project behaves the same whatever the host's ``REST_FRAMEWORK`` defaults are (and
the host's own views keep theirs): token (or Bearer) and session authentication,
authenticated users only, JSON bodies, strict pagination, django-filter, the rate
limits, drf-spectacular's schema and the one error shape."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.openapi import AutoSchema
from rest_framework.authentication import BaseAuthentication, SessionAuthentication
from rest_framework.pagination import BasePagination
from rest_framework.parsers import BaseParser, JSONParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.schemas.inspectors import ViewInspector
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from apikit.auth import ApiTokenAuthentication
from apikit.errors import exception_handler
from apikit.pagination import Pagination
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
    schema: ViewInspector | None = AutoSchema()

    def get_exception_handler(self):
        return exception_handler
