"""Indexes built CONCURRENTLY on PostgreSQL, so that a large jobs table keeps taking
claims, records and lease renewals while the index is built.

A concurrent build that is interrupted (the process killed, the connection cut, a
statement timeout) leaves its index behind marked INVALID: PostgreSQL keeps it up to date
but never reads it. ``CREATE INDEX … IF NOT EXISTS`` then skips it, and ``migrate``
would record the migration as applied with the index unusable for good. So an invalid
index of the wanted name is dropped first and built again.

(The loader skips modules whose names start with an underscore: this is no migration.)
"""

from __future__ import annotations


def concurrently(schema_editor) -> str:
    """``CONCURRENTLY `` on PostgreSQL; elsewhere nothing (SQLite builds in place)."""
    return "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""


def is_invalid(schema_editor, name: str) -> bool:
    """Whether an index of this name exists and was left invalid by an interrupted build."""
    if schema_editor.connection.vendor != "postgresql":
        return False
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT NOT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = %s AND pg_catalog.pg_table_is_visible(c.oid)",
            [name],
        )
        row = cursor.fetchone()
    return bool(row and row[0])


def create(schema_editor, name: str, definition: str) -> None:
    """``CREATE INDEX`` ``name`` ``definition`` (``ON table …``), concurrently on
    PostgreSQL; an invalid one left by an interrupted build is built again."""
    quoted, how = schema_editor.quote_name(name), concurrently(schema_editor)
    if is_invalid(schema_editor, name):
        schema_editor.execute(f"DROP INDEX {how}IF EXISTS {quoted}")
    schema_editor.execute(f"CREATE INDEX {how}IF NOT EXISTS {quoted} {definition}")


def drop(schema_editor, name: str) -> None:
    schema_editor.execute(f"DROP INDEX {concurrently(schema_editor)}IF EXISTS {schema_editor.quote_name(name)}")
