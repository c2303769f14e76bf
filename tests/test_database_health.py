"""A kept PostgreSQL connection the server ended between requests is found by the
health check (``CONN_HEALTH_CHECKS``) and replaced: the next request's first query runs
on a new connection, not into the dead one (a 500). A cheaper check that trusted a
socket with nothing to read was tried and dropped: a link that dies without a word (a
fail-over, a moved address) passed it, and the request's own query failed instead."""

from __future__ import annotations

import psycopg
import pytest
from django.db import connection

from conftest import wait_for

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="ends a PostgreSQL session"),
    pytest.mark.django_db(transaction=True),
]


def test_a_connection_the_server_ended_is_found_and_replaced():
    connection.ensure_connection()
    ended = connection.connection.info.backend_pid
    password = connection.settings_dict["PASSWORD"] or None
    with psycopg.connect(connection.connection.info.dsn, password=password) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [ended])
    wait_for(lambda: not connection.is_usable(), what="the ended connection found unusable")
    connection.health_check_done = False  # a new request's check, as close_old_connections makes it
    connection.close_if_health_check_failed()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != ended
