"""The schedules endpoints: list with next and last runs, add, edit (effective at once),
pause, run now, reset, delete; bad values named. (Who may call them: test_ownership.)"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.api.tests.test_api import assert_error
from jobs.core import cron_times
from jobs.core.models import Job, Schedule
from jobs.upkeep import schedules

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _code_entries():
    schedules.sync_from_code()


def test_the_code_entries_are_listed_with_their_next_runs(api_as, operator):
    listed = {row["name"]: row for row in api_as(operator).get("/api/schedules/").json()}
    assert {"reconcile", "scheduler-heartbeat", "ingestion.cleanup"} <= set(listed)
    cleanup = listed["ingestion.cleanup"]
    assert cleanup["from_code"] and not cleanup["overridden"] and cleanup["cron"] == "0 8 * * *"
    assert len(cleanup["next_runs"]) == 5 and cleanup["next_runs"][0] == cleanup["next_run_at"].replace("+00:00", "Z")
    assert cleanup["code"]["cron"] == "0 8 * * *"


def test_an_operator_moves_a_code_entry_to_kyiv_mornings_then_resets_it(api_as, operator):
    api = api_as(operator)
    edited = api.patch(
        "/api/schedules/ingestion.cleanup/", {"cron": "0 7 * * *", "time_zone": "Europe/Kyiv"}, format="json"
    )
    assert edited.status_code == 200, edited.content
    body = edited.json()
    assert body["overridden"] and body["updated_by"] == "operator"
    kyiv = cron_times.zone("Europe/Kyiv")
    nexts = [timezone.datetime.fromisoformat(at.replace("Z", "+00:00")).astimezone(kyiv) for at in body["next_runs"]]
    assert {(at.hour, at.minute) for at in nexts} == {(7, 0)}

    reset = api.post("/api/schedules/ingestion.cleanup/reset/").json()
    assert (reset["cron"], reset["time_zone"], reset["overridden"]) == ("0 8 * * *", "UTC", False)


def test_add_pause_run_now_and_delete_an_operators_own_entry(api_as, operator):
    api = api_as(operator)
    created = api.post(
        "/api/schedules/",
        {"name": "reports.daily", "job_type": "diagnostics.sleep", "cron": "30 6 * * 1-5",
         "time_zone": "Europe/Kyiv", "payload": {"seconds": 1}, "priority": "low"},
        format="json",
    )  # fmt: skip
    assert created.status_code == 201, created.content
    assert created.json()["from_code"] is False and created.json()["next_run_at"]

    paused = api.post("/api/schedules/reports.daily/pause/").json()
    assert paused["paused"] and paused["next_runs"] == [] and paused["next_run_at"] is None
    assert api.patch("/api/schedules/reports.daily/", {"paused": False}, format="json").json()["next_run_at"]

    ran = api.post("/api/schedules/reports.daily/run-now/")
    assert ran.status_code == 201
    job = Job.objects.get(pk=ran.json()["id"])
    assert (job.type, job.payload["seconds"], job.priority) == ("diagnostics.sleep", 1, "low")
    runs = api.get("/api/schedules/reports.daily/").json()["last_runs"]
    assert [(r["job_id"], r["manual"]) for r in runs] == [(str(job.id), True)]

    assert api.delete("/api/schedules/reports.daily/").status_code == 204
    assert not Schedule.objects.filter(name="reports.daily").exists()
    refused = assert_error(api.delete("/api/schedules/reconcile/"), 400, "invalid")
    assert "Pause it instead" in refused["hint"]


def test_an_edit_takes_effect_on_the_next_poll(api_as, operator):
    """The next run is computed again at once: the scheduler's next poll uses it."""
    api = api_as(operator)
    api.post("/api/schedules/", {"name": "soon", "job_type": "diagnostics.noop", "cron": "0 0 1 1 *"}, format="json")
    Schedule.objects.exclude(name="soon").update(paused=True)  # only this one fires here

    def fired() -> list[str]:
        return [
            str(job.idempotency_key).split(":")[1] for job in schedules.fire_due(timezone.now() + timedelta(minutes=1))
        ]

    assert fired() == []
    api.patch("/api/schedules/soon/", {"cron": "* * * * *"}, format="json")
    assert fired() == ["soon"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"cron": "every day"}, "cron"),
        ({"cron": "0 0 31 2 *"}, "cron"),
        ({"cron": "\uff15 * * * *"}, "cron"),  # a full-width 5
        ({"time_zone": "Europe/Atlantis"}, "time_zone"),
        ({"priority": "urgent"}, "priority"),
        ({"job_type": "no.such"}, "job_type"),
        ({"time_zone": "America"}, "time_zone"),  # a directory of zones: was a 500
        ({"payload": "not an object"}, "payload"),
        ({"paused": "maybe"}, "paused"),
        ({"crontab": "* * * * *"}, "crontab"),
    ],
)
def test_bad_edits_are_400_naming_the_field_and_change_nothing(api_as, operator, body, field):
    before = Schedule.objects.get(name="prune-jobs")
    refused = assert_error(api_as(operator).patch("/api/schedules/prune-jobs/", body, format="json"), 400, "invalid")
    assert field in refused.get("fields", {}) or refused.get("field") == field, refused
    after = Schedule.objects.get(name="prune-jobs")
    assert (after.cron, after.time_zone, after.priority, after.paused) == (
        before.cron, before.time_zone, before.priority, before.paused,
    )  # fmt: skip


def test_a_payload_the_type_refuses_is_named(api_as, operator):
    body = {"name": "bad.sleep", "job_type": "diagnostics.sleep", "cron": "* * * * *", "payload": {"seconds": "x"}}
    refused = assert_error(api_as(operator).post("/api/schedules/", body, format="json"), 400, "invalid")
    assert "payload.seconds" in refused["fields"]
    assert not Schedule.objects.filter(name="bad.sleep").exists()


def test_an_empty_list_for_a_payload_is_refused_not_read_as_none(api_as, operator):
    body = {"name": "bad.list", "job_type": "diagnostics.noop", "cron": "* * * * *", "payload": []}
    refused = assert_error(api_as(operator).post("/api/schedules/", body, format="json"), 400, "invalid")
    assert "payload" in refused["fields"] and not Schedule.objects.filter(name="bad.list").exists()


def test_unknown_schedules_are_404(api_as, operator):
    assert_error(api_as(operator).get("/api/schedules/nope/"), 404, "not_found")
    assert_error(api_as(operator).post("/api/schedules/nope/run-now/"), 404, "not_found")


def test_run_now_of_a_schedule_deleted_meanwhile_is_a_404_and_runs_nothing(api_as, operator, monkeypatch):
    """run-now racing a delete answered 500 (Schedule.DoesNotExist noting the run)."""
    from jobs.core.models import Job
    from jobs.upkeep import schedules

    api = api_as(operator)
    body = {"name": "racy", "job_type": "diagnostics.noop", "cron": "0 7 * * *"}
    assert api.post("/api/schedules/", body, format="json").status_code == 201
    found = schedules.get

    def found_then_deleted(name):
        row = found(name)
        Schedule.objects.filter(name=name).delete()  # another request's delete, just then
        return row

    monkeypatch.setattr(schedules, "get", found_then_deleted)
    before = Job.objects.count()
    assert_error(api.post("/api/schedules/racy/run-now/"), 404, "not_found")
    assert Job.objects.count() == before
