"""Canceled runs whose lease still holds, by type: they count against their type's
concurrency limit until they stop (``jobs.core.leases.stopping``). Few rows match, so
the index is small and the count one seek.

Built CONCURRENTLY on PostgreSQL (hence not atomic): a plain CREATE INDEX holds a lock on
the jobs table that blocks every claim, record and lease renewal while it scans the table
— on a large table long enough for leases to pass and runs to be taken for lost."""

from django.db import migrations, models

from jobs.migrations import _concurrent_index as concurrent_index

INDEX = "job_stopping"
CONDITION = "(\"lease_expires_at\" IS NOT NULL AND NOT (\"status\" = 'active'))"


def create(apps, schema_editor):
    concurrent_index.create(schema_editor, INDEX, f'ON "jobs_job" ("type", "lease_expires_at") WHERE {CONDITION}')


def drop(apps, schema_editor):
    concurrent_index.drop(schema_editor, INDEX)


class Migration(migrations.Migration):
    atomic = False  # CREATE / DROP INDEX CONCURRENTLY run outside a transaction

    dependencies = [
        ("jobs", "0018_batch_canceled_at"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddIndex(
                    model_name="job",
                    index=models.Index(
                        condition=models.Q(
                            ("lease_expires_at__isnull", False), models.Q(("status", "active"), _negated=True)
                        ),
                        fields=["type", "lease_expires_at"],
                        name=INDEX,
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(create, drop, elidable=False)],
        ),
    ]
