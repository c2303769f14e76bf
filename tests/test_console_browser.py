"""The operations console in a real browser: Playwright driving Debian's
Chromium against the web tier (uvicorn), with a real worker and the Redis channel layer.

Screenshots of the dashboard and a job page are saved as artefacts; the test prints
where (``SCREENSHOT_DIR``, default ``var/screenshots``). Without /usr/bin/chromium the
tests skip, unless ``JOBDESK_REQUIRE_BROWSER`` is set (CI sets it), when they fail.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connections
from django.utils import timezone

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
    page.locator("td.field-message_shown", has_text="completed").wait_for()  # the timeline, after a reload
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


LIVE_CELLS = """ids => Object.fromEntries(ids.map(id => [id, ["status", "eta", "tries", "error"].map(field =>
    document.querySelector(`[data-job="${id}"][data-field="${field}"]`).innerText.trim())]))"""


def test_the_list_page_bars_follow_progress_without_a_reload(console, spawn, screenshot):
    """Rows follow their jobs live, and a finished row then reads as a reload shows it:
    its duration (not "finished"), its tries, its error."""
    page, base = console
    job = submit("diagnostics.sleep", {"seconds": 4, "steps": 8}).job
    bad = submit("diagnostics.sleep", {"seconds": 0, "fail_mode": "temporary"}, max_attempts=1).job
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
    page.wait_for_selector(f"[data-job='{bad.id}'][data-field=status] .jd-dead_letter", timeout=30_000)
    # The duration replaces the ETA once the server has drawn the finished row's cells.
    page.wait_for_function(
        f"/^[0-9.]+ s$/.test(document.querySelector(\"[data-job='{job.id}'][data-field=eta]\").innerText.trim())"
    )
    page.wait_for_selector(f"[data-job='{bad.id}'][data-field=error] .jd-error")
    ids = [str(job.id), str(bad.id)]
    live = page.evaluate(LIVE_CELLS, ids)
    submit("diagnostics.sleep", {"seconds": 0})  # a job not on the page: counted, with a reload link
    page.wait_for_selector("#jd-unseen a:has-text('to other jobs')")
    assert page.evaluate("window.__noReload") is True
    screenshot(page, "job-list")
    page.reload()
    page.wait_for_selector(f"[data-job='{job.id}'][data-field=eta]")
    reloaded = page.evaluate(LIVE_CELLS, ids)
    assert live == reloaded, "a live update renders the row as a reload does"
    assert live[str(bad.id)][2:] != ["0/1", "—"], "the failed row's tries and error were drawn live"


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


CLIPPED_CELLS = """() => {
  const cells = [...document.querySelectorAll('#result_list th, #result_list td')];
  const clipped = cells.filter((c) => c.scrollWidth > c.clientWidth + 1)
    .map((c) => `${c.className}: ${c.scrollWidth} > ${c.clientWidth}`);
  const table = document.querySelector('#result_list').getBoundingClientRect();
  const box = document.querySelector('#result_list').closest('.results');  // scrolls sideways when too narrow
  if (box.scrollWidth > box.clientWidth) { clipped.push(`.results: ${box.scrollWidth} > ${box.clientWidth}`); }
  const widths = [...document.querySelectorAll('#result_list thead th')].map((c) => `${c.className}=${c.offsetWidth}`);
  const rows = document.querySelectorAll('#result_list tbody tr').length;
  return {widths, clipped, tableRight: table.right, viewport: window.innerWidth,
          pageWidth: document.documentElement.scrollWidth, rows};
}"""


def test_the_front_page_s_links_read_on_one_line(console, screenshot):
    # Django's dashboard style kept the descriptions on one line and left each link one
    # letter wide (a column 26 px wide, a link 207 px tall).
    page, base = console
    for width in (1024, 1280):
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(f"{base}/admin/")
        screenshot(page, f"front-page-{width}")
        boxes = page.eval_on_selector_all("#jd-index-link th a", "links => links.map(a => a.getBoundingClientRect())")
        assert len(boxes) >= 3 and all(box["height"] < 30 for box in boxes), (width, boxes)


def test_the_job_list_fits_1280_and_1920_px_without_a_clipped_column(console, screenshot):
    """Every kind of row (waiting with an ETA, finished with a duration, failed with a
    long error) fits: no cell's content overflows it, and the table ends in the window."""
    from conftest import past_job

    page, base = console
    now = timezone.now()
    for status in (Status.DEAD_LETTER, Status.FAILED):
        past_job(type="diagnostics.sleep", status=status, progress=100, attempts=3, max_attempts=3,
                 error_category="temporary", started_at=now - timedelta(seconds=80), finished_at=now,
                 error_message="Connection refused by payments-gateway.internal:8443 after 30 s " * 3)  # fmt: skip
    past_job(type="diagnostics.sleep", status=Status.COMPLETE, progress=100, started_at=now - timedelta(seconds=2),
             finished_at=now)  # fmt: skip
    # running, its ETA a range ("finishes 02:08:18 – 02:08:56 UTC" pushed the error column out)
    past_job(type="diagnostics.sleep", status=Status.ACTIVE, progress=40, started_at=now - timedelta(seconds=5))
    from rq import Worker

    from jobs.core import queueing

    Worker(["normal"], connection=queueing.connection(), name="probe").register_birth()  # ETAs need a live worker
    submit("diagnostics.sleep", {"seconds": 1}, run_at=now + timedelta(hours=3))
    submit("diagnostics.sleep", {"seconds": 1})
    from jobs.core import batches
    from jobs.core.submit import JobSpec

    batches.create_batch([JobSpec("diagnostics.sleep", {"seconds": 1})])  # a row with its batch under its type
    for width in (1280, 1920):
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(f"{base}/admin/jobs/job/")
        page.wait_for_selector("#result_list tbody tr")
        screenshot(page, f"job-list-{width}")  # before the checks: the picture of a failure too
        found = page.evaluate(CLIPPED_CELLS)
        assert found["rows"] == 7
        assert found["clipped"] == [], (width, found["clipped"])
        assert found["tableRight"] <= found["viewport"] and found["pageWidth"] <= found["viewport"], (width, found)
        assert page.inner_text("#content h1") == "Jobs"
        red = page.eval_on_selector(".jd-fill-dead_letter", "e => getComputedStyle(e).backgroundColor")
        assert red == "rgb(192, 57, 43)"


def test_a_work_window_is_saved_from_weekday_checkboxes_and_a_zone_select(console, screenshot):
    from workwindow.models import WorkWindow

    page, base = console
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{base}/admin/workwindow/workwindow/add/")
    page.fill("#id_name", "weeknights")
    page.select_option("#id_time_zone", "Europe/Kyiv")
    page.fill("#id_start_time", "22:00")
    page.fill("#id_end_time", "06:00")
    for day in ("Sat", "Sun"):
        page.uncheck(f"#id_weekdays label:has-text('{day}') input")
    screenshot(page, "work-window-form")
    page.click("input[name=_continue]")
    page.wait_for_selector("text=was added successfully")
    window = WorkWindow.objects.get(name="weeknights")
    assert (window.weekdays, window.time_zone) == ([0, 1, 2, 3, 4], "Europe/Kyiv")
    assert page.is_checked("#id_weekdays_4") and not page.is_checked("#id_weekdays_5")
    assert page.locator(".field-next_openings .readonly > div").count() == 5
    screenshot(page, "work-window-saved")

    page.uncheck("#id_weekdays_0")
    for day in range(1, 5):
        page.uncheck(f"#id_weekdays_{day}")
    page.click("input[name=_save]")
    page.locator(".field-weekdays .errorlist", has_text="Tick at least one day.").wait_for()
    assert WorkWindow.objects.get(name="weeknights").weekdays == [0, 1, 2, 3, 4]
    screenshot(page, "work-window-error")


def chart_sum(page, series: str = "total", outcome: str = "complete") -> int:
    return int(page.get_attribute(f"#jd-throughput svg.jd-tp[data-series={series}]", f"data-{outcome}") or 0)


def test_the_throughput_chart_moves_while_jobs_run(console, spawn, screenshot):
    """Jobs finishing move the chart without a reload: its sums and bars grow, by outcome
    and per queue, and the hourly bars keep their whole 24 h axis."""
    page, base = console
    page.goto(f"{base}/admin/jobs/job/dashboard/")
    page.wait_for_selector("#jd-throughput svg.jd-tp[data-series=total]")
    page.wait_for_selector(".jd-live.on")
    page.evaluate("window.__noReload = true")
    assert chart_sum(page) == 0 and page.locator("#jd-throughput rect.jd-tp-complete").count() == 0
    assert page.get_attribute("#jd-chart svg", "data-hours") == "24"
    assert page.locator("#jd-chart rect.jd-hour-slot").count() == 24, "every hour has its slot on a new system"

    spawn("rqworker", *QUEUES)
    for _ in range(6):
        submit("diagnostics.sleep", {"seconds": 0})
    submit("diagnostics.sleep", {"seconds": 0, "fail_mode": "user_fixable"}, priority="immediate")
    page.wait_for_function(
        "parseInt(document.querySelector('#jd-throughput svg.jd-tp[data-series=total]').dataset.complete) >= 6"
        " && parseInt(document.querySelector('#jd-throughput svg.jd-tp[data-series=total]').dataset.failed) >= 1",
        timeout=30_000,
    )
    heights = page.eval_on_selector_all(
        "#jd-throughput rect.jd-tp-complete", "rects => rects.map(r => parseFloat(r.getAttribute('height')))"
    )
    assert heights and max(heights) > 0, "a green bar stands where the jobs finished"
    assert page.locator("#jd-throughput rect.jd-tp-failed").count() >= 1
    assert page.evaluate("window.__noReload") is True
    screenshot(page, "dashboard-throughput")

    page.click("#jd-throughput button[data-tp-view=queues]")
    page.wait_for_selector("#jd-throughput[data-view=queues] svg.jd-tp[data-series=normal]")
    assert page.locator("#jd-throughput svg.jd-tp").count() == 3, "one small chart per queue"
    assert chart_sum(page, "normal") >= 6 and chart_sum(page, "immediate", "failed") == 1
    assert chart_sum(page, "low") == 0
    more = submit("diagnostics.sleep", {"seconds": 0}, priority="low").job
    page.wait_for_function(
        "parseInt(document.querySelector('#jd-throughput svg.jd-tp[data-series=low]').dataset.complete) >= 1",
        timeout=30_000,
    )
    assert Job.objects.get(pk=more.id).status == Status.COMPLETE
    assert page.get_attribute("#jd-throughput", "data-view") == "queues", "the switch survives the live refresh"
    screenshot(page, "dashboard-throughput-per-queue")


def test_the_chart_s_clock_is_the_console_s_zone_not_the_browser_s(console):
    """Its axis read the browser's clock (getHours) under a header in the operator's zone."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    page, base = console
    page.context.add_cookies([{"name": "jd_tz", "value": "Asia/Kathmandu", "url": base}])  # UTC+5:45
    page.goto(f"{base}/admin/jobs/job/dashboard/")
    assert page.get_attribute('meta[name="jd-zone"]', "content") == "Asia/Kathmandu"
    label = page.wait_for_selector("#jd-throughput svg.jd-tp text:has-text('now ')").text_content()
    shown = label.split("now ")[1].strip()
    moments = [datetime.now(ZoneInfo("Asia/Kathmandu")) - timedelta(minutes=m) for m in (0, 1, 2)]
    assert shown in [f"{m:%H:%M}" for m in moments], (label, [f"{m:%H:%M}" for m in moments])


def test_the_zone_switch_shows_the_console_in_the_browser_s_zone_and_back(browser, console):
    """The switch wrote the zone URL-encoded ("America%2FNew_York"), which the server took
    for an unknown zone: only UTC ever worked."""
    _, base = console
    context = browser.new_context(timezone_id="America/New_York", viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        page.goto(f"{base}/admin/login/")
        page.fill("#id_username", "ops")
        page.fill("#id_password", "pw-ops-console")
        page.click("input[type=submit]")
        page.wait_for_selector("#jd-index-link")
        page.goto(f"{base}/admin/jobs/job/dashboard/")
        assert page.get_attribute("#jd-zone-switch", "data-current") == "UTC"
        with page.expect_navigation():
            page.click("#jd-zone-switch")
        assert page.get_attribute("#jd-zone-switch", "data-current") == "America/New_York"
        assert page.get_attribute('meta[name="jd-zone"]', "content") == "America/New_York"
        page.locator("#jd-throughput .jd-when", has_text="times in America/New_York").wait_for()
        with page.expect_navigation():
            page.click("#jd-zone-switch")
        assert page.get_attribute("#jd-zone-switch", "data-current") == "UTC"
    finally:
        context.close()


def test_an_operator_retries_the_failed_jobs_of_a_filter_from_the_list(console, run_worker, screenshot):
    page, base = console
    failed = [
        submit("diagnostics.sleep", {"seconds": 0, "fail_mode": "user_fixable"}).job for _ in range(2)
    ]  # fmt: skip
    submit("diagnostics.sleep", {"seconds": 0, "fail_mode": "temporary"}, max_attempts=1)  # a dead letter: not retried
    run_worker()
    assert {Job.objects.get(pk=j.id).status for j in failed} == {Status.FAILED}
    page.goto(f"{base}/admin/jobs/job/?status__exact=failed")
    page.click("#jd-retry-failed-matching")
    page.locator("#jd-matching-count", has_text="2 failed jobs match").wait_for()
    assert {Job.objects.get(pk=j.id).status for j in failed} == {Status.FAILED}, "nothing before the yes"
    screenshot(page, "retry-failed-confirm")
    page.click("input[value='Yes, requeue 2']")
    page.wait_for_selector("text=Requeued 2 failed job(s).")
    assert {Job.objects.get(pk=j.id).status for j in failed} == {Status.QUEUED}
    assert Job.objects.filter(status=Status.DEAD_LETTER).count() == 1
    assert JobEvent.objects.filter(job__in=failed, actor__username="ops", message__startswith="requeued").count() == 2
    screenshot(page, "retry-failed-done")


def test_payload_search_finds_a_job_by_a_value_in_its_payload(console, screenshot):
    page, base = console
    wanted = submit("diagnostics.sleep", {"seconds": 0, "result": {"order": "ORD-55821", "customer": "C-981"}}).job
    other = submit("diagnostics.sleep", {"seconds": 0, "result": {"order": "ORD-10002", "customer": "C-17"}}).job
    page.goto(f"{base}/admin/jobs/job/")
    page.wait_for_selector(f"[data-job='{other.id}'][data-field=status]")
    page.fill("#searchbar", "ord-55821")
    page.press("#searchbar", "Enter")
    page.wait_for_url("**q=ord-55821**")
    page.wait_for_selector(f"[data-job='{wanted.id}'][data-field=status]")
    assert page.locator(f"[data-job='{other.id}']").count() == 0
    assert page.locator("#result_list tbody tr").count() == 1
    screenshot(page, "payload-search")


def test_django_rq_pages_say_what_they_count_and_throw_no_script_error(console, spawn, screenshot):
    """django-rq's pages call a jQuery plugin Django's admin no longer has (a TypeError
    on every load); Jobdesk's overrides drop that call, keep the checkboxes working, and
    say what the pages count."""
    page, base = console
    spawn("rqworker", *QUEUES)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    for path in ("/admin/django_rq/", "/admin/django_rq/workers/1/", "/admin/django_rq/queues/1/failed/"):
        page.goto(f"{base}{path}")
        page.wait_for_selector("#jd-rq-note")
        assert "not Jobdesk's job statuses" in page.inner_text("#jd-rq-note")
    page.goto(f"{base}/admin/django_rq/workers/1/")
    page.wait_for_selector("#result_list")
    screenshot(page, "django-rq-workers")
    assert errors == []


def test_a_jobs_log_lines_appear_live_on_its_page(console, spawn, screenshot):
    """What the handler logs (ctx.log and logging) shows on the job page while it runs."""
    page, base = console
    job = submit("diagnostics.sleep", {"seconds": 8, "steps": 8, "log_lines": 2}).job
    page.goto(f"{base}/admin/jobs/job/{job.id}/change/")
    page.wait_for_selector("#jd-live-job .jd-live.on")
    page.wait_for_selector("#jd-logs [data-logs=summary]:text-is('nothing logged')")
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


def test_a_batch_page_follows_its_progress_live_and_cancel_asks_first(console, spawn, screenshot):
    from jobs.core import batches
    from jobs.core.submit import JobSpec

    page, base = console
    batch, _ = batches.create_batch(
        [JobSpec("diagnostics.sleep", {"seconds": 1, "steps": 4})] * 4, description="four sleeps",
        on_complete="diagnostics.noop",
    )  # fmt: skip
    page.goto(f"{base}/admin/jobs/batch/{batch.id}/change/")
    page.wait_for_selector("#jd-batch .jd-live.on")
    assert percent(page, "#jd-batch [data-live=bar] .jd-pct") == 0
    spawn("rqworker", *QUEUES)
    page.wait_for_function(
        "parseFloat(document.querySelector('#jd-batch [data-live=bar] .jd-pct').textContent) > 0"
    )  # rising, without a reload
    page.wait_for_selector("#jd-batch [data-live=done]:not([hidden])", timeout=60_000)
    assert percent(page, "#jd-batch [data-live=bar] .jd-pct") == 100
    assert "4 complete" in page.inner_text("#jd-batch [data-live=counts]")
    screenshot(page, "batch-page")
    page.click("text=Cancel…")
    page.wait_for_selector("text=0 waiting job(s) will be canceled")
    page.click("input[type=submit]")
    page.wait_for_selector(".messagelist")
    batch.refresh_from_db()
    assert batch.complete_job is not None and Job.objects.filter(type="diagnostics.noop").count() == 1
