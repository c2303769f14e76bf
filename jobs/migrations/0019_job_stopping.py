"""Canceled runs whose lease still holds, by type: they count against their type's
concurrency limit until they stop (``jobs.core.leases.stopping``). Few rows match, so
the index is small and the count one seek."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0018_batch_canceled_at"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="job",
            index=models.Index(
                condition=models.Q(("lease_expires_at__isnull", False), models.Q(("status", "active"), _negated=True)),
                fields=["type", "lease_expires_at"],
                name="job_stopping",
            ),
        ),
    ]
