"""The console as an operator reads it (issue #21): the job list's columns (age, error),
colour that means state, the job page's zone-stamped times, words instead of icons and
raw floats, recovery actions as buttons, the operator's zone switch, the admin index's
numbers and Recent actions, and readable worker rows."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.admin.models import LogEntry
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from conftest import past_job
from jobs.core import flow
from jobs.core.models import Job, Status

pytestmark = pytest.mark.django_db

LIST = "/admin/jobs/job/"


@pytest.fixture
def superuser(django_user_model):
    return django_user_model.objects.create_superuser("boss", password="pw-boss")


def client_for(user, **cookies: str) -> Client:
    client = Client()
    client.force_login(user)
    for name, value in cookies.items():
        client.cookies[name] = value
    return client


def dead_letter(**fields) -> Job:
    now = timezone.now()
    defaults = {
        "type": "diagnostics.sleep", "status": Status.DEAD_LETTER, "progress": 100, "attempts": 3, "max_attempts": 3,
        "error_category": "temporary", "error_message": "Connection refused by the payment gateway " + "x" * 80,
        "recovery_actions": ["No retry is left: fix the cause (see the message and the timeline), then requeue it "
                             "(POST …/retry/)."],
        "created_at": now - timedelta(minutes=5), "started_at": now - timedelta(minutes=4, seconds=10),
        "finished_at": now - timedelta(minutes=4, seconds=8.8), "eta_error_seconds": 0.009002,
    }  # fmt: skip
    job = past_job(**{**defaults, **fields})
    Job.objects.filter(pk=job.pk).update(created_at=defaults["created_at"])  # auto_now_add wrote "now"
    return job


def test_the_list_is_titled_jobs_with_age_and_error_columns_and_a_red_bar(superuser):
    job = dead_letter()
    html = client_for(superuser).get(LIST).content.decode()
    assert "<h1>Jobs</h1>" in html and "Select job to change" not in html
    assert "<title>Jobs |" in html
    row = re.search(rf"<tr>(?:(?!</tr>).)*{job.id}(?:(?!</tr>).)*</tr>", html, re.S).group(0)
    assert "5 min ago" in row and 'class="jd-age" title="' in row and " UTC" in row  # the moment with its zone
    assert 'class="jd-error" title="Connection refused by the payment gateway xxx' in row
    shown = re.search(r'class="jd-error" title="[^"]*">([^<]*)<', row).group(1)
    assert shown.startswith("Connection refused") and shown.endswith("…") and len(shown) <= 60
    assert 'class="jd-fill jd-fill-dead_letter"' in row  # red, not a green 100 %
    assert "1.2 s" in row  # the duration, human


def test_the_bar_colour_follows_the_status(superuser):
    done = past_job(type="diagnostics.sleep", status=Status.COMPLETE, progress=100)
    failed = dead_letter(status=Status.FAILED)
    html = client_for(superuser).get(LIST, {"system": "all"}).content.decode()
    assert (
        f'data-job="{done.id}" data-field="progress"><span class="jd-bar"><span class="jd-fill jd-fill-complete"'
        in html
    )
    assert (
        f'data-job="{failed.id}" data-field="progress"><span class="jd-bar"><span class="jd-fill jd-fill-failed"'
        in html
    )
    css = (Path(__file__).parents[2] / "static" / "jobs" / "console.css").read_text()
    assert re.search(r"\.jd-fill-failed, \.jd-fill-dead_letter \{ background: #c0392b", css)


def test_the_job_page_speaks_words_zones_and_buttons(superuser):
    job = dead_letter()
    html = client_for(superuser).get(reverse("admin:jobs_job_change", args=[job.id])).content.decode()
    heavy = re.search(r'field-heavy_shown.*?<div class="readonly">([^<]*)</div>', html, re.S).group(1)
    assert heavy == "no" and "icon-no.svg" not in html
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", html)  # every moment says its zone
    assert "0.009002" not in html and "+0.0 s" in html
    assert "POST …/retry/" not in html
    button = re.search(r'<button type="submit" class="button jd-advice-act" formaction="([^"]+)" formmethod="post"'
                       r' data-verb="requeue">Retry</button>', html)  # fmt: skip
    assert button and button.group(1) == reverse("admin:jobs_act", args=[job.id, "requeue"])
    # Rarely used parts fold away.
    for name in ("Payload and result", "Dependencies", "Estimates", "Dispatch"):
        assert re.search(rf"<details[^>]*>\s*<summary>.*?{name}", html, re.S), name


def test_the_retry_button_requeues_and_is_a_recent_action(superuser, redis_conn):
    job = dead_letter()
    client = client_for(superuser)
    page = client.get(reverse("admin:jobs_job_change", args=[job.id])).content.decode()
    action = re.search(r'formaction="([^"]+)"', page).group(1)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    response = client.post(action, {"csrfmiddlewaretoken": token}, follow=True)
    assert Job.objects.get(pk=job.id).status == Status.QUEUED
    assert f"Requeued job {job.id}." in response.content.decode()
    entry = LogEntry.objects.get()
    assert (entry.user, entry.object_id, entry.change_message) == (superuser, str(job.id), "Requeued from the console.")
    index = client.get("/admin/").content.decode()
    recent = index[index.index('id="recent-actions-module"') :]
    assert f'href="/admin/jobs/job/{job.id}/change/"' in recent


def test_a_read_only_operator_sees_the_advice_without_a_button(watcher):
    job = dead_letter()
    html = client_for(watcher).get(reverse("admin:jobs_job_change", args=[job.id])).content.decode()
    assert "jd-advice-act" not in html and "POST …/retry/" not in html
    assert "then requeue it." in html


def test_times_follow_the_operators_zone_and_say_it(superuser):
    job = dead_letter()
    page = reverse("admin:jobs_job_change", args=[job.id])
    utc = client_for(superuser).get(page).content.decode()
    assert 'id="jd-zone-switch" data-current="UTC"' in utc
    kyiv = client_for(superuser, jd_tz="Europe/Kyiv").get(page).content.decode()
    assert 'data-current="Europe/Kyiv"' in kyiv and re.search(r"\d\d:\d\d:\d\d EES?T", kyiv)
    encoded = client_for(superuser, jd_tz="Europe%2FKyiv").get(page).content.decode()  # as the switch writes it
    assert 'data-current="Europe/Kyiv"' in encoded
    bogus = client_for(superuser, jd_tz="Mars/Olympus").get(page)
    assert bogus.status_code == 200 and 'data-current="UTC"' in bogus.content.decode()


def test_the_admin_index_shows_numbers_with_links_and_paused_queues(superuser):
    dead_letter()
    dead_letter(status=Status.FAILED)
    past_job(type="diagnostics.sleep", status=Status.COMPLETE, progress=100)
    flow.pause("queue", "low", actor=superuser, reason="disk full")
    html = client_for(superuser).get("/admin/").content.decode()
    numbers = re.search(r'<div class="module" id="jd-index-numbers">.*?</div>\s*</div>', html, re.S).group(0)
    assert "Jobs now (3)" in numbers
    for status, count in (("dead_letter", 1), ("failed", 1), ("complete", 1), ("queued", 0)):
        assert re.search(rf'href="/admin/jobs/job/\?status__exact={status}&amp;system=all" data-count="{status}">'
                         rf"<b>{count}</b>", numbers), status  # fmt: skip
    assert "Dead letters: 1" in numbers
    paused = re.search(r'<tr id="jd-index-paused">.*?</tr>', numbers, re.S).group(0)
    assert "Paused queues: 1" in paused and ">low</span>" in paused and "disk full" in paused and "by boss" in paused


def test_console_acts_show_in_recent_actions(superuser, redis_conn):
    jobs = [dead_letter(), dead_letter()]
    client = client_for(superuser)
    client.post(LIST, {"action": "requeue_jobs", "_selected_action": [str(j.id) for j in jobs]})
    entries = {(e.object_id, e.change_message, e.user_id) for e in LogEntry.objects.all()}
    assert entries == {(str(j.id), "Requeued from the console.", superuser.pk) for j in jobs}
    index = client.get("/admin/").content.decode()
    recent = index[index.index('id="recent-actions-module"') :]
    assert "None available" not in recent and f"/admin/jobs/job/{jobs[0].id}/change/" in recent


@pytest.mark.redis
def test_worker_rows_say_host_pid_queues_current_job_counts_and_since(superuser, redis_conn):
    from rq.worker import Worker

    from jobs.core import queueing

    job = past_job(type="diagnostics.sleep", status=Status.ACTIVE, progress=30, rq_job_id="dispatch-1",
                   started_at=timezone.now())  # fmt: skip
    worker = Worker([queueing.queue("normal"), queueing.queue("low")], connection=redis_conn)
    worker.register_birth()
    worker.set_current_job_id("dispatch-1")
    for _ in range(3):
        worker.increment_successful_job_count()
    worker.increment_failed_job_count()
    try:
        data = client_for(superuser).get(reverse("admin:jobs_dashboard_data")).json()
    finally:
        worker.register_death()
    [row] = data["workers"]
    assert row["label"] == f"{worker.hostname}:{worker.pid}" and row["name"] == worker.name
    assert row["queues"] == ["normal", "low"]
    assert (row["done"], row["failed_runs"]) == (4, 1)
    assert row["since"] and row["job"]["id"] == str(job.id)
    js = (Path(__file__).parents[2] / "static" / "jobs" / "console.js").read_text()
    assert "title=\"RQ name: ' + esc(w.name)" in js and "esc(w.label || w.name)" in js


def test_a_job_names_its_worker_host_pid_on_its_page_timeline_list_and_api(superuser):
    """RQ's 32-hex worker name shows as host:pid (the claim records it) on the job page,
    its timeline, the error column and the events list, the name kept in a tooltip; the
    API keeps worker_name and adds worker beside it."""
    import os
    import socket

    from jobs.core import lifecycle

    rq_name = "3f2a9c0d5e6b47a1b2c3d4e5f6a7b8c9"
    job = past_job(type="diagnostics.sleep", status=Status.QUEUED, rq_job_id="dispatch-7", max_attempts=1)
    lifecycle.claim(job.id, "dispatch-7", rq_name)
    lifecycle.dead_letter(job.id, "dispatch-7", message=f"worker {rq_name} is gone (no RQ worker registration)")
    label = f"{socket.gethostname()}:{os.getpid()}"
    claim = job.events.get(to_status=Status.ACTIVE)
    assert claim.details == {"worker": label} and claim.message == f"started by {rq_name}"

    client = client_for(superuser)
    tooltip = f'<span class="jd-worker" title="RQ worker {rq_name}">{label}</span>'
    page = client.get(f"{LIST}{job.id}/change/").content.decode()
    assert f"started by {tooltip}" in page  # the timeline's message
    assert f"worker {tooltip} is gone" in page  # the error message
    assert page.count(tooltip) >= 4  # and the timeline's "who" and the job's worker field
    assert re.sub(r'title="[^"]*"', "", page).count(rq_name) == 0  # the hex name only in tooltips

    listing = client.get(LIST).content.decode()
    row = re.search(rf"<tr>(?:(?!</tr>).)*{job.id}(?:(?!</tr>).)*</tr>", listing, re.S).group(0)
    assert f"worker {label} is gone" in row and re.sub(r'title="[^"]*"', "", row).count(rq_name) == 0

    events = client.get("/admin/jobs/jobevent/").content.decode()
    assert f"started by {tooltip}" in events and re.sub(r'title="[^"]*"', "", events).count(rq_name) == 0

    client.force_login(superuser)
    api = client.get(f"/api/jobs/{job.id}/").json()
    assert (api["worker_name"], api["worker"]) == (rq_name, label)


def test_the_live_list_reads_a_changed_rows_cells_as_a_reload_renders_them(superuser, django_user_model):
    now = timezone.now()
    done = past_job(type="diagnostics.sleep", status=Status.COMPLETE, progress=100, attempts=1, max_attempts=3,
                    started_at=now - timedelta(seconds=4.1), finished_at=now)  # fmt: skip
    dead = dead_letter()
    client = client_for(superuser)
    cells = client.get(reverse("admin:jobs_cells"), {"id": [str(done.id), str(dead.id), "not-a-uuid"]}).json()["cells"]
    assert cells[str(done.id)] == {"eta": "4.1 s", "tries": "1/3", "error": "—", "message": ""}
    assert (
        cells[str(dead.id)]["tries"] == "3/3"
        and "Connection refused by the payment gateway" in (cells[str(dead.id)]["error"])
    )
    listing = client.get(LIST).content.decode()  # the same cells, as the list renders them
    for field, html in cells[str(done.id)].items() - {("message", "")}:
        assert f'<span data-job="{done.id}" data-field="{field}">{html}</span>' in listing, field
    outsider = django_user_model.objects.create_user("someone", password="pw", is_staff=False)
    assert client_for(outsider).get(reverse("admin:jobs_cells"), {"id": str(done.id)}).status_code == 302
