"""The console's payload search on PostgreSQL: a trigram GIN index on the payload's
text, upper-cased as Django's ``icontains`` compares it (``UPPER(payload::text) LIKE
UPPER('%term%')``), so a search for an order number or a customer id reads the index
instead of every row. Built CONCURRENTLY (writes go on meanwhile; hence not atomic).

Not part of the model's state: SQLite has no such index (its search is a scan), and
the model's Meta can't say "on PostgreSQL only"."""

from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations

INDEX = "job_payload_trgm"
CREATE = f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX} ON jobs_job USING gin (UPPER((payload)::text) gin_trgm_ops)"
DROP = f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}"


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY runs outside a transaction

    dependencies = [
        ("jobs", "0008_schedules"),
    ]

    operations = [
        TrigramExtension(),  # pg_trgm (a trusted extension: the database's owner may create it); skipped elsewhere
        migrations.RunPython(create, drop, elidable=False),
    ]
