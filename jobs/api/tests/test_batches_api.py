"""``/api/batches/``: create with jobs inline, read counts and progress, add to an open
batch, close, cancel, retry-failed; refusals in the one error shape."""

from __future__ import annotations

import pytest

from jobs.core import lifecycle, outcomes
from jobs.core.models import Batch, Job, Status

pytestmark = pytest.mark.django_db

SLEEP = {"type": "diagnostics.sleep", "payload": {"seconds": 0}}


def finish(job_id, *, ok: bool = True) -> None:
    job = Job.objects.get(pk=job_id)
    lifecycle.claim(job.id, job.rq_job_id, "w")
    if ok:
        done = lifecycle.complete(job.id, job.rq_job_id, None)
    else:
        done = lifecycle.fail(job.id, job.rq_job_id, category="user_fixable", message="no")
    outcomes.finished(done)


def test_create_with_jobs_then_read_counts_progress_and_callbacks(api_as, alice):
    client = api_as(alice)
    response = client.post(
        "/api/batches/",
        {"description": "three", "on_complete": "diagnostics.noop", "context": {"k": 1}, "jobs": [SLEEP] * 3},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert len(body["jobs"]) == 3 and body["total"] == 3 and body["state"] == "running"
    assert body["callbacks"] == {"on_complete": {"type": "diagnostics.noop", "job_id": None}, "on_success": None}
    assert set(Job.objects.filter(batch_id=body["id"]).values_list("id", flat=True)) == {
        Job.objects.get(pk=j).id for j in body["jobs"]
    }
    finish(body["jobs"][0])
    detail = client.get(f"/api/batches/{body['id']}/").json()
    assert detail["counts"]["complete"] == 1 and detail["counts"]["queued"] == 2
    assert detail["progress"] == pytest.approx(33.3)
    finish(body["jobs"][1])
    finish(body["jobs"][2], ok=False)
    detail = client.get(f"/api/batches/{body['id']}/").json()
    assert detail["state"] == "finished" and detail["progress"] == 100
    assert detail["callbacks"]["on_complete"]["job_id"] == str(Job.objects.get(type="diagnostics.noop").id)
    assert client.get(f"/api/jobs/?batch={body['id']}").json()["count"] == 3
    listed = client.get("/api/batches/").json()["results"]
    assert [b["id"] for b in listed] == [body["id"]] and listed[0]["estimated_finish_at"] is None


def test_an_open_batch_takes_jobs_until_closed(api_as, alice):
    client = api_as(alice)
    made = client.post("/api/batches/", {"open": True}, format="json").json()
    assert made["state"] == "open" and made["closed_at"] is None
    added = client.post(f"/api/batches/{made['id']}/jobs/", {"jobs": [SLEEP] * 2}, format="json")
    assert added.status_code == 201 and len(added.json()["jobs"]) == 2
    closed = client.post(f"/api/batches/{made['id']}/close/").json()
    assert closed["state"] == "running" and closed["total"] == 2
    refused = client.post(f"/api/batches/{made['id']}/jobs/", {"jobs": [SLEEP]}, format="json")
    assert refused.status_code == 409 and "closed" in refused.json()["error"]["message"]


def test_a_batch_of_no_jobs_is_complete_at_once(api_as, alice):
    body = api_as(alice).post("/api/batches/", {"on_success": "diagnostics.noop"}, format="json").json()
    assert body["state"] == "complete" and body["total"] == 0 and body["progress"] == 100
    assert body["callbacks"]["on_success"]["job_id"]


def test_cancel_answers_how_many_it_canceled(api_as, alice):
    client = api_as(alice)
    made = client.post("/api/batches/", {"jobs": [SLEEP] * 3}, format="json").json()
    finish(made["jobs"][0])
    response = client.post(f"/api/batches/{made['id']}/cancel/").json()
    assert response["count"] == 2 and response["batch"]["state"] == "finished"
    assert response["batch"]["counts"]["canceled"] == 2


@pytest.mark.redis  # a requeue asks Redis whether the last run is still stopping
def test_retry_failed_requeues_the_failed_ones(api_as, alice):
    client = api_as(alice)
    made = client.post("/api/batches/", {"jobs": [SLEEP] * 2}, format="json").json()
    finish(made["jobs"][0])
    finish(made["jobs"][1], ok=False)
    response = client.post(f"/api/batches/{made['id']}/retry-failed/").json()
    assert response["count"] == 1 and response["batch"]["state"] == "running"
    assert Job.objects.get(pk=made["jobs"][1]).status == Status.QUEUED


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"on_complete": "no.such.type"}, "on_complete"),
        ({"on_success": "jobs.prune_jobs"}, "on_success"),  # internal: code only
        ({"jobs": [SLEEP, {"type": "diagnostics.sleep", "payload": {"seconds": "x"}}]}, "jobs[1].payload.seconds"),
        ({"open": "yes"}, "open"),
        ({"colour": "red"}, "colour"),
        # The context goes into the callbacks' payloads: what they could not take is
        # refused here (accepted, it left the batch unfinished for good).
        ({"on_complete": "diagnostics.noop", "context": {"big": "x" * 1_100_000}, "jobs": [SLEEP]}, "context"),
        ({"on_complete": "diagnostics.noop", "context": {"nul": "a\u0000b"}, "jobs": [SLEEP]}, "context"),
        # A type whose payload cannot be a batch's summary failed at every settle: the
        # batch never finished (with no jobs, it was saved and the create answered 400).
        ({"on_complete": "diagnostics.sleep", "on_success": "diagnostics.noop", "jobs": [SLEEP]}, "on_complete"),
        ({"on_success": "diagnostics.sleep"}, "on_success"),
    ],
)
def test_refusals_name_the_field_and_create_nothing(api_as, alice, body, field):
    response = api_as(alice).post("/api/batches/", body, format="json")
    assert response.status_code in (400, 413), response.content
    error = response.json()["error"]
    assert field in (error.get("fields") or {}) or field in error["message"], error
    assert not Batch.objects.exists() and not Job.objects.exists()


def test_a_key_that_finds_a_job_outside_the_batch_is_a_conflict_and_makes_no_batch(api_as, alice):
    """Answered as one of the batch's jobs, it was in no batch: total 0, and on_complete
    fired at once while the job still waited for its run_at."""
    api = api_as(alice)
    item = {"type": "diagnostics.noop", "run_at": "2030-01-01T00:00:00Z", "idempotency_key": "k-out"}
    alone = api.post("/api/jobs/", item, format="json").json()
    response = api.post("/api/batches/", {"on_complete": "diagnostics.noop", "jobs": [item]}, format="json")
    assert response.status_code == 409, response.content
    assert alone["id"] in response.json()["error"]["message"]
    assert not Batch.objects.exists() and Job.objects.count() == 1


def test_an_add_repeated_with_its_keys_finds_the_same_jobs(api_as, alice):
    api = api_as(alice)
    made = api.post("/api/batches/", {"open": True}, format="json").json()
    body = {"jobs": [{**SLEEP, "idempotency_key": "k-in"}]}
    first = api.post(f"/api/batches/{made['id']}/jobs/", body, format="json")
    again = api.post(f"/api/batches/{made['id']}/jobs/", body, format="json")
    assert first.status_code in (200, 201) and again.status_code in (200, 201), again.content
    assert Job.objects.filter(batch_id=made["id"]).count() == 1


def test_a_callback_named_in_a_request_imports_no_module(api_as, alice):
    """A callback's name from a request was looked up with the resolvers, which import
    the module it names: any module of the web process's path was imported on request
    (``this`` printed the Zen of Python; an adversarial run). Only names known — or
    submitted by code before — are looked up; the rest are a 400 naming the field."""
    import sys

    sys.modules.pop("this", None)
    answer = api_as(alice).post("/api/batches/", {"on_complete": "this.anything"}, format="json")
    assert answer.status_code == 400 and "on_complete" in answer.json()["error"]["fields"]
    assert "this" not in sys.modules


def test_canceling_a_finished_batch_is_a_409_and_leaves_it_as_it_ended(api_as, alice):
    """It answered 200 and stamped ``canceled_at`` on a complete batch (an adversarial run)."""
    client = api_as(alice)
    made = client.post("/api/batches/", {}, format="json").json()  # no jobs: complete at once
    assert made["state"] == "complete"
    answer = client.post(f"/api/batches/{made['id']}/cancel/")
    assert answer.status_code == 409 and answer.json()["error"]["hint"]
    assert Batch.objects.get(pk=made["id"]).canceled_at is None
