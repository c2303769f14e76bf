"""The schedule pages of the console through Django's test client: who sees them and who
may act, edits that move the next run, refusals that name the field and change nothing,
pause and resume, run now, reset to the code's, adding and deleting an operator's own.
(That the scheduler fires them once per tick: jobs/upkeep/tests/test_schedules.py.)"""

from __future__ import annotations

from datetime import UTC

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from jobs.core import cron_times
from jobs.core.models import Job, Schedule
from jobs.upkeep import schedules

pytestmark = pytest.mark.django_db

LIST = "/admin/jobs/job/schedules/"
KYIV = "Europe/Kyiv"
CODE_ENTRY = "prune-jobs"  # "0 9 * * *" in UTC, jobs.prune_jobs


@pytest.fixture(autouse=True)
def _code_entries():
    schedules.sync_from_code()  # the fast layer's database may not have them


@pytest.fixture
def own():
    """An operator's own entry."""
    return schedules.create("nightly-sleep", {"job_type": "diagnostics.sleep", "cron": "30 2 * * *",
                                              "payload": {"seconds": 0}}, by="someone")  # fmt: skip


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def page_of(name: str) -> str:
    return reverse("admin:jobs_schedule", args=[name])


def act(client: Client, name: str, verb: str):
    return client.post(reverse("admin:jobs_schedule_act", args=[name, verb]))


def edit(client: Client, name: str, **changes):
    row = Schedule.objects.get(name=name)
    form = {"cron": row.cron, "time_zone": row.time_zone, "priority": row.priority, "payload": "{}", **changes}
    return client.post(page_of(name), {f"edit-{key}": value for key, value in form.items()})


def said(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def state(name: str) -> dict[str, object]:
    return dict(Schedule.objects.filter(name=name).values().get())


def test_the_list_and_a_page_render_for_operators_and_read_only(operator, watcher, own):
    for user, acts in ((operator, True), (watcher, False)):
        client = client_for(user)
        response = client.get(LIST)
        assert response.status_code == 200, user
        html = response.content.decode()
        names = [s["row"].name for s in response.context["schedules"]]
        assert CODE_ENTRY in names and "nightly-sleep" in names and names == sorted(names)
        assert f'id="schedule-{CODE_ENTRY}"' in html and "from code" in html and "operator&#x27;s" in html
        assert "<code>0 9 * * *</code>" in html
        assert ('id="jd-schedule-new"' in html) is acts and ("Read-only" in html) is not acts

        response = client.get(page_of("nightly-sleep"))
        assert response.status_code == 200
        html = response.content.decode()
        assert len(response.context["next_runs"]) == 5
        assert ('value="Pause"' in html) is acts and ('value="Run now"' in html) is acts
        assert ('id="jd-schedule-edit"' in html) is acts and ("Delete…" in html) is acts
        assert 'value="Reset to code"' not in html  # an operator's own has no code
        # Reachable from the admin's front page, the dashboard's toolbar and the flow page.
        assert LIST in client.get("/admin/").content.decode()
        assert 'id="jd-schedules-link"' in client.get(reverse("admin:jobs_dashboard")).content.decode()
        assert 'id="jd-schedules-link"' in client.get(reverse("admin:jobs_flow")).content.decode()


def test_times_show_in_the_entry_zone_and_utc(operator):
    schedules.edit(CODE_ENTRY, {"cron": "0 7 * * *", "time_zone": KYIV})
    response = client_for(operator).get(LIST)
    (listed,) = [s for s in response.context["schedules"] if s["row"].name == CODE_ENTRY]
    assert " 07:00 EE" in listed["next"]["local"] and listed["next"]["utc"].endswith(("05:00 UTC", "04:00 UTC"))
    assert listed["origin"] == ("edited", 'edited (code: cron "0 9 * * *", time zone UTC)')
    runs = client_for(operator).get(page_of(CODE_ENTRY)).context["next_runs"]
    assert all(" 07:00 EE" in run["local"] for run in runs)


def test_edit_changes_the_next_run(operator):
    client = client_for(operator)
    response = edit(client, CODE_ENTRY, cron="0 7 * * *", time_zone=KYIV)
    assert response.status_code == 302 and response["Location"] == page_of(CODE_ENTRY)
    (message,) = said(response)
    assert message.startswith(f'Saved {CODE_ENTRY}: cron "0 7 * * *", time zone Europe/Kyiv; next run ')
    row = Schedule.objects.get(name=CODE_ENTRY)
    assert (row.cron, row.time_zone, row.overridden, row.updated_by) == ("0 7 * * *", KYIV, True, "operator")
    assert row.next_run_at is not None
    assert row.next_run_at.astimezone(cron_times.zone(KYIV)).strftime("%H:%M") == "07:00"
    assert row.next_run_at == schedules.next_runs(row)[0]

    unchanged = edit(client, CODE_ENTRY)
    assert said(unchanged)[-1] == f"Schedule {CODE_ENTRY} is already so: nothing changed."


@pytest.mark.parametrize(
    ("changes", "field", "hint"),
    [
        ({"cron": "every morning"}, "cron", "Five fields: minute hour"),
        ({"cron": "0 25 * * *"}, "cron", "Five fields: minute hour"),
        ({"cron": "0 0 30 2 *"}, "cron", "Five fields: minute hour"),  # never fires
        ({"time_zone": "Mars/Olympus"}, "time_zone", 'e.g. "UTC", "Europe/Kyiv"'),
        ({"payload": '{"seconds": 1'}, "payload", "Write a JSON object"),
        ({"payload": "[1, 2]"}, "payload", "Send a JSON object, or {} for none"),
        ({"payload": '{"seconds": -5}'}, "payload", "payload.seconds: seconds must be between"),
        ({"payload": '{"bogus": 1}'}, "payload", "diagnostics.sleep takes seconds"),
        ({"payload": '{"a": ' * 100 + "1" + "}" * 100}, "payload", "nested deeper than 99 levels"),  # as the API
        ({"payload": "[" * 5000 + "]" * 5000}, "payload", "nested deeper than 99 levels"),  # past the stack
        ({"payload": '{"seconds": NaN}'}, "payload", "NaN is not a JSON number"),
        ({"payload": '{"seconds": 1e400}'}, "payload", "the number 1e400 is out of range"),
        ({"priority": "urgent"}, "priority", "Select a valid choice"),
    ],
)
def test_a_bad_value_is_a_form_error_naming_the_field_and_changes_nothing(operator, own, changes, field, hint):
    before = state("nightly-sleep")
    response = edit(client_for(operator), "nightly-sleep", **changes)
    assert response.status_code == 200  # the page again, with what was typed and the error
    form = response.context["form"]
    assert list(form.errors) == [field]
    (error,) = form.errors[field]
    assert hint in error
    html = response.content.decode()
    assert "Nothing was changed" in html and f'data-field="{field}"' in html and 'class="errorlist' in html
    typed = next(iter(changes.values()))
    if field != "priority":
        assert typed.replace('"', "&quot;") in html, "what was typed is kept"
    assert state("nightly-sleep") == before


def test_pause_and_resume(operator, own):
    client = client_for(operator)
    response = act(client, "nightly-sleep", "pause")
    assert response.status_code == 302 and response["Location"] == page_of("nightly-sleep")
    assert said(response) == ["Paused nightly-sleep: paused: no run until resumed."]
    row = Schedule.objects.get(name="nightly-sleep")
    assert row.paused and row.next_run_at is None and row.updated_by == "operator"
    page = client.get(page_of("nightly-sleep"))
    assert 'value="Resume"' in page.content.decode() and page.context["next_runs"] == []

    response = act(client, "nightly-sleep", "resume")
    assert said(response)[0].startswith("Resumed nightly-sleep: next run ")
    row = Schedule.objects.get(name="nightly-sleep")
    assert not row.paused and row.next_run_at == schedules.next_runs(row)[0]


def test_run_now_creates_a_job_and_shows_it(operator, own):
    client = client_for(operator)
    response = act(client, "nightly-sleep", "run-now")
    job = Job.objects.get()
    assert (job.type, job.payload["seconds"]) == ("diagnostics.sleep", 0)
    assert job.idempotency_key.startswith("cron:nightly-sleep:now:")
    (message,) = said(response)
    link = reverse("admin:jobs_job_change", args=[job.id])
    assert f'<a href="{link}" id="jd-new-job">{str(job.id)[:8]}</a>' in message
    page = client.get(page_of("nightly-sleep"))
    (run, _, _), *_ = page.context["last_runs"]
    assert run.job_id == job.id and run.manual
    assert link in page.content.decode() and "run now" in page.content.decode()
    listed = [s for s in client.get(LIST).context["schedules"] if s["row"].name == "nightly-sleep"][0]
    assert listed["last"].job_id == job.id


def test_reset_to_the_code(operator):
    client = client_for(operator)
    assert 'value="Reset to code"' not in client.get(page_of(CODE_ENTRY)).content.decode()
    edit(client, CODE_ENTRY, cron="0 7 * * *", time_zone=KYIV, priority="immediate")
    assert 'value="Reset to code"' in client.get(page_of(CODE_ENTRY)).content.decode()
    response = act(client, CODE_ENTRY, "reset")
    assert said(response)[0].startswith(f"Schedule {CODE_ENTRY} follows the code again: next run ")
    row = Schedule.objects.get(name=CODE_ENTRY)
    assert (row.cron, row.time_zone, row.priority, row.overridden) == ("0 9 * * *", "UTC", "", False)
    assert row.next_run_at is not None and row.next_run_at.astimezone(UTC).strftime("%H:%M") == "09:00"
    # An operator's own has no code to go back to: a message, not an error page.
    schedules.create("mine", {"job_type": "diagnostics.noop", "cron": "0 1 * * *"})
    refused = act(client, "mine", "reset")
    assert refused.status_code == 302 and "there is no code to reset it to" in said(refused)[-1]


def test_add_then_delete_an_operators_own(operator):
    client = client_for(operator)
    form = {"name": "kyiv-morning", "job_type": "diagnostics.sleep", "cron": "0 7 * * 1-5", "time_zone": KYIV,
            "priority": "low", "payload": '{"seconds": 0.5}'}  # fmt: skip
    response = client.post(LIST, {f"new-{key}": value for key, value in form.items()})
    assert response.status_code == 302 and response["Location"] == page_of("kyiv-morning")
    assert said(response)[0].startswith("Added the schedule kyiv-morning: next run ")
    row = Schedule.objects.get(name="kyiv-morning")
    assert (row.job_type, row.cron, row.time_zone, row.priority) == ("diagnostics.sleep", "0 7 * * 1-5", KYIV, "low")
    assert row.payload["seconds"] == 0.5 and not row.from_code and row.updated_by == "operator"

    # A taken name, a bad payload, a bad cron: the form again, naming the field; nothing added.
    for changes, field in (({}, "name"), ({"name": "x2", "payload": '{"nope": 1}'}, "payload"),
                           ({"name": "x3", "cron": "7"}, "cron"), ({"name": "bad name!"}, "name"),
                           ({"name": "x4", "job_type": "jobs.reconcile"}, "job_type")):  # internal  # fmt: skip
        again = client.post(LIST, {f"new-{key}": value for key, value in {**form, **changes}.items()})
        assert again.status_code == 200 and list(again.context["form"].errors) == [field], changes
    assert Schedule.objects.filter(from_code=False).count() == 1

    confirm = client.get(reverse("admin:jobs_schedule_delete", args=["kyiv-morning"]))
    assert confirm.status_code == 200 and 'value="Yes, delete kyiv-morning"' in confirm.content.decode()
    assert Schedule.objects.filter(name="kyiv-morning").exists(), "asking deletes nothing"
    deleted = client.post(reverse("admin:jobs_schedule_delete", args=["kyiv-morning"]))
    assert deleted["Location"] == LIST and said(deleted) == ["Deleted the schedule kyiv-morning."]
    assert not Schedule.objects.filter(name="kyiv-morning").exists()


def test_a_code_entry_cannot_be_deleted(operator):
    client = client_for(operator)
    assert "Delete…" not in client.get(page_of(CODE_ENTRY)).content.decode()
    response = client.post(reverse("admin:jobs_schedule_delete", args=[CODE_ENTRY]))
    assert response["Location"] == page_of(CODE_ENTRY) and "declared in code" in said(response)[0]
    assert Schedule.objects.filter(name=CODE_ENTRY).exists()


def test_read_only_operators_may_not_post(watcher, own):
    client = client_for(watcher)
    before = {row["name"]: row for row in Schedule.objects.values()}
    posts = [
        (page_of("nightly-sleep"), {"edit-cron": "0 7 * * *", "edit-time_zone": "UTC", "edit-payload": "{}"}),
        (LIST, {"new-name": "theirs", "new-job_type": "diagnostics.noop", "new-cron": "0 1 * * *"}),
        (reverse("admin:jobs_schedule_delete", args=["nightly-sleep"]), {}),
        *[(reverse("admin:jobs_schedule_act", args=["nightly-sleep", verb]), {})
          for verb in ("pause", "resume", "run-now", "reset")],
    ]  # fmt: skip
    for url, form in posts:
        assert client.post(url, form).status_code == 403, url
    assert client.get(reverse("admin:jobs_schedule_delete", args=["nightly-sleep"])).status_code == 403
    assert {row["name"]: row for row in Schedule.objects.values()} == before
    assert not Job.objects.exists()


def test_staff_without_the_schedules_permissions_do_not_see_them(make_user):
    from django.contrib.auth.models import Permission

    jobs_only = make_user("jobs_only", staff=True)
    jobs_only.user_permissions.add(Permission.objects.get(codename="view_job"))
    client = client_for(jobs_only)
    assert client.get(LIST).status_code == 403 and client.get(page_of(CODE_ENTRY)).status_code == 403
    assert 'id="jd-schedules-link"' not in client.get(reverse("admin:jobs_dashboard")).content.decode()
    assert LIST not in client.get("/admin/").content.decode()


def test_unknown_schedules_and_verbs_are_404s(operator):
    client = client_for(operator)
    assert client.get(page_of("no-such")).status_code == 404
    assert act(client, "no-such", "pause").status_code == 404
    assert act(client, CODE_ENTRY, "explode").status_code == 404
    assert client.get(reverse("admin:jobs_schedule_act", args=[CODE_ENTRY, "pause"])).status_code == 405


def test_a_post_without_the_csrf_token_is_refused(operator):
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    assert act(client, CODE_ENTRY, "pause").status_code == 403
    assert not Schedule.objects.get(name=CODE_ENTRY).paused
