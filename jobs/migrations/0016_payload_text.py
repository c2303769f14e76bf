"""The console's payload search moves to a table of its own (``PayloadText``): a job's
payload as text, written once with the job, with the trigram index that was on the
job's row (migration 0009). PostgreSQL updates no row in place when an indexed column
changes, and a job's status is indexed: every move of a job (a claim, a completion)
wrote its payload's trigrams into that index again — measured at about 2 ms of
database time per job for a 2–5 KB payload.

The existing jobs' payloads are copied in one statement (seconds per million rows; a
job submitted by code still running the old version during a deploy is not in the
search until it is submitted again). The index is built after the copy, then the old
one is dropped CONCURRENTLY (writes to jobs go on). Reversible."""

import django.db.models.deletion
from django.db import migrations, models

NEW_INDEX = "payloadtext_trgm"
OLD_INDEX = "job_payload_trgm"


def copy_payloads(apps, schema_editor):
    # Each database renders the stored JSON as text itself, as the console searched it.
    as_text = "payload::text" if schema_editor.connection.vendor == "postgresql" else "payload"
    empty = "'{}'::jsonb" if schema_editor.connection.vendor == "postgresql" else "'{}'"
    schema_editor.execute(
        f"INSERT INTO jobs_payloadtext (job_id, text) SELECT id, {as_text} FROM jobs_job WHERE payload <> {empty}"
    )


def move_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"CREATE INDEX {NEW_INDEX} ON jobs_payloadtext USING gin (UPPER(text) gin_trgm_ops)")
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {OLD_INDEX}")


def move_index_back(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {OLD_INDEX} ON jobs_job USING gin (UPPER((payload)::text) gin_trgm_ops)"
        )
        schema_editor.execute(f"DROP INDEX IF EXISTS {NEW_INDEX}")


class Migration(migrations.Migration):
    atomic = False  # DROP/CREATE INDEX CONCURRENTLY run outside a transaction

    dependencies = [
        ("jobs", "0015_fewer_indexes_per_move"),
    ]

    operations = [
        migrations.CreateModel(
            name="PayloadText",
            fields=[
                (
                    "job",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="+",
                        serialize=False,
                        to="jobs.job",
                    ),
                ),
                ("text", models.TextField()),
            ],
        ),
        migrations.RunPython(copy_payloads, migrations.RunPython.noop, elidable=False),
        migrations.RunPython(move_index, move_index_back, elidable=False),
    ]
