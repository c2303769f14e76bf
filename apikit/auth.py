"""API authentication: an API token as ``Token <key>`` or ``Bearer <key>`` (as the
WebSocket edge takes it), with failed attempts throttled per address.

DRF authenticates before it throttles, so a client guessing tokens was never slowed
down: each failure now counts against API_AUTH_FAILURE_RATE for its address, and past
it every request from that address with a token answers 429 until the window passes.
The count is asked before an unknown token is read (a locked-out address's guesses
never reach the database) and, for a token the process knows (below), in the same
round trip that logs its user's request against the view's user rate
(``UserRate.log_ahead``): one trip to Redis for both.

A valid token's row (and its user's) is kept by the process for
API_TOKEN_CACHE_SECONDS (5 by default; 0: read on every request), so a busy client's
requests do not each ask the database: a token deleted, or a user deactivated or
changed, anywhere is honoured within that many seconds — at once in the process that
made the change (any save or delete of a token or a user empties the process's cache).
Each request still gets model instances of its own, and an unknown token is never kept.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

from django.conf import settings
from django.db import connections, router
from django.db.models.signals import post_delete, post_save
from django.utils.translation import gettext_lazy as _
from redis.exceptions import RedisError
from rest_framework.authentication import TokenAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed, Throttled

from apikit.throttling import LoggedRate, UserRate, client_address

logger = logging.getLogger("apikit")

SCHEMES = (b"token", b"bearer")


class FailedAuthentications(LoggedRate):
    """Failed token checks per address (the forwarded address only through NUM_PROXIES)."""

    scope = "auth_failures"

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
        self.key, self.now = self.key_for(address), self.timer()
        if self.log("check") is not None:
            assert self._logged is not None  # read by the check
            return self._logged[0] >= self.num_requests
        self.history = [t for t in self.cache.get(self.key, []) if t > self.now - self.duration]  # another cache
        return len(self.history) >= self.num_requests

    def record_for(self, address: str) -> None:
        self.key, self.now = self.key_for(address), self.timer()
        if self.log("add") is None:
            self.exhausted_for(address)  # another cache: DRF's list, fresh
            self.throttle_success()


def storable_key(key: str) -> bool:
    """Could this be a token's key at all? One with a NUL in it cannot be stored (and
    PostgreSQL refuses to even compare it: a 500), nor one longer than the column."""
    return "\x00" not in key and len(key) <= 40


class ApiTokenAuthentication(TokenAuthentication):
    keyword = "Token"

    def authenticate(self, request):
        words = get_authorization_header(request).split()
        if not words or words[0].lower() not in SCHEMES:
            return None
        failures = FailedAuthentications()
        known = self.known_credentials(words[1].decode("latin1")) if len(words) == 2 else None
        if known is not None:
            # A token this process read a moment ago: its address's failures are counted
            # in the round trip that logs its user's request (not a second one). An
            # unknown token is looked up only after that count: a locked-out address's
            # guesses never reach the database.
            user = known[0]
            if _quietly(lambda request: _locked_out(request, failures, user), request, default=False):
                raise _too_many_failures(failures)
            return known
        if _quietly(failures.exhausted, request, default=False):
            raise _too_many_failures(failures)
        if len(words) != 2:
            _quietly(failures.record, request)
            raise AuthenticationFailed("Invalid token header: send 'Authorization: Token <key>' (or Bearer).")
        try:
            user, token = self.authenticate_credentials(words[1].decode("latin1"))
        except AuthenticationFailed:
            _quietly(failures.record, request)
            raise
        _count_ahead(request, user)  # as a known token's request is counted: before permissions
        return user, token

    def authenticate_credentials(self, key):
        """DRF's check — the token exists and its user is active — with the token and its
        user read by one plain query: the ORM compiled the same join on every request,
        most of a request's authentication."""
        token_model = self.get_model()
        db = connections[router.db_for_read(token_model)]
        sql = _token_query(token_model, db.alias)[0]
        row = _read_token(db, sql, key) if storable_key(key) else None
        if row is None:
            raise AuthenticationFailed(_("Invalid token."))
        user, token = _credentials(token_model, db.alias, row)
        if not user.is_active:
            raise AuthenticationFailed(_("User inactive or deleted."))
        return user, token

    def known_credentials(self, key: str) -> tuple[Any, Any] | None:
        """The user and token as this process read them a moment ago, if it did and the
        user is active (see the module's note); None: ask ``authenticate_credentials``."""
        token_model = self.get_model()
        alias = router.db_for_read(token_model)
        row = _known_row(alias, key)
        if row is None:
            return None
        user, token = _credentials(token_model, alias, row)
        return (user, token) if user.is_active else None

    def authenticate_header(self, request) -> str:
        return "Token"


# (database alias, token key) → (monotonic time it is kept until, the token's and its
# user's columns): see the module's note.
_known_tokens: dict[tuple[str, str], tuple[float, tuple]] = {}
_KNOWN_TOKENS_MAX = 10_000  # past it the cache starts again (a flood of valid tokens)


def _credentials(token_model, alias: str, row: tuple) -> tuple[Any, Any]:
    """The user and the token (its user set) from a row of ``_token_query``."""
    _, token_fields, user_model, user_fields = _token_query(token_model, alias)
    token: Any = token_model.from_db(alias, token_fields, row[: len(token_fields)])
    token.user = user = user_model.from_db(alias, user_fields, row[len(token_fields) :])
    return user, token


def _known_row(alias: str, key: str) -> tuple | None:
    """The token's row as kept by this process, if it is still fresh."""
    known = _known_tokens.get((alias, key))
    if known is None or known[0] <= time.monotonic() or getattr(settings, "API_TOKEN_CACHE_SECONDS", 5.0) <= 0:
        return None
    return known[1]


def _too_many_failures(failures: FailedAuthentications) -> Throttled:
    return Throttled(wait=failures.wait(), detail="Too many failed authentications from this address.")


def _user_rate(request) -> UserRate | None:
    """The rate of the request's view that counts by user, if it has one."""
    view = (getattr(request, "parser_context", None) or {}).get("view")
    return next((t for t in view.get_throttles() if isinstance(t, UserRate)), None) if view is not None else None


def _locked_out(request, failures: FailedAuthentications, user) -> bool:
    """Has the request's address failed too often? Asked in the round trip that logs the
    user's request against the view's user rate, when it has one (``UserRate.log_ahead``)."""
    rate = _user_rate(request)
    if rate is not None:
        failures.key = failures.key_for(client_address(request))
        full = rate.log_ahead(request, user, failures)
        if full is not None:
            return full
    return failures.exhausted(request)


def _count_ahead(request, user) -> None:
    """Log an authenticated request against its user's rate now, as a known token's is
    (with the lockout's count): every request a user's token opens counts, whatever
    the view's permissions then answer. Redis down: the rate's own turn fails open."""
    rate = _user_rate(request)
    if rate is None:
        return
    try:
        rate.log_ahead(request, user)
    except (RedisError, OSError):
        return


def _read_token(db, sql: str, key: str) -> tuple | None:
    keep_for = getattr(settings, "API_TOKEN_CACHE_SECONDS", 5.0)
    now = time.monotonic()
    known = _known_row(db.alias, key)
    if known is not None:
        return known
    with db.cursor() as cursor:
        cursor.execute(sql, [key])
        row = cursor.fetchone()
    if row is not None and keep_for > 0:
        if len(_known_tokens) >= _KNOWN_TOKENS_MAX:
            _known_tokens.clear()
        _known_tokens[(db.alias, key)] = (now + keep_for, tuple(row))
    return row


def forget_tokens(**kwargs) -> None:
    """A token or a user was saved or deleted: whatever this process kept may be stale."""
    _known_tokens.clear()


@functools.cache
def _token_query(token_model, alias: str) -> tuple[str, list[str], Any, list[str]]:
    """SELECT <token's columns>, <user's columns> FROM token JOIN user WHERE key = %s."""
    user_field = token_model._meta.get_field("user")
    user_model = user_field.related_model
    for model in (token_model, user_model):  # connected once, with the models known
        post_save.connect(forget_tokens, sender=model, dispatch_uid=f"apikit-tokens-saved-{model._meta.label}")
        post_delete.connect(forget_tokens, sender=model, dispatch_uid=f"apikit-tokens-deleted-{model._meta.label}")
    quote = connections[alias].ops.quote_name
    token_table, user_table = quote(token_model._meta.db_table), quote(user_model._meta.db_table)
    columns = [f"t.{quote(f.column)}" for f in token_model._meta.concrete_fields]
    columns += [f"u.{quote(f.column)}" for f in user_model._meta.concrete_fields]
    sql = (
        f"SELECT {', '.join(columns)} FROM {token_table} t JOIN {user_table} u"
        f" ON u.{quote(user_model._meta.pk.column)} = t.{quote(user_field.column)}"
        f" WHERE t.{quote(token_model._meta.pk.column)} = %s"
    )
    token_fields = [f.attname for f in token_model._meta.concrete_fields]
    return sql, token_fields, user_model, [f.attname for f in user_model._meta.concrete_fields]


def _quietly(call, request, default=None):
    """The cache is Redis: when it is down, authentication still works, unthrottled."""
    try:
        return call(request)
    except (RedisError, OSError):
        logger.warning("failed-authentication throttle not checked: the cache is unreachable")
        return default
