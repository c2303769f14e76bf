"""Flow control's rules, gate and release against the database (fast layer: no Redis,
no commit — the follow-ups that would reach Redis never run)."""

from __future__ import annotations

import pytest

from conftest import past_job
from jobs.core import flow, rates, registry
from jobs.core.errors import InvalidInput, SubmitError
from jobs.core.models import FlowChange, FlowControl, Hold, Job, Status
from jobs.upkeep import reconcile

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_flow_rules")]

QUEUE, TYPE = FlowControl.Kind.QUEUE, FlowControl.Kind.TYPE


@pytest.fixture
def limited_type(make_limited_type):
    return make_limited_type("test.limited", concurrency=2)


def queued(job_type="diagnostics.noop", **fields) -> Job:
    return past_job(type=job_type, status=Status.QUEUED, rq_job_id=f"d-{Job.objects.count()}", **fields)


# --- rates -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, count, seconds",
    [("100/minute", 100, 60), ("5/2s", 5, 2), ("1000 / hour", 1000, 3600), ("3/0.5s", 3, 0.5), ("7/day", 7, 86400)],
)
def test_rates_parse(text, count, seconds):
    assert rates.parse(text) == rates.Rate(count, seconds)


@pytest.mark.parametrize(
    "text", ["", "fast", "0/minute", "5/0s", "5/fortnight", "-1/s", "5 per minute", "1/3000000d", "1/367d", "\u0663/s"]
)
def test_malformed_rates_are_refused_with_the_hint(text):
    with pytest.raises(ValueError, match="e.g."):
        rates.parse(text)


def test_a_rate_s_period_reaches_a_year_at_most():
    """ "1/3000000d" was accepted, and the ETA of a second job held behind it was a time
    past datetime's range: every submit, job page and queue overview answered 500."""
    assert rates.parse("1/366d") == rates.Rate(1, 366 * 86400)


def test_a_rate_stored_before_the_limit_is_held_to_a_year_not_dropped():
    """Refused when read back, a stored "1/3000000d" would have meant no limit at all."""
    assert rates.parse("1/3000000d", stored=True) == rates.Rate(1, rates.MAX_PERIOD_SECONDS)


def test_an_estimate_reaches_a_century_at_most():
    from datetime import UTC, datetime

    from jobs.insight.estimates import _later

    now = datetime(2026, 11, 30, tzinfo=UTC)
    assert _later(now, 1e15).year == 2126  # not an OverflowError
    assert _later(now, 60).minute == 1


def test_a_rate_is_a_sliding_window_not_a_counter_per_period():
    rate = rates.Rate(5, 2)
    starts = [10.0, 10.5, 11.0, 11.5, 11.9]
    assert not rate.allows(starts, 12.0)  # five in the last 2 s
    assert rate.allows(starts, 12.01)  # the first has left the window
    assert rate.free(starts, 13.6) == 4 and rate.free([], 0) == 5


# --- rules ---------------------------------------------------------------------------------


def test_the_code_limit_applies_until_an_operator_sets_one_and_again_after_a_reset(limited_type):
    assert flow.rules().for_type(limited_type).concurrency == 2
    flow.set_limits(limited_type, concurrency=5, rate="10/minute", actor_label="t")
    assert flow.rules().for_type(limited_type) == flow.TypeRule(concurrency=5, rate=rates.Rate(10, 60))
    flow.set_limits(limited_type, concurrency=None, actor_label="t")  # no limit, on purpose
    assert flow.rules().for_type(limited_type).concurrency is None
    flow.reset_limits(limited_type, actor_label="t")
    assert flow.rules().for_type(limited_type) == flow.TypeRule(concurrency=2)


def test_nothing_to_check_when_no_lever_and_no_code_limit_exists():
    assert not flow.rules().restrict_anything()
    flow.pause(QUEUE, "low", actor_label="t")
    assert flow.rules().restrict_anything()


@pytest.mark.parametrize(
    "change, field",
    [
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": -3}, "concurrency"),
        ({"concurrency": "3"}, "concurrency"),
        ({"concurrency": True}, "concurrency"),
        ({"rate": "lots"}, "rate"),
        ({"rate": 5}, "rate"),
        ({"rate": "1" + " " * 50 + "/minute"}, "rate"),  # read by the parser, longer than the column
        ({"rate": "0" * 50 + "1/minute"}, "rate"),
    ],
)
def test_bad_limits_are_400s_naming_the_field(change, field):
    with pytest.raises(InvalidInput) as refused:
        flow.set_limits("diagnostics.noop", **change)
    assert refused.value.field == field and refused.value.hint
    assert not FlowChange.objects.exists()


def test_levers_exist_only_for_known_queues_and_types():
    with pytest.raises(InvalidInput, match="urgent") as refused:
        flow.pause(QUEUE, "urgent")
    assert refused.value.field == "name" and refused.value.hint == "Queues: immediate, normal, low."
    with pytest.raises(SubmitError, match="no.such.type") as unknown:
        flow.pause(TYPE, "no.such.type")
    assert "diagnostics.noop" in unknown.value.hint


def test_a_code_limit_that_makes_no_sense_fails_at_registration():
    with pytest.raises(ValueError, match="concurrency"):
        registry.job_type("test.bad", concurrency=0)
    with pytest.raises(ValueError, match="e.g."):
        registry.job_type("test.bad", rate="often")


# --- the gate ------------------------------------------------------------------------------


def test_a_job_of_a_paused_queue_is_held_without_spending_an_attempt():
    job = queued()
    dispatch = job.rq_job_id
    flow.pause(QUEUE, job.priority, actor_label="t", reason="fixing the database")
    assert flow.claim(job.id, dispatch, "w") is None
    job.refresh_from_db()
    assert (job.status, job.hold, job.attempts) == (Status.QUEUED, Hold.QUEUE_PAUSED, 0)
    assert job.held_at is not None and job.rq_job_id != dispatch  # the old dispatch can claim nothing
    assert job.events.filter(message="held: queue normal is paused").exists()


def test_a_paused_type_is_held_and_other_types_are_claimed():
    paused, other = queued("diagnostics.sleep"), queued("diagnostics.noop")
    flow.pause(TYPE, "diagnostics.sleep", actor_label="t")
    assert flow.claim(paused.id, paused.rq_job_id, "w") is None
    assert flow.claim(other.id, other.rq_job_id, "w").status == Status.ACTIVE
    assert Job.objects.get(pk=paused.id).hold == Hold.TYPE_PAUSED


def test_the_concurrency_limit_counts_active_rows(limited_type):
    jobs = [queued(limited_type) for _ in range(3)]
    assert flow.claim(jobs[0].id, jobs[0].rq_job_id, "w").status == Status.ACTIVE
    assert flow.claim(jobs[1].id, jobs[1].rq_job_id, "w").status == Status.ACTIVE
    assert flow.claim(jobs[2].id, jobs[2].rq_job_id, "w") is None
    held = Job.objects.get(pk=jobs[2].id)
    assert held.hold == Hold.CONCURRENCY and held.attempts == 0
    assert held.events.filter(message="held: 2 of at most 2 active").exists()


def test_a_canceled_run_keeps_its_slot_until_it_has_stopped(limited_type, django_capture_on_commit_callbacks):
    """Canceled while it runs, a run may go on until its worker's renewal is refused (a
    fork=False handler that never looks at is_canceled): its slot is handed on only
    once the run gives its lease back."""
    from jobs.core import actions, leases

    flow.set_limits(limited_type, concurrency=1, actor_label="t")
    running, waiting = queued(limited_type), queued(limited_type)
    assert flow.claim(running.id, running.rq_job_id, "w").status == Status.ACTIVE
    actions.cancel(running.id)
    assert leases.still_running(running.id)
    assert flow.claim(waiting.id, waiting.rq_job_id, "w") is None
    assert Job.objects.get(pk=waiting.id).hold == Hold.CONCURRENCY
    assert flow.release_held() == 0
    shown = flow.describe_type(limited_type)
    assert (shown["active"], shown["stopping"]) == (0, 1)  # what holds the slot is shown
    with django_capture_on_commit_callbacks(execute=True):
        assert leases.release(running.id, running.rq_job_id)  # the run has stopped
        flow.slot_freed(limited_type)
    waiting.refresh_from_db()
    assert (waiting.status, waiting.hold) == (Status.QUEUED, "") and waiting.held_at is not None
    assert flow.describe_type(limited_type)["stopping"] == 0


def test_a_rate_limit_holds_the_start_that_would_overflow_its_window():
    flow.set_limits("diagnostics.noop", rate="2/hour", actor_label="t")
    jobs = [queued() for _ in range(3)]
    assert [bool(flow.claim(j.id, j.rq_job_id, "w")) for j in jobs] == [True, True, False]
    assert Job.objects.get(pk=jobs[2].id).hold == Hold.RATE
    assert len(FlowControl.objects.get(kind=TYPE, name="diagnostics.noop").rate_starts) == 2


def test_a_stale_dispatch_is_refused_as_before():
    from jobs.core.errors import TransitionError

    job = queued()
    flow.pause(QUEUE, "low", actor_label="t")  # something to check: the slow path
    with pytest.raises(TransitionError):
        flow.claim(job.id, "stale", "w")


# --- release -------------------------------------------------------------------------------


def _hold_all(jobs) -> None:
    for job in jobs:
        assert flow.claim(job.id, job.rq_job_id, "w") is None


def test_resume_releases_held_jobs_in_line_order(django_capture_on_commit_callbacks):
    jobs = [queued() for _ in range(3)]
    flow.pause(QUEUE, "normal", actor_label="t")
    _hold_all(jobs)
    with django_capture_on_commit_callbacks() as callbacks:
        flow.resume(QUEUE, "normal", actor_label="t")
    callbacks[0]()  # the release pass, as it runs once the resume commits
    for job in jobs:
        job.refresh_from_db()
        assert (job.status, job.hold) == (Status.QUEUED, "") and job.held_at is not None  # on its way
    released = list(Job.objects.filter(events__message__startswith="released").order_by("events__id"))
    assert [j.id for j in released] == [j.id for j in sorted(jobs, key=lambda j: j.enqueued_at)]


def test_release_fills_only_the_free_slots(limited_type):
    running = queued(limited_type)
    flow.claim(running.id, running.rq_job_id, "w")
    waiting = [queued(limited_type) for _ in range(3)]
    flow.set_limits(limited_type, concurrency=1, actor_label="t")
    _hold_all(waiting)
    assert flow.release_held() == 0  # the one slot is taken
    flow.set_limits(limited_type, concurrency=3, actor_label="t")
    assert flow.release_held() == 2  # two free slots
    assert flow.release_held() == 0  # the released two are on their way: they count
    assert Job.objects.filter(hold=Hold.CONCURRENCY).count() == 1


def test_a_paused_type_stays_held_when_its_queue_resumes():
    job = queued("diagnostics.sleep")
    flow.pause(TYPE, "diagnostics.sleep", actor_label="t")
    _hold_all([job])
    assert flow.release_held() == 0
    flow.resume(TYPE, "diagnostics.sleep", actor_label="t")
    assert flow.release_held() == 1


def test_every_change_is_in_the_audit_trail(operator):
    flow.pause(QUEUE, "low", actor=operator, reason="partner outage")
    flow.resume(QUEUE, "low", actor=operator)
    flow.set_limits("diagnostics.noop", concurrency=3, actor=operator, reason="protect the API")
    changes = list(FlowChange.objects.order_by("id"))
    assert [(c.control.name, c.action, c.who) for c in changes] == [
        ("low", "paused", operator.username),
        ("low", "resumed", operator.username),
        ("diagnostics.noop", "limits", operator.username),
    ]
    assert changes[0].reason == "partner outage" and changes[0].after["paused"] is True
    assert changes[2].before["concurrency"] == "code" and changes[2].after["concurrency"] == 3


def test_the_reconciler_does_not_take_held_jobs_for_missing_ones():
    from datetime import timedelta

    from django.utils import timezone

    job = queued()
    flow.pause(QUEUE, "normal", actor_label="t")
    _hold_all([job])
    report = reconcile.Report()
    reconcile._restore_missing_dispatches(set(), timezone.now() + timedelta(seconds=1), report)
    assert report.requeued == [] and Job.objects.get(pk=job.id).hold == Hold.QUEUE_PAUSED


# --- the command --------------------------------------------------------------------------


def test_the_flow_command_moves_levers_and_names_itself_in_the_audit(limited_type):
    from io import StringIO

    from django.core.management import CommandError, call_command

    out = StringIO()
    call_command("flow", "pause", "queue", "low", "--reason", "db work", stdout=out)
    assert "queue low        PAUSED by manage.py flow (" in out.getvalue() and ": db work" in out.getvalue()
    assert FlowChange.objects.get().who.startswith("manage.py flow (")
    call_command("flow", "limit", limited_type, "--concurrency", "none", "--rate", "3/s", stdout=StringIO())
    assert flow.rules().for_type(limited_type) == flow.TypeRule(concurrency=None, rate=rates.Rate(3, 1))
    call_command("flow", "reset", limited_type, stdout=StringIO())
    assert flow.rules().for_type(limited_type).concurrency == 2
    with pytest.raises(CommandError, match="e.g."):
        call_command("flow", "limit", limited_type, "--rate", "often")
    for odd in ("-1", "9" * 5000, "\u00b2"):  # int() refuses 4,300+ digits, and '²' passes isdigit()
        with pytest.raises(CommandError, match="whole number"):
            call_command("flow", "limit", limited_type, "--concurrency", odd)
    with pytest.raises(CommandError, match="Known types: .*jobs.reconcile"):  # internal ones too: levers move them
        call_command("flow", "pause", "type", "no.such")
