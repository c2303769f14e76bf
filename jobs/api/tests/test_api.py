"""The jobs endpoints: status codes, ownership, error shape, actions."""

from __future__ import annotations

import pytest
from django.utils.dateparse import parse_datetime

from jobs.core.models import Job, Status
from jobs.core.submit import submit

pytestmark = pytest.mark.django_db


def assert_error(response, status: int, code: str):
    assert response.status_code == status, response.content
    body = response.json()["error"]
    assert body["code"] == code and body["message"] and body["hint"]
    return body


def test_submit_returns_201_then_200_for_a_repeated_key(api_as, alice):
    api = api_as(alice)
    first = api.post("/api/jobs/", {"type": "diagnostics.sleep", "payload": {"seconds": 0}}, format="json",
                     HTTP_IDEMPOTENCY_KEY="abc")  # fmt: skip
    again = api.post("/api/jobs/", {"type": "diagnostics.sleep", "payload": {"seconds": 0}}, format="json",
                     HTTP_IDEMPOTENCY_KEY="abc")  # fmt: skip
    assert first.status_code == 201 and again.status_code == 200
    assert first.json()["id"] == again.json()["id"]
    assert first.json()["status"] == "queued" and first.json()["owner"] == "alice"


@pytest.mark.parametrize(
    "body, field",
    [
        ({"type": "nope"}, "type"),
        ({"type": "diagnostics.sleep", "payload": {"seconds": "x"}}, "payload.seconds"),
        ({"type": "diagnostics.sleep", "payload": {"steps": 10**400}}, "payload.steps"),  # float() of it overflowed
        ({"type": "diagnostics.sleep", "priority": "urgent"}, "priority"),
        ({"type": "diagnostics.sleep", "max_attempts": 0}, "max_attempts"),
        ({"type": "diagnostics.sleep", "max_attempts": 10**30}, "max_attempts"),
        ({"type": "diagnostics.sleep", "depends_on": ["zzz"]}, "depends_on"),
        ({"type": "diagnostics.sleep", "run_at": "tomorrow"}, "run_at"),
        ({"type": "diagnostics.sleep", "size": -1}, "size"),
        ({"type": "diagnostics.sleep", "size": "big"}, "size"),
        ({"payload": {}}, "type"),
    ],
)
def test_bad_submissions_are_400_with_the_field(api_as, alice, body, field):
    response = api_as(alice).post("/api/jobs/", body, format="json")
    error = assert_error(response, 400, "invalid")
    assert field in error["fields"]
    assert Job.objects.count() == 0


def test_a_key_in_the_header_and_another_in_the_body_is_400_naming_it(api_as, alice):
    api = api_as(alice)
    body = {"type": "diagnostics.noop", "idempotency_key": "body-1"}
    error = assert_error(api.post("/api/jobs/", body, format="json", HTTP_IDEMPOTENCY_KEY="hdr-1"), 400, "invalid")
    assert "idempotency_key" in error["fields"] and "'hdr-1'" in str(error["fields"])
    assert Job.objects.count() == 0
    same = api.post("/api/jobs/", {**body, "idempotency_key": "hdr-1"}, format="json", HTTP_IDEMPOTENCY_KEY="hdr-1")
    assert same.status_code == 201 and same.json()["idempotency_key"] == "hdr-1"


@pytest.mark.parametrize(
    "path, body",
    [
        ("/api/jobs/bulk/", {"jobs": [{"type": "diagnostics.noop"}]}),
        ("/api/batches/", {"jobs": [{"type": "diagnostics.noop"}]}),
    ],
)
def test_a_request_of_many_jobs_refuses_one_idempotency_key_for_all(api_as, alice, path, body):
    error = assert_error(api_as(alice).post(path, body, format="json", HTTP_IDEMPOTENCY_KEY="once"), 400, "invalid")
    assert "Idempotency-Key" in error["fields"] and "idempotency_key" in error["hint"]
    assert Job.objects.count() == 0


def test_jobs_added_to_an_open_batch_refuse_one_idempotency_key_for_all(api_as, alice):
    """The batch's jobs/ endpoint ignored the header: a retry added the jobs again."""
    api = api_as(alice)
    opened = api.post("/api/batches/", {"jobs": [], "open": True}, format="json").json()
    more = {"jobs": [{"type": "diagnostics.noop"}]}
    answer = api.post(f"/api/batches/{opened['id']}/jobs/", more, format="json", HTTP_IDEMPOTENCY_KEY="retry-me")
    assert "Idempotency-Key" in assert_error(answer, 400, "invalid")["fields"]
    assert Job.objects.count() == 0


def test_an_idempotency_key_header_is_read_as_utf8(api_as, alice):
    """Django decodes a header as Latin-1: "€-k" in the header was another key than the
    same in the body (a 400 calling them different, or a key stored garbled)."""
    api = api_as(alice)
    sent = "€-k".encode().decode("latin-1")  # the header as Django hands it over
    body = {"type": "diagnostics.noop", "idempotency_key": "€-k"}
    first = api.post("/api/jobs/", body, format="json", HTTP_IDEMPOTENCY_KEY=sent)
    assert first.status_code == 201 and first.json()["idempotency_key"] == "€-k"
    again = api.post("/api/jobs/", {"type": "diagnostics.noop"}, format="json", HTTP_IDEMPOTENCY_KEY=sent)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    broken = api.post("/api/jobs/", {"type": "diagnostics.noop"}, format="json", HTTP_IDEMPOTENCY_KEY="\xff\xfe")
    assert "Idempotency-Key" in assert_error(broken, 400, "invalid")["fields"]


@pytest.mark.parametrize("payload", [[], 0, False, ""])
def test_a_payload_that_is_not_an_object_is_refused_even_when_empty(api_as, alice, payload):
    """``[]``, ``0``, ``false`` and ``""`` were taken for no payload ({}), where ``[1]``
    was refused: each is a 400 naming payload, in a submit and in a bulk's item."""
    api = api_as(alice)
    one = api.post("/api/jobs/", {"type": "diagnostics.noop", "payload": payload}, format="json")
    assert "payload" in assert_error(one, 400, "invalid")["fields"]
    bulk = api.post("/api/jobs/bulk/", {"jobs": [{"type": "diagnostics.noop", "payload": payload}]}, format="json")
    assert bulk.status_code == 400
    assert Job.objects.count() == 0


def test_a_dependency_named_twice_is_one_dependency(api_as, alice):
    first = api_as(alice).post("/api/jobs/", {"type": "diagnostics.noop"}, format="json").json()["id"]
    body = {"type": "diagnostics.noop", "depends_on": [first, first.upper()]}
    response = api_as(alice).post("/api/jobs/", body, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["depends_on"] == [first]
    refs = {
        "jobs": [{"type": "diagnostics.noop", "ref": "a"}, {"type": "diagnostics.noop", "depends_on_refs": ["a", "a"]}]
    }
    made = api_as(alice).post("/api/jobs/bulk/", refs, format="json")
    assert made.status_code == 201, made.content
    assert len(made.json()[1]["depends_on"]) == 1


def test_a_bulk_resent_with_its_keys_answers_200_with_the_same_jobs(api_as, alice):
    body = {"jobs": [{"type": "diagnostics.noop", "idempotency_key": f"k{i}"} for i in range(3)]}
    first = api_as(alice).post("/api/jobs/bulk/", body, format="json")
    again = api_as(alice).post("/api/jobs/bulk/", body, format="json")
    assert (first.status_code, again.status_code) == (201, 200)
    assert [j["id"] for j in again.json()] == [j["id"] for j in first.json()] and Job.objects.count() == 3
    body["jobs"].append({"type": "diagnostics.noop", "idempotency_key": "k3"})
    assert api_as(alice).post("/api/jobs/bulk/", body, format="json").status_code == 201, "one is new"


def test_a_bad_choice_is_answered_with_the_choices(api_as, alice):
    response = api_as(alice).post("/api/jobs/", {"type": "diagnostics.noop", "priority": "urgent"}, format="json")
    (message,) = assert_error(response, 400, "invalid")["fields"]["priority"]
    assert message == '"urgent" is not a valid choice: one of immediate, normal, low.'


def test_a_size_travels_with_the_job_and_a_type_can_size_its_own(api_as, alice):
    from jobs.core import registry
    from jobs.core.sizes import representative_size

    response = api_as(alice).post(
        "/api/jobs/", {"type": "diagnostics.sleep", "payload": {"seconds": 0}, "size": 5000}, format="json"
    )
    assert response.status_code == 201 and response.json()["size"] == 5000
    assert response.json()["estimated_start_range"] is None or len(response.json()["estimated_start_range"]) == 2
    job = Job.objects.get(pk=response.json()["id"])
    assert job.size_class is not None and abs(representative_size(job.size_class) - 5000) / 5000 < 0.1
    registry.job_type("t.rows", size=lambda payload: payload["rows"])(lambda ctx: None)
    try:
        assert submit("t.rows", {"rows": 120}).job.size == 120
        assert submit("t.rows", {}).job.size is None, "a sizing that fails never refuses the submit"
    finally:
        registry.unregister("t.rows")


def test_malformed_json_is_400(api_as, alice):
    response = api_as(alice).post("/api/jobs/", "{not json", content_type="application/json")
    assert_error(response, 400, "parse_error")


def test_anonymous_gets_401(api_as):
    assert_error(api_as(None).get("/api/jobs/"), 401, "not_authenticated")


@pytest.mark.parametrize("key", ["a\x00b", "f" * 5000])
def test_a_key_no_token_could_have_is_401(api_as, key):
    client = api_as(None)
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert_error(client.get("/api/jobs/"), 401, "authentication_failed")


def test_owners_see_only_their_jobs_and_staff_see_all(api_as, alice, bob, operator):
    mine = submit("diagnostics.noop", owner=alice).job
    theirs = submit("diagnostics.noop", owner=bob).job
    listed = api_as(alice).get("/api/jobs/").json()
    assert [j["id"] for j in listed["results"]] == [str(mine.id)]
    assert listed["count"] == 1 and "next" in listed and "previous" in listed
    assert_error(api_as(alice).get(f"/api/jobs/{theirs.id}/"), 404, "not_found")
    assert_error(api_as(alice).post(f"/api/jobs/{theirs.id}/cancel/"), 404, "not_found")
    assert api_as(operator).get("/api/jobs/").json()["count"] == 2


def test_filters_and_unknown_filter_values(api_as, alice):
    submit("diagnostics.noop", owner=alice, priority="low")
    submit("diagnostics.noop", owner=alice, priority="immediate")
    api = api_as(alice)
    assert api.get("/api/jobs/?priority=low").json()["count"] == 1
    assert api.get("/api/jobs/?status=queued&type=diagnostics.noop").json()["count"] == 2
    assert_error(api.get("/api/jobs/?status=exploded"), 400, "invalid")
    # The schema says "a string", and a string may hold NUL: no type has one, so no rows.
    nul = api.get("/api/jobs/?type=diagnostics.noop%00")
    assert nul.status_code == 200 and nul.json()["count"] == 0


def test_detail_and_events(api_as, alice, run_worker):
    job = submit("diagnostics.noop", owner=alice).job
    run_worker()
    api = api_as(alice)
    detail = api.get(f"/api/jobs/{job.id}/").json()
    assert detail["status"] == "complete" and detail["attempts"] == 1 and detail["result"] == {}
    events = api.get(f"/api/jobs/{job.id}/events/").json()["results"]
    assert [(e["from_status"], e["to_status"]) for e in events] == [
        ("", "queued"), ("queued", "active"), ("active", "complete"),
    ]  # fmt: skip
    assert events[0]["who"] == "alice"


def test_actions_answer_409_when_the_state_forbids_them(api_as, alice, run_worker):
    job = submit("diagnostics.noop", owner=alice).job
    api = api_as(alice)
    refused = assert_error(api.post(f"/api/jobs/{job.id}/retry/"), 409, "conflict")  # queued: nothing to retry
    assert refused["message"].startswith(f"Cannot retry job {job.id}: it is queued")
    run_worker()
    assert_error(api.post(f"/api/jobs/{job.id}/cancel/"), 409, "conflict")  # complete: too late
    assert_error(api.post(f"/api/jobs/{job.id}/promote/"), 409, "conflict")


def test_cancel_then_retry_through_the_api_records_who(api_as, alice, run_worker):
    job = submit("diagnostics.noop", owner=alice).job
    api = api_as(alice)
    assert api.post(f"/api/jobs/{job.id}/cancel/").json()["status"] == "canceled"
    assert api.post(f"/api/jobs/{job.id}/retry/").json()["status"] == "queued"
    run_worker()
    job.refresh_from_db()
    assert job.status == Status.COMPLETE
    actors = set(job.events.filter(actor__username="alice").values_list("message", flat=True))
    assert {"canceled", "requeued for a new round of attempts"} <= actors


def test_promote_through_the_api(api_as, alice):
    job = submit("diagnostics.noop", owner=alice, priority="low").job
    api = api_as(alice)
    promoted = api.post(f"/api/jobs/{job.id}/promote/").json()
    assert promoted["priority"] == "immediate"
    # Again: refused, and the job keeps its place in the immediate line (one event, one dispatch).
    again = assert_error(api.post(f"/api/jobs/{job.id}/promote/"), 409, "conflict")
    assert "already at immediate priority" in again["message"]
    row = Job.objects.get(pk=job.id)
    assert row.events.filter(message="promoted to immediate").count() == 1
    assert row.rq_job_id == Job.objects.get(pk=job.id).rq_job_id and row.priority == "immediate"
    assert row.enqueued_at == parse_datetime(promoted["enqueued_at"])


def test_run_now_skips_the_wait_of_a_scheduled_job(api_as, alice, bob, run_worker):
    from datetime import timedelta

    from django.utils import timezone

    job = submit("diagnostics.noop", owner=alice, run_at=timezone.now() + timedelta(days=1)).job
    assert job.status == Status.SCHEDULED
    assert api_as(bob).post(f"/api/jobs/{job.id}/run-now/").status_code == 404
    moved = api_as(alice).post(f"/api/jobs/{job.id}/run-now/")
    assert moved.status_code == 200 and moved.json()["status"] == "queued"
    run_worker()
    assert Job.objects.get(pk=job.id).status == Status.COMPLETE, "it ran at once, not tomorrow"
    again = api_as(alice).post(f"/api/jobs/{job.id}/run-now/")
    assert again.status_code == 409 and "run-now needs one of" in again.json()["error"]["message"]
    assert job.events.filter(actor__username="alice", message__startswith="run now").exists()


def test_bulk_submit(api_as, alice):
    body = {"jobs": [{"type": "diagnostics.noop", "ref": "a"}, {"type": "diagnostics.noop", "depends_on_refs": ["a"]}]}
    response = api_as(alice).post("/api/jobs/bulk/", body, format="json")
    assert response.status_code == 201
    first, second = response.json()
    assert second["depends_on"] == [first["id"]] and second["status"] == "waiting"


def test_internal_types_are_submitted_by_code_and_crons_only(api_as, alice, operator):
    from jobs.core import registry

    registry.job_type("tests.internal", public=False)(lambda ctx: {})
    try:
        for user in (alice, operator):
            response = api_as(user).post("/api/jobs/", {"type": "tests.internal"}, format="json")
            assert_error(response, 400, "invalid")
            assert "code and crons" in response.json()["error"]["hint"]
        assert submit("tests.internal").job.type == "tests.internal"  # code may
    finally:
        registry.unregister("tests.internal")


def test_openapi_schema_is_served(api_as, alice):
    response = api_as(alice).get("/api/schema/")
    assert response.status_code == 200
    assert b"/api/jobs/{id}/cancel/" in response.content


def test_a_refused_run_now_answers_in_the_endpoints_word(api_as, alice):
    job = submit("diagnostics.noop", owner=alice).job  # queued already: nothing to run now
    refused = assert_error(api_as(alice).post(f"/api/jobs/{job.id}/run-now/"), 409, "conflict")
    assert "run-now needs one of" in refused["message"] and "run_now" not in refused["message"]


def test_reusing_a_key_for_a_different_request_is_409(api_as, alice):
    api = api_as(alice)
    ok = api.post("/api/jobs/", {"type": "diagnostics.noop"}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert ok.status_code == 201
    other = {"type": "diagnostics.sleep", "payload": {"seconds": 1}}
    body = assert_error(api.post("/api/jobs/", other, format="json", HTTP_IDEMPOTENCY_KEY="k1"), 409, "conflict")
    assert "a diagnostics.noop job, not diagnostics.sleep" in body["message"] and "new key" in body["hint"]
    same_type = {"type": "diagnostics.noop", "payload": {"x": 1}}
    body = assert_error(api.post("/api/jobs/", same_type, format="json", HTTP_IDEMPOTENCY_KEY="k1"), 409, "conflict")
    assert "a different payload" in body["message"], body


def test_unknown_api_paths_and_bad_ids_answer_json_404(api_as, alice):
    api = api_as(alice)
    assert_error(api.get("/api/jobs/notauuid/"), 404, "not_found")
    assert_error(api.get("/api/nothing-here/"), 404, "not_found")


def test_page_size_and_strict_boolean_filter(api_as, alice):
    for _ in range(3):
        submit("diagnostics.noop", owner=alice)
    api = api_as(alice)
    page = api.get("/api/jobs/?page_size=2").json()
    assert len(page["results"]) == 2 and page["count"] == 3 and page["next"]
    assert len(api.get("/api/jobs/?page_size=0002&page=00000000000001").json()["results"]) == 2  # zeros in front
    assert api.get("/api/jobs/?heavy=false").json()["count"] == 3
    assert_error(api.get("/api/jobs/?heavy=maybe"), 400, "invalid")


@pytest.mark.parametrize("number", ["\u00b2", "\u0661", "9" * 5000, "0" * 5000, "1000000001", "0", "-1", " 1", ""])
def test_a_page_or_size_outside_its_whole_numbers_is_400_naming_it(api_as, alice, number):
    # '²' passes str.isdigit() and int() refuses it; 5,000 digits pass both but int()
    # refuses strings that long: both were 500s (found by the API fuzz).
    api = api_as(alice)
    for name in ("page", "page_size"):
        answer = api.get("/api/jobs/", {name: number})
        assert answer.status_code == 400 and name in answer.json()["error"]["fields"], answer.content[:300]


def test_swagger_ui_assets_are_served_locally(api_as, alice):
    html = api_as(alice).get("/api/docs/").content.decode()
    assert "cdn.jsdelivr.net" not in html and "/static/drf_spectacular_sidecar/" in html


def test_admin_console_lists_and_shows_jobs_and_acts(client, operator, run_worker):
    client.force_login(operator)
    operator.is_superuser = True
    operator.save()
    job = submit("diagnostics.sleep", {"seconds": 0, "fail_mode": "user_fixable"}).job
    run_worker()
    listing = client.get("/admin/jobs/job/?status__exact=failed")
    assert listing.status_code == 200 and str(job.id) in listing.content.decode()
    assert "Jobdesk operations" in listing.content.decode()
    detail = client.get(f"/admin/jobs/job/{job.id}/change/").content.decode()
    assert "simulated bad input" in detail and "Traceback" in detail
    response = client.post(
        "/admin/jobs/job/", {"action": "requeue_jobs", "_selected_action": [str(job.id)]}, follow=True
    )
    assert "Requeued 1 job(s)." in response.content.decode()
    job.refresh_from_db()
    assert job.status == Status.QUEUED
    assert job.events.filter(actor=operator, message__contains="requeued").exists()
    promoted = client.post(
        "/admin/jobs/job/", {"action": "promote_jobs", "_selected_action": [str(job.id)]}, follow=True
    )
    assert "Promoted 1 job(s)." in promoted.content.decode()
    assert Job.objects.get(pk=job.id).priority == "immediate"
    client.post("/admin/jobs/job/", {"action": "cancel_jobs", "_selected_action": [str(job.id)]})
    again = client.post("/admin/jobs/job/", {"action": "cancel_jobs", "_selected_action": [str(job.id)]}, follow=True)
    assert "Cannot cancel job" in again.content.decode()  # refused with a message, never a 500


def test_inputs_postgresql_cannot_store_are_400(api_as, alice):
    api = api_as(alice)
    long_key = api.post("/api/jobs/", {"type": "diagnostics.noop"}, format="json", HTTP_IDEMPOTENCY_KEY="k" * 201)
    assert "Idempotency-Key" in assert_error(long_key, 400, "invalid")["fields"]
    nul = api.post("/api/jobs/", {"type": "diagnostics.noop", "payload": {"note": "a\u0000b"}}, format="json")
    assert "payload" in assert_error(nul, 400, "invalid")["fields"]
    far = api.post("/api/jobs/", {"type": "diagnostics.noop", "run_at": "9999-12-31T23:59:59.5Z"}, format="json")
    assert "run_at" in assert_error(far, 400, "invalid")["fields"]
    assert Job.objects.count() == 0
    for odd in ("a\\\u0000b", "a\\\\\u0000"):  # one or two backslashes before the NUL: still one
        nul = api.post("/api/jobs/", {"type": "diagnostics.noop", "payload": {"note": odd}}, format="json")
        assert "payload" in assert_error(nul, 400, "invalid")["fields"]


def test_the_text_backslash_u0000_is_stored_as_sent(api_as, alice):
    # json.dumps writes a NUL as \u0000 and this text as \\u0000: it was refused as a NUL
    note = "C:\\u0000 and \\\\u0000"
    made = api_as(alice).post("/api/jobs/", {"type": "diagnostics.noop", "payload": {"note": note}}, format="json")
    assert made.status_code == 201, made.content
    assert Job.objects.get(pk=made.json()["id"]).payload == {"note": note}


@pytest.mark.redis
def test_queues_overview(api_as, alice, settings):
    from datetime import timedelta

    from django.utils import timezone

    submit("diagnostics.noop", priority="low")
    submit("diagnostics.noop", priority="low")
    submit("diagnostics.noop", run_at=timezone.now() + timedelta(hours=1))
    assert_error(api_as(None).get("/api/queues/"), 401, "not_authenticated")
    body = api_as(alice).get("/api/queues/").json()
    by_name = {q["name"]: q for q in body["queues"]}
    assert [q["name"] for q in body["queues"]] == ["immediate", "normal", "low"]
    assert by_name["low"]["depth"] == 2 and by_name["low"]["queued"] == 2
    assert by_name["normal"]["depth"] == 0 and by_name["normal"]["scheduled"] == 1
    assert body["workers"] == {"count": 0, "busy": 0, "concurrency_setting": settings.WORKER_CONCURRENCY}


def test_filter_offsets_past_what_the_database_stores_are_compared_in_utc(api_as, alice):
    """Found by schemathesis on PostgreSQL: RFC 3339 allows offsets up to ±23:59 and
    PostgreSQL only ±15:59, so list filters convert to UTC first (and clamp the
    calendar's ends) — a schema-valid query is answered, never a 400 or a 500."""
    client = api_as(alice)
    for value in ("5053-09-28T08:55:36%2B18:41", "9726-10-10T16:17:59.6%2B21:02", "0001-01-01T00:00:00%2B23:59"):
        response = client.get(f"/api/jobs/?created_before={value}")
        assert response.status_code == 200, (value, response.content)


def test_odd_offsets_in_bodies_and_periods_are_converted_to_utc(api_as, alice):
    client = api_as(alice)
    assert client.get("/api/stats/?since=2026-01-01T00:00:00%2B18:41").status_code == 200
    response = client.post("/api/jobs/", {"type": "diagnostics.noop", "run_at": "2030-01-01T00:00:00+18:41"},
                           format="json")  # fmt: skip
    assert response.status_code == 201 and response.data["scheduled_for"] == "2029-12-31T05:19:00Z"


def test_the_api_takes_submits_while_redis_is_down(api_as, alice):
    """Rate limits live in Redis; an outage of Redis must not become an outage of the API."""
    from devtools import pytest_redis

    server = pytest_redis.own_server()
    server.stop()
    try:
        response = api_as(alice).post("/api/jobs/", {"type": "diagnostics.noop"}, format="json")
        listed = api_as(alice).get("/api/jobs/")
    finally:
        server.start()
    assert response.status_code == 201, response.content
    assert response.data["status"] == "queued" and "unreachable" in response.data["eta_warning"]
    assert listed.status_code == 200 and listed.data["count"] == 1


def test_a_refused_bulk_item_is_named(api_as, alice):
    response = api_as(alice).post(
        "/api/jobs/bulk/", {"jobs": [{"type": "diagnostics.noop"}, {"type": "no.such"}]}, format="json"
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert "jobs[1].type" in error["fields"] and error["message"].startswith("Job 1:")
    assert "jobs.reconcile" not in error["hint"]  # internal types are not offered to users


NOOP = {"type": "diagnostics.noop"}


@pytest.mark.parametrize(
    "jobs, fields",
    [
        # the serializer's checks and the submit's name items alike
        ([NOOP, {**NOOP, "priority": "urgent", "max_attempts": 0}], ["jobs[1].priority", "jobs[1].max_attempts"]),
        ([NOOP, {**NOOP, "colour": "red"}], ["jobs[1].colour"]),
        ([NOOP, {**NOOP, "depends_on": ["zzz"]}], ["jobs[1].depends_on"]),
        ([NOOP, 7], ["jobs[1]"]),
        ([NOOP, None], ["jobs[1]"]),  # DRF's "may not be null" named it "jobs" with "1: …"
        ([{**NOOP, "ref": "a"}, {**NOOP, "depends_on_refs": ["a", "b", "c"]}], ["jobs[1].depends_on_refs"]),
        # a list of one is a list: its item is named too
        ([{"type": "no.such"}], ["jobs[0].type"]),
        ([{**NOOP, "depends_on_refs": ["a"]}], ["jobs[0].depends_on_refs"]),
        # a cycle can only be closed by refs
        (
            [{**NOOP, "ref": "a", "depends_on_refs": ["b"]}, {**NOOP, "ref": "b", "depends_on_refs": ["a"]}],
            ["jobs[1].depends_on_refs"],
        ),
        ([{**NOOP, "depends_on": ["7b0f6c1e-0000-4000-8000-000000000000"]}], ["jobs[0].depends_on"]),
        ([{"type": "diagnostics.sleep", "payload": {"seconds": "x"}}], ["jobs[0].payload.seconds"]),
    ],
)
def test_every_refusal_of_a_bulk_names_the_item_and_its_field(api_as, alice, jobs, fields):
    for endpoint in ("/api/jobs/bulk/", "/api/batches/"):
        response = api_as(alice).post(endpoint, {"jobs": jobs}, format="json")
        assert list(assert_error(response, 400, "invalid")["fields"]) == fields, endpoint
    assert not Job.objects.exists()


def test_each_unknown_ref_is_named_and_a_job_id_among_refs_still_works(api_as, alice):
    body = {"jobs": [{**NOOP, "ref": "a"}, {**NOOP, "depends_on_refs": ["b", "a", "c"]}]}
    (unknown,) = assert_error(api_as(alice).post("/api/jobs/bulk/", body, format="json"), 400, "invalid")[
        "fields"
    ].values()
    assert len(unknown) == 2 and "'b'" in unknown[0] and "'c'" in unknown[1], unknown
    earlier = api_as(alice).post("/api/jobs/", NOOP, format="json").json()["id"]
    made = api_as(alice).post("/api/jobs/bulk/", {"jobs": [{**NOOP, "depends_on_refs": [earlier]}]}, format="json")
    assert made.status_code == 201 and made.json()[0]["depends_on"] == [earlier], made.content


def test_queues_refuse_an_unknown_type(api_as, alice):
    response = api_as(alice).get("/api/queues/?type=nope")
    assert response.status_code == 400 and "diagnostics.noop" in response.json()["error"]["hint"]


def test_repeating_a_request_with_a_large_number_answers_the_first_job(api_as, alice):
    """PostgreSQL keeps 1e23 as the integer 100000000000000000000000: the very same
    request, repeated, was told its key was used for a different payload (409)."""
    body = {"jobs": [{"type": "diagnostics.noop", "payload": {"n": 1e23, "x": 0.1}, "idempotency_key": "big"}]}
    first = api_as(alice).post("/api/jobs/bulk/", body, format="json")
    again = api_as(alice).post("/api/jobs/bulk/", body, format="json")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()[0]["id"] == first.json()[0]["id"]
    other = {"jobs": [{"type": "diagnostics.noop", "payload": {"n": 1e22}, "idempotency_key": "big"}]}
    assert api_as(alice).post("/api/jobs/bulk/", other, format="json").status_code == 409


def test_one_key_on_two_items_of_a_bulk_with_different_payloads_names_them_not_a_rolled_back_job(api_as, alice):
    jobs = [{"type": "diagnostics.noop", "payload": {"n": n}} for n in range(5)]
    jobs[1]["idempotency_key"] = jobs[4]["idempotency_key"] = "dup"
    response = api_as(alice).post("/api/jobs/bulk/", {"jobs": jobs}, format="json")
    assert response.status_code == 409
    error = response.json()["error"]
    assert "given to job 1 of this request too: a different payload" in error["message"]
    assert list(error["fields"]) == ["jobs[4].idempotency_key"]
    assert not Job.objects.exists()


def test_replaying_a_keyed_bulk_asks_no_query_per_job(api_as, alice, django_assert_num_queries):
    """A client retrying a 5,000-job bulk after a timeout waited 3 times as long: each
    job's owner and dependencies were read one by one."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def replay(size: int) -> int:
        body = {"jobs": [{"type": "diagnostics.noop", "idempotency_key": f"r{size}-{n}"} for n in range(size)]}
        assert api_as(alice).post("/api/jobs/bulk/", body, format="json").status_code == 201
        with CaptureQueriesContext(connection) as queries:
            assert api_as(alice).post("/api/jobs/bulk/", body, format="json").status_code == 200
        return len(queries)

    assert replay(3) == replay(30)
