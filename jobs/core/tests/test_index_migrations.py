"""Indexes built CONCURRENTLY by migrations: one left INVALID by an interrupted build is
built again when the migration runs again (``IF NOT EXISTS`` alone skipped it, and the
migration was recorded as applied with the index unusable)."""

from __future__ import annotations

import importlib

import pytest
from django.db import IntegrityError, connection

from jobs.core.submit import submit
from jobs.migrations import _concurrent_index as concurrent_index

pytestmark = pytest.mark.django_db(transaction=True)

STOPPING = importlib.import_module("jobs.migrations.0019_job_stopping")


def _definition(name: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [name])
        return cursor.fetchone()[0]


def test_an_index_an_interrupted_build_left_invalid_is_built_again():
    if connection.vendor != "postgresql":
        pytest.skip("only PostgreSQL builds indexes concurrently")
    submit("diagnostics.noop")
    submit("diagnostics.noop")
    with connection.schema_editor(atomic=False) as editor:
        concurrent_index.drop(editor, STOPPING.INDEX)
        # A concurrent build that fails part-way (here: two rows break its uniqueness)
        # leaves its index behind, INVALID, as a killed build does.
        with pytest.raises(IntegrityError):
            editor.execute(f'CREATE UNIQUE INDEX CONCURRENTLY "{STOPPING.INDEX}" ON jobs_job ("type")')
        assert concurrent_index.is_invalid(editor, STOPPING.INDEX)

        STOPPING.create(None, editor)

        assert not concurrent_index.is_invalid(editor, STOPPING.INDEX)
    definition = _definition(STOPPING.INDEX)
    assert "UNIQUE" not in definition and "lease_expires_at IS NOT NULL" in definition, definition


def test_a_valid_index_is_left_as_it_is():
    if connection.vendor != "postgresql":
        pytest.skip("only PostgreSQL builds indexes concurrently")
    with connection.cursor() as cursor:
        cursor.execute("SELECT oid FROM pg_class WHERE relname = %s", [STOPPING.INDEX])
        before = cursor.fetchone()[0]
    with connection.schema_editor(atomic=False) as editor:
        STOPPING.create(None, editor)
    with connection.cursor() as cursor:
        cursor.execute("SELECT oid FROM pg_class WHERE relname = %s", [STOPPING.INDEX])
        assert cursor.fetchone()[0] == before  # not rebuilt
