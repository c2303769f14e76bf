"""Cron entries in rq-scheduler, cron ticks as idempotent Jobs, heartbeat and health."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from jobs.core import queueing, registry
from jobs.core.models import Job
from jobs.upkeep import crons

pytestmark = pytest.mark.django_db


def cron_ids() -> list[str]:
    return [j.id for j in queueing.scheduler().get_jobs() if j.id.startswith(crons.CRON_ID_PREFIX)]


@pytest.mark.redis
def test_sync_is_idempotent_and_drops_removed_entries():
    for _ in range(3):
        crons.sync()
    ids = cron_ids()
    assert sorted(ids) == sorted(crons.cron_id(n) for n in registry.cron_entries())
    # The platform's own: reconcile, heartbeat, prune events, prune jobs, stats roll-up — and ingestion's cleanup.
    assert len(ids) == len(set(ids)) == 6
    assert registry.cron_entries()["ingestion.cleanup"].schedule == "0 8 * * *"

    registry.cron("tests.temporary", "*/5 * * * *", "diagnostics.noop")
    try:
        crons.sync()
        assert crons.cron_id("tests.temporary") in cron_ids()
    finally:
        registry._crons.pop("tests.temporary")
    result = crons.sync()
    assert crons.cron_id("tests.temporary") not in cron_ids()
    assert result["removed"] == [crons.cron_id("tests.temporary")]


def test_a_repeated_tick_submits_the_work_once():
    first = crons.tick("reconcile")
    second = crons.tick("reconcile")
    assert first == second
    job = Job.objects.get(pk=first)
    assert job.type == "jobs.reconcile" and job.owner is None
    assert job.idempotency_key.startswith("cron:reconcile:")


def test_tick_time_is_the_latest_cron_instant():
    assert crons.tick_time("30 8 * * *", datetime(2026, 3, 1, 8, 29, tzinfo=UTC)) == datetime(
        2026, 2, 28, 8, 30, tzinfo=UTC
    )
    assert crons.tick_time("* * * * *", datetime(2026, 3, 1, 8, 29, 59, 900, tzinfo=UTC)) == datetime(
        2026, 3, 1, 8, 29, tzinfo=UTC
    )


def test_malformed_cron_expression_is_rejected_at_registration():
    with pytest.raises(ValueError):
        registry.cron("tests.bad", "every minute please", "diagnostics.noop")


def test_cron_tick_through_the_real_scheduler_and_worker(run_worker, scheduler_tick, redis_conn):
    from conftest import wait_for

    crons.sync()
    # Make the heartbeat entry due now, as rq-scheduler would at the top of the minute.
    scheduler = queueing.scheduler()
    redis_conn.zadd(scheduler.scheduled_jobs_key, {crons.cron_id("scheduler-heartbeat"): 0})
    scheduler_tick()
    run_worker()  # runs the tick, which submits the heartbeat job
    run_worker()  # runs the heartbeat job
    wait_for(lambda: redis_conn.get("jobdesk:scheduler:heartbeat"), timeout=5, what="heartbeat key")
    assert Job.objects.filter(type="jobs.scheduler_heartbeat", status="complete").count() == 1
    assert crons.cron_id("scheduler-heartbeat") in cron_ids()  # re-armed for the next minute


def test_health_names_the_failing_part(api_as, run_worker, redis_conn):
    client = api_as(None)
    response = client.get("/api/health/")
    assert response.status_code == 503
    body = response.json()
    assert body["database"]["ok"] and body["redis"]["ok"]
    assert set(body["failing"]) == {"workers", "scheduler"}
    assert client.get("/api/health/live/").status_code == 200


def test_health_is_200_with_a_worker_and_a_fresh_heartbeat(api_as, spawn, redis_conn):
    from conftest import wait_for
    from jobs.upkeep.heartbeat import scheduler_heartbeat

    scheduler_heartbeat(None)
    spawn("rqworker", "immediate", "normal", "low")
    response = wait_for(
        lambda: (r := api_as(None).get("/api/health/")).status_code == 200 and r, timeout=30, what="healthy"
    )
    assert response.json()["workers"]["count"] == 1
    assert "workers" not in response.json()["workers"]  # hosts and pids are for staff


def test_staff_see_each_worker_in_health(api_as, operator, redis_conn):
    from rq import Worker

    Worker(["normal"], connection=redis_conn, name="probe").register_birth()
    body = api_as(operator).get("/api/health/").json()
    assert [w["name"] for w in body["workers"]["workers"]] == ["probe"]


def test_the_scheduler_re_arms_cron_entries_lost_in_a_flush(redis_conn):
    from jobs.upkeep.scheduler import JobdeskScheduler

    crons.sync()
    redis_conn.flushall()
    assert sorted(crons.missing()) == sorted(crons.cron_id(n) for n in registry.cron_entries())
    scheduler = JobdeskScheduler(queue_name="normal", connection=redis_conn, interval=1)
    scheduler.enqueue_jobs()
    assert crons.missing() == []
    assert redis_conn.get("jobdesk:scheduler:heartbeat")  # and it beats
