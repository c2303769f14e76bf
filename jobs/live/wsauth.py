"""Who is on the other end of a WebSocket.

Programs authenticate with their API token, as ``?token=<key>`` or an
``Authorization: Token <key>`` (or ``Bearer``) header; a token needs no Origin check,
since a browser never sends one by itself. A connection with neither a token nor an
Origin header is anonymous (a cookie counts only from a browser). Everything else is a browser on its session
cookie, and a cookie travels with any page's request, so those connections must come
from one of ``ALLOWED_HOSTS`` (channels' ``AllowedHostsOriginValidator``) — otherwise
any site could follow a logged-in operator's jobs.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.security.websocket import AllowedHostsOriginValidator
from django.contrib.auth.models import AnonymousUser
from redis.exceptions import RedisError
from rest_framework.authtoken.models import Token

from apikit.auth import FailedAuthentications, storable_key

_TOKEN_SCHEMES = (b"token ", b"bearer ")


def token_from(scope) -> str | None:
    """The API token a connection offers, from the query string or the headers."""
    query = parse_qs(scope.get("query_string", b"").decode("latin1"))
    if query.get("token"):
        return query["token"][0]
    for name, value in scope.get("headers", []):
        if name == b"authorization" and value.lower().startswith(_TOKEN_SCHEMES):
            return value.split(b" ", 1)[1].strip().decode("latin1")
    return None


@database_sync_to_async
def _user_for(key: str, address: str):
    """The token's user; an anonymous one for a bad token — and for any token once this
    address has failed too often (counted with the REST API's failures: the same limit)."""
    failures = FailedAuthentications()
    if _quietly(failures.exhausted_for, address, default=False):
        return AnonymousUser()
    token = Token.objects.select_related("user").filter(key=key).first() if storable_key(key) else None
    if token is not None and token.user.is_active:
        return token.user
    _quietly(failures.record_for, address)
    return AnonymousUser()


def _quietly(call, address: str, default=None):
    try:
        return call(address)
    except (RedisError, OSError):  # the cache is down: authentication still works, unthrottled
        return default


class TokenOrSessionAuth:
    """ASGI middleware: token auth for programs, origin-checked session auth otherwise.
    An invalid token gives an anonymous user, whom the consumers refuse with 4401."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.by_session = AllowedHostsOriginValidator(AuthMiddlewareStack(inner))

    async def __call__(self, scope, receive, send):
        key = token_from(scope)
        if key is not None:
            address = (scope.get("client") or ("",))[0] or ""
            return await self.inner({**scope, "user": await _user_for(key, address)}, receive, send)
        if not any(name == b"origin" for name, _ in scope.get("headers", [])):
            # Not a browser (browsers always send Origin), and no token: not logged in,
            # which the consumer answers with 4401 rather than a bare HTTP 403.
            return await self.inner({**scope, "user": AnonymousUser()}, receive, send)
        return await self.by_session(scope, receive, send)
