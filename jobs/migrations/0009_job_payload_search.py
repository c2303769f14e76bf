"""The console's search on PostgreSQL: trigram GIN indexes on the payload's text and on
the error message, upper-cased as Django's ``icontains`` compares them (``UPPER(payload::text)
LIKE UPPER('%term%')``), so a search for an order number or a customer id reads an index
instead of every row — and with the error message's too, every branch of a word search's
OR (type, key, error, payload) has an index to combine (0.4–0.6 s at 1M jobs without it).
Built CONCURRENTLY (writes go on meanwhile; hence not atomic).

Not part of the model's state: SQLite has no such index (its search is a scan), and
the model's Meta can't say "on PostgreSQL only".

pg_trgm is created as Django's TrigramExtension would (only if missing, only on
PostgreSQL), but without importing django.contrib.postgres: that imports psycopg, which
a project on SQLite need not have."""

from django.db import migrations

from jobs.migrations import _concurrent_index as concurrent_index

EXTENSION = "pg_trgm"  # a trusted extension: the database's owner may create it

INDEXES = {  # name → what it indexes
    "job_payload_trgm": "gin (UPPER((payload)::text) gin_trgm_ops)",
    "job_error_trgm": "gin (UPPER(error_message) gin_trgm_ops) WHERE error_message <> ''",
}


def _extension_exists(schema_editor) -> bool:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = %s", [EXTENSION])
        return cursor.fetchone() is not None


def create_extension(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql" and not _extension_exists(schema_editor):
        schema_editor.execute(f"CREATE EXTENSION IF NOT EXISTS {EXTENSION}")


def drop_extension(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql" and _extension_exists(schema_editor):
        schema_editor.execute(f"DROP EXTENSION IF EXISTS {EXTENSION}")


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for name, expression in INDEXES.items():
            concurrent_index.create(schema_editor, name, f"ON jobs_job USING {expression}")


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for name in INDEXES:
            concurrent_index.drop(schema_editor, name)


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY runs outside a transaction

    dependencies = [
        ("jobs", "0008_schedules"),
    ]

    operations = [
        migrations.RunPython(create_extension, drop_extension),
        migrations.RunPython(create, drop, elidable=False),
    ]
