"""/metrics parses with prometheus-client's own parser and shows what is on record."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from conftest import past_job
from jobs.core.models import Status
from jobs.core.submit import submit

pytestmark = pytest.mark.django_db


def scrape(client: Client | None = None, **headers) -> dict[str, dict]:
    response = (client or Client()).get("/metrics", **headers)
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    samples: dict[str, dict] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def test_metrics_show_the_seeded_jobs(run_worker):
    now = timezone.now()
    for seconds in (0.2, 2, 20):
        past_job(type="t.report", status=Status.COMPLETE, created_at=now, started_at=now,
                           finished_at=now + timedelta(seconds=seconds))  # fmt: skip
    past_job(type="t.report", status=Status.FAILED, error_category="user_fixable")
    past_job(type="t.report", status=Status.DEAD_LETTER, error_category="temporary")
    submit("diagnostics.noop")
    submit("diagnostics.noop", priority="low")
    past_job(type="jobs.reconcile", status=Status.COMPLETE, result={"repairs": 7})
    from jobs.core import dropped

    dropped.count("web_queue", 3)
    dropped.flush()

    samples = scrape()

    jobs = samples["jobdesk_jobs"]
    assert jobs[(("status", "complete"), ("type", "t.report"))] == 3
    assert jobs[(("status", "queued"), ("type", "diagnostics.noop"))] == 2
    assert samples["jobdesk_queue_depth"][(("queue", "low"),)] == 1
    assert samples["jobdesk_queue_depth"][(("queue", "normal"),)] == 1
    buckets = samples["jobdesk_job_duration_seconds_bucket"]
    assert buckets[(("le", "1.0"), ("type", "t.report"))] == 1
    assert buckets[(("le", "5.0"), ("type", "t.report"))] == 2
    assert buckets[(("le", "+Inf"), ("type", "t.report"))] == 3
    assert samples["jobdesk_job_duration_seconds_sum"][(("type", "t.report"),)] == pytest.approx(22.2)
    failures = samples["jobdesk_job_failures_total"]
    assert failures[(("category", "user_fixable"), ("type", "t.report"))] == 1
    assert failures[(("category", "temporary"), ("type", "t.report"))] == 1
    assert samples["jobdesk_reconciler_repairs_total"][()] == 7
    assert samples["jobdesk_redis_up"][()] == 1 and samples["jobdesk_workers_alive"][()] == 0
    lost = samples["jobdesk_live_dropped_total"]
    assert lost[(("layer", "web_queue"),)] == 3 and lost[(("layer", "relay_buffer"),)] == 0


def test_the_metrics_token_is_required_when_set(settings):
    settings.METRICS_TOKEN = "s3cret"
    refused = Client().get("/metrics")
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "not_authenticated"
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret").status_code == 200


def test_a_forked_horse_does_not_add_its_parents_pending_drop_counts(redis_conn):
    """A work-horse flushes its drop counts as it exits (jobs.core.relay.drain): the
    counts it inherited are its parent's, which adds them itself. A review found them
    added twice."""
    import os

    from jobs.core import dropped

    dropped.reset()
    dropped.count("relay_down", 3)  # pending in this process, its flush not due yet
    child = os.fork()
    if child == 0:
        try:
            dropped.flush()  # a horse that dropped nothing itself, at its exit
        finally:
            os._exit(0)
    os.waitpid(child, 0)
    dropped.flush()
    assert dropped.totals()["relay_down"] == 3
