"""The operations console through Django's test client: the dashboard, the
job list and page, every action, bulk requeue over a filter, and who may do what."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from jobs.core import lifecycle
from jobs.core.models import Job, JobEvent, Status
from jobs.core.submit import JobSpec, submit, submit_many

pytestmark = pytest.mark.django_db

LIST = "/admin/jobs/job/"


@pytest.fixture
def superuser(django_user_model):
    return django_user_model.objects.create_superuser("boss", password="pw-boss")


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def dead_letters(count: int, run_worker, owner=None) -> list[Job]:
    payload = {"seconds": 0, "fail_mode": "temporary"}
    specs = [JobSpec("diagnostics.sleep", payload, max_attempts=1)] * count
    jobs = [r.job for r in submit_many(specs, owner=owner)]
    run_worker()
    assert {Job.objects.get(pk=j.id).status for j in jobs} == {Status.DEAD_LETTER}
    return jobs


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def test_the_dashboard_shows_the_whole_system(superuser, run_worker):
    dead_letters(2, run_worker)
    submit("diagnostics.sleep", {"seconds": 0})
    response = client_for(superuser).get(reverse("admin:jobs_dashboard"))
    assert response.status_code == 200
    overview = response.context["overview"]
    assert overview["counts"] == {"dead_letter": 2, "queued": 1}
    assert overview["dead_letters"] == 2
    assert set(overview["queues"]) == {"immediate", "normal", "low"} and overview["queues"]["normal"] == 1
    assert overview["workers"] == []  # the burst worker is gone
    assert overview["scheduler"]["ok"] is False
    assert overview["window"] == {"configured": False, "open": True, "next_opening": None, "closes_at": None}
    assert len(overview["hours"]) == 24 and sum(h["failed"] for h in overview["hours"]) == 2
    html = response.content.decode()
    assert 'id="jd-overview"' in html and "jobs/console.js" in html and "cdn" not in html.lower()

    data = client_for(superuser).get(reverse("admin:jobs_dashboard_data")).json()
    assert data["counts"] == {"dead_letter": 2, "queued": 1}
    assert [t["type"] for t in data["types"]] == ["diagnostics.sleep"]


def test_the_admin_index_links_the_dashboard(superuser, watcher):
    for user in (superuser, watcher):
        html = client_for(user).get("/admin/").content.decode()
        assert reverse("admin:jobs_dashboard") in html
        assert "/admin/django_rq/" in html


@pytest.mark.redis
def test_the_list_has_badges_progress_and_estimates_and_finds_by_id(superuser):
    jobs = [submit("diagnostics.sleep", {"seconds": 0}).job for _ in range(3)]
    Job.objects.filter(pk=jobs[0].pk).update(progress=40)
    client = client_for(superuser)
    html = client.get(LIST).content.decode()
    assert 'class="jd-status jd-queued"' in html
    assert 'style="width:40%"' in html
    assert "No worker is alive" in html  # the ETA column says why there is none
    found = client.get(LIST, {"q": str(jobs[1].id)})
    assert [j.id for j in found.context["cl"].result_list] == [jobs[1].id]
    filtered = client.get(LIST, {"status__exact": "dead_letter"})
    assert list(filtered.context["cl"].result_list) == []


def test_the_eta_column_shows_the_80_percent_range_with_the_estimate_in_its_tooltip(superuser, redis_conn):
    import re

    from rq import Worker

    from conftest import past_jobs
    from jobs.insight import estimates

    Worker(["normal"], connection=redis_conn, name="idle").register_birth()  # one worker alive, none busy
    done = timezone.now() - timedelta(minutes=5)
    past_jobs(
        Job(type="diagnostics.sleep", status=Status.COMPLETE, started_at=done - timedelta(seconds=s), finished_at=done)
        for s in (20, 30, 40, 25, 35)
    )
    estimates.clear_cache()
    for _ in range(3):
        submit("diagnostics.sleep", {"seconds": 30})
    html = client_for(superuser).get(LIST).content.decode()
    ranges = re.findall(
        r'title="estimate ([^"]+); it falls in this range 8 times in 10">starts ([0-9:]+) – ([0-9:]+ \w+)<', html
    )
    # The first starts now (one worker, nothing ahead); the two behind it have a range.
    assert len(ranges) == 2, html
    for estimate, low, high in ranges:
        assert low < estimate.split()[0] < high.split()[0]


def test_a_page_of_waiting_jobs_without_their_dependencies_shows_their_etas(superuser, redis_conn):
    """A waiting job's estimate walks its pending dependencies too: a page filtered to
    waiting jobs (the dependencies elsewhere) answered 500 (a KeyError on their ids)."""
    from rq import Worker

    from jobs.insight import estimates

    Worker(["normal"], connection=redis_conn, name="idle").register_birth()  # estimates need a live worker
    estimates.clear_cache()
    first = submit("diagnostics.sleep", {"seconds": 30}).job
    then = submit("diagnostics.sleep", {"seconds": 1}, depends_on=[first.id]).job
    response = client_for(superuser).get(LIST, {"status__exact": "waiting"})
    assert response.status_code == 200
    assert [job.id for job in response.context["cl"].result_list] == [then.id]
    assert response.context["cl"].result_list[0].estimate.start_at is not None, "after its dependency's run"


def test_an_action_on_a_selection_that_is_not_ids_changes_nothing_and_says_so(superuser):
    job = submit("diagnostics.sleep", {"seconds": 0}).job
    client = client_for(superuser)
    for selection in (["nope"], [str(job.id), "99"]):
        response = client.post(LIST, {"action": "cancel_jobs", "_selected_action": selection}, follow=True)
        assert response.status_code == 200
        assert "not a list of ids" in response.content.decode()
    assert Job.objects.get(pk=job.id).status == "queued"


@pytest.mark.parametrize(
    "query",
    [
        "created_at__year=-1",
        "created_at__year=1000000000000000000000000000000",
        "created_at__year=9999&created_at__month=12&created_at__day=31",
        "created_at__year=2026&created_at__month=13",
    ],
)
@pytest.mark.parametrize("page", ["jobs/job", "jobs/jobevent", "jobs/batch", "ingestion/material"])
def test_a_date_no_row_can_have_is_a_bad_filter_not_a_500(superuser, page, query):
    response = client_for(superuser).get(f"/admin/{page}/?{query}")
    assert response.status_code in (200, 302), response.status_code  # the list, or it with its error notice
    assert response.status_code == 200 or response["Location"].endswith("?e=1")


@pytest.mark.parametrize(
    "path",
    [
        "jobs/job/?status=%00",
        "jobs/job/?type=%00",
        "jobs/job/?priority__exact=%00",
        "jobs/job/?error_category__exact=%00",
        "jobs/job/retry-failed/?error_category__exact=%00",
        "jobs/job/requeue-dead-letters/?type=a%00b",
        "jobs/jobevent/?kind__exact=%00",
        "jobs/jobevent/?to_status__exact=%00",
        "ingestion/material/?status__exact=%00",
        "ingestion/material/?content_type__exact=%00",
        "jobs/job/schedules/%00/",
        "jobs/job/schedules/a%00b/delete/",
    ],
)
def test_a_nul_in_a_filter_or_a_name_is_a_bad_filter_or_a_404_not_a_500(superuser, path):
    """PostgreSQL refuses NUL in text (a DataError); SQLite finds no row."""
    response = client_for(superuser).get(f"/admin/{path}")
    if "schedules/" in path:
        assert response.status_code == 404
    else:
        assert response.status_code in (200, 302), response.status_code
        assert response.status_code == 200 or response["Location"].endswith("?e=1")


def test_the_list_counts_at_most_the_cap(superuser, monkeypatch):
    from jobs.console import admin as console_admin

    monkeypatch.setattr(console_admin, "COUNT_CAP", 3)
    submit_many([JobSpec("diagnostics.sleep", {"seconds": 0})] * 5)
    response = client_for(superuser).get(LIST)
    assert response.context["cl"].result_count == 4  # "more than 3", not an exact COUNT(*)
    assert len(response.context["cl"].result_list) == 5


def test_the_job_page_shows_payload_traceback_timeline_dependencies_and_live_panel(superuser, run_worker):
    first = submit("diagnostics.sleep", {"seconds": 0, "fail_mode": "admin_required"}).job
    second = submit("diagnostics.sleep", {"seconds": 0}, depends_on=[first.id]).job
    run_worker()
    html = client_for(superuser).get(reverse("admin:jobs_job_change", args=[first.id])).content.decode()
    assert "&quot;fail_mode&quot;: &quot;admin_required&quot;" in html  # pretty-printed payload
    assert "Traceback" in html
    assert "failed (admin_required)" in html  # the timeline
    assert str(second.id)[:8] in html  # needed by (dependents)
    assert 'id="jd-live-job"' in html and f'data-job-id="{first.id}"' in html
    other = client_for(superuser).get(reverse("admin:jobs_job_change", args=[second.id])).content.decode()
    assert str(first.id)[:8] in other  # depends on


def test_each_action_goes_through_the_services_and_names_the_operator(superuser, run_worker):
    dead = dead_letters(1, run_worker)[0]
    waiting = submit("diagnostics.sleep", {"seconds": 0}, run_at=timezone.now() + timedelta(days=1)).job
    client = client_for(superuser)
    act = lambda job, verb: client.post(reverse("admin:jobs_act", args=[job.id, verb]), follow=True)  # noqa: E731

    assert act(dead, "requeue").status_code == 200
    assert Job.objects.get(pk=dead.id).status == Status.QUEUED
    act(waiting, "promote")
    assert Job.objects.get(pk=waiting.id).priority == "immediate"
    act(waiting, "cancel")
    assert Job.objects.get(pk=waiting.id).status == Status.CANCELED
    later = submit("diagnostics.sleep", {"seconds": 0}, run_at=timezone.now() + timedelta(days=1)).job
    page = client.get(reverse("admin:jobs_job_change", args=[later.id])).content.decode()
    assert 'value="Run now"' in page and 'value="Requeue"' not in page
    act(later, "run-now")
    assert Job.objects.get(pk=later.id).status == Status.QUEUED
    actors = set(
        JobEvent.objects.filter(kind__in=["action", "transition"], actor=superuser).values_list("message", flat=True)
    )
    assert {"requeued for a new round of attempts", "promoted to immediate", "canceled"} <= actors
    assert JobEvent.objects.filter(job=later, actor=superuser, message__startswith="run now").exists()


@pytest.mark.redis
def test_a_state_that_forbids_the_action_is_a_message_per_job_not_an_error(superuser):
    queued = [submit("diagnostics.sleep", {"seconds": 0}).job for _ in range(2)]
    client = client_for(superuser)
    response = client.post(
        LIST, {"action": "requeue_jobs", "_selected_action": [str(j.id) for j in queued]}, follow=True
    )
    assert response.status_code == 200
    notes = messages_of(response)
    assert len(notes) == 2 and all("Cannot requeue job" in n and "it is queued" in n for n in notes)
    single = client.post(reverse("admin:jobs_act", args=[queued[0].id, "requeue"]), follow=True)
    assert any("Cannot requeue job" in n for n in messages_of(single))
    assert {Job.objects.get(pk=j.id).status for j in queued} == {Status.QUEUED}


def test_requeue_selected_dead_letters_asks_first_and_says_how_many(superuser, run_worker):
    dead = dead_letters(2, run_worker)
    other = submit("diagnostics.sleep", {"seconds": 0}).job
    client = client_for(superuser)
    selected = [str(j.id) for j in dead] + [str(other.id)]
    confirm = client.post(LIST, {"action": "requeue_dead_letters", "_selected_action": selected})
    page = confirm.content.decode()
    assert "requeue <strong>2</strong> dead-lettered jobs" in page and "1 selected job is not" in page
    assert {Job.objects.get(pk=j.id).status for j in dead} == {Status.DEAD_LETTER}, "nothing before the yes"
    done = client.post(
        LIST, {"action": "requeue_dead_letters", "_selected_action": selected, "confirmed": "yes"}, follow=True
    )
    assert "Requeued 2 job(s)." in messages_of(done)
    assert {Job.objects.get(pk=j.id).status for j in dead} == {Status.QUEUED}


def test_bulk_requeue_of_every_dead_letter_matching_the_filter(superuser, alice, bob, run_worker):
    alices = dead_letters(3, run_worker, owner=alice)
    bobs = dead_letters(2, run_worker, owner=bob)
    client = client_for(superuser)
    everything = reverse("admin:jobs_requeue_matching") + "?q=diagnostics"
    assert "<strong>5</strong> dead-lettered jobs match" in client.get(everything).content.decode()
    # The list's own owner filter, as its "Requeue dead letters matching this filter" link passes it.
    listing = client.get(LIST, {"owner__id__exact": alice.id, "status__exact": "dead_letter"}).content.decode()
    narrowed = reverse("admin:jobs_requeue_matching") + f"?owner__id__exact={alice.id}&status__exact=dead_letter"
    assert narrowed.replace("&", "&amp;") in listing
    assert "<strong>3</strong> dead-lettered jobs match" in client.get(narrowed).content.decode()
    done = client.post(narrowed, follow=True)
    assert "Requeued 3 dead letter(s)." in messages_of(done)
    assert {Job.objects.get(pk=j.id).status for j in alices} == {Status.QUEUED}
    assert {Job.objects.get(pk=j.id).status for j in bobs} == {Status.DEAD_LETTER}
    assert JobEvent.objects.filter(job__in=alices, actor=superuser, message__startswith="requeued").count() == 3


def test_read_only_operators_see_everything_and_act_on_nothing(watcher, run_worker):
    dead = dead_letters(1, run_worker)[0]
    client = client_for(watcher)
    assert client.get(reverse("admin:jobs_dashboard")).status_code == 200
    listing = client.get(LIST)
    assert listing.status_code == 200
    assert "requeue_jobs" not in listing.content.decode() and "jd-requeue-matching" not in listing.content.decode()
    page = client.get(reverse("admin:jobs_job_change", args=[dead.id])).content.decode()
    assert "Requeue" not in page.split('id="jd-live-job"')[1].split("</div>")[0]
    assert client.get("/admin/ingestion/material/").status_code == 200
    assert client.get("/admin/workwindow/workwindow/").status_code == 200
    assert client.get("/admin/django_rq/").status_code == 200
    assert client.get("/admin/auth/user/").status_code == 403, "accounts are not theirs to browse"

    assert client.post(reverse("admin:jobs_act", args=[dead.id, "requeue"])).status_code == 403
    assert client.post(reverse("admin:jobs_requeue_matching")).status_code == 403
    client.post(LIST, {"action": "requeue_jobs", "_selected_action": [str(dead.id)]})
    assert client.post("/admin/django_rq/queues/0/empty/").status_code == 403
    assert Job.objects.get(pk=dead.id).status == Status.DEAD_LETTER


@pytest.mark.redis  # django-rq's queue page reads the queue
def test_django_rq_pages_for_an_index_that_is_not_there_are_404s(superuser):
    client = client_for(superuser)
    assert client.get("/admin/django_rq/queues/0/").status_code == 200
    for page in ("queues/99/", "workers/99/", "schedulers/99/"):
        assert client.get(f"/admin/django_rq/{page}").status_code == 404, page
    # an RQ job past its result TTL (a stale link), an id or a worker key that is not one
    for page in ("queues/0/0f0f0f0f-gone/", "queues/0/a.b/", "workers/0/nonexistent/", "workers/0/rq:worker:gone/"):
        assert client.get(f"/admin/django_rq/{page}").status_code == 404, page
    for action in ("delete", "requeue", "enqueue"):
        assert client.post(f"/admin/django_rq/queues/0/0f0f0f0f-gone/{action}/").status_code == 404, action


@pytest.mark.redis
def test_a_filtered_metrics_scrape_leaves_the_next_scrape_whole(superuser, settings):
    # django-rq's metrics view replaced its process-wide registry with the filtered one
    from django.test import Client

    settings.RQ_API_TOKEN = "scrape-token"  # how Prometheus scrapes django-rq's metrics
    client, scraper = client_for(superuser), Client(HTTP_AUTHORIZATION="Bearer scrape-token")
    whole = client.get("/admin/django_rq/metrics/")
    assert whole.status_code == 200 and b"rq_workers" in whole.content
    assert client.get("/admin/django_rq/metrics/", {"name[]": "nothing"}).status_code == 200
    assert scraper.get("/admin/django_rq/metrics/", {"name[]": "nothing"}).status_code == 200
    assert client.get("/admin/django_rq/metrics/").content == whole.content
    assert scraper.get("/admin/django_rq/metrics/").content == whole.content


def test_ordinary_users_do_not_get_in(alice):
    client = client_for(alice)
    for url in (reverse("admin:jobs_dashboard"), LIST, "/admin/django_rq/"):
        response = client.get(url)
        assert response.status_code == 302 and "/login/" in response["Location"], url


def test_dashboard_survives_redis_down(superuser):
    from devtools import pytest_redis

    server = pytest_redis.own_server()
    submit("diagnostics.sleep", {"seconds": 0})
    client = client_for(superuser)
    server.stop()
    try:
        data = client.get(reverse("admin:jobs_dashboard_data"))
        page = client.get(reverse("admin:jobs_dashboard"))
    finally:
        server.start()
    assert data.status_code == 200 and page.status_code == 200
    overview = json.loads(data.content)
    assert overview["redis_error"], "says Redis is down instead of failing the page"
    assert overview["counts"] == {"queued": 1}, "the database parts are still there"


def test_the_job_form_cannot_write_the_row(superuser):
    """Only lifecycle moves change a job: a POST of the (read-only) form saves nothing."""
    job = submit("diagnostics.sleep", {"seconds": 0}).job
    lifecycle.claim(job.id, job.rq_job_id, "w")  # seq 2
    form = {"_save": "Save", "events-TOTAL_FORMS": "0", "events-INITIAL_FORMS": "0", "events-MIN_NUM_FORMS": "0",
            "events-MAX_NUM_FORMS": "1000"}  # fmt: skip
    response = client_for(superuser).post(reverse("admin:jobs_job_change", args=[job.id]), form)
    assert response.status_code == 405
    assert Job.objects.filter(pk=job.id, status=Status.ACTIVE, seq=2).exists()


def test_no_deletes_and_no_unguarded_raw_queue_pages(superuser, watcher):
    job = submit("diagnostics.sleep", {"seconds": 0}).job
    client = client_for(superuser)
    client.post(LIST, {"action": "delete_selected", "_selected_action": [str(job.id)], "post": "yes"})
    assert client.get(reverse("admin:jobs_job_delete", args=[job.id])).status_code == 403
    assert Job.objects.filter(pk=job.id).exists(), "jobs leave by cancel and retention, not by delete"
    assert JobEvent.objects.filter(job=job).exists()
    # django-rq's own admin copy of its pages (is_staff only) is not mounted.
    assert client_for(watcher).post("/admin/django_rq/dashboard/queues/1/empty/").status_code == 404


def test_hostile_query_strings_are_notices_not_errors(superuser):
    client = client_for(superuser)
    for query in ("created_at__year=2024&created_at__month=13", "created_at__year=abc", "created_at__year=99999",
                  "bogus=1", "owner__id__exact=abc"):  # fmt: skip
        listing = client.get(f"{LIST}?{query}")
        assert listing.status_code == 302 and listing["Location"].endswith("?e=1"), query
        matching = client.get(reverse("admin:jobs_requeue_matching") + f"?{query}")
        assert matching.status_code == 302 and matching["Location"].endswith("?e=1"), query
    assert client.get("/admin/jobs/job/not-a-uuid/change/").status_code == 302  # "doesn't exist" notice


def test_a_uuid_search_also_finds_an_idempotency_key(superuser):
    import uuid

    key = str(uuid.uuid4())
    job = submit("diagnostics.sleep", {"seconds": 0}, idempotency_key=key).job
    found = client_for(superuser).get(LIST, {"q": key})
    assert [j.id for j in found.context["cl"].result_list] == [job.id]


def test_select_all_beyond_the_cap_is_refused_and_dead_letters_confirm_without_ids(superuser, run_worker, monkeypatch):
    from jobs.console import admin as console_admin

    dead = dead_letters(3, run_worker)
    client = client_for(superuser)
    monkeypatch.setattr(console_admin, "ACT_AT_ONCE", 2)
    refused = client.post(
        LIST, {"action": "cancel_jobs", "select_across": "1", "index": "0", "_selected_action": [str(dead[0].id)]},
        follow=True,
    )  # fmt: skip
    assert any("More than 2 jobs selected" in m for m in messages_of(refused))
    monkeypatch.setattr(console_admin, "ACT_AT_ONCE", 100)
    everything = {"action": "requeue_dead_letters", "select_across": "1", "index": "0",
                  "_selected_action": [str(dead[0].id)]}  # fmt: skip
    confirm = client.post(LIST, everything).content.decode()
    assert "requeue <strong>3</strong>" in confirm and 'name="select_across" value="1"' in confirm
    done = client.post(LIST, {**everything, "confirmed": "yes"}, follow=True)
    assert "Requeued 3 job(s)." in messages_of(done)


def test_words_search_types_keys_and_error_messages(superuser, run_worker):
    failed = submit("diagnostics.sleep", {"seconds": 0, "fail_mode": "user_fixable"}).job
    keyed = submit("diagnostics.noop", idempotency_key="nightly-report").job
    run_worker()
    client = client_for(superuser)

    def found(term):
        return {j.id for j in client.get(LIST, {"q": term}).context["cl"].result_list}

    assert found("noop") == {keyed.id}, "a type, by part of its name"
    assert found("nightly-report") == {keyed.id}, "an idempotency key, exactly"
    message = Job.objects.get(pk=failed.id).error_message
    assert found(message.split()[0]) == {failed.id}, "the error message of a failed job"
    assert found("nothing-like-this") == set()


def test_a_work_window_s_preview_shows_five_openings_each_with_its_own_close(superuser):
    """Read over a week and a day, a window open on one day a week showed one opening,
    and a 24-hour window's last opening closed where the read ended."""
    from datetime import time

    from django.contrib import admin as django_admin

    from workwindow.models import WorkWindow

    mondays = WorkWindow.objects.create(
        name="mondays", time_zone="UTC", start_time=time(1), end_time=time(2), weekdays=[0]
    )
    weekdays = WorkWindow.objects.create(
        name="whole-days", time_zone="Europe/Kyiv", start_time=time(6), end_time=time(6), weekdays=[0, 1, 2, 3, 4]
    )
    preview = django_admin.site._registry[WorkWindow].next_openings
    monday_lines = str(preview(mondays)).split("</div>")[:-1]
    assert len(monday_lines) == 5 and all("Mon" in line and "→ Mon" in line for line in monday_lines)
    # Mon 06:00 to Sat 06:00 (Monday to Friday, a day each from 06:00): every week the same.
    weekday_lines = str(preview(weekdays)).split("</div>")[:-1]
    assert weekday_lines and all("→ Sat" in line for line in weekday_lines[1:]), weekday_lines
    page = client_for(superuser).get(f"/admin/workwindow/workwindow/{mondays.pk}/change/")
    assert page.status_code == 200 and page.content.decode().count("→ Mon") == 5


def test_a_work_window_open_now_says_so_rather_than_a_made_up_opening(monkeypatch):
    """The preview reads from a day back: a period open since Monday showed the read's
    start (Friday 00:00) as its opening."""
    from datetime import UTC, datetime, time

    from django.contrib import admin as django_admin

    from jobs.console import window_admin
    from workwindow.models import WorkWindow

    monkeypatch.setattr(window_admin.timezone, "now", lambda: datetime(2027, 3, 20, 12, tzinfo=UTC))  # a Saturday
    week = WorkWindow.objects.create(
        name="mon-sat", time_zone="UTC", start_time=time(0), end_time=time(0), weekdays=[0, 1, 2, 3, 4, 5]
    )
    lines = str(django_admin.site._registry[WorkWindow].next_openings(week)).split("</div>")[:-1]
    assert lines[0] == "<div>open now → Sun 2027-03-21 00:00 UTC", lines
    assert lines[1] == "<div>Mon 2027-03-22 00:00 → Sun 2027-03-28 00:00 UTC", lines
