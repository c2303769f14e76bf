"""Per-client request rates, counted in the Redis cache.

Rates are read from settings at request time (not at import, as DRF's own classes do),
so they follow the environment and can be changed in tests.

The rule is DRF's: at most N requests in any window of the rate's length (a log of the
times of the requests let through). DRF keeps that log as a pickled list, read and
written whole on every request (two round trips, and up to N times read and written:
1,200 floats at the default user rate) — and two requests at once can both read the
same log and both pass. Here the log is a Redis sorted set, trimmed, counted and added to
by one script: one round trip whatever N, and no request slips between a read and a write.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from django.conf import settings
from django.core.cache import DEFAULT_CACHE_ALIAS, caches
from django.core.cache import cache as default_cache
from django.core.cache.backends.redis import RedisCache
from redis.exceptions import RedisError
from rest_framework.throttling import AnonRateThrottle, SimpleRateThrottle, UserRateThrottle

logger = logging.getLogger("apikit")


# A log of request times (a sorted set), trimmed to the window, counted and added to as
# one command. ARGV: now, window (s), limit, member, mode — "check" counts only, "limit"
# adds when under the limit, "add" adds whatever the count. Returns {added, logged before,
# the oldest's time}.
_LOG_SCRIPT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[1]) - tonumber(ARGV[2]))
local logged = redis.call('ZCARD', KEYS[1])
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2] or ARGV[1]
if ARGV[5] == 'add' or (ARGV[5] == 'limit' and logged < tonumber(ARGV[3])) then
    redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
    redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2])) + 1)
    return {1, logged, oldest}
end
return {0, logged, oldest}
"""


_clients: dict[tuple, tuple[Any, Any]] = {}  # servers → (redis-py client, the script)


class LoggedRate(SimpleRateThrottle):
    """DRF's rate rule over a log kept in Redis (see the module's note); any other cache
    keeps DRF's list."""

    # Set by SimpleRateThrottle.__init__ from the rate (the stubs leave them out).
    num_requests: int
    duration: int
    _logged: tuple[int, float] | None = None  # (requests in the log, the oldest's time), as last read

    def log(self, mode: str) -> bool | None:
        """Run the log script on ``self.key`` at ``self.now``: whether the request was
        added; None when the cache is not Redis."""
        # DRF's default is Django's proxy to the default cache, not the cache itself.
        cache = caches[DEFAULT_CACHE_ALIAS] if self.cache is default_cache else self.cache
        if not isinstance(cache, RedisCache):
            return None
        key = cache.make_and_validate_key(f"{self.key}:log")
        # One redis-py client per server for the process: under ASGI Django makes a cache
        # object (so a connection pool, so a new connection) per request.
        servers = tuple(cache._servers)  # type: ignore[attr-defined]  # RedisCache's LOCATION, split
        kept = _clients.get(servers)
        if kept is None:
            client = cache._cache.get_client(key, write=True)
            kept = _clients[servers] = client, client.register_script(_LOG_SCRIPT)
        client, script = kept
        member = f"{self.now:.6f}:{secrets.token_hex(4)}"  # two requests in one microsecond are two
        added, logged, oldest = script(
            keys=[key], args=[repr(self.now), self.duration, self.num_requests, member, mode], client=client
        )
        self._logged = (int(logged), float(oldest))
        return bool(added)

    def wait(self) -> float | None:
        """DRF's advice (the oldest's time left, shared by the requests still allowed)."""
        if self._logged is None:
            return super().wait()
        logged, oldest = self._logged
        available = self.num_requests - logged + 1
        return (self.duration - (self.now - oldest)) / available if available > 0 else None


class FailOpen(LoggedRate):
    """When the cache (Redis) is down, let requests through and say so in the log: a
    rate limit must not turn an outage of Redis into an outage of the API (submits still
    land in the database, for the reconciler to enqueue)."""

    def allow_request(self, request, view) -> bool:
        try:
            if self.rate is None:
                return True
            self.key = self.get_cache_key(request, view)
            if self.key is None:
                return True
            self.now = self.timer()
            added = self.log("limit")
            if added is None:
                return super().allow_request(request, view)  # another cache: DRF's list
            return added or self.throttle_failure()
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
