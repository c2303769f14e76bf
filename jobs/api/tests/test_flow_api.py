"""The flow-control endpoints: levers read and moved, bad values named, the audit kept.
(Who may call them: tests/test_ownership.py; that workers obey: jobs/core/tests.)"""

from __future__ import annotations

import pytest

from jobs.api.tests.test_api import assert_error
from jobs.core import flow, registry
from jobs.core.models import FlowChange, FlowControl

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_flow_rules")]


@pytest.fixture
def limited_type(make_limited_type):
    return make_limited_type("test.api_limited", concurrency=2, rate="10/minute")


@pytest.mark.redis  # the overview reads the queues' depths
def test_pausing_a_queue_says_who_and_why_and_shows_in_the_overview_and_health(api_as, operator, alice):
    api = api_as(operator)
    paused = api.post("/api/queues/normal/pause/", {"reason": "db migration"}, format="json")
    assert paused.status_code == 200, paused.content
    assert paused.json() | {"paused_at": None} == {
        "name": "normal", "paused": True, "paused_reason": "db migration", "paused_by": "operator",
        "paused_at": None, "held": 0,
    }  # fmt: skip
    assert paused.json()["paused_at"]
    overview = {q["name"]: q for q in api_as(alice).get("/api/queues/").json()["queues"]}
    assert overview["normal"]["paused"] and overview["normal"]["paused_reason"] == "db migration"
    assert not overview["low"]["paused"]
    assert "paused_by" not in overview["normal"]  # who did it is the operators' business
    assert {q["name"]: q for q in api.get("/api/queues/").json()["queues"]}["normal"]["paused_by"] == "operator"
    health = api.get("/api/health/").json()
    assert health["paused"]["queues"] == ["normal"]
    assert "paused" not in health["failing"]  # paused is a decision, not a fault

    resumed = api.post("/api/queues/normal/resume/", format="json").json()
    assert resumed["paused"] is False and resumed["paused_reason"] == "" and resumed["paused_by"] == ""
    changes = FlowChange.objects.filter(control__name="normal").order_by("created_at", "id")
    assert [(c.action, c.who, c.reason) for c in changes] == [
        ("paused", "operator", "db migration"), ("resumed", "operator", ""),
    ]  # fmt: skip


def test_a_type_shows_the_code_limits_until_an_operator_sets_its_own_then_resets(api_as, operator, limited_type):
    api = api_as(operator)
    listed = {t["name"]: t for t in api.get("/api/types/").json()}
    shown = listed[limited_type]
    assert (shown["concurrency"], shown["concurrency_from"], shown["rate"], shown["rate_from"]) == (
        2, "code", "10/minute", "code",
    )  # fmt: skip
    assert shown["held"] == {"queue_paused": 0, "type_paused": 0, "concurrency": 0, "rate": 0}

    changed = api.patch(
        f"/api/types/{limited_type}/", {"concurrency": 5, "rate": None, "reason": "partner raised it"}, format="json"
    ).json()
    assert (changed["concurrency"], changed["concurrency_from"], changed["rate"], changed["rate_from"]) == (
        5, "operator", None, "operator",
    )  # fmt: skip
    assert changed["code_concurrency"] == 2 and changed["code_rate"] == "10/minute"
    assert changed["changes"][0]["action"] == "limits" and changed["changes"][0]["reason"] == "partner raised it"
    assert (
        changed["changes"][0]["before"]["concurrency"] == "code" and changed["changes"][0]["after"]["concurrency"] == 5
    )
    assert flow.rules().for_type(limited_type).concurrency == 5

    reset = api.post(f"/api/types/{limited_type}/reset/", format="json").json()
    assert (reset["concurrency"], reset["concurrency_from"], reset["rate"]) == (2, "code", "10/minute")
    assert [c["action"] for c in reset["changes"]] == ["reset", "limits"]


def test_pausing_a_type_is_shown_with_its_reason(api_as, operator):
    api = api_as(operator)
    body = api.post("/api/types/diagnostics.noop/pause/", {"reason": "bad deploy"}, format="json").json()
    assert body["paused"] and body["paused_reason"] == "bad deploy" and body["paused_by"] == "operator"
    assert api.get("/api/health/").json()["paused"]["types"] == ["diagnostics.noop"]
    assert api.post("/api/types/diagnostics.noop/resume/", format="json").json()["paused"] is False


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": -3}, "concurrency"),
        ({"concurrency": "many"}, "concurrency"),
        ({"rate": "often"}, "rate"),
        ({"rate": "0/minute"}, "rate"),
        ({"rate": "5/fortnight"}, "rate"),
        ({"rate": 5}, "rate"),
        ({}, "concurrency"),
        ({"concurency": 3}, "concurency"),
    ],
)
def test_bad_limits_are_400_naming_the_field(api_as, operator, body, field):
    refused = assert_error(api_as(operator).patch("/api/types/diagnostics.noop/", body, format="json"), 400, "invalid")
    assert field in refused["fields"], refused
    assert not FlowChange.objects.exists()


def test_a_bad_concurrency_and_a_bad_rate_are_named_in_one_answer(api_as, operator):
    body = {"concurrency": 0, "rate": "often"}
    refused = assert_error(api_as(operator).patch("/api/types/diagnostics.noop/", body, format="json"), 400, "invalid")
    assert set(refused["fields"]) == {"concurrency", "rate"}, refused
    assert "100/minute" in refused["fields"]["rate"][0], "the rate's error says how to write one"


@pytest.mark.parametrize("body", ["null", "[]", "0", '"stop"', "false"])
def test_a_lever_body_that_is_not_an_object_is_a_400_and_moves_nothing(api_as, operator, body):
    """No body is no reason; a body the schema forbids is refused (fuzzing found `null`
    taken as no body)."""
    api = api_as(operator)
    for path in ("/api/queues/low/pause/", "/api/types/diagnostics.noop/pause/"):
        assert_error(api.post(path, body, content_type="application/json"), 400, "invalid")
    assert not FlowControl.objects.exists()
    assert api.post("/api/queues/low/pause/", content_type="application/json").status_code == 200


def test_unknown_queues_and_types_are_404_naming_the_known_ones(api_as, operator):
    api = api_as(operator)
    refused = assert_error(api.post("/api/queues/urgent/pause/", format="json"), 404, "not_found")
    assert "immediate, normal, low" in refused["hint"]
    refused = assert_error(api.post("/api/types/no.such.type/pause/", format="json"), 404, "not_found")
    assert "diagnostics.noop" in refused["hint"]
    assert_error(api.get("/api/queues/0/"), 404, "not_found")
    assert not FlowControl.objects.exists()


def test_a_type_name_never_imports_code_the_jobs_table_has_not_seen(api_as, operator, monkeypatch):
    """A task's module is imported only for a name code has submitted: a request cannot
    make the web process import whatever module it names."""
    imported = []
    monkeypatch.setattr(registry, "_resolvers", [imported.append])
    assert_error(api_as(operator).get("/api/types/os.system/"), 404, "not_found")
    assert imported == []


def test_a_long_reason_is_refused_not_cut(api_as, operator):
    refused = assert_error(
        api_as(operator).post("/api/queues/low/pause/", {"reason": "x" * 501}, format="json"), 400, "invalid"
    )
    assert "reason" in refused["fields"]
    assert not flow.paused_queues()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"start_time": "22:00+02:00"}, "start_time"),  # the offset was dropped
        ({"start_time": "2:0"}, "start_time"),
        ({"end_time": "22:00:00.5"}, "end_time"),
        ({"weekdays": [0, 0, 3]}, "weekdays"),
    ],
)
def test_a_work_window_takes_times_as_its_schema_says_and_each_day_once(api_as, admin_user, body, field):
    valid = {"name": "nights", "time_zone": "Europe/Kyiv", "start_time": "22:00", "end_time": "06:00"}
    response = api_as(admin_user).post("/api/work-windows/", {**valid, **body}, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"]
    assert api_as(admin_user).post("/api/work-windows/", valid, format="json").status_code == 201
