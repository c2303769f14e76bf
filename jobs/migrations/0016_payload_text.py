"""The console's payload search moves to a table of its own (``PayloadText``): a job's
payload as text, written once with the job. The table here (in one transaction, so a
failure leaves nothing behind); its rows and index in 0017.

No foreign key in the database (Django cascades the deletes): see the model."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
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
                        db_constraint=False,
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
    ]
