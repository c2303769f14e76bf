"""/api/stats/: seeded jobs with known durations and outcomes give the known numbers."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.db.models.functions import Trunc
from django.utils import timezone

from conftest import past_job
from jobs.core.models import Job, JobStatsHour, Status
from jobs.insight import rollup, stats

pytestmark = pytest.mark.django_db


def finished_job(owner, job_type: str, status: str, *, wait: float, run: float, ago_hours: float = 1, **extra):
    end = timezone.now() - timedelta(hours=ago_hours)
    start = end - timedelta(seconds=run)
    job = past_job(type=job_type, status=status, owner=owner, started_at=start, finished_at=end, **extra)
    Job.objects.filter(pk=job.pk).update(created_at=start - timedelta(seconds=wait))


def test_known_jobs_give_known_numbers(api_as, alice, bob, operator):
    for run in (1, 2, 3, 4, 10):  # durations: p50 3, max 10
        finished_job(alice, "t.report", Status.COMPLETE, wait=run * 2, run=run, eta_error_seconds=-run)
    finished_job(alice, "t.report", Status.FAILED, wait=1, run=1)
    finished_job(alice, "t.report", Status.DEAD_LETTER, wait=1, run=1)
    finished_job(alice, "t.report", Status.COMPLETE, wait=1, run=1, ago_hours=30)  # outside the last 24 h
    finished_job(bob, "t.other", Status.COMPLETE, wait=1, run=5)

    response = api_as(alice).get("/api/stats/?hours=24")

    assert response.status_code == 200
    (report,) = response.data["types"]  # bob's job is not alice's to see
    assert report["type"] == "t.report"
    assert (report["finished"], report["complete"], report["failed"], report["dead_letter"]) == (7, 5, 1, 1)
    assert report["rates"] == {"complete": round(5 / 7, 4), "failed": round(1 / 7, 4), "dead_letter": round(1 / 7, 4)}
    assert report["throughput_per_hour"] == pytest.approx(5 / 24, abs=1e-3)
    assert report["duration"]["p50"] == 3 and report["duration_max"] == 10
    assert report["eta_error"]["p50"] == 3  # absolute errors 1, 2, 3, 4, 10
    assert report["queue_wait"]["p50"] == 4  # waits 2, 4, 6, 8, 20, 1, 1
    # p95 of 1, 2, 3, 4, 10: PostgreSQL interpolates (8.8), SQLite takes the nearest rank (10)
    assert 8.8 <= report["duration"]["p95"] <= 10
    points = response.data["series"]["points"]
    assert response.data["series"]["bucket"] == "hour" and sum(p["complete"] for p in points) == 5
    assert sum(p["failed"] for p in points) == 2

    staff = api_as(operator).get("/api/stats/?hours=48").data
    assert {t["type"] for t in staff["types"]} == {"t.report", "t.other"}
    assert next(t for t in staff["types"] if t["type"] == "t.report")["finished"] == 8


@pytest.mark.parametrize(
    "query", ["hours=-1", "hours=abc", "since=yesterday", "until=", "since=",
              "since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", "hours=99999999",
              "until=0001-01-01T00:00:00Z", "until=0001-01-02T00:00:00Z&hours=9600"],
)  # fmt: skip
def test_bad_periods_are_400_with_a_message(api_as, alice, query):
    response = api_as(alice).get(f"/api/stats/?{query}")
    assert response.status_code == 400 and response.json()["error"]["message"]
    assert set(response.json()["error"]["fields"]) & {"hours", "since", "until"}  # named (a period too long was not)


def test_stats_need_a_login(client):
    assert client.get("/api/stats/").status_code == 401


@pytest.mark.skipif(connection.vendor != "postgresql", reason="roll-ups are a PostgreSQL path")
@pytest.mark.redis  # the roll-up records how far it has folded in the cache
def test_long_periods_from_hourly_rollups_match_the_live_numbers(api_as, alice, operator, settings):
    import random

    rng = random.Random(3)
    for i in range(300):  # three days of finished jobs, some failing
        status = Status.FAILED if i % 10 == 0 else Status.COMPLETE
        finished_job(alice, f"t.k{i % 3}", status, wait=rng.uniform(0.5, 30), run=rng.uniform(0.1, 100),
                     ago_hours=rng.uniform(0.1, 70), eta_error_seconds=rng.uniform(-20, 20))  # fmt: skip
    rollup.refresh()
    stored = JobStatsHour.objects.count()
    rollup.refresh()  # idempotent: the hours it folds again replace their rows
    hours_and_types = (
        Job.objects.filter(finished_at__lt=rollup.floor_hour(timezone.now()), type__startswith="t.k")
        .annotate(hour=Trunc("finished_at", "hour"))
        .values("hour", "type")
        .distinct()
        .count()
    )
    assert JobStatsHour.objects.count() == stored == hours_and_types

    settings.TIME_ZONE = "Asia/Kathmandu"  # days began at 18:15 UTC in the live series, at 00:00 in the roll-ups'
    now = timezone.now()
    since, until = now - timedelta(hours=80), now
    rolled = stats.summary(since, until)
    live = stats.summary(since, until, owner=alice)  # the owner's view is always live
    assert rolled["source"] == "hourly roll-ups" and live["source"] == "jobs"
    for a, b in zip(rolled["types"], live["types"], strict=True):
        for name in ("finished", "complete", "failed", "dead_letter", "canceled", "rates", "throughput_per_hour"):
            assert a[name] == b[name], name
        assert a["duration_max"] == pytest.approx(b["duration_max"], abs=1e-3)
        for measure in ("duration", "queue_wait", "eta_error"):
            for p in ("p50", "p95"):
                assert a[measure][p] == pytest.approx(b[measure][p], rel=0.12), (a["type"], measure, p)
    assert [(p["at"], p["complete"], p["failed"]) for p in rolled["series"]["points"]] == [
        (p["at"], p["complete"], p["failed"]) for p in live["series"]["points"]
    ]
    assert api_as(operator).get("/api/stats/?hours=80").data["source"] == "hourly roll-ups"
