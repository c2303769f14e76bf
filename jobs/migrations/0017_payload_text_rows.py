"""The existing jobs' payloads into ``PayloadText`` (0016), then the trigram index that
was on the job's row (migration 0009) on that table instead. PostgreSQL updates no row
in place when an indexed column changes, and a job's status is indexed: every move of a
job (a claim, a completion) wrote its payload's trigrams into that index again —
measured at about 2 ms of database time per job for a 2–5 KB payload.

Each step can run again (a failed run is re-run as is): the copy skips jobs already
copied, the index is created if missing, the old one dropped CONCURRENTLY (writes to
jobs go on; hence not atomic). The copy is one statement (seconds per million rows);
on PostgreSQL it is the database's own rendering of each payload, on SQLite the one new
jobs get (``PayloadText.of``: SQLite stored non-ASCII characters escaped). A job
submitted by code still running the old version during a deploy is not in the search.
Reversible."""

import json

from django.db import migrations

from jobs.migrations import _concurrent_index as concurrent_index

NEW_INDEX = "payloadtext_trgm"
OLD_INDEX = "job_payload_trgm"
_BATCH = 5000


def copy_payloads(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "INSERT INTO jobs_payloadtext (job_id, text) SELECT id, payload::text FROM jobs_job "
            "WHERE payload <> '{}'::jsonb ON CONFLICT (job_id) DO NOTHING"
        )
        return
    Job, PayloadText = apps.get_model("jobs", "Job"), apps.get_model("jobs", "PayloadText")
    done = set(PayloadText.objects.values_list("job_id", flat=True))
    rows = []
    for job_id, payload in Job.objects.values_list("id", "payload").iterator(_BATCH):
        if payload and job_id not in done:
            rows.append(PayloadText(job_id=job_id, text=json.dumps(payload, ensure_ascii=False)))
        if len(rows) == _BATCH:
            PayloadText.objects.bulk_create(rows)
            rows = []
    PayloadText.objects.bulk_create(rows)


def move_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {NEW_INDEX} ON jobs_payloadtext USING gin (UPPER(text) gin_trgm_ops)"
        )
        concurrent_index.drop(schema_editor, OLD_INDEX)


def move_index_back(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        concurrent_index.create(schema_editor, OLD_INDEX, "ON jobs_job USING gin (UPPER((payload)::text) gin_trgm_ops)")
        schema_editor.execute(f"DROP INDEX IF EXISTS {NEW_INDEX}")


def forget_payloads(apps, schema_editor):
    apps.get_model("jobs", "PayloadText").objects.all().delete()


class Migration(migrations.Migration):
    atomic = False  # DROP/CREATE INDEX CONCURRENTLY run outside a transaction

    dependencies = [
        ("jobs", "0016_payload_text"),
    ]

    operations = [
        migrations.RunPython(copy_payloads, forget_payloads, elidable=False),
        migrations.RunPython(move_index, move_index_back, elidable=False),
    ]
