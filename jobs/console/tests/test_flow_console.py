"""The flow-control page of the console through Django's test client: who sees it and
who may act, pause and resume with who and why, limits set, refused and reset, and the
pauses on the dashboard. (That workers obey the levers: jobs/core/tests.)"""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from jobs.core import flow
from jobs.core.models import FlowChange, FlowControl

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_flow_rules")]

QUEUE, TYPE = FlowControl.Kind.QUEUE, FlowControl.Kind.TYPE
PAGE = "/admin/jobs/job/flow/"


@pytest.fixture
def limited_type(make_limited_type):
    return make_limited_type("test.console_limited", concurrency=2, rate="10/minute")


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def act(client: Client, kind: str, name: str, verb: str, **form):
    return client.post(reverse("admin:jobs_flow_act", args=[kind, name, verb]), form)


def said(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_the_page_lists_queues_types_and_changes_for_operators_and_read_only(operator, watcher, limited_type):
    flow.pause(QUEUE, "low", actor=operator, reason="nightly backup")
    for user, buttons in ((operator, True), (watcher, False)):
        response = client_for(user).get(PAGE)
        assert response.status_code == 200, user
        html = response.content.decode()
        assert [q["name"] for q in response.context["queues"]] == ["immediate", "normal", "low"]
        assert limited_type in [t["name"] for t in response.context["types"]]
        assert 'id="queue-low"' in html and "nightly backup" in html and "by operator" in html
        assert f'id="type-{limited_type}"' in html and "10/minute" in html
        assert ('value="Pause"' in html) is buttons and ('value="Set limits"' in html) is buttons
        assert ('value="Resume"' in html) is buttons
        assert "Read-only" in html or buttons
        (change, moved), *_ = response.context["changes"]
        assert (change.who, change.action, change.reason) == ("operator", "paused", "nightly backup")
        assert ("paused", False, True) in moved
        # Reachable from the admin's front page and the dashboard's toolbar.
        assert PAGE in client_for(user).get("/admin/").content.decode()


def test_the_dashboard_links_the_page_and_shows_the_pauses(operator, watcher):
    flow.pause(QUEUE, "normal", actor=operator, reason="db migration")
    for user, acts in ((operator, True), (watcher, False)):
        client = client_for(user)
        page = client.get(reverse("admin:jobs_dashboard")).content.decode()
        assert 'id="jd-flow-link"' in page and f'data-flow-url="{PAGE}"' in page
        assert ('data-flow-acts="1"' in page) is acts
        data = client.get(reverse("admin:jobs_dashboard_data")).json()
        levers = {q["name"]: q for q in data["queue_flow"]}
        assert levers["normal"]["paused"] and levers["normal"]["paused_reason"] == "db migration"
        assert levers["normal"]["paused_by"] == "operator" and not levers["low"]["paused"]


def test_read_only_operators_may_not_move_a_lever(watcher, limited_type):
    client = client_for(watcher)
    for kind, name, verb, form in (
        (QUEUE, "normal", "pause", {"reason": "mine"}), (QUEUE, "normal", "resume", {}),
        (TYPE, limited_type, "limits", {"concurrency": "5"}), (TYPE, limited_type, "reset", {}),
    ):  # fmt: skip
        assert act(client, kind, name, verb, **form).status_code == 403, verb
    assert not FlowControl.objects.exists() and not FlowChange.objects.exists()


def test_staff_without_the_levers_permissions_do_not_see_the_page(make_user):
    from django.contrib.auth.models import Permission

    jobs_only = make_user("jobs_only", staff=True)
    jobs_only.user_permissions.add(Permission.objects.get(codename="view_job"))
    client = client_for(jobs_only)
    assert client.get(PAGE).status_code == 403
    assert 'id="jd-flow-link"' not in client.get(reverse("admin:jobs_dashboard")).content.decode()


def test_pause_with_a_reason_then_resume_records_who(operator):
    client = client_for(operator)
    paused = act(client, QUEUE, "normal", "pause", reason="  db migration  ")
    assert paused.status_code == 302 and paused["Location"] == f"{PAGE}#queue-normal"
    assert said(paused) == ["Paused the queue normal: db migration"]
    shown = client.get(PAGE)
    normal = {q["name"]: q for q in shown.context["queues"]}["normal"]
    assert (normal["paused"], normal["paused_reason"], normal["paused_by"]) == (True, "db migration", "operator")
    assert 'value="Resume"' in shown.content.decode()

    resumed = act(client, QUEUE, "normal", "resume", next=reverse("admin:jobs_dashboard"))
    assert resumed["Location"] == reverse("admin:jobs_dashboard")  # back where the button was
    assert not FlowControl.objects.get(kind=QUEUE, name="normal").paused
    changes = FlowChange.objects.order_by("created_at", "id")
    assert [(c.action, c.actor, c.reason) for c in changes] == [
        ("paused", operator, "db migration"), ("resumed", operator, ""),
    ]  # fmt: skip


def test_a_type_pauses_and_resumes_too(operator, limited_type):
    client = client_for(operator)
    act(client, TYPE, limited_type, "pause", reason="vendor outage")
    assert flow.describe_type(limited_type)["paused_reason"] == "vendor outage"
    act(client, TYPE, limited_type, "resume")
    assert not flow.describe_type(limited_type)["paused"]
    assert FlowChange.objects.filter(actor=operator).count() == 2


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"concurrency": "0", "rate": "10/minute"}, "concurrency"),
        ({"concurrency": "two", "rate": "10/minute"}, "concurrency"),
        ({"concurrency": "1000000", "rate": "10/minute"}, "concurrency"),
        ({"concurrency": "3", "rate": "often"}, "rate"),
    ],
)
def test_a_bad_limit_is_a_message_naming_the_field_and_changes_nothing(operator, limited_type, form, field):
    response = act(client_for(operator), TYPE, limited_type, "limits", **form)
    assert response.status_code == 302
    (message,) = get_messages(response.wsgi_request)
    assert message.level_tag == "error" and str(message).startswith(f"{field}: ")
    hint = "Send e.g. 3" if field == "concurrency" else 'e.g. "100/minute"'
    assert hint in str(message)
    described = flow.describe_type(limited_type)
    assert (described["concurrency"], described["rate"]) == (2, "10/minute")
    assert not FlowChange.objects.exists()


def test_unknown_levers_are_messages_or_404s_not_errors(operator):
    client = client_for(operator)
    response = act(client, TYPE, "no.such.type", "pause")
    assert response.status_code == 302
    assert said(response)[0].startswith("type: Unknown job type 'no.such.type'. Known types: ")
    response = act(client, QUEUE, "nowhere", "pause")
    assert said(response)[-1] == "name: Unknown queue 'nowhere'. Queues: immediate, normal, low."
    assert act(client, QUEUE, "normal", "limits", concurrency="3").status_code == 404  # queues have no limits
    assert act(client, "shelf", "normal", "pause").status_code == 404
    assert client.get(reverse("admin:jobs_flow_act", args=[QUEUE, "normal", "pause"])).status_code == 405
    # NUL, which PostgreSQL stores in no text, in a name or a reason: messages, not 500s.
    response = act(client, TYPE, "a\x00b", "pause")
    assert response.status_code == 302 and said(response)[-1].startswith("type: Unknown job type 'a\\x00b'")
    response = act(client, QUEUE, "normal", "pause", reason="a\x00b")
    assert response.status_code == 302 and said(response)[-1].startswith("reason: The reason holds a NUL character")
    assert not FlowChange.objects.exists()


def test_limits_set_only_what_changed_then_reset_to_the_code(operator, limited_type):
    client = client_for(operator)
    # The form comes filled with what applies: only the edited field becomes the operator's.
    response = act(client, TYPE, limited_type, "limits", concurrency="5", rate="10/minute", reason="more room")
    assert said(response) == [f"Set the limits of {limited_type}: concurrency 5."]
    described = flow.describe_type(limited_type)
    assert (described["concurrency"], described["concurrency_from"]) == (5, "operator")
    assert (described["rate"], described["rate_from"]) == ("10/minute", "code")

    act(client, TYPE, limited_type, "limits", concurrency="", rate="", reason="no limits tonight")
    described = flow.describe_type(limited_type)
    assert (described["concurrency"], described["rate"], described["rate_from"]) == (None, None, "operator")
    page = client.get(PAGE).content.decode()
    assert 'value="Reset to code"' in page and "no limit" in page

    unchanged = act(client, TYPE, limited_type, "limits", concurrency="", rate="")
    assert "nothing changed" in said(unchanged)[0]

    act(client, TYPE, limited_type, "reset")
    described = flow.describe_type(limited_type)
    assert (described["concurrency"], described["concurrency_from"], described["rate"], described["rate_from"]) == (
        2, "code", "10/minute", "code",
    )  # fmt: skip
    changes = list(FlowChange.objects.order_by("created_at", "id"))
    assert [(c.action, c.who, c.reason) for c in changes] == [
        ("limits", "operator", "more room"), ("limits", "operator", "no limits tonight"), ("reset", "operator", ""),
    ]  # fmt: skip
    assert changes[0].before["concurrency"] == "code" and changes[0].after["concurrency"] == 5


def test_the_audit_trail_shows_what_each_change_moved(operator, limited_type):
    flow.set_limits(limited_type, concurrency=None, rate="", actor=operator, reason="open the gates")
    changes = client_for(operator).get(PAGE).context["changes"]
    (change, moved), *_ = changes
    assert change.action == "limits" and change.reason == "open the gates"
    assert moved == [("concurrency", "code", "no limit"), ("rate", "code", "no limit")]


def test_a_post_without_the_csrf_token_is_refused(operator):
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    assert act(client, QUEUE, "normal", "pause", reason="forged").status_code == 403
    assert not FlowChange.objects.exists()
