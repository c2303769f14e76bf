"""A batch remembers it was canceled (``jobs.core.batches.cancel``): its running jobs
finish but may not add more jobs to it, until a retry-failed lets its work go on."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0017_payload_text_rows"),
    ]

    operations = [
        migrations.AddField(
            model_name="batch",
            name="canceled_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
