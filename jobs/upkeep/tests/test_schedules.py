"""Cron schedules as data (synced from code, edited, fired once per tick), their times
across DST changes, the scheduler's heartbeat and health."""

from __future__ import annotations

import signal
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from conftest import past_job, wait_for
from jobs.core import cron_times, queueing, registry
from jobs.core.errors import InvalidInput, SubmitError
from jobs.core.models import Job, Schedule, Status
from jobs.upkeep import schedules

pytestmark = pytest.mark.django_db

CODE_ENTRIES = {"reconcile", "scheduler-heartbeat", "prune-events", "prune-jobs", "stats-rollup", "ingestion.cleanup"}
KYIV = "Europe/Kyiv"


@pytest.fixture
def temporary_cron():
    registry.cron("tests.temporary", "*/5 * * * *", "diagnostics.noop")
    yield "tests.temporary"
    registry._crons.pop("tests.temporary", None)


@pytest.fixture
def nothing_else_due():
    """The code's entries, synced when the test database was migrated, come due once the
    run is a minute older than that database: a test that fires what is due *now* moves
    them out of its way (inside its own transaction)."""
    Schedule.objects.update(next_run_at=timezone.now() + timedelta(days=1))


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def local(moment: datetime, zone: str = KYIV) -> str:
    return moment.astimezone(cron_times.zone(zone)).strftime("%m-%d %H:%M%z")


# --- times across DST ----------------------------------------------------------------------
# Reference: Kyiv moves 03:00 EET → 04:00 EEST on 2026-03-29 (01:00 UTC) and 04:00 EEST →
# 03:00 EET on 2026-10-25 (01:00 UTC); New York 02:00 → 03:00 on 2026-03-08 (07:00 UTC).


@pytest.mark.parametrize(
    ("expression", "zone", "after", "expected"),
    [
        # A fixed hour keeps its wall-clock time across the change: 07:00 is 05:00 then 04:00 UTC.
        ("0 7 * * *", KYIV, utc(2026, 3, 27, 12), ["03-28 07:00+0200", "03-29 07:00+0300", "03-30 07:00+0300"]),
        # A time in the spring gap fires when the gap ends: never skipped.
        ("30 3 * * *", KYIV, utc(2026, 3, 28, 12), ["03-29 04:00+0300", "03-30 03:30+0300", "03-31 03:30+0300"]),
        # Several times in the gap fire once, at its end.
        ("*/15 3 * * *", KYIV, utc(2026, 3, 28, 12), ["03-29 04:00+0300", "03-30 03:00+0300", "03-30 03:15+0300"]),
        # A time in the autumn's repeated hour fires on its first pass only: never doubled.
        ("30 3 * * *", KYIV, utc(2026, 10, 24, 12), ["10-25 03:30+0300", "10-26 03:30+0200", "10-27 03:30+0200"]),
        # Every-hour entries go by elapsed time: through both passes of the repeated hour…
        (
            "*/20 * * * *", KYIV, utc(2026, 10, 25, 0, 10),
            ["10-25 03:20+0300", "10-25 03:40+0300", "10-25 03:00+0200", "10-25 03:20+0200", "10-25 03:40+0200"],
        ),
        # …and over the gap as if it were not there.
        ("*/20 * * * *", KYIV, utc(2026, 3, 29, 0, 30), ["03-29 02:40+0200", "03-29 04:00+0300", "03-29 04:20+0300"]),
        ("30 2 * * *", "America/New_York", utc(2026, 3, 7, 12), ["03-08 03:00-0400", "03-09 02:30-0400"]),
        ("0 9 * * 1-5", "UTC", utc(2026, 11, 27, 10), ["11-30 09:00+0000", "12-01 09:00+0000"]),
    ],
)  # fmt: skip
def test_next_runs_against_a_reference_across_dst(expression, zone, after, expected):
    runs = cron_times.next_runs(expression, zone, after, len(expected))
    assert [local(run, zone) for run in runs] == expected
    assert runs == sorted(set(runs)), "strictly increasing: nothing doubled"


@pytest.mark.parametrize(
    ("expression", "zone"),
    [("0 7 * * *", KYIV), ("*/7 * * * *", KYIV), ("30 1 * * 0", "America/New_York"), ("15 */2 * * *", KYIV)],
)
def test_a_whole_year_has_no_doubled_and_no_missing_day(expression, zone):
    """Over a year that has both changes, daily entries fire once a day, every day."""
    runs = cron_times.next_runs(expression, zone, utc(2026, 1, 1), 400 if "*" not in expression.split()[1] else 2000)
    assert runs == sorted(set(runs))
    if expression.split()[1] == "7":
        days = [run.astimezone(cron_times.zone(zone)).date() for run in runs]
        assert len(days) == len(set(days)) == 400


def test_a_rare_expression_lists_the_firings_found_not_none():
    """29 February on a Monday: its next run was shown (2044) beside an empty list of
    next runs, the parser finding none after the second."""
    runs = cron_times.next_runs("0 0 29 2 1", "UTC", utc(2026, 11, 30), 5)
    assert [run.year for run in runs] == [2044, 2072]
    with pytest.raises(ValueError, match="never fires"):
        cron_times.next_runs("0 0 30 2 *", "UTC", utc(2026, 11, 30), 5)  # 30 February


# --- synced from code ------------------------------------------------------------------------


def test_code_entries_are_synced_once_and_follow_the_code_until_overridden(temporary_cron):
    for _ in range(3):
        schedules.sync_from_code()
    assert set(Schedule.objects.values_list("name", flat=True)) == CODE_ENTRIES | {temporary_cron}
    row = Schedule.objects.get(name=temporary_cron)
    assert (row.cron, row.time_zone, row.from_code, row.overridden) == ("*/5 * * * *", "UTC", True, False)
    assert row.next_run_at > timezone.now()

    registry.cron(temporary_cron, "*/10 * * * *", "diagnostics.noop")  # a deploy changes the code
    assert schedules.sync_from_code()["changed"] == [temporary_cron]
    assert Schedule.objects.get(name=temporary_cron).cron == "*/10 * * * *"

    schedules.edit(temporary_cron, {"cron": "0 7 * * *", "time_zone": KYIV}, by="op")
    registry.cron(temporary_cron, "*/30 * * * *", "diagnostics.noop")
    schedules.sync_from_code()
    row = Schedule.objects.get(name=temporary_cron)
    assert (row.cron, row.time_zone, row.overridden) == ("0 7 * * *", KYIV, True), "the operator's edit stays"
    assert row.code["cron"] == "*/30 * * * *"
    assert local(row.next_run_at).endswith("07:00+0200") or local(row.next_run_at).endswith("07:00+0300")

    schedules.reset(temporary_cron, by="op")
    row = Schedule.objects.get(name=temporary_cron)
    assert (row.cron, row.time_zone, row.overridden) == ("*/30 * * * *", "UTC", False)

    registry._crons.pop(temporary_cron)  # removed from the code
    schedules.create("ops.own", {"job_type": "diagnostics.noop", "cron": "0 * * * *"}, by="op")
    assert schedules.sync_from_code()["removed"] == [temporary_cron]
    assert set(Schedule.objects.values_list("name", flat=True)) == CODE_ENTRIES | {"ops.own"}


# --- firing -----------------------------------------------------------------------------------


def due(name: str, at: datetime, cron: str = "* * * * *") -> Schedule:
    row, _ = Schedule.objects.update_or_create(
        name=name, defaults={"job_type": "diagnostics.noop", "cron": cron, "time_zone": "UTC", "next_run_at": at}
    )
    return row


def test_a_due_tick_fires_once_however_often_it_is_polled():
    tick = utc(2026, 11, 28, 10, 0)
    due("every-minute", tick)
    fired = schedules.fire_due(tick + timedelta(seconds=1))
    assert len(fired) == 1 and fired[0].idempotency_key == f"cron:every-minute:{tick.isoformat()}"
    assert schedules.fire_due(tick + timedelta(seconds=2)) == []
    row = Schedule.objects.get(name="every-minute")
    assert (row.last_run_at, row.next_run_at) == (tick, tick + timedelta(minutes=1))
    assert row.recent_jobs == [str(fired[0].id)]


def test_two_schedulers_with_the_same_view_fire_a_tick_once():
    """Both read the row as due; the guarded update lets one of them submit."""
    tick = utc(2026, 11, 28, 10, 0)
    seen_by_a = due("race", tick)
    seen_by_b = Schedule.objects.get(pk=seen_by_a.pk)
    assert schedules._fire(seen_by_a, tick) is not None
    assert schedules._fire(seen_by_b, tick) is None
    assert Job.objects.filter(idempotency_key__startswith="cron:race:").count() == 1


def test_a_scheduler_down_across_ticks_fires_the_first_missed_once_and_goes_on_from_now():
    tick = utc(2026, 11, 28, 10, 0)
    due("catch-up", tick)
    back = tick + timedelta(minutes=5, seconds=30)
    assert len(schedules.fire_due(back)) == 1
    assert Schedule.objects.get(name="catch-up").next_run_at == utc(2026, 11, 28, 10, 6)
    assert schedules.fire_due(back) == []


def test_paused_entries_do_not_fire_and_resume_from_the_next_time():
    tick = timezone.now() - timedelta(seconds=5)
    due("pausable", tick, cron="*/5 * * * *")
    schedules.set_paused("pausable", True, by="op")
    # Other schedules (those synced from code) may be due by now: judge this one by its own runs.
    schedules.fire_due()
    paused = Schedule.objects.get(name="pausable")
    assert paused.next_run_at is None and schedules.last_runs(paused) == []
    assert schedules.next_runs(Schedule.objects.get(name="pausable")) == []
    row = schedules.set_paused("pausable", False, by="op")
    assert row.next_run_at > timezone.now() and row.next_run_at.minute % 5 == 0


def test_run_now_submits_an_extra_run_shown_among_the_last_runs():
    due("manual", timezone.now() + timedelta(hours=1))
    job = schedules.run_now("manual")
    row = Schedule.objects.get(name="manual")
    assert row.next_run_at > timezone.now(), "the timetable is unchanged"
    runs = schedules.last_runs(row)
    assert [(r.job_id, r.manual, r.status) for r in runs] == [(job.id, True, Status.QUEUED)]


def test_an_entry_whose_type_is_gone_says_so_and_goes_on():
    tick = utc(2026, 11, 28, 10, 0)
    Schedule.objects.create(name="orphan", job_type="gone.type", cron="* * * * *", next_run_at=tick)
    assert schedules.fire_due(tick) == []
    row = Schedule.objects.get(name="orphan")
    assert "gone.type" in row.last_error and row.next_run_at == tick + timedelta(minutes=1)


def test_a_deleted_users_job_never_stands_in_for_a_tick(django_user_model):
    """A user's key is theirs; once they are deleted their jobs are owner-less — the
    crons' key space — and give the key up: the tick fires its own job."""
    from jobs.core.submit import submit

    tick = utc(2026, 11, 28, 10, 0)
    due("hourly", tick)
    user = django_user_model.objects.create_user("leaving")
    theirs = submit("diagnostics.noop", owner=user, idempotency_key=f"cron:hourly:{tick.isoformat()}").job
    user.delete()
    (fired,) = schedules.fire_due(tick + timedelta(seconds=1))
    assert fired.id != theirs.id and Job.objects.get(pk=theirs.id).idempotency_key is None


def test_a_tick_refused_or_broken_is_said_on_its_entry_and_the_others_still_fire(monkeypatch):
    tick = utc(2026, 11, 28, 10, 0)
    for name in ("taken", "broken", "fine"):
        due(name, tick)
    # An owner-less job of another type already has the tick's key: a conflict, not a crash.
    past_job(type="diagnostics.sleep", payload={"seconds": 0}, idempotency_key=f"cron:taken:{tick.isoformat()}")
    real_submit = schedules._submit

    def broken_for_one(row, key):
        if row.name == "broken":
            raise RuntimeError("a bug")
        return real_submit(row, key)

    monkeypatch.setattr(schedules, "_submit", broken_for_one)
    fired = schedules.fire_due(tick + timedelta(seconds=1))
    assert [job.idempotency_key for job in fired] == [f"cron:fine:{tick.isoformat()}"]
    assert "already used" in Schedule.objects.get(name="taken").last_error
    broken = Schedule.objects.get(name="broken")
    assert broken.last_error == "RuntimeError: a bug"
    assert broken.next_run_at == tick + timedelta(minutes=1), "moved on: left due, it failed at every poll"
    assert schedules.fire_due(tick + timedelta(seconds=2)) == []


def test_an_edit_takes_effect_on_the_next_run_at_once():
    due("editable", timezone.now() + timedelta(hours=5), cron="0 * * * *")
    row = schedules.edit("editable", {"cron": "*/2 * * * *"}, by="op")
    assert row.next_run_at - timezone.now() <= timedelta(minutes=2)
    assert row.updated_by == "op" and not row.overridden  # not from code: nothing to override


def test_an_edit_that_keeps_the_timing_keeps_a_tick_already_due(nothing_else_due, temporary_cron):
    """A priority changed (or a deploy changing a code entry's payload) a moment after a
    tick came, before the scheduler's poll fired it: the tick still fires."""
    tick = timezone.now() - timedelta(seconds=5)
    due("editable", tick, cron="0 * * * *")
    assert schedules.edit("editable", {"priority": "low"}, by="op").next_run_at == tick
    schedules.sync_from_code()
    Schedule.objects.filter(name=temporary_cron).update(next_run_at=tick)
    registry.cron(temporary_cron, "*/5 * * * *", "diagnostics.noop", {"changed": True})  # the same timing
    assert schedules.sync_from_code()["changed"] == [temporary_cron]
    assert Schedule.objects.get(name=temporary_cron).next_run_at == tick
    fired = schedules.fire_due()
    assert sorted(job.idempotency_key for job in fired) == sorted(
        f"cron:{name}:{tick.isoformat()}" for name in ("editable", temporary_cron)
    )
    assert next(job for job in fired if "editable" in job.idempotency_key).priority == "low"


def test_a_poll_that_read_an_entry_before_an_edit_does_not_fire_its_old_values(nothing_else_due):
    """The edit keeps the due tick; a poll holding the row as it was before does not
    submit the replaced payload: the next poll fires the tick with the new one."""
    tick = timezone.now() - timedelta(seconds=5)
    seen_before = due("editable", tick, cron="0 * * * *")
    schedules.edit("editable", {"job_type": "diagnostics.sleep", "payload": {"seconds": 0}}, by="op")
    assert schedules._fire(seen_before, timezone.now()) is None
    (fired,) = schedules.fire_due()
    assert (fired.type, fired.payload["seconds"]) == ("diagnostics.sleep", 0)
    assert fired.idempotency_key == f"cron:editable:{tick.isoformat()}"


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"cron": "every minute please"}, "cron"),
        ({"cron": "* * * *"}, "cron"),
        ({"cron": "0 0 30 2 *"}, "cron"),  # 30 February: never fires
        ({"cron": "61 * * * *"}, "cron"),
        ({"time_zone": "Mars/Olympus"}, "time_zone"),
        ({"priority": "urgent"}, "priority"),
        ({"job_type": "no.such.type"}, "job_type"),
        ({"job_type": "diagnostics.sleep", "payload": {"seconds": "soon"}}, "payload.seconds"),
        ({"payload": [1, 2]}, "payload"),
    ],
)
def test_bad_values_are_refused_naming_the_field(values, field):
    due("strict", timezone.now() + timedelta(hours=1))
    with pytest.raises(SubmitError) as refused:
        schedules.edit("strict", values, by="op")
    assert refused.value.field == field and str(refused.value)
    assert Schedule.objects.get(name="strict").cron == "* * * * *"


def test_creating_needs_a_fresh_valid_name_a_type_and_a_cron():
    with pytest.raises(InvalidInput, match="required"):
        schedules.create("x", {"cron": "* * * * *"})
    with pytest.raises(InvalidInput, match="not a schedule name"):
        schedules.create("has spaces", {"job_type": "diagnostics.noop", "cron": "* * * * *"})
    schedules.create("x", {"job_type": "diagnostics.noop", "cron": "* * * * *"})
    with pytest.raises(InvalidInput, match="exists"):
        schedules.create("x", {"job_type": "diagnostics.noop", "cron": "* * * * *"})
    with pytest.raises(InvalidInput, match="no code"):
        schedules.reset("x")


def test_code_entries_cannot_be_deleted_only_paused():
    schedules.sync_from_code()
    with pytest.raises(InvalidInput, match="declared in code") as refused:
        schedules.delete("reconcile")
    assert refused.value.hint.startswith("Pause it instead")


def test_a_malformed_code_entry_fails_at_registration():
    with pytest.raises(ValueError, match="e.g."):
        registry.cron("tests.bad", "every minute please", "diagnostics.noop")
    with pytest.raises(ValueError, match="time zone"):
        registry.cron("tests.bad", "* * * * *", "diagnostics.noop", time_zone="Nowhere/Land")
    assert "tests.bad" not in registry.cron_entries()


# --- the real scheduler ------------------------------------------------------------------------


def test_the_scheduler_process_fires_a_due_entry_through_a_worker(spawn, redis_conn):
    schedules.sync_from_code()
    due("probe", timezone.now())
    spawn("rqscheduler", "--interval", "1")
    spawn("rqworker", "immediate", "normal", "low")
    wait_for(
        lambda: Job.objects.filter(idempotency_key__startswith="cron:probe:", status=Status.COMPLETE).exists(),
        timeout=30,
        what="the tick's job to run",
    )
    wait_for(lambda: redis_conn.get("jobdesk:scheduler:heartbeat"), timeout=5, what="heartbeat key")
    assert Job.objects.filter(idempotency_key__startswith="cron:probe:").count() == 1


@pytest.mark.parametrize("kill_when", ["before the tick", "as it falls due", "once it fired"])
def test_a_scheduler_killed_at_the_tick_boundary_yields_exactly_one_run(spawn, redis_conn, kill_when):
    """SIGKILL the scheduler around the moment a tick falls due, start another: the
    tick runs once — never lost (the row stays due until a submit commits), never
    twice (the guarded update and the key)."""
    first = spawn("rqscheduler", "--interval", "1")
    wait_for(lambda: redis_conn.keys("rq:scheduler_instance:*"), timeout=20, what="the scheduler to start")
    tick = timezone.now() + timedelta(seconds=1)
    due("boundary", tick, cron="0 0 1 1 *")  # next after this one: next New Year
    moments = {
        "before the tick": lambda: True,
        "as it falls due": lambda: timezone.now() >= tick,
        "once it fired": lambda: Schedule.objects.get(name="boundary").next_run_at.year > tick.year,
    }
    wait_for(moments[kill_when], timeout=20, what=f"the moment to kill: {kill_when}")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    redis_conn.delete(*redis_conn.keys("rq:scheduler*"))  # its lock would hold the next one off for a while
    spawn("rqscheduler", "--interval", "1")
    wait_for(
        lambda: Schedule.objects.get(name="boundary").next_run_at.year > tick.year,
        timeout=30,
        what="the tick to be fired",
    )
    assert Job.objects.filter(idempotency_key=f"cron:boundary:{tick.isoformat()}").count() == 1
    assert Job.objects.filter(idempotency_key__startswith="cron:boundary:").count() == 1


def test_sync_schedules_drops_the_rq_scheduler_crons_of_an_older_jobdesk(redis_conn):
    from django.core.management import call_command

    queueing.scheduler().cron("* * * * *", "jobs.upkeep.heartbeat.scheduler_heartbeat", id="jobdesk-cron-reconcile")
    call_command("sync_schedules")
    assert not [j for j in queueing.scheduler().get_jobs() if j.id.startswith("jobdesk-cron-")]
    assert set(Schedule.objects.values_list("name", flat=True)) >= CODE_ENTRIES


def test_health_names_the_failing_part(api_as, run_worker, redis_conn):
    client = api_as(None)
    response = client.get("/api/health/")
    assert response.status_code == 503
    body = response.json()
    assert body["database"]["ok"] and body["redis"]["ok"]
    assert set(body["failing"]) == {"workers", "scheduler"}
    assert client.get("/api/health/live/").status_code == 200


def test_health_is_200_with_a_worker_and_a_fresh_heartbeat(api_as, spawn, redis_conn, scheduler_tick):
    from conftest import wait_for

    scheduler_tick()  # a poll that went through beats
    spawn("rqworker", "immediate", "normal", "low")
    response = wait_for(
        lambda: (r := api_as(None).get("/api/health/")).status_code == 200 and r, timeout=30, what="healthy"
    )
    assert response.json()["workers"]["count"] == 1
    assert "workers" not in response.json()["workers"]  # hosts and pids are for staff


def test_staff_see_each_worker_in_health(api_as, operator, redis_conn):
    from rq import Worker

    Worker(["normal"], connection=redis_conn, name="probe").register_birth()
    body = api_as(operator).get("/api/health/").json()
    assert [w["name"] for w in body["workers"]["workers"]] == ["probe"]


def test_a_redis_flush_loses_no_schedule(redis_conn):
    from jobs.upkeep.scheduler import JobdeskScheduler

    tick = timezone.now() - timedelta(seconds=1)
    due("after-flush", tick)
    redis_conn.flushall()
    scheduler = JobdeskScheduler(queue_name="normal", connection=redis_conn, interval=1)
    scheduler.enqueue_jobs()
    assert Job.objects.filter(idempotency_key=f"cron:after-flush:{tick.isoformat()}").count() == 1
    assert redis_conn.get("jobdesk:scheduler:heartbeat")  # and it beats


def test_a_poll_that_fails_with_a_bug_is_logged_and_the_scheduler_polls_again(redis_conn, monkeypatch, caplog):
    """A dying scheduler stopped every cron, retry and deferred job until restarted (and
    ``make run`` stops everything after a part dies five times in a minute)."""
    from jobs.upkeep.scheduler import JobdeskScheduler

    scheduler = JobdeskScheduler(queue_name="normal", connection=redis_conn, interval=0.01)
    outcomes = [RuntimeError("a bug"), True]  # then a burst's end

    def poll(burst: bool) -> bool:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(scheduler, "_poll", poll)
    monkeypatch.setattr(scheduler, "_install_signal_handlers", lambda: None)  # the test process's own
    scheduler.run(burst=True)
    assert outcomes == [] and "scheduler poll failed" in caplog.text


def test_the_scheduler_beats_only_once_a_poll_went_through(redis_conn, monkeypatch):
    """Polls that keep failing must let health see a stale heartbeat, not a fresh one."""
    from jobs.upkeep.scheduler import JobdeskScheduler

    scheduler = JobdeskScheduler(queue_name="normal", connection=redis_conn, interval=1)

    def broken():
        raise RuntimeError("a bug")

    monkeypatch.setattr(schedules, "fire_due", broken)
    with pytest.raises(RuntimeError):
        scheduler.enqueue_jobs()
    assert redis_conn.get("jobdesk:scheduler:heartbeat") is None
    monkeypatch.undo()
    scheduler.enqueue_jobs()
    assert redis_conn.get("jobdesk:scheduler:heartbeat")


def test_the_heartbeat_cron_job_does_not_keep_a_failing_scheduler_alive(redis_conn, monkeypatch):
    """A poll that fires its cron ticks and then fails (here in rq-scheduler's own move of
    due jobs) let the heartbeat job, run by a worker, refresh the scheduler's heartbeat:
    health stayed green while deferred work and retries went nowhere."""
    from django_rq.queues import DjangoScheduler

    from jobs.insight import health
    from jobs.upkeep.heartbeat import scheduler_heartbeat
    from jobs.upkeep.scheduler import JobdeskScheduler

    def broken(self):
        raise RuntimeError("a bug in the move of due jobs")

    monkeypatch.setattr(DjangoScheduler, "enqueue_jobs", broken)
    with pytest.raises(RuntimeError):
        JobdeskScheduler(queue_name="normal", connection=redis_conn, interval=1).enqueue_jobs()
    scheduler_heartbeat(None)  # the tick fired before the failure, run by a worker

    state = health.scheduler_state()
    assert state["ok"] is False and "no scheduler heartbeat" in state["error"]
    assert state["cron_ran_at"]  # shown for what it is: the cron work ran


def test_sync_schedules_with_redis_down_syncs_and_says_so_in_one_line(queues_unreachable):
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="Redis is unreachable .*: the schedules above are synced"):
        call_command("sync_schedules")
    assert set(Schedule.objects.values_list("name", flat=True)) >= CODE_ENTRIES  # the database part was done


def test_an_operator_s_entry_names_a_public_type_and_a_code_entry_keeps_its_own():
    """Internal types run from code (and the code's own cron entries) only, as at
    ``POST /api/jobs/``: an operator cannot make or point an entry at one."""
    registry.job_type("tests.internal_cron", public=False)(lambda ctx: {})
    try:
        with pytest.raises(InvalidInput, match="internal") as refused:
            schedules.create("mine", {"job_type": "tests.internal_cron", "cron": "* * * * *"})
        assert refused.value.field == "job_type" and "public" in refused.value.hint
        schedules.create("mine", {"job_type": "diagnostics.noop", "cron": "* * * * *"})
        with pytest.raises(InvalidInput, match="internal"):
            schedules.edit("mine", {"job_type": "tests.internal_cron"})
        schedules.sync_from_code()
        code_entry = Schedule.objects.get(name="reconcile")
        assert not registry.get(code_entry.job_type).public  # the code's entry names an internal type
        edited = schedules.edit("reconcile", {"cron": "*/5 * * * *", "job_type": code_entry.job_type})
        assert edited.cron == "*/5 * * * *" and edited.job_type == code_entry.job_type  # its own: kept
        with pytest.raises(InvalidInput, match="internal"):
            schedules.edit("mine", {"job_type": code_entry.job_type})  # not another entry's
    finally:
        registry.unregister("tests.internal_cron")
