"""Heavy jobs wait for the work window: at submit, at claim, and when windows change."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from django.utils import timezone

from conftest import wait_for
from jobs.core import queueing
from jobs.core.models import Job, Status
from jobs.core.submit import submit
from workwindow.models import WorkWindow

pytestmark = pytest.mark.django_db


def window_opening_in(seconds: float, hours: float = 1) -> WorkWindow:
    """A UTC window opening ``seconds`` from now (to the second) and lasting ``hours``."""
    opens = (timezone.now() + timedelta(seconds=seconds)).astimezone(UTC).replace(microsecond=0)
    closes = opens + timedelta(hours=hours)
    return WorkWindow.objects.create(name=f"w{opens:%H%M%S}", time_zone="UTC", start_time=opens.time(),
                                     end_time=closes.time())  # fmt: skip


def opening_of(window: WorkWindow) -> datetime:
    today = timezone.now().astimezone(UTC).date()
    at = datetime.combine(today, window.start_time, tzinfo=UTC)
    return at if at >= timezone.now() - timedelta(hours=1) else at + timedelta(days=1)


def test_without_windows_heavy_jobs_run_at_once():
    assert submit("diagnostics.noop", heavy=True).job.status == Status.QUEUED


@pytest.mark.redis
def test_heavy_job_submitted_while_closed_is_deferred_to_the_opening():
    window = window_opening_in(3600)
    heavy = submit("diagnostics.noop", heavy=True).job
    light = submit("diagnostics.noop").job
    assert light.status == Status.QUEUED
    assert heavy.status == Status.DEFERRED and heavy.scheduled_for == opening_of(window)
    assert [j.id for j in queueing.scheduler().get_jobs()] == [heavy.rq_job_id]


def test_deferred_job_is_enqueued_at_the_opening_and_runs(run_worker, scheduler_tick):
    window = window_opening_in(2)
    job = submit("diagnostics.noop", heavy=True).job
    assert job.status == Status.DEFERRED
    run_worker()
    assert Job.objects.get(pk=job.id).status == Status.DEFERRED  # not before the opening

    def ran():
        scheduler_tick()
        run_worker()
        return Job.objects.get(pk=job.id).status == Status.COMPLETE

    wait_for(ran, timeout=15, what="the deferred job to run at the opening")
    job.refresh_from_db()
    assert job.started_at >= opening_of(window) and job.attempts == 1


def test_window_closed_by_claim_time_defers_without_spending_an_attempt(run_worker):
    job = submit("diagnostics.noop", heavy=True).job  # no window yet: queued
    window = window_opening_in(3600)  # now a window exists and is closed
    run_worker()
    job.refresh_from_db()
    assert job.status == Status.DEFERRED and job.attempts == 0
    assert job.scheduled_for == opening_of(window)
    assert job.events.filter(to_status=Status.DEFERRED, message__contains="work window closed").exists()


def test_editing_or_disabling_a_window_reschedules_deferred_jobs(run_worker):
    window = window_opening_in(3600)
    job = submit("diagnostics.noop", heavy=True).job
    window.start_time = time((window.start_time.hour + 2) % 24, window.start_time.minute, window.start_time.second)
    window.end_time = time((window.start_time.hour + 1) % 24, window.start_time.minute)
    window.save()
    job.refresh_from_db()
    assert job.status == Status.DEFERRED and job.scheduled_for == opening_of(window)
    assert [j.id for j in queueing.scheduler().get_jobs()] == [job.rq_job_id]  # the old entry withdrawn

    window.enabled = False
    window.save()
    job.refresh_from_db()
    assert job.status == Status.QUEUED
    run_worker()
    assert Job.objects.get(pk=job.id).status == Status.COMPLETE


def test_work_window_api_is_for_staff(api_as, alice, operator):
    body = {"name": "nights", "time_zone": "Europe/Kyiv", "start_time": "22:00", "end_time": "06:00",
            "weekdays": [0, 1, 2, 3, 4]}  # fmt: skip
    assert api_as(alice).post("/api/work-windows/", body, format="json").status_code == 403
    created = api_as(operator).post("/api/work-windows/", body, format="json")
    assert created.status_code == 201
    window_id = created.json()["id"]
    patched = api_as(operator).patch(f"/api/work-windows/{window_id}/", {"enabled": False}, format="json")
    assert patched.status_code == 200 and patched.json()["enabled"] is False
    bad = api_as(operator).post("/api/work-windows/", {**body, "name": "x", "time_zone": "Mars/Olympus"}, format="json")
    assert bad.status_code == 400 and "time_zone" in bad.json()["error"]["fields"]
    bad_days = api_as(operator).post("/api/work-windows/", {**body, "name": "y", "weekdays": [9]}, format="json")
    assert bad_days.status_code == 400 and "weekdays" in bad_days.json()["error"]["fields"]


def test_admin_previews_the_next_openings(client, operator):
    operator.is_superuser = True
    operator.save()
    client.force_login(operator)
    window = WorkWindow.objects.create(name="nights", time_zone="Europe/Kyiv", start_time=time(22),
                                       end_time=time(6))  # fmt: skip
    page = client.get(f"/admin/workwindow/workwindow/{window.id}/change/").content.decode()
    assert page.count("→") >= 5  # five openings listed


@pytest.mark.redis
def test_a_window_edit_keeps_a_heavy_jobs_run_at():
    window = window_opening_in(3600)
    run_at = timezone.now() + timedelta(days=2)
    job = submit("diagnostics.noop", heavy=True, run_at=run_at).job
    assert job.status == Status.DEFERRED and job.scheduled_for >= run_at
    window.name = "renamed"
    window.save()
    assert Job.objects.get(pk=job.id).scheduled_for >= run_at
    window.delete()  # no window any more: it waits for its run_at, not for nothing
    job.refresh_from_db()
    assert job.status == Status.DEFERRED and job.scheduled_for == run_at


def test_a_cancel_between_claim_and_window_check_is_no_crash(run_worker, monkeypatch):
    from jobs.core import actions, window

    job = submit("diagnostics.noop", heavy=True).job
    window_opening_in(3600)
    original = window.defer_if_closed

    def cancel_first(claimed, dispatch):
        actions.cancel(claimed.id, reason="raced")
        return original(claimed, dispatch)

    monkeypatch.setattr(window, "defer_if_closed", cancel_first)
    run_worker()  # must not raise out of the worker
    assert Job.objects.get(pk=job.id).status == Status.CANCELED


@pytest.mark.parametrize(
    "field, value",
    [("time_zone", "America"), ("time_zone", "Etc"), ("time_zone", "x" * 300), ("weekdays", [True]),
     ("weekdays", []), ("start_time", "25:00")],
)  # fmt: skip
def test_bad_window_input_is_400(api_as, operator, field, value):
    body = {"name": "w", "time_zone": "UTC", "start_time": "22:00", "end_time": "06:00", field: value}
    response = api_as(operator).post("/api/work-windows/", body, format="json")
    assert response.status_code == 400 and field in response.json()["error"]["fields"]


@pytest.mark.redis
def test_a_pass_that_read_windows_changed_since_goes_again_with_the_new_ones(monkeypatch):
    """Concurrent edits: a pass that read the windows before another edit committed could
    write last, leaving jobs at openings the window no longer had (a week late)."""
    from jobs.core import opening
    from jobs.core import window as work_window

    edited = window_opening_in(3600)
    job = submit("diagnostics.noop", heavy=True).job
    before = work_window.current()
    later = time((edited.start_time.hour + 2) % 24, edited.start_time.minute, edited.start_time.second)
    # Another request's edit, committed while this pass ran on what it had read before.
    WorkWindow.objects.filter(pk=edited.pk).update(start_time=later, end_time=time((later.hour + 1) % 24))
    reads = iter([before])
    monkeypatch.setattr(work_window, "current", lambda: next(reads, None) or opening.current())
    work_window.reschedule_deferred()
    job.refresh_from_db()
    assert job.scheduled_for == opening_of(WorkWindow.objects.get(pk=edited.pk)), "the committed window's opening"
