"""The job list's bulk retry of failed jobs over a filter (count first, capped) and its
payload search."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from jobs.console import views
from jobs.core.models import Job, JobEvent, PayloadText, Status
from jobs.core.submit import JobSpec, submit, submit_many

pytestmark = pytest.mark.django_db

LIST = "/admin/jobs/job/"


@pytest.fixture
def client(django_user_model) -> Client:
    boss = django_user_model.objects.create_superuser("boss", password="pw-boss")
    client = Client()
    client.force_login(boss)
    return client


def failed_jobs(count: int, run_worker, owner=None) -> list[Job]:
    specs = [JobSpec("diagnostics.sleep", {"seconds": 0, "fail_mode": "user_fixable"})] * count
    jobs = [r.job for r in submit_many(specs, owner=owner)]
    run_worker()
    assert {Job.objects.get(pk=j.id).status for j in jobs} == {Status.FAILED}
    return jobs


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def test_retry_of_every_failed_job_matching_the_filter_counts_first(client, alice, bob, run_worker):
    alices = failed_jobs(3, run_worker, owner=alice)
    bobs = failed_jobs(2, run_worker, owner=bob)
    dead = submit("diagnostics.sleep", {"seconds": 0, "fail_mode": "temporary"}, max_attempts=1, owner=alice).job
    run_worker()
    assert Job.objects.get(pk=dead.id).status == Status.DEAD_LETTER

    # The list links it with its own filter.
    query = f"owner__id__exact={alice.id}"
    listing = client.get(LIST + "?" + query).content.decode()
    link = reverse("admin:jobs_retry_failed_matching") + "?" + query
    assert link in listing and "Retry every failed job matching this filter" in listing

    page = client.get(link).content.decode()
    assert "<strong>3</strong> failed jobs match" in page, "alice's failed jobs only, not her dead letter"
    assert {Job.objects.get(pk=j.id).status for j in alices} == {Status.FAILED}, "nothing before the yes"
    done = client.post(link, follow=True)
    assert "Requeued 3 failed job(s)." in messages_of(done)
    assert {Job.objects.get(pk=j.id).status for j in alices} == {Status.QUEUED}
    assert {Job.objects.get(pk=j.id).status for j in bobs} == {Status.FAILED}
    assert Job.objects.get(pk=dead.id).status == Status.DEAD_LETTER
    assert JobEvent.objects.filter(job__in=alices, actor__username="boss", message__startswith="requeued").count() == 3


def test_retry_of_failed_jobs_is_capped_oldest_first(client, run_worker, monkeypatch):
    jobs = failed_jobs(3, run_worker)
    monkeypatch.setattr(views, "REQUEUE_AT_ONCE", 2)
    url = reverse("admin:jobs_retry_failed_matching")
    page = client.get(url).content.decode()
    assert "<strong>3</strong> failed jobs match" in page
    assert "requeues the <strong>2</strong> that finished longest ago" in page and 'value="Yes, requeue 2"' in page
    done = client.post(url, follow=True)
    assert "Requeued 2 failed job(s)." in messages_of(done)
    oldest = sorted(Job.objects.filter(pk__in=[j.id for j in jobs]), key=lambda j: j.finished_at or j.created_at)
    statuses = [Job.objects.get(pk=j.id).status for j in jobs]
    assert statuses.count(Status.QUEUED) == 2 and statuses.count(Status.FAILED) == 1
    assert Job.objects.get(pk=oldest[-1].id).status == Status.FAILED, "the latest failure waits for the next run"


def test_read_only_operators_cannot_retry(watcher, run_worker):
    job = failed_jobs(1, run_worker)[0]
    client = Client()
    client.force_login(watcher)
    url = reverse("admin:jobs_retry_failed_matching")
    assert "jd-retry-failed-matching" not in client.get(LIST).content.decode()
    assert 'value="Yes, requeue' not in client.get(url).content.decode()
    assert client.post(url).status_code == 403
    assert Job.objects.get(pk=job.id).status == Status.FAILED


def test_payload_search_finds_a_job_by_a_value_in_its_payload(client):
    order = submit("diagnostics.sleep", {"seconds": 0, "result": {"order": "ORD-77123", "customer": 904512}}).job
    other = submit("diagnostics.sleep", {"seconds": 0, "result": {"order": "ORD-10001", "customer": 1}}).job

    def found(term: str) -> set:
        response = client.get(LIST, {"q": term, "system": "all"})
        assert response.status_code == 200
        return {job.id for job in response.context["cl"].result_list}

    assert found("ORD-77123") == {order.id}
    assert found("ord-77123") == {order.id}, "case-insensitive"
    assert found("904512") == {order.id}, "a number in the payload"
    assert found("ORD-") == {order.id, other.id}
    assert found("no-such-order") == set()
    # The search it had keeps working: a job id finds the job; words find types.
    assert found(str(other.id)) == {other.id}
    assert found("diagnostics") == {order.id, other.id}


def test_a_search_finds_system_jobs_ids_by_their_start_and_uuids_in_payloads(client):
    """As a newcomer searched: an id's first 8 digits (as the list shows ids), a UUID kept
    in payloads, a value in a completed system job's payload (hidden from the list until
    searched for)."""
    from jobs.core import lifecycle

    customer = "5eaf6745-1c2d-4e5f-9a8b-7c6d5e4f3a2b"
    mine = submit("diagnostics.sleep", {"seconds": 0, "result": {"customer": customer}}).job
    system = submit("diagnostics.sleep", {"seconds": 0, "result": {"material_id": 40417}}).job
    Job.objects.filter(pk=system.id).update(type="jobs.prune_jobs")  # a completed system run
    lifecycle.claim(system.id, system.rq_job_id, "w")
    lifecycle.complete(system.id, system.rq_job_id, {})

    def found(term: str) -> set:
        response = client.get(LIST, {"q": term})
        assert response.status_code == 200
        return {job.id for job in response.context["cl"].result_list}

    assert system.id not in {job.id for job in client.get(LIST).context["cl"].result_list}, "hidden until searched"
    assert found("40417") == {system.id}
    assert found(customer) == {mine.id}
    assert found(customer.replace("-", "").upper()) == {mine.id}, "a UUID in another spelling, in payloads too"
    for cut in range(8, 37):  # every start of the id as shown, and of its 32 digits
        assert found(str(mine.id)[:cut]) == {mine.id}, str(mine.id)[:cut]
        assert found(mine.id.hex[: min(cut, 32)]) == {mine.id}, mine.id.hex[:cut]
    listed = client.get(LIST, {"q": "40417"}).content.decode()
    sidebar = listed[listed.index('data-filter-title="system jobs"') :]
    selected = sidebar[sidebar.index('class="selected"') :]
    assert selected.index("all runs") < selected.index("</li>"), "the sidebar says what the list shows"


def test_only_system_jobs_stays_so_with_a_search_and_for_the_retry_of_the_matching(client):
    """A search shows system runs too, but "only system jobs" still means only them: the
    bulk retry of the failed jobs matching the filter must not take the others along."""
    from django.urls import reverse

    from jobs.core import lifecycle

    def failed(job_type: str) -> Job:
        job = submit("diagnostics.sleep", {"seconds": 0}).job
        Job.objects.filter(pk=job.id).update(type=job_type)
        lifecycle.claim(job.id, job.rq_job_id, "w")
        lifecycle.fail(job.id, job.rq_job_id, category="user_fixable", message="disk quota exceeded")
        return job

    system, mine = failed("jobs.prune_jobs"), failed("diagnostics.sleep")
    searched = client.get(LIST, {"system": "only", "q": "quota"}).context["cl"].result_list
    assert {job.id for job in searched} == {system.id}
    page = client.get(reverse("admin:jobs_retry_failed_matching") + "?system=only&q=quota").content.decode()
    assert "<strong>1</strong> failed job" in page
    assert {job.id for job in client.get(LIST, {"q": "quota"}).context["cl"].result_list} == {system.id, mine.id}


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the trigram index is PostgreSQL's")
def test_the_payload_search_uses_the_trigram_index():
    from django.db.models import Q

    from jobs.insight import payload_search

    plan = _plan_without_row_scans(PayloadText.objects.filter(text__icontains="ORD-77123"))
    assert "payloadtext_trgm" in plan, plan
    found = submit("diagnostics.sleep", {"seconds": 1, "result": "ORD-77123"}).job
    assert list(payload_search.matching(Job.objects.all(), "ord-77123", Q(pk__in=[]))) == [found]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the trigram indexes are PostgreSQL's")
def test_every_part_of_a_word_search_has_an_index():
    """Type, key, error message and payload each read an index, so a search over a
    million jobs combines index scans instead of reading rows."""
    from jobs.console.admin import _text_search
    from jobs.insight import payload_search

    submit("diagnostics.sleep", {"seconds": 1, "result": "gateway timeout"})  # a payload it finds, by its key
    plan = _plan_without_row_scans(payload_search.matching(Job.objects.order_by(), "gateway", _text_search("gateway")))
    # Which index the error branch takes (its trigrams, or the errored statuses) is the
    # planner's choice by the table's statistics; no branch needs a scan of the rows.
    assert "BitmapOr" in plan and "jobs_job_pkey" in plan and "Seq Scan" not in plan, plan


def test_a_term_in_many_payloads_is_asked_of_each_job_instead_of_listing_them(monkeypatch):
    """A common term (a key's name) would make a list of ids as long as the table: past
    MANY matches, each job the list reads is looked up instead (the same answer)."""
    from django.db.models import Q

    from jobs.insight import payload_search

    jobs = [submit("diagnostics.sleep", {"seconds": 1, "result": f"customer {n}"}).job for n in range(3)]
    submit("diagnostics.sleep", {"seconds": 2})
    few = set(payload_search.matching(Job.objects.all(), "CUSTOMER", Q(pk__in=[])))
    monkeypatch.setattr(payload_search, "MANY", 2)
    many = payload_search.matching(Job.objects.all(), "CUSTOMER", Q(pk__in=[]))
    assert "EXISTS" in str(many.query)
    assert few == set(many) == set(jobs)


def _plan_without_row_scans(queryset) -> str:
    """The plan when reading rows in order is off the table. On a near-empty test table the
    planner may otherwise walk any ordered index (e.g. ``job_created``) and filter, which
    says nothing about whether the search has an index of its own."""
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        cursor.execute("SET enable_indexscan = off")
        try:
            return queryset.explain()
        finally:
            cursor.execute("RESET enable_seqscan")
            cursor.execute("RESET enable_indexscan")
