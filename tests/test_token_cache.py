"""A web process keeps a valid token's row for API_TOKEN_CACHE_SECONDS (apikit.auth):
a token revoked, or a user deactivated, is honoured at once where the change was made
and within that many seconds everywhere else."""

from __future__ import annotations

import types

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from apikit import auth

pytestmark = pytest.mark.django_db


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    # apikit.auth's own clock only: the time module's is everyone's (deadlines, Redis).
    monkeypatch.setattr(auth, "time", types.SimpleNamespace(monotonic=clock))
    auth.forget_tokens()
    return clock


def client_with(user) -> tuple[APIClient, Token]:
    token = Token.objects.get_or_create(user=user)[0]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client, token


def token_reads(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/api/health/live/").status_code == 200
        assert client.get("/api/jobs/").status_code == 200
    return sum("authtoken_token" in q["sql"] for q in queries.captured_queries)


def forget_behind_the_process_back(token: Token) -> None:
    """As another web process (or a script) would: no signal reaches this process."""
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM authtoken_token WHERE key = %s", [token.key])


def test_a_busy_client_s_token_is_read_once_per_period(alice, clock, settings):
    settings.API_TOKEN_CACHE_SECONDS = 5
    client, _ = client_with(alice)
    assert token_reads(client) == 1
    clock.now += 4.9
    assert token_reads(client) == 0
    clock.now += 0.2
    assert token_reads(client) == 1


def test_a_token_deleted_elsewhere_is_refused_once_the_period_passes(alice, clock, settings):
    settings.API_TOKEN_CACHE_SECONDS = 5
    client, token = client_with(alice)
    assert client.get("/api/jobs/").status_code == 200
    forget_behind_the_process_back(token)
    assert client.get("/api/jobs/").status_code == 200  # kept: the other processes' case
    clock.now += 5.1
    assert client.get("/api/jobs/").status_code == 401


def test_without_a_period_every_request_reads_the_token(alice, clock, settings):
    settings.API_TOKEN_CACHE_SECONDS = 0
    client, token = client_with(alice)
    assert client.get("/api/jobs/").status_code == 200
    forget_behind_the_process_back(token)
    assert client.get("/api/jobs/").status_code == 401


def test_a_revoked_token_or_a_deactivated_user_is_refused_at_once_in_the_same_process(alice, bob, clock, settings):
    settings.API_TOKEN_CACHE_SECONDS = 60
    client, token = client_with(alice)
    assert client.get("/api/jobs/").status_code == 200
    token.delete()
    assert client.get("/api/jobs/").status_code == 401
    client, _ = client_with(bob)
    assert client.get("/api/jobs/").status_code == 200
    bob.is_active = False
    bob.save()
    assert client.get("/api/jobs/").status_code == 401


def test_each_request_gets_a_user_of_its_own(alice, clock, settings):
    settings.API_TOKEN_CACHE_SECONDS = 60
    _, token = client_with(alice)
    first = auth.ApiTokenAuthentication().authenticate_credentials(token.key)[0]
    second = auth.ApiTokenAuthentication().authenticate_credentials(token.key)[0]
    assert first == second and first is not second
