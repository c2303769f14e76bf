"""The conventions every API view of ours carries itself, so an app installed into a
host project behaves the same whatever the host's ``REST_FRAMEWORK`` defaults are (and
the host's own views keep theirs): token (or Bearer) and session authentication,
authenticated users only, JSON bodies, strict pagination, django-filter, the rate
limits, drf-spectacular's schema and the one error shape."""

from __future__ import annotations

from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.openapi import AutoSchema
from rest_framework.authentication import SessionAuthentication
from rest_framework.parsers import JSONParser
from rest_framework.permissions import IsAuthenticated

from apikit.auth import ApiTokenAuthentication
from apikit.errors import exception_handler
from apikit.pagination import Pagination
from apikit.throttling import AnonRate, UserRate


class Conventions:
    """Mix in first: ``class MyView(Conventions, APIView)``; a view may still narrow
    any of these (its permission classes, its parsers) as usual."""

    authentication_classes = [ApiTokenAuthentication, SessionAuthentication]
    permission_classes: list = [IsAuthenticated]
    parser_classes: list = [JSONParser]
    pagination_class = Pagination
    filter_backends = [DjangoFilterBackend]
    throttle_classes: list = [AnonRate, UserRate]
    schema = AutoSchema()

    def get_exception_handler(self):
        return exception_handler
