"""Per-client request rates, counted in the Redis cache.

Rates are read from settings at request time (not at import, as DRF's own classes do),
so they follow the environment and can be changed in tests.
"""

from __future__ import annotations

import logging

from django.conf import settings
from redis.exceptions import RedisError
from rest_framework.throttling import AnonRateThrottle, SimpleRateThrottle, UserRateThrottle

logger = logging.getLogger("apikit")


class FailOpen(SimpleRateThrottle):
    """When the cache (Redis) is down, let requests through and say so in the log: a
    rate limit must not turn an outage of Redis into an outage of the API (submits still
    land in the database, for the reconciler to enqueue)."""

    def allow_request(self, request, view) -> bool:
        try:
            return super().allow_request(request, view)
        except (RedisError, OSError):
            logger.warning("rate limit not checked: the cache is unreachable")
            return True

    def get_ident(self, request) -> str:
        return client_address(request)


def client_address(request) -> str:
    """Who is asking, by address: X-Forwarded-For only through NUM_PROXIES proxies (0:
    the connection's own address), whatever the project's REST_FRAMEWORK says."""
    proxies = getattr(settings, "NUM_PROXIES", 0)
    remote = request.META.get("REMOTE_ADDR", "")
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    if not proxies or not forwarded:
        return remote
    hops = [hop.strip() for hop in forwarded.split(",")]
    return hops[-min(proxies, len(hops))]


class UserRate(FailOpen, UserRateThrottle):
    """Authenticated clients, by user: API_USER_RATE."""

    def get_rate(self) -> str:
        return getattr(settings, "API_USER_RATE", "1200/minute")


class AnonRate(FailOpen, AnonRateThrottle):
    """Anonymous clients, by address: API_ANON_RATE."""

    def get_rate(self) -> str:
        return getattr(settings, "API_ANON_RATE", "60/minute")
