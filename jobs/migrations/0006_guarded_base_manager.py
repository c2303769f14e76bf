"""Django's internal queries on jobs go through the guarded queryset (the lifecycle alone
writes ``status``); the pruning of old events, now a standard task, is named by its
module path, and the rows of its earlier name follow it."""

from django.db import migrations

OLD, NEW = "jobs.prune_events", "jobs.upkeep.pruning.prune_events"


def rename(apps, schema_editor, old=OLD, new=NEW):
    for model in ("Job", "JobStatsHour"):
        apps.get_model("jobs", model).objects.filter(type=old).update(type=new)


def rename_back(apps, schema_editor):
    rename(apps, schema_editor, old=NEW, new=OLD)


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0005_console_indexes"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="job",
            options={"base_manager_name": "objects", "ordering": ["-created_at"]},
        ),
        migrations.RunPython(rename, rename_back),
    ]
