"""ETAs against schedules worked out by hand and by a reference simulator."""

from __future__ import annotations

import heapq
import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from conftest import past_job, past_jobs
from jobs.core import actions, registry, sizes
from jobs.core.models import Job, Status
from jobs.core.submit import JobSpec, submit, submit_many
from jobs.insight import calibration, estimates, line
from workwindow.models import WorkWindow

pytestmark = pytest.mark.django_db

DURATIONS = {"t.a": 10.0, "t.b": 20.0, "t.c": 5.0}
QUEUES = ("immediate", "normal", "low")


@pytest.fixture(autouse=True)
def history():
    """Recent completions that make the average duration of each test type exact."""
    estimates.clear_cache()
    finished = timezone.now() - timedelta(hours=1)
    past_jobs(
        Job(type=t, status=Status.COMPLETE, started_at=finished - timedelta(seconds=d), finished_at=finished)
        for t, d in DURATIONS.items()
        for _ in range(3)
    )
    yield
    estimates.clear_cache()


@pytest.fixture(autouse=True)
def no_arrivals(request, monkeypatch):
    """Hand-worked schedules assume no new work arrives (the rows made here are "new")."""
    if "arrivals" not in request.node.name:
        monkeypatch.setattr(estimates, "arrival_profile", lambda now=None: estimates.ArrivalProfile({}, {}, {}))


def row(job_type: str, status: str = Status.QUEUED, priority: str = "normal", **fields) -> Job:
    return past_job(type=job_type, status=status, priority=priority, **fields)


def seconds_from(now: datetime, at: datetime | None) -> float | None:
    return None if at is None else round((at - now).total_seconds(), 6)


def test_known_schedule_with_two_workers_priorities_a_dependency_and_a_window():
    now = timezone.now()
    ago = lambda s: now - timedelta(seconds=s)  # noqa: E731
    row("t.a", Status.ACTIVE, started_at=ago(4))  # worker 1 free in 6 s; worker 2 idle
    b1 = row("t.b", priority="immediate", enqueued_at=ago(3))
    a1 = row("t.a", enqueued_at=ago(10))
    a2 = row("t.a", enqueued_at=ago(9))
    c1 = row("t.c", enqueued_at=ago(8))
    c2 = row("t.c", priority="low", enqueued_at=ago(7))
    waiting = row("t.c", Status.WAITING)
    waiting.depends_on.add(a2)
    later = row("t.a", Status.SCHEDULED, scheduled_for=now + timedelta(seconds=100))
    opening = (now + timedelta(hours=2)).astimezone(UTC).replace(second=0, microsecond=0)
    closing = (opening + timedelta(hours=1)).time()
    WorkWindow.objects.create(name="later", time_zone="UTC", start_time=opening.time(), end_time=closing)
    heavy = row("t.c", Status.DEFERRED, priority="low", heavy=True, scheduled_for=opening)
    jobs = [b1, a1, a2, c1, c2, waiting, later, heavy]

    found = estimates.estimate(jobs, now=now, workers=2)

    # By hand: immediate first (b1 at 0 on the idle worker, busy until 20); then normal in
    # enqueue order: a1 at 6 (worker 1 frees), a2 at 16, c1 at 20; low: c2 at 25. The
    # waiting job follows a2's finish (26); the scheduled one its run time; the heavy one
    # the window's opening.
    opens_in = (opening - now).total_seconds()
    expected = {b1: (0, 20), a1: (6, 16), a2: (16, 26), c1: (20, 25), c2: (25, 30), waiting: (26, 31),
                later: (100, 110), heavy: (opens_in, opens_in + 5)}  # fmt: skip
    for job, (start, finish) in expected.items():
        got = found[job.id]
        assert (seconds_from(now, got.start_at), seconds_from(now, got.finish_at)) == pytest.approx(
            (start, finish), abs=1e-3
        ), job.type
        assert got.warning == ""
    # Asking about one job gives what asking about all of them gives.
    for job in jobs:
        assert estimates.estimate([job], now=now, workers=2)[job.id] == found[job.id]
    # A new job joins the end of its line: after c1 in normal, right after b1's worker frees in immediate.
    new_normal = Job(id=uuid.uuid4(), type="t.a", priority="normal", status=Status.QUEUED)
    new_first = Job(id=uuid.uuid4(), type="t.a", priority="immediate", status=Status.QUEUED)
    assert (
        seconds_from(now, estimates.estimate([], appended=[new_normal], now=now, workers=2)[new_normal.id].start_at)
        == 25
    )
    assert (
        seconds_from(now, estimates.estimate([], appended=[new_first], now=now, workers=2)[new_first.id].start_at) == 6
    )


def reference_starts(running: list[float], line: list[Job], workers: int) -> dict[uuid.UUID, float]:
    """Jobs in strict line order, each on the first free worker."""
    free = sorted((running + [0.0] * workers)[:workers])
    starts = {}
    for job in sorted(line, key=lambda j: (QUEUES.index(j.priority), j.enqueued_at)):
        starts[job.id] = free[0]
        heapq.heapreplace(free, free[0] + DURATIONS[job.type])
    return starts


@pytest.mark.parametrize("seed", range(6))
def test_queued_jobs_match_a_reference_simulation(seed):
    rng = random.Random(seed)
    now = timezone.now()
    workers = rng.randint(1, 4)
    running = []
    for _ in range(rng.randint(0, workers)):
        job_type = rng.choice(list(DURATIONS))
        elapsed = rng.uniform(0, DURATIONS[job_type])
        row(job_type, Status.ACTIVE, started_at=now - timedelta(seconds=elapsed))
        running.append(DURATIONS[job_type] - elapsed)
    line = [
        row(rng.choice(list(DURATIONS)), priority=rng.choice(QUEUES), enqueued_at=now - timedelta(seconds=i))
        for i in range(rng.randint(1, 40))
    ]
    expected = reference_starts(running, line, workers)

    everyone = estimates.estimate(line, now=now, workers=workers)

    for job in line:
        assert seconds_from(now, everyone[job.id].start_at) == pytest.approx(expected[job.id], abs=1e-3)
    # One job asked alone: the jobs ahead are counted by type, not read one by one, so
    # their order among themselves is unknown; with one worker that cannot matter, with
    # more it moves the start by less than the longest job.
    for job in rng.sample(line, min(5, len(line))):
        alone = seconds_from(now, estimates.estimate([job], now=now, workers=workers)[job.id].start_at)
        if workers == 1:
            assert alone == pytest.approx(expected[job.id], abs=1e-3)
        assert abs(alone - expected[job.id]) <= max(DURATIONS.values())


def test_a_long_line_advances_in_rounds_with_the_same_result_as_job_by_job():
    now = timezone.now()
    past_jobs(
        Job(type="t.c", status=Status.QUEUED, enqueued_at=now - timedelta(seconds=1))
        for _ in range(estimates.EXACT_JOBS + 7)
    )
    last = row("t.a", enqueued_at=now)
    got = estimates.estimate([last], now=now, workers=3)[last.id]
    free = [0.0, 0.0, 0.0]  # job by job, as the reference does it
    for _ in range(estimates.EXACT_JOBS + 7):
        heapq.heapreplace(free, free[0] + 5)
    # Past the head of the line the count is a profile interpolated by enqueue time: at
    # most a job or two of difference on a wait of almost two hours.
    assert abs(seconds_from(now, got.start_at) - free[0]) <= 10


def test_no_live_worker_means_no_eta_and_a_warning():
    job = row("t.a", enqueued_at=timezone.now())
    got = estimates.estimate([job], workers=0)[job.id]
    assert got.start_at is None and got.finish_at is None
    assert "rqworker" in got.warning


def test_a_job_behind_a_failed_dependency_has_no_eta():
    failed = row("t.a", Status.FAILED)
    waiting = row("t.a", Status.WAITING)
    waiting.depends_on.add(failed)
    got = estimates.estimate([waiting], workers=1)[waiting.id]
    assert got.start_at is None and "dependency" in got.warning


def test_a_type_never_seen_and_nothing_known_takes_the_configured_default(settings):
    settings.ETA_DEFAULT_DURATION = 42.0
    Job.objects.all().delete()
    estimates.clear_cache()
    now = timezone.now()
    unknown = row("t.never", enqueued_at=now - timedelta(seconds=1))
    behind = row("t.never", enqueued_at=now)
    found = estimates.estimate([unknown, behind], now=now, workers=1)
    assert seconds_from(now, found[unknown.id].finish_at) == 42
    assert seconds_from(now, found[behind.id].start_at) == 42
    assert found[behind.id].cold and found[unknown.id].cold


def cold_line(now: datetime, n: int = 2) -> Job:
    """``n`` jobs of a type never seen, then one more: the one returned."""
    for i in range(n):
        row("t.never", enqueued_at=now - timedelta(seconds=10 - i))
    return row("t.never", enqueued_at=now)


def start_range(now: datetime, estimate: estimates.Estimate) -> tuple[float, float]:
    low, high = estimate.start_range or (None, None)
    return seconds_from(now, low) or 0.0, seconds_from(now, high) or 0.0


def test_a_new_types_range_is_as_wide_as_the_durations_it_could_take_then_tightens_with_history():
    now = timezone.now()
    last = cold_line(now)
    cold = estimates.estimate([last], now=now, workers=1)[last.id]
    # Unknown, it is taken to last what the others typically do (their geometric mean:
    # 10 s), but it could be as quick as the quickest or as slow as the slowest: two of
    # them ahead take 2 × 5 s to 2 × 20 s, and the range claims no less.
    assert cold.cold
    assert seconds_from(now, cold.start_at) == pytest.approx(2 * 10.0, rel=1e-6)
    low, high = start_range(now, cold)
    assert low <= 2 * min(DURATIONS.values()) and high >= 2 * max(DURATIONS.values()), (low, high)

    # Its first runs teach it: 8 s each, a little apart.
    finished = now - timedelta(minutes=5)
    past_jobs(
        Job(type="t.never", status=Status.COMPLETE, finished_at=finished, started_at=finished - timedelta(seconds=s))
        for s in (7.5, 8.0, 8.5, 8.0, 7.8, 8.2, 8.1, 7.9)
    )
    estimates.clear_cache()
    warm = estimates.estimate([last], now=now, workers=1)[last.id]
    assert not warm.cold
    assert seconds_from(now, warm.start_at) == pytest.approx(16.0, abs=0.01)
    warm_low, warm_high = start_range(now, warm)
    assert warm_low <= 16.0 <= warm_high
    assert warm_high - warm_low < (high - low) / 3, "history narrows the range"


def test_a_new_type_takes_its_declared_duration_or_the_pace_of_its_first_run():
    from jobs.core import registry

    registry.job_type("t.declared", expected_duration=30)(lambda ctx: None)
    try:
        now = timezone.now()
        first = row("t.declared", enqueued_at=now)
        got = estimates.estimate([first], now=now, workers=1)[first.id]
        assert seconds_from(now, got.finish_at) == pytest.approx(30.0) and got.cold
    finally:
        registry.unregister("t.declared")
    # A run in progress at 50 % after 6 s: a whole run takes about 12 s, so the next one
    # starts in about 6 s and finishes 12 s after.
    row("t.paced", Status.ACTIVE, started_at=now - timedelta(seconds=6), progress=50)
    following = row("t.paced", enqueued_at=now)
    got = estimates.estimate([following], now=now, workers=1)[following.id]
    assert seconds_from(now, got.start_at) == pytest.approx(6.0, abs=0.01)
    assert seconds_from(now, got.finish_at) == pytest.approx(18.0, abs=0.01)


def test_submit_stores_the_first_estimate_and_the_claim_its_error(run_worker, monkeypatch):
    monkeypatch.setattr(estimates, "live_workers", lambda: 1)
    first = submit("diagnostics.noop").job
    second = submit("diagnostics.noop").job
    assert first.first_estimated_start_at is not None
    assert second.first_estimated_start_at >= first.first_estimated_finish_at  # one worker: in line
    stored = Job.objects.get(pk=second.id)
    assert stored.first_estimated_start_at == second.first_estimated_start_at
    assert stored.eta_error_seconds is None

    run_worker()

    for job in Job.objects.filter(pk__in=[first.id, second.id]):
        assert job.eta_error_seconds == pytest.approx(
            (job.started_at - job.first_estimated_start_at).total_seconds(), abs=1e-3
        )
    assert calibration.accuracy()["samples"] == 2


FIRST_ESTIMATE = ("first_estimated_start_at", "first_estimated_finish_at", "first_estimated_start_low",
                  "first_estimated_start_high", "eta_error_seconds")  # fmt: skip


def test_an_operator_s_hand_takes_a_job_out_of_eta_accuracy(run_worker, monkeypatch):
    """Run now before its run_at, promoted before it started, or requeued: the first
    estimate is not the estimator's to answer for (a 2030 job run now counted as a
    three-year miss; a requeue kept the range and error of a start it no longer owned)."""
    monkeypatch.setattr(estimates, "live_workers", lambda: 1)
    later = submit("diagnostics.noop", run_at=timezone.now() + timedelta(days=365 * 3)).job
    queued = submit("diagnostics.noop", priority="low").job
    plain = submit("diagnostics.noop").job
    assert later.first_estimated_start_low is not None
    actions.run_now(later.id)
    actions.promote(queued.id)
    run_worker()
    for job in Job.objects.filter(pk__in=[later.id, queued.id]):
        assert job.status == Status.COMPLETE
        assert [getattr(job, name) for name in FIRST_ESTIMATE] == [None] * len(FIRST_ESTIMATE), job.id
    assert Job.objects.get(pk=plain.id).eta_error_seconds is not None  # the others still judged
    canceled = submit("diagnostics.noop", run_at=timezone.now() + timedelta(hours=1)).job
    actions.cancel(canceled.id)
    actions.requeue(canceled.id)
    again = Job.objects.get(pk=canceled.id)
    assert [getattr(again, name) for name in FIRST_ESTIMATE] == [None] * len(FIRST_ESTIMATE)
    assert calibration.accuracy()["samples"] == 1


def test_bulk_submit_estimates_each_job_behind_the_ones_before_it(monkeypatch):
    monkeypatch.setattr(estimates, "live_workers", lambda: 1)
    for t in DURATIONS:  # the test types must be submittable
        registry.job_type(t)(lambda ctx: None)
    try:
        jobs = [r.job for r in submit_many([JobSpec("t.a"), JobSpec("t.b"), JobSpec("t.c", priority="immediate")])]
    finally:
        for t in DURATIONS:
            registry.unregister(t)
    a, b, c = jobs
    base = c.first_estimated_start_at  # immediate goes first
    assert (a.first_estimated_start_at - base).total_seconds() == pytest.approx(5, abs=0.01)
    assert (b.first_estimated_start_at - base).total_seconds() == pytest.approx(15, abs=0.01)
    assert (b.first_estimated_finish_at - base).total_seconds() == pytest.approx(35, abs=0.01)


@pytest.mark.redis
def test_api_shows_estimates_on_list_detail_submit_and_queues(
    api_as, alice, monkeypatch, django_assert_max_num_queries
):
    monkeypatch.setattr(estimates, "live_workers", lambda: 2)
    client = api_as(alice)
    created = client.post("/api/jobs/", {"type": "diagnostics.noop"}, format="json")
    assert created.status_code == 201 and created.data["estimated_start_at"] is not None
    for _ in range(30):
        client.post("/api/jobs/", {"type": "diagnostics.noop"}, format="json")
    detail = client.get(f"/api/jobs/{created.data['id']}/")
    assert detail.data["estimated_finish_at"] is not None and detail.data["eta_warning"] == ""
    with django_assert_max_num_queries(12):  # a page of 31 estimated jobs: no query per row
        listed = client.get("/api/jobs/")
    assert all(item["estimated_start_at"] for item in listed.data["results"])
    queues = client.get("/api/queues/?type=diagnostics.noop").data
    normal = next(q for q in queues["queues"] if q["name"] == "normal")
    assert set(normal["new_job_eta"]) == {"diagnostics.noop"}
    assert normal["new_job_eta"]["diagnostics.noop"]["estimated_start_at"] is not None


@pytest.mark.parametrize("seed", range(4))
def test_past_the_head_the_profiled_line_stays_close_to_the_reference(seed, monkeypatch):
    """A small head and small buckets, so a line of 300 exercises the profile, jobs that
    joined since it was built, and interpolation inside buckets."""
    monkeypatch.setattr(line, "HEAD_EXACT", 20)
    monkeypatch.setattr(line, "PROFILE_BUCKET", 7)
    rng = random.Random(seed)
    now = timezone.now()
    jobs = [
        Job(type=rng.choice(list(DURATIONS)), status=Status.QUEUED, priority=rng.choice(QUEUES),
            enqueued_at=now - timedelta(seconds=400 - i))
        for i in range(300)
    ]  # fmt: skip
    past_jobs(jobs[:250])
    estimates.estimate([jobs[0]], now=now, workers=2)  # builds the profile of the first 250
    past_jobs(jobs[250:])  # and these join after it
    expected = reference_starts([], jobs, 2)
    asked = rng.sample(jobs, 40)

    found = estimates.estimate(asked, now=now, workers=2)

    for job in asked:
        error = abs(seconds_from(now, found[job.id].start_at) - expected[job.id])
        # interpolation inside one bucket of 7 jobs of at most 20 s, on 2 workers, plus
        # the unknown order of the jobs counted by type
        assert error <= 7 * 20 / 2 + 20, (job.priority, expected[job.id], error)
    head = min((j for j in jobs if j.priority == "immediate"), key=lambda j: j.enqueued_at)
    assert seconds_from(now, estimates.estimate([head], now=now, workers=2)[head.id].start_at) == 0


def test_arrivals_of_higher_priority_work_stretch_the_wait_of_lower_lines():
    now = timezone.now()
    # Over the last minute, immediate work of 0.5 worker-seconds per second arrived:
    # 3 jobs of 10 s; with 2 workers that is a quarter of their time.
    past_jobs(Job(type="t.a", priority="immediate", status=Status.COMPLETE) for _ in range(3))
    arrivals = estimates.arrival_profile().load
    assert arrivals["immediate"] == pytest.approx(3 * 10 / estimates.ARRIVAL_WINDOW)
    normal = row("t.a", enqueued_at=now - timedelta(seconds=2))
    behind = row("t.a", enqueued_at=now - timedelta(seconds=1))
    first = row("t.a", priority="immediate", enqueued_at=now)
    for _ in range(2):  # both workers busy for 20 s
        row("t.b", Status.ACTIVE, started_at=now)

    found = estimates.estimate([normal, behind, first], now=now, workers=2)

    # The line alone: first at 20, normal at 20, behind at 30; the normal line only gets
    # 1 − 0.25 of the workers' time while immediate work keeps coming.
    assert seconds_from(now, found[first.id].start_at) == pytest.approx(20)
    assert seconds_from(now, found[normal.id].start_at) == pytest.approx(20 / 0.75)
    assert seconds_from(now, found[behind.id].start_at) == pytest.approx(30 / 0.75)
    estimates.clear_cache()
    # `first` is immediate too but still waiting: the line counts it, the rate does not.
    assert estimates.arrival_profile().load["immediate"] == pytest.approx(arrivals["immediate"])


def test_a_promoted_job_joins_the_end_of_the_immediate_line():
    now = timezone.now()
    normal = row("t.a", enqueued_at=now - timedelta(seconds=10))
    first = row("t.a", priority="immediate", enqueued_at=now - timedelta(seconds=5))
    actions.promote(normal.id)
    promoted = Job.objects.get(pk=normal.id)
    found = estimates.estimate([promoted, first], now=timezone.now(), workers=1)
    assert found[first.id].start_at < found[promoted.id].start_at  # RQ runs `first` first


def test_a_requeue_starts_without_a_first_estimate_to_be_judged_against():
    failed = row("t.a", Status.FAILED, first_estimated_start_at=timezone.now() + timedelta(days=900))
    requeued = actions.requeue(failed.id)
    assert requeued.first_estimated_start_at is None
    assert Job.objects.get(pk=failed.id).first_estimated_start_at is None


def test_a_running_job_that_reported_progress_is_judged_by_it():
    from datetime import datetime, timedelta

    from jobs.insight.estimates import time_left

    now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    started = now - timedelta(seconds=30)
    assert time_left(10.0, started, 25, now) == 90.0, "30 s for a quarter: 90 s to go, whatever the average says"
    assert time_left(10.0, started, 0, now) == 0.0, "no progress and past its average: any moment"
    assert time_left(60.0, started, 0, now) == 30.0
    assert time_left(60.0, now - timedelta(seconds=0.5), 50, now) == 59.5, "too early to trust progress"
    assert time_left(60.0, None, 0, now) == 60.0


# --- flow control: limits and pauses ---------------------------------------------------


@pytest.fixture
def levers():
    from jobs.core import flow

    flow.forget_rules()
    for name in DURATIONS:
        registry.job_type(name)(lambda ctx: None)
    yield flow
    for name in DURATIONS:
        registry.unregister(name)
    flow.forget_rules()


def test_a_line_of_a_type_limited_to_one_takes_one_duration_per_job_whatever_the_workers(levers):
    now = timezone.now()
    levers.set_limits("t.a", concurrency=1, actor_label="t")
    line = [row("t.a", enqueued_at=now - timedelta(seconds=20 - i)) for i in range(10)]
    other = row("t.c", enqueued_at=now - timedelta(seconds=5))  # behind them, another type

    found = estimates.estimate([*line, other], now=now, workers=8)

    assert [seconds_from(now, found[j.id].start_at) for j in line] == pytest.approx([10.0 * i for i in range(10)])
    assert seconds_from(now, found[line[-1].id].finish_at) == pytest.approx(100.0)
    # The limit holds no worker idle: the other type starts as soon as a worker is free.
    assert seconds_from(now, found[other.id].start_at) <= 10.0


def test_running_jobs_of_a_limited_type_hold_its_slots(levers):
    now = timezone.now()
    levers.set_limits("t.b", concurrency=2, actor_label="t")
    row("t.b", Status.ACTIVE, started_at=now - timedelta(seconds=5))  # 15 s left
    row("t.b", Status.ACTIVE, started_at=now - timedelta(seconds=12))  # 8 s left
    queued = row("t.b", enqueued_at=now)
    assert seconds_from(now, estimates.estimate([queued], now=now, workers=6)[queued.id].start_at) == pytest.approx(8)


def test_a_canceled_run_not_stopped_yet_holds_its_slot_until_its_lease_passes(levers):
    now = timezone.now()
    levers.set_limits("t.b", concurrency=1, actor_label="t")
    row("t.b", Status.CANCELED, lease_expires_at=now + timedelta(seconds=7))  # still running, at most 7 s
    queued = row("t.b", enqueued_at=now)
    start = seconds_from(now, estimates.estimate([queued], now=now, workers=6)[queued.id].start_at)
    assert start == pytest.approx(7, abs=0.01)


def test_a_rate_spaces_the_starts_of_its_type(levers):
    now = timezone.now()
    levers.set_limits("t.c", rate="5/2s", actor_label="t")
    line = [row("t.c", enqueued_at=now - timedelta(seconds=30 - i)) for i in range(20)]
    found = estimates.estimate(line, now=now, workers=20)
    starts = [seconds_from(now, found[j.id].start_at) for j in line]
    assert starts == pytest.approx([2.0 * (i // 5) for i in range(20)])


def test_paused_work_says_paused_and_takes_no_worker_time_from_the_rest(levers, operator, monkeypatch):
    monkeypatch.setattr(estimates, "live_workers", lambda: 1)  # the outlook asks Redis
    now = timezone.now()
    levers.pause("type", "t.b", actor=operator, reason="partner down")
    stuck = row("t.b", enqueued_at=now - timedelta(seconds=10))
    after = row("t.a", enqueued_at=now - timedelta(seconds=5))
    found = estimates.estimate([stuck, after], now=now, workers=1)
    assert found[stuck.id].paused and found[stuck.id].start_at is None
    assert found[stuck.id].warning == ("Paused: the type t.b was paused (partner down); it starts once resumed.")
    assert seconds_from(now, found[after.id].start_at) == 0  # not behind the paused job

    levers.pause("queue", "normal", actor_label="ops script")
    found = estimates.estimate([after], now=now, workers=1)
    assert found[after.id].paused and "queue normal was paused" in found[after.id].warning
    assert "ops script" not in found[after.id].warning  # who paused it is for the levers' viewers
    low = row("t.a", priority="low", enqueued_at=now)
    assert seconds_from(now, estimates.estimate([low], now=now, workers=1)[low.id].start_at) == 0
    outlook = estimates.outlook({"t.a": False, "t.b": False})
    assert outlook["normal"]["t.a"].paused and outlook["immediate"]["t.b"].paused
    assert outlook["immediate"]["t.a"].start_at is not None and not outlook["immediate"]["t.a"].paused


def test_a_huge_size_at_a_learnt_pace_per_unit_is_estimated_no_further_than_the_horizon():
    """A type learns seconds per unit of size from its runs: a job of size 1e15 at a tenth
    of a second a unit would finish past datetime's range (an OverflowError on every page
    and socket that shows its estimate, found by an adversarial run): it is capped, as a
    far start is."""
    finished = timezone.now() - timedelta(minutes=30)
    past_jobs(
        Job(
            type="t.sized",
            status=Status.COMPLETE,
            size=size,
            started_at=finished - timedelta(seconds=size / 10),
            finished_at=finished,
        )  # fmt: skip
        for size in (1, 2, 3, 4, 5, 6)
    )
    estimates.clear_cache()
    now = timezone.now()
    huge = row("t.sized", enqueued_at=now, size=1e15, size_class=sizes.size_class(1e15))
    got = estimates.estimate([huge], now=now, workers=1)[huge.id]
    horizon = now + timedelta(seconds=estimates.HORIZON_SECONDS)
    assert got.finish_at is not None and got.finish_at <= horizon and got.finish_high <= horizon
    assert got.start_at is not None and got.start_at < got.finish_at  # it starts now: only its run is far
