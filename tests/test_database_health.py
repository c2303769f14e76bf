"""A kept PostgreSQL connection is checked before reuse without a round trip when the
server has said nothing, and a connection the server ended is found and replaced."""

from __future__ import annotations

import psycopg
import pytest
from django.db import connection
from django.db.backends.postgresql import base as django_postgresql

from conftest import wait_for

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="config.postgresql is PostgreSQL's backend"),
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def round_trips(monkeypatch) -> list[bool]:
    """Each time Django's own check (``SELECT 1``) runs, with its answer."""
    answers: list[bool] = []
    own = django_postgresql.DatabaseWrapper.is_usable

    def counted(self) -> bool:
        answers.append(own(self))
        return answers[-1]

    monkeypatch.setattr(django_postgresql.DatabaseWrapper, "is_usable", counted)
    return answers


def test_a_quiet_connection_is_usable_without_a_query(round_trips):
    connection.ensure_connection()
    assert connection.is_usable()
    assert round_trips == []


def test_a_connection_the_server_ended_is_found_and_replaced(round_trips):
    connection.ensure_connection()
    ended = connection.connection.info.backend_pid
    password = connection.settings_dict["PASSWORD"] or None
    with psycopg.connect(connection.connection.info.dsn, password=password) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [ended])
    wait_for(lambda: not connection.is_usable(), what="the ended connection found unusable")
    assert round_trips and round_trips[-1] is False  # its socket had news: Django's own check ran
    connection.health_check_done = False  # a new request's check, as close_old_connections makes it
    connection.close_if_health_check_failed()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != ended
