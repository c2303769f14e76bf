"""Per-client request rates (SPEC §9), counted in the Redis cache.

Rates are read from settings at request time (not at import, as DRF's own classes do),
so they follow the environment and can be changed in tests.
"""

from __future__ import annotations

from django.conf import settings
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle


class UserRate(UserRateThrottle):
    """Authenticated clients, by user: API_USER_RATE."""

    def get_rate(self) -> str:
        return settings.API_USER_RATE


class AnonRate(AnonRateThrottle):
    """Anonymous clients, by address: API_ANON_RATE."""

    def get_rate(self) -> str:
        return settings.API_ANON_RATE
