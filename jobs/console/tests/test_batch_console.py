"""The console's batches through Django's test client: the list, the page (counts,
callbacks, links to its jobs), the job list's batch filter and column, the job page's
batch, and the acts behind a confirmation — for those who may act only."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from jobs.core import batches, lifecycle, outcomes
from jobs.core.models import Job, Status
from jobs.core.submit import JobSpec, submit
from jobs.core.tests import batchtasks

pytestmark = pytest.mark.django_db


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def batch(alice):
    made, submitted = batches.create_batch(
        [JobSpec("diagnostics.noop")] * 3, owner=alice, description="nightly import", on_complete=batchtasks.CALLBACK
    )
    first = submitted[0].job
    first.refresh_from_db()
    lifecycle.claim(first.id, first.rq_job_id, "w")
    outcomes.finished(lifecycle.complete(first.id, first.rq_job_id, None))
    return made


def test_the_batch_list_shows_state_progress_and_counts(operator, batch):
    page = client_for(operator).get(reverse("admin:jobs_batch_changelist")).content.decode()
    assert "nightly import" in page
    assert f'data-batch="{batch.id}" data-field="progress"' in page and "33.3%" in page
    assert "3 job(s): 2 queued, 1 complete" in page and "running" in page


def test_the_batch_page_shows_counts_callbacks_its_jobs_and_buttons(operator, batch):
    page = client_for(operator).get(reverse("admin:jobs_batch_change", args=[batch.id])).content.decode()
    assert 'id="jd-batch"' in page and f'data-batch-id="{batch.id}"' in page  # the live panel
    assert "1 complete" in page and "2 queued" in page
    assert batchtasks.CALLBACK in page and "not submitted yet" in page
    assert f"?batch={batch.id}" in page
    assert reverse("admin:jobs_batch_act", args=[batch.id, "cancel"]) in page
    assert reverse("admin:jobs_batch_act", args=[batch.id, "retry-failed"]) in page


def test_the_job_list_filters_by_batch_and_links_each_jobs_batch(operator, batch, alice):
    outsider = submit("diagnostics.noop", owner=alice).job
    client = client_for(operator)
    filtered = client.get(reverse("admin:jobs_job_changelist"), {"batch": str(batch.id)})
    shown = {str(job.id) for job in filtered.context["cl"].result_list}
    assert shown == {str(j) for j in Job.objects.filter(batch=batch).values_list("id", flat=True)}
    assert str(outsider.id) not in shown
    assert reverse("admin:jobs_batch_change", args=[batch.id]) in filtered.content.decode()
    assert client.get(reverse("admin:jobs_job_changelist"), {"batch": "nope"}).status_code in (200, 302)
    member = Job.objects.filter(batch=batch).first()
    page = client.get(reverse("admin:jobs_job_change", args=[member.id])).content.decode()
    assert reverse("admin:jobs_batch_change", args=[batch.id]) in page


def test_cancel_asks_first_then_cancels_the_waiting_jobs(operator, batch):
    client = client_for(operator)
    url = reverse("admin:jobs_batch_act", args=[batch.id, "cancel"])
    asked = client.get(url).content.decode()
    assert "2 waiting job(s) will be canceled" in asked
    assert Job.objects.filter(batch=batch, status=Status.QUEUED).count() == 2  # nothing yet
    response = client.post(url)
    assert response.status_code == 302
    assert set(Job.objects.filter(batch=batch).values_list("status", flat=True)) == {Status.COMPLETE, Status.CANCELED}
    batch.refresh_from_db()
    assert batch.closed_at and batch.completed_at and batch.complete_job  # the callback followed


def test_read_only_operators_see_batches_without_buttons_and_cannot_act(watcher, batch):
    client = client_for(watcher)
    page = client.get(reverse("admin:jobs_batch_change", args=[batch.id])).content.decode()
    assert "nightly import" in page and "Cancel…" not in page
    assert client.post(reverse("admin:jobs_batch_act", args=[batch.id, "cancel"])).status_code == 403
    assert client.get(reverse("admin:jobs_batch_act", args=[batch.id, "cancel"])).status_code == 403
    assert client.post(reverse("admin:jobs_batch_change", args=[batch.id])).status_code in (403, 405)
    assert Job.objects.filter(batch=batch, status=Status.QUEUED).count() == 2


def test_ordinary_users_do_not_get_in(alice, batch):
    response = client_for(alice).get(reverse("admin:jobs_batch_change", args=[batch.id]))
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_a_batch_page_for_an_id_that_is_not_one_is_a_404(operator, batch):
    client = client_for(operator)
    assert client.get(f"/admin/jobs/batch/{batch.pk}/change/").status_code == 200
    for bad in ("99", "abc", "%F0%9F%98%80", "00000000-0000-0000-0000-000000000000"):
        assert client.get(f"/admin/jobs/batch/{bad}/change/").status_code == 404, bad
