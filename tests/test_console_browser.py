"""The operations console in a real browser: Playwright driving Debian's
Chromium against daphne, with a real worker and the Redis channel layer.

Screenshots of the dashboard and a job page are saved as artefacts; the test prints
where (``SCREENSHOT_DIR``, default ``var/screenshots``). Without /usr/bin/chromium the
tests skip, unless ``JOBDESK_REQUIRE_BROWSER`` is set (CI sets it), when they fail.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.db import connections

from conftest import ROOT, wait_for
from jobs.core.models import FlowChange, FlowControl, Hold, Job, JobEvent, Schedule, Status
from jobs.core.submit import submit
from jobs.upkeep import schedules

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
QUEUES = ("immediate", "normal", "low")
# As root on a machine with no internet: no sandbox, and no background calls home.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip
SCREENSHOTS = Path(os.environ.get("SCREENSHOT_DIR", ROOT / "var" / "screenshots"))


@pytest.fixture
def browser(monkeypatch):
    if not Path(CHROMIUM).exists():
        if os.environ.get("JOBDESK_REQUIRE_BROWSER"):
            pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the test's own ORM calls
    # are plain synchronous ones between browser steps.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()
        # The ORM calls made while Playwright's loop was up used a connection of their
        # own (a different context for asgiref's locals): close it, or it outlives the
        # test database.
        connections.close_all()


@pytest.fixture
def console(browser, web, django_user_model):
    """A logged-in operator's page, and the http:// base of the server."""
    django_user_model.objects.create_superuser("ops", password="pw-ops-console")
    base = web.replace("ws://", "http://")
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(20_000)
    page.goto(f"{base}/admin/login/")
    page.fill("#id_username", "ops")
    page.fill("#id_password", "pw-ops-console")
    page.click("input[type=submit]")
    page.wait_for_selector("#jd-index-link")
    return page, base


@pytest.fixture
def screenshot(capsys):
    """Save a full-page screenshot and print its path past pytest's capture."""

    def take(page, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        with capsys.disabled():
            print(f"\n[artefact] screenshot: {path}")
        return path

    return take


def percent(page, selector: str) -> int:
    return int(page.inner_text(selector).strip().rstrip("%") or 0)


def test_an_operator_watches_a_job_run_live_and_requeues_a_dead_letter(console, spawn, screenshot):
    page, base = console
    page.goto(f"{base}/admin/jobs/job/dashboard/")
    page.wait_for_selector("#jd-counts")
    page.wait_for_selector(".jd-live.on")  # the /ws/ops/ socket is up
    page.evaluate("window.__noReload = true")

    spawn("rqworker", *QUEUES)
    job = submit("diagnostics.sleep", {"seconds": 6, "steps": 12}).job
    # The dashboard follows without a reload: the job shows up running on a worker.
    page.wait_for_selector(f"#jd-workers a[href*='{job.id}']")
    wait_for(lambda: Job.objects.get(pk=job.id).progress >= 15, timeout=20, what="some progress")
    screenshot(page, "dashboard")

    page.goto(f"{base}/admin/jobs/job/{job.id}/change/")
    page.wait_for_selector("#jd-live-job .jd-live.on")
    page.evaluate("window.__noReload = true")
    seen = percent(page, "#jd-live-job [data-live=progress] .jd-pct")
    page.wait_for_function(
        f"parseInt(document.querySelector('#jd-live-job [data-live=progress] .jd-pct').textContent) > {seen}"
    )
    assert percent(page, "#jd-live-job [data-live=progress] .jd-pct") > seen, "the bar advanced"
    screenshot(page, "job-running")
    page.wait_for_selector("#jd-live-job [data-live=status] .jd-complete", timeout=30_000)
    assert page.evaluate("window.__noReload") is True, "all of it without reloading the page"
    assert percent(page, "#jd-live-job [data-live=progress] .jd-pct") == 100
    page.reload()
    page.locator("td.field-message", has_text="completed").wait_for()  # the timeline, after a reload
    screenshot(page, "job-complete")

    # A dead letter, requeued from the list with the bulk action.
    dead = submit("diagnostics.sleep", {"seconds": 0, "fail_mode": "temporary"}, max_attempts=1).job
    wait_for(lambda: Job.objects.get(pk=dead.id).status == Status.DEAD_LETTER, timeout=30, what="a dead letter")
    page.goto(f"{base}/admin/jobs/job/?status__exact=dead_letter")
    page.check(f"input[name=_selected_action][value='{dead.id}']")
    page.select_option("select[name=action]", "requeue_jobs")
    page.click("button[name=index]")
    page.wait_for_selector("text=Requeued 1 job(s).")
    requeue = JobEvent.objects.filter(job_id=dead.id, message__startswith="requeued").get()
    assert requeue.actor.username == "ops"
    screenshot(page, "dead-letter-requeued")


def test_the_list_page_bars_follow_progress_without_a_reload(console, spawn, screenshot):
    page, base = console
    job = submit("diagnostics.sleep", {"seconds": 4, "steps": 8}).job
    page.goto(f"{base}/admin/jobs/job/")
    page.wait_for_selector(f"[data-job='{job.id}'][data-field=status] .jd-queued")
    page.wait_for_selector(".jd-live.on")
    page.evaluate("window.__noReload = true")
    spawn("rqworker", *QUEUES)
    page.wait_for_selector(f"[data-job='{job.id}'][data-field=status] .jd-active")
    page.wait_for_function(
        f"parseInt(document.querySelector(\"[data-job='{job.id}'][data-field=progress] .jd-pct\").textContent) >= 50"
    )
    page.wait_for_selector(f"[data-job='{job.id}'][data-field=status] .jd-complete", timeout=30_000)
    submit("diagnostics.sleep", {"seconds": 0})  # a job not on the page: counted, with a reload link
    page.wait_for_selector("#jd-unseen a:has-text('to other jobs')")
    assert page.evaluate("window.__noReload") is True
    screenshot(page, "job-list")


def test_the_console_serves_its_own_assets(console):
    """Behind a firewall: every script, style and image comes from the server itself."""
    page, base = console
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(f"{base}/admin/jobs/job/dashboard/")
    page.wait_for_selector("#jd-counts")
    outside = [url for url in requests if not url.startswith((base, base.replace("http", "ws"), "data:"))]
    assert any(url.endswith("/static/jobs/console.js") for url in requests)
    assert outside == []


def test_the_buttons_on_a_job_page_act(console, spawn, screenshot):
    """The page's own buttons (outside the admin's form) go through the services."""
    page, base = console
    spawn("rqworker", *QUEUES)
    job = submit("diagnostics.sleep", {"seconds": 60, "steps": 60}).job
    wait_for(lambda: Job.objects.get(pk=job.id).status == Status.ACTIVE, timeout=30, what="the job to start")
    page.goto(f"{base}/admin/jobs/job/{job.id}/change/")
    assert page.locator("#jd-live-job input[value=Requeue]").count() == 0, "only the moves its state allows"
    page.click("#jd-live-job input[value=Cancel]")
    page.wait_for_selector(f"text=Canceled job {job.id}.")
    assert Job.objects.get(pk=job.id).status == Status.CANCELED
    assert JobEvent.objects.get(job_id=job.id, to_status=Status.CANCELED).actor.username == "ops"
    page.click("#jd-live-job input[value=Requeue]")
    page.wait_for_selector(f"text=Requeued job {job.id}.")
    screenshot(page, "job-page-buttons")


def test_an_operator_pauses_the_normal_queue_from_the_flow_page_and_resumes_it(console, spawn, screenshot):
    """The flow page's Pause (with a reason) holds new work; the dashboard shows the pause
    with its reason and resumes it; the audit trail names the operator."""
    page, base = console
    spawn("rqworker", *QUEUES)
    page.goto(f"{base}/admin/")
    page.click("#jd-index-link a:has-text('Flow control')")
    page.locator("#queue-normal input[name=reason]").fill("database migration")
    page.click("#queue-normal input[value=Pause]")
    page.wait_for_selector("text=Paused the queue normal: database migration")
    page.locator("#queue-normal [data-field=reason]", has_text="database migration").wait_for()
    assert "by ops" in page.inner_text("#queue-normal")
    assert page.locator("#queue-normal input[value=Resume]").count() == 1
    lever = FlowControl.objects.get(kind=FlowControl.Kind.QUEUE, name="normal")
    assert lever.paused and lever.paused_by is not None and lever.paused_by.username == "ops"

    # Work submitted meanwhile is held, not run (the worker parks it without an attempt).
    job = submit("diagnostics.sleep", {"seconds": 0}).job
    wait_for(lambda: Job.objects.get(pk=job.id).hold == Hold.QUEUE_PAUSED, timeout=30, what="the job to be held")
    page.goto(f"{base}/admin/jobs/job/dashboard/")
    paused = page.locator("#jd-queues tr[data-queue=normal]")
    paused.locator(".jd-paused").wait_for()
    assert "database migration" in paused.inner_text() and "by ops" in paused.inner_text()
    screenshot(page, "dashboard-queue-paused")

    paused.locator("input[value=Resume]").click()
    page.wait_for_selector("text=Resumed the queue normal")
    page.locator("#jd-queues tr[data-queue=normal] .jd-ok", has_text="running").wait_for()
    wait_for(lambda: Job.objects.get(pk=job.id).status == Status.COMPLETE, timeout=30, what="the held job to run")

    page.click("#jd-flow-link")
    page.locator("#queue-normal .jd-ok", has_text="running").wait_for()
    trail = page.inner_text("#jd-flow-changes")
    assert "resumed" in trail and "paused" in trail and "database migration" in trail
    assert [(c.action, c.who) for c in FlowChange.objects.order_by("created_at", "id")] == [
        ("paused", "ops"), ("resumed", "ops"),
    ]  # fmt: skip
    screenshot(page, "flow-control")


def test_an_operator_moves_a_schedule_to_7_kyiv_time_and_a_bad_cron_is_refused(console, screenshot):
    """The schedule page's form: a new cron and zone move the next runs (shown in the
    entry's zone and in UTC); a bad cron is an error at the field, and nothing changes."""
    schedules.sync_from_code()  # the transactional database starts empty
    page, base = console
    page.goto(f"{base}/admin/")
    page.click("#jd-index-link a:has-text('Schedules')")
    assert "from code" in page.inner_text("#schedule-prune-jobs [data-field=origin]")
    screenshot(page, "schedules")
    page.click("#schedule-prune-jobs a:has-text('prune-jobs')")
    nine = page.locator("#jd-next-runs td[data-field=local]").first
    assert "09:00 UTC" in nine.inner_text()

    page.fill("#id_edit-cron", "0 7 * * *")
    page.fill("#id_edit-time_zone", "Europe/Kyiv")
    page.click("#jd-schedule-edit input[value=Save]")
    page.wait_for_selector("text=Saved prune-jobs")
    page.locator("#jd-next-runs th", has_text="in Europe/Kyiv").wait_for()
    local = page.locator("#jd-next-runs td[data-field=local]")
    assert local.count() == 5
    for text in local.all_inner_texts():  # 07:00 Kyiv time: EET in winter, EEST in summer
        assert " 07:00 EET" in text or " 07:00 EEST" in text, text
    for text in page.locator("#jd-next-runs td[data-field=utc]").all_inner_texts():
        assert text.endswith(("05:00 UTC", "04:00 UTC")), text
    assert "edited (code: cron" in page.inner_text("#jd-schedule-entry [data-field=origin]")
    row = Schedule.objects.get(name="prune-jobs")
    assert (row.cron, row.time_zone, row.overridden, row.updated_by) == ("0 7 * * *", "Europe/Kyiv", True, "ops")
    screenshot(page, "schedule-edited")

    page.fill("#id_edit-cron", "0 25 * * *")
    page.click("#jd-schedule-edit input[value=Save]")
    error = page.locator("#jd-schedule-edit [data-field=cron] .errorlist", has_text="cron:")
    error.wait_for()
    assert "Five fields: minute hour" in error.inner_text()
    assert page.locator("#jd-schedule-edit .errornote").inner_text().startswith("Nothing was changed")
    assert page.input_value("#id_edit-cron") == "0 25 * * *", "what was typed stays to be corrected"
    assert Schedule.objects.get(name="prune-jobs").cron == "0 7 * * *"
    assert " 07:00 EE" in page.locator("#jd-next-runs td[data-field=local]").first.inner_text()
    screenshot(page, "schedule-bad-cron")

    page.click("#jd-schedule input[value='Run now']")
    page.wait_for_selector("#jd-new-job")
    job = Job.objects.get(idempotency_key__startswith="cron:prune-jobs:now:")
    page.locator(f"#jd-last-runs tr[data-job-row='{job.id}']", has_text="run now").wait_for()
    page.goto(f"{base}/admin/jobs/job/schedules/")
    assert str(job.id) in page.get_attribute("#schedule-prune-jobs [data-field=last] a", "href")
    screenshot(page, "schedules-after")


def test_a_jobs_log_lines_appear_live_on_its_page(console, spawn, screenshot):
    """What the handler logs (ctx.log and logging) shows on the job page while it runs."""
    page, base = console
    job = submit("diagnostics.sleep", {"seconds": 8, "steps": 8, "log_lines": 2}).job
    page.goto(f"{base}/admin/jobs/job/{job.id}/change/")
    page.wait_for_selector("#jd-live-job .jd-live.on")
    page.wait_for_selector("#jd-logs [data-logs=summary]:has-text('nothing logged yet')")
    page.evaluate("window.__noReload = true")
    spawn("rqworker", *QUEUES, LOG_LEVEL="INFO")  # the capture sees what logging lets through

    page.wait_for_selector("#jd-logs .jd-log-line:has-text('attempt 1: step 1 of 8')")
    page.wait_for_selector("#jd-logs .jd-log-line.jd-log-INFO:has-text('attempt 1: step 3 line 2')")
    assert Job.objects.get(pk=job.id).status == Status.ACTIVE, "the lines arrived while the job ran"
    screenshot(page, "job-log-live")

    page.wait_for_selector("#jd-live-job [data-live=status] .jd-complete", timeout=30_000)
    page.wait_for_selector("#jd-logs .jd-log-line:has-text('attempt 1: step 8 line 2')")
    assert page.locator("#jd-logs .jd-log-line").count() == 16
    assert page.inner_text("#jd-logs [data-logs=summary]") == "16 lines over 1 attempt"
    assert page.evaluate("window.__noReload") is True, "all of it without reloading the page"
    screenshot(page, "job-log-complete")
