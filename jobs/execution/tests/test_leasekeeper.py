"""The lease keeper against the real database: it renews while a run goes on, stops the
run once (and only that run) when a renewal is refused, and keeps renewing — without
stopping anything — while an outcome is recorded."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from conftest import wait_for
from jobs.core import lifecycle
from jobs.core.models import Job
from jobs.core.submit import submit
from jobs.execution import leasekeeper

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def fast_leases(settings):
    settings.JOB_LEASE_SECONDS, settings.JOB_LEASE_RENEW_SECONDS, settings.JOB_LEASE_STOP_SECONDS = 4.0, 0.2, 2.0


@pytest.fixture
def keeper():
    made = leasekeeper.LeaseKeeper()
    yield made
    made.close()


def claimed_job():
    job = submit("diagnostics.noop").job
    return lifecycle.claim(job.id, job.rq_job_id, "w")


def lease_of(job) -> object:
    return Job.objects.values_list("lease_expires_at", flat=True).get(pk=job.id)


def test_a_held_lease_is_renewed_and_a_refused_renewal_stops_the_run_once(fast_leases, keeper):
    job = claimed_job()
    stops: list[str] = []
    stopped = threading.Event()

    def stop(reason: str) -> None:
        stops.append(reason)
        stopped.set()

    keeper.hold(job.id, job.rq_job_id, stop, claimed_at=leasekeeper.now())
    first = lease_of(job)
    wait_for(lambda: lease_of(job) > first, timeout=5, what="a renewal")
    lifecycle.cancel(job.id, reason="taken away")  # the next renewal is refused
    assert stopped.wait(5)
    assert keeper.lost().startswith("its lease renewal was refused")
    assert len(stops) == 1 and keeper.release() == stops[0]


def test_a_disarmed_hold_keeps_renewing_and_stops_nothing(fast_leases, keeper):
    job = claimed_job()
    stops: list[str] = []
    keeper.hold(job.id, job.rq_job_id, stops.append, claimed_at=leasekeeper.now())
    assert keeper.disarm() == ""  # the handler is done; the outcome is being recorded
    first = lease_of(job)
    wait_for(lambda: lease_of(job) > first, timeout=5, what="a renewal while recording")
    lifecycle.cancel(job.id, reason="canceled while its outcome was being recorded")
    wait_for(lambda: keeper.lost(), timeout=5, what="the refusal to be noticed")
    assert stops == []  # nothing left to stop
    keeper.release()


def test_a_released_run_is_never_stopped_and_its_successor_keeps_its_own_lease(fast_leases, keeper):
    first, second = claimed_job(), claimed_job()
    stops: list[str] = []
    keeper.hold(first.id, first.rq_job_id, lambda reason: stops.append("first"), claimed_at=leasekeeper.now())
    keeper.release()
    keeper.hold(second.id, second.rq_job_id, lambda reason: stops.append("second"), claimed_at=leasekeeper.now())
    lifecycle.cancel(first.id, reason="after its run ended")
    before = lease_of(second)
    wait_for(lambda: lease_of(second) > before, timeout=5, what="the second run's renewal")
    assert stops == [] and keeper.lost() == ""
    keeper.release()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="reads PostgreSQL's sessions")
def test_the_renewer_keeps_no_connection_open_between_runs(fast_leases, keeper):
    """An idle worker holds no database connection for its renewer (many idle workers
    would use up a server's), and a test database can be dropped after the suite."""

    def others() -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            return cursor.fetchone()[0]

    job = claimed_job()
    before = others()
    keeper.hold(job.id, job.rq_job_id, lambda reason: None, claimed_at=leasekeeper.now())
    first = lease_of(job)
    wait_for(lambda: lease_of(job) > first, timeout=5, what="a renewal")
    assert others() == before + 1, "the renewer renews on a connection of its own"
    keeper.release()
    wait_for(lambda: others() == before, timeout=5, what="the renewer's connection closed")
