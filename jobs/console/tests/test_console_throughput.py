"""The dashboard's throughput: jobs finished per second over the last 15 minutes, by
outcome and by queue, from known finished rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from conftest import past_jobs
from jobs.core.models import Job, Status
from jobs.insight import throughput

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 1, 12, 0, 2, 500_000, tzinfo=UTC)  # 2.5 s into the bucket 12:00:00–12:00:05


def finished(status: str, priority: str, seconds_ago: float, count: int = 1) -> None:
    at = NOW - timedelta(seconds=seconds_ago)
    past_jobs(Job(type="t.x", status=status, priority=priority, finished_at=at) for _ in range(count))


def test_finished_jobs_are_counted_per_bucket_by_outcome_and_queue():
    finished(Status.COMPLETE, "normal", 1, count=3)  # the bucket now falls in: the last one
    finished(Status.COMPLETE, "immediate", 2)
    finished(Status.FAILED, "normal", 2)
    finished(Status.DEAD_LETTER, "low", 2)  # a dead letter counts as failed
    finished(Status.COMPLETE, "low", 7.5)  # 12:59:55: the bucket before
    finished(Status.COMPLETE, "normal", 14 * 60 + 55)  # 11:45:07.5: the first bucket
    finished(Status.COMPLETE, "normal", 16 * 60)  # before the window
    finished(Status.CANCELED, "normal", 1)  # not a finish that counts
    past_jobs([Job(type="t.x", status=Status.QUEUED)])  # not finished

    data = throughput.throughput(NOW)

    assert data["step"] == 5 and len(data["total"]["complete"]) == 180
    assert data["end"] == datetime(2026, 3, 1, 12, 0, 5, tzinfo=UTC)
    assert data["start"] == data["end"] - timedelta(minutes=15)
    total = data["total"]
    assert (total["complete"][-1], total["failed"][-1]) == (4, 2)
    assert (total["complete"][-2], total["failed"][-2]) == (1, 0)
    assert total["complete"][0] == 1
    assert sum(total["complete"]) == 6 and sum(total["failed"]) == 2
    queues = data["queues"]
    assert set(queues) == {"immediate", "normal", "low"}
    assert (queues["normal"]["complete"][-1], queues["normal"]["failed"][-1]) == (3, 1)
    assert (queues["immediate"]["complete"][-1], queues["immediate"]["failed"][-1]) == (1, 0)
    assert (queues["low"]["complete"][-1], queues["low"]["failed"][-1], queues["low"]["complete"][-2]) == (0, 1, 1)
    assert data["rate"] == {"complete": round(5 / 60, 2), "failed": round(2 / 60, 2)}  # the last minute


def test_one_query_however_many_rows():
    finished(Status.COMPLETE, "normal", 30, count=50)
    with CaptureQueriesContext(connection) as queries:
        throughput.throughput(NOW)
    assert len(queries) == 1
    assert "GROUP BY" in queries[0]["sql"]


def test_an_empty_system_has_the_whole_window_at_zero():
    data = throughput.throughput(NOW)
    assert data["total"] == {"complete": [0] * 180, "failed": [0] * 180}
    assert data["rate"] == {"complete": 0, "failed": 0}


def test_the_dashboard_data_carries_the_throughput_and_24_hours(django_user_model):
    boss = django_user_model.objects.create_superuser("boss", password="pw-boss")
    client = Client()
    client.force_login(boss)
    past_jobs([Job(type="t.x", status=Status.COMPLETE, priority="low", finished_at=datetime.now(UTC))])
    data = client.get(reverse("admin:jobs_dashboard_data")).json()
    assert sum(data["throughput"]["total"]["complete"]) == 1
    assert sum(data["throughput"]["queues"]["low"]["complete"]) == 1
    assert len(data["hours"]) == 24  # the whole axis, zeros included
    html = client.get(reverse("admin:jobs_dashboard")).content.decode()
    assert "what django-rq counts" in html.lower()
