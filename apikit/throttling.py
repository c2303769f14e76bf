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


# Logs of request times (sorted sets), each trimmed to its window, counted and added to,
# all in one command. KEYS: the logs; ARGV: now, then per log its window (s), limit,
# member and mode — "check" counts only, "limit" adds when under the limit, "add" adds
# whatever the count. A log checked and found full stops the logs after it from being
# added to (an address locked out is not also counted against its user's rate).
# Returns {added, logged before, the oldest's time} per log.
_LOG_SCRIPT = """
local answer, full = {}, false
for i, key in ipairs(KEYS) do
    local at = 2 + (i - 1) * 4
    local window, limit, mode = tonumber(ARGV[at]), tonumber(ARGV[at + 1]), ARGV[at + 3]
    redis.call('ZREMRANGEBYSCORE', key, '-inf', tonumber(ARGV[1]) - window)
    local logged = redis.call('ZCARD', key)
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')[2] or ARGV[1]
    local added = 0
    if not full and (mode == 'add' or (mode == 'limit' and logged < limit)) then
        redis.call('ZADD', key, ARGV[1], ARGV[at + 2])
        redis.call('EXPIRE', key, math.ceil(window) + 1)
        added = 1
    end
    full = full or (mode == 'check' and logged >= limit)
    table.insert(answer, added)
    table.insert(answer, logged)
    table.insert(answer, oldest)
end
return answer
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
        added = log_together([(self, mode)], self.now)
        return None if added is None else added[0]

    def wait(self) -> float | None:
        """DRF's advice (the oldest's time left, shared by the requests still allowed)."""
        if self._logged is None:
            return super().wait()
        logged, oldest = self._logged
        available = self.num_requests - logged + 1
        return (self.duration - (self.now - oldest)) / available if available > 0 else None


def log_together(rates: list[tuple[LoggedRate, str]], now: float) -> list[bool] | None:
    """Run the log script on each rate's ``key`` at ``now``, in one round trip (each
    rate's ``now`` and ``_logged`` set): whether each request was added; None when the
    cache is not Redis."""
    first = rates[0][0]
    # DRF's default is Django's proxy to the default cache, not the cache itself.
    cache = caches[DEFAULT_CACHE_ALIAS] if first.cache is default_cache else first.cache
    if not isinstance(cache, RedisCache):
        return None
    # One redis-py client per server for the process: under ASGI Django makes a cache
    # object (so a connection pool, so a new connection) per request.
    servers = tuple(cache._servers)  # type: ignore[attr-defined]  # RedisCache's LOCATION, split
    keys = [cache.make_and_validate_key(f"{rate.key}:log") for rate, _ in rates]
    kept = _clients.get(servers)
    if kept is None:
        client = cache._cache.get_client(keys[0], write=True)
        kept = _clients[servers] = client, client.register_script(_LOG_SCRIPT)
    client, script = kept
    args: list[Any] = [repr(now)]
    for rate, mode in rates:
        member = f"{now:.6f}:{secrets.token_hex(4)}"  # two requests in one microsecond are two
        args += [rate.duration, rate.num_requests, member, mode]
    answers = script(keys=keys, args=args, client=client)
    added = []
    for (rate, _), at in zip(rates, range(0, len(answers), 3), strict=True):
        rate.now = now
        rate._logged = (int(answers[at + 1]), float(answers[at + 2]))
        added.append(bool(answers[at]))
    return added


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
            ahead = self._logged_ahead(request)
            if ahead is not None:
                return ahead or self.throttle_failure()
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

    def _logged_ahead(self, request) -> bool | None:
        """Whether the request was added to this log during its authentication
        (``UserRate.log_ahead``), or None when it was not logged ahead."""
        kept = getattr(request, "_rate_logged_ahead", None)
        if kept is None or kept[0] != self.key:  # the key names the rate's scope too
            return None
        request._rate_logged_ahead = None  # one request, one turn
        _, added, self._logged, self.now = kept
        return added


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

    def log_ahead(self, request, user, lockout: LoggedRate | None = None) -> bool | None:
        """While ``user`` is being authenticated (DRF throttles after it, and after the
        view's permissions: a request refused by them counts here too): log this user's
        request — in the same round trip, check the ``lockout`` log (its key set) — the
        verdict kept on the request for this rate's own turn. Whether the lockout is
        full (then the user's log is left alone); None when nothing was asked (no rate,
        or a cache that is not Redis)."""
        if self.rate is None:
            return None
        # get_cache_key's key for this user (it reads request.user, not set yet)
        self.key = self.cache_format % {"scope": self.scope, "ident": user.pk}
        checked: list[tuple[LoggedRate, str]] = [] if lockout is None else [(lockout, "check")]
        added = log_together([*checked, (self, "limit")], self.timer())
        if added is None:
            return None
        full = lockout is not None and lockout._logged is not None and lockout._logged[0] >= lockout.num_requests
        if not full:
            request._rate_logged_ahead = (self.key, added[-1], self._logged, self.now)
        return full


class AnonRate(FailOpen, AnonRateThrottle):
    """Anonymous clients, by address: API_ANON_RATE."""

    def get_rate(self) -> str:
        return getattr(settings, "API_ANON_RATE", "60/minute")
