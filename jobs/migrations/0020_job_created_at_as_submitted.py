# Job.created_at is set by the submit (in the order the jobs were sent) rather than
# stamped by auto_now_add at insert (a bulk inserts its rows in key order). Only Django's
# state changes: the column is the same (SQLite would otherwise copy the whole table).

import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("jobs", "0019_job_stopping"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="job",
                    name="created_at",
                    field=models.DateTimeField(blank=True, default=django.utils.timezone.now, editable=False),
                ),
            ],
        ),
    ]
