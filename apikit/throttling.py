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


class UserRate(FailOpen, UserRateThrottle):
    """Authenticated clients, by user: API_USER_RATE."""

    def get_rate(self) -> str:
        return settings.API_USER_RATE


class AnonRate(FailOpen, AnonRateThrottle):
    """Anonymous clients, by address: API_ANON_RATE."""

    def get_rate(self) -> str:
        return settings.API_ANON_RATE
