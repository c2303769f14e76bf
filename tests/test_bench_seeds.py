"""The benchmarks' own rows stay writable as the schema grows: a bench that seeds history
with SQL (bench/api.py's ``seed_history``, used by bench/admin.py) broke unseen when a
NOT NULL column was added (its default is Django's, not the database's)."""

from __future__ import annotations

import pytest
from django.db import connection

from jobs.core.models import Job, Status

pytestmark = pytest.mark.django_db(transaction=True)  # VACUUM runs outside a transaction


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the benches seed PostgreSQL")
def test_seeded_history_is_rows_the_app_reads():
    from bench.api import seed_history

    seed_history(100)
    assert Job.objects.count() == 100
    assert set(Job.objects.values_list("status", flat=True)) <= {Status.COMPLETE, Status.FAILED, Status.DEAD_LETTER}
    assert all(job.on_dependency_failure and job.seq == 3 for job in Job.objects.all())
