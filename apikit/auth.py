"""API authentication: an API token as ``Token <key>`` or ``Bearer <key>`` (as the
WebSocket edge takes it), with failed attempts throttled per address.

DRF authenticates before it throttles, so a client guessing tokens was never slowed
down: each failure now counts against API_AUTH_FAILURE_RATE for its address, and past
it every request from that address with a token answers 429 until the window passes.
"""

from __future__ import annotations

import logging

from django.conf import settings
from redis.exceptions import RedisError
from rest_framework.authentication import TokenAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed, Throttled
from rest_framework.throttling import SimpleRateThrottle

from apikit.throttling import client_address

logger = logging.getLogger("apikit")

SCHEMES = (b"token", b"bearer")


class FailedAuthentications(SimpleRateThrottle):
    """Failed token checks per address (the forwarded address only through NUM_PROXIES)."""

    scope = "auth_failures"
    # Set by SimpleRateThrottle.__init__ from the rate (the stubs leave them out).
    num_requests: int
    duration: int

    def get_rate(self) -> str:
        return getattr(settings, "API_AUTH_FAILURE_RATE", "30/minute")

    def get_cache_key(self, request, view) -> str:
        return self.key_for(client_address(request))

    def key_for(self, address: str) -> str:
        return self.cache_format % {"scope": self.scope, "ident": address}

    def exhausted(self, request) -> bool:
        return self.exhausted_for(client_address(request))

    def record(self, request) -> None:
        self.record_for(client_address(request))

    def exhausted_for(self, address: str) -> bool:
        """Has ``address`` (an HTTP client's, or a WebSocket's) failed too often?"""
        self.key = self.key_for(address)
        self.history = self.cache.get(self.key, [])
        self.now = self.timer()
        while self.history and self.history[-1] <= self.now - self.duration:
            self.history.pop()
        return len(self.history) >= self.num_requests

    def record_for(self, address: str) -> None:
        self.exhausted_for(address)  # fresh history
        self.throttle_success()


class ApiTokenAuthentication(TokenAuthentication):
    keyword = "Token"

    def authenticate(self, request):
        words = get_authorization_header(request).split()
        if not words or words[0].lower() not in SCHEMES:
            return None
        failures = FailedAuthentications()
        if _quietly(failures.exhausted, request, default=False):
            raise Throttled(wait=failures.wait(), detail="Too many failed authentications from this address.")
        if len(words) != 2:
            _quietly(failures.record, request)
            raise AuthenticationFailed("Invalid token header: send 'Authorization: Token <key>' (or Bearer).")
        try:
            return self.authenticate_credentials(words[1].decode("latin1"))
        except AuthenticationFailed:
            _quietly(failures.record, request)
            raise

    def authenticate_header(self, request) -> str:
        return "Token"


def _quietly(call, request, default=None):
    """The cache is Redis: when it is down, authentication still works, unthrottled."""
    try:
        return call(request)
    except (RedisError, OSError):
        logger.warning("failed-authentication throttle not checked: the cache is unreachable")
        return default
