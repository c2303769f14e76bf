"""When will it start, when will it finish.

The line is simulated, not guessed. W live workers are each free once their running
job's remaining time (from its reported progress, else its type's average duration minus
the time it has run) is spent; the queued jobs ahead — higher priority first, then by enqueue time, the order RQ's
workers take them in — each occupy the next free worker for their type's average
duration. A job not in line yet (``run_at``, retry backoff, the work window, unfinished
dependencies) starts when it becomes ready or when the line ahead of it has drained,
whichever is later; a heavy one only while a work window is open.

The line ahead of every job asked about is counted by type between their places at
once (``jobs.insight.line``), so a page of 50 jobs costs about what one job costs. Averages per
type come from recent history and are cached briefly per process.
"""

from __future__ import annotations

import functools
import heapq
import statistics
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import cast

from django.conf import settings
from django.db.models import Count
from django.utils import timezone
from redis.exceptions import RedisError

from jobs.core import flow, opening, queueing
from jobs.core.models import FINAL_STATUSES, PENDING_STATUSES, Job, Status
from jobs.core.submit import DEPENDENCY_FIELDS
from jobs.insight import line

NO_WORKER = "No worker is alive, so nothing will start: start one with `manage.py rqworker-pool`."
REDIS_DOWN = "Redis is unreachable, so the live workers are unknown."
# Past this many jobs of one type in one stretch of the line, whole rounds (one job per
# worker) advance at once instead of job by job.
EXACT_JOBS = 1000
HISTORY_SIZE = 100  # recent completions per type that make its average duration
_DURATION_CACHE_SECONDS = 30.0
_THIN_CACHE_SECONDS = 2.0
ARRIVAL_WINDOW = 60.0
_ARRIVALS_CACHE_SECONDS = 10.0
MAX_HIGHER_SHARE = 0.9
_DEPENDENCY_DEPTH = 4
PROBE_TYPE = "?"  # no type is named so: no lever, no limit, the default duration


@dataclass(frozen=True)
class Estimate:
    start_at: datetime | None = None
    finish_at: datetime | None = None
    warning: str = ""
    paused: bool = False  # a lever holds it: no time until someone resumes it


NONE = Estimate()


# --- Inputs: durations, workers, running jobs -----------------------------------------

_durations: dict[str, tuple[float, float]] = {}  # type → (seconds, cached until monotonic)


def clear_cache() -> None:
    global _arrivals
    _arrivals = None
    _durations.clear()
    line.clear_cache()


def average_durations(types: Iterable[str]) -> dict[str, float]:
    """Mean run time of each type's last completions, or ETA_DEFAULT_DURATION if unseen."""
    now, found = time.monotonic(), {}
    for job_type in set(types):
        cached = _durations.get(job_type)
        if cached is None or cached[1] < now:
            mean, samples = _recent_mean(job_type)
            # A thin history is re-read soon: the first completions replace the default.
            cached = (mean, now + (_DURATION_CACHE_SECONDS if samples >= HISTORY_SIZE // 5 else _THIN_CACHE_SECONDS))
            _durations[job_type] = cached
        found[job_type] = cached[0]
    return found


def _recent_mean(job_type: str) -> tuple[float, int]:
    runs = (
        Job.objects.filter(type=job_type, status=Status.COMPLETE, started_at__isnull=False)
        .order_by("-finished_at")
        .values_list("started_at", "finished_at")[:HISTORY_SIZE]
    )
    seconds: list[float] = []
    for started, finished in runs:
        assert started is not None and finished is not None  # a complete job that started has both
        seconds.append((finished - started).total_seconds())
    return (statistics.fmean(seconds) if seconds else settings.ETA_DEFAULT_DURATION), len(seconds)


def live_workers() -> int | None:
    """Workers in RQ's registry (their keys expire without heartbeats); None if unknown."""
    try:
        return queueing.worker_count()
    except RedisError:
        return None


# --- The line -----------------------------------------------------------------------


class _Workers:
    """When each live worker is next free, in seconds from now (a min-heap)."""

    def __init__(self, free_in: list[float]):
        self.free_in = sorted(free_in)

    def next_free(self) -> float:
        return self.free_in[0]

    def take(self, duration: float, count: int = 1) -> None:
        rounds, rest = divmod(count, len(self.free_in)) if count > EXACT_JOBS else (0, count)
        if rounds:  # adding the same amount to every entry keeps it a heap
            self.free_in = [free + rounds * duration for free in self.free_in]
        for _ in range(rest):
            heapq.heapreplace(self.free_in, self.free_in[0] + duration)


class _Slots:
    """A limit on one type's starts, as slots each free again ``hold`` seconds after a
    start: K concurrency slots held for a run, or N rate slots held for the period."""

    def __init__(self, free_in: list[float], hold: float):
        self.free_in, self.hold = sorted(free_in), hold

    def next_free(self) -> float:
        return self.free_in[0]

    def use(self, start: float) -> None:
        heapq.heapreplace(self.free_in, start + self.hold)

    def use_many(self, count: int) -> None:
        """Whole rounds at once, far down a line (the starts themselves are not needed)."""
        rounds = count // len(self.free_in)
        self.free_in = [free + rounds * self.hold for free in self.free_in]


@dataclass
class _Snapshot:
    now: datetime
    durations: dict[str, float]
    workers: _Workers
    # Per priority: how much longer a wait in its line is than the line alone says,
    # because work of higher priority keeps arriving and goes first.
    slowdown: dict[str, float]
    running: list[tuple[str, datetime | None, int]] = field(default_factory=list)
    rules: flow.Rules = field(default_factory=flow.Rules)
    _limits: dict[str, list[_Slots]] = field(default_factory=dict)

    def duration(self, job_type: str) -> float:
        if job_type not in self.durations:  # a type met in the line, not among those asked
            self.durations.update(average_durations([job_type]))
        return self.durations[job_type]

    def at(self, seconds: float) -> datetime:
        return self.now + timedelta(seconds=seconds)

    def paused(self, job_type: str, priority: str) -> bool:
        return self.rules.pause_of(job_type, priority) is not None

    def start(self, job_type: str) -> float:
        """Start one job of the type on the next free worker — or later, when its type's
        limits say so. The worker is not kept idle meanwhile (a held job never blocks
        one): it is charged the run's time, and the limit only delays this start."""
        start = self.workers.next_free()
        limits = self._limits_of(job_type)
        for slots in limits:
            start = max(start, slots.next_free())
        self.workers.take(self.duration(job_type))
        for slots in limits:
            slots.use(start)
        return start

    def run(self, job_type: str, count: int) -> None:
        """``count`` jobs of the type run, in line ahead of what is asked about."""
        limits = self._limits_of(job_type)
        if not limits:
            self.workers.take(self.duration(job_type), count)
            return
        exact = min(count, EXACT_JOBS)
        for _ in range(exact):
            self.start(job_type)
        if count > exact:
            self.workers.take(self.duration(job_type), count - exact)
            for slots in limits:
                slots.use_many(count - exact)

    def _limits_of(self, job_type: str) -> list[_Slots]:
        if job_type not in self._limits:
            self._limits[job_type] = self._slots(job_type)
        return self._limits[job_type]

    def _slots(self, job_type: str) -> list[_Slots]:
        rule, found = self.rules.for_type(job_type), []
        if rule.concurrency:
            average = self.duration(job_type)
            running = sorted(
                time_left(average, started, progress, self.now)
                for kind, started, progress in self.running
                if kind == job_type
            )  # fmt: skip
            # More running than the limit (it was lowered): a slot opens as each finishes.
            busy = running[max(0, len(running) - rule.concurrency) :]
            found.append(_Slots(busy + [0.0] * (rule.concurrency - len(busy)), average))
        if rule.rate:
            control = self.rules.controls.get(job_type)
            epoch = self.now.timestamp()
            recent = [t + rule.rate.seconds - epoch for t in (control.rate_starts if control else [])]
            recent = sorted(max(0.0, t) for t in recent if t > 0)[-rule.rate.count :]
            found.append(_Slots(recent + [0.0] * (rule.rate.count - len(recent)), rule.rate.seconds))
        return found


MIN_RUN_FOR_PROGRESS = 1.0  # seconds of running before reported progress says more than the average


def time_left(average: float, started: datetime | None, progress: int, now: datetime) -> float:
    """Seconds a running job still needs. Its own progress, once it has reported some,
    knows better than its type's average (a 90 s run of a type that averages 10 s);
    without progress, the average minus the time it has run, never below zero."""
    if started is None:
        return average
    elapsed = max(0.0, (now - started).total_seconds())
    if 0 < progress < 100 and elapsed >= MIN_RUN_FOR_PROGRESS:
        return elapsed * (100 - progress) / progress
    return max(0.0, average - elapsed)


def _rank(priority: str) -> int:
    return settings.JOB_QUEUES.index(priority)


def _snapshot(types: set[str], now: datetime, worker_count: int, arrivals: Mapping[str, float] | None) -> _Snapshot:
    running = list(Job.objects.filter(status=Status.ACTIVE).values_list("type", "started_at", "progress"))
    durations = average_durations(types | {t for t, _, _ in running})
    remaining = sorted(time_left(durations[t], started, progress, now) for t, started, progress in running)
    # More active rows than workers: some are lost runs the reconciler will requeue.
    free_in = (remaining + [0.0] * worker_count)[:worker_count]
    arrivals = recent_arrivals() if arrivals is None else arrivals
    return _Snapshot(
        now=now,
        durations=durations,
        workers=_Workers(free_in),
        slowdown=_slowdown(arrivals, worker_count),
        running=running,
        rules=flow.rules(),
    )


def _slowdown(arrivals: Mapping[str, float], worker_count: int) -> dict[str, float]:
    """A line gets only the workers' time left over by higher priorities' new work: its
    wait grows by 1 / (1 − their share), the share capped so a wait stays finite."""
    slowdown, share = {}, 0.0
    for priority in settings.JOB_QUEUES:
        slowdown[priority] = 1.0 / (1.0 - min(share, MAX_HIGHER_SHARE))
        share += arrivals.get(priority, 0.0) / worker_count
    return slowdown


_arrivals: tuple[float, dict[str, float]] | None = None


def recent_arrivals() -> dict[str, float]:
    """Per priority, the work submitted per second over the last ARRIVAL_WINDOW seconds
    and already taken up (jobs × their type's average duration / window): what will
    keep arriving. Jobs still waiting are left out: the line counts them, and a one-off
    bulk submit is no rate."""
    global _arrivals
    if _arrivals is None or _arrivals[0] < time.monotonic():
        since = timezone.now() - timedelta(seconds=ARRIVAL_WINDOW)
        rows = list(
            Job.objects.filter(created_at__gte=since)
            .exclude(status__in=PENDING_STATUSES)  # what still waits is in the line already
            .values_list("priority", "type")
            .annotate(n=Count("pk"))
            .order_by()
        )
        durations = average_durations(t for _, t, _ in rows)
        load: dict[str, float] = defaultdict(float)
        for priority, job_type, n in rows:
            load[priority] += n * durations[job_type] / ARRIVAL_WINDOW
        _arrivals = (time.monotonic() + _ARRIVALS_CACHE_SECONDS, dict(load))
    return _arrivals[1]


@dataclass
class _Cuts:
    """Places in one priority's line where someone asks "when do I start?"."""

    times: list[datetime]  # enqueue times of queued jobs asked about, ascending
    to_end: bool = False  # also the whole line (for later priorities, and jobs not in line yet)


def _line_ahead(cuts: dict[str, _Cuts]) -> dict[str, list[line.Counts]]:
    """Per priority, per stretch between consecutive cuts, queued jobs by type."""
    return {p: line.stretches(p, [*cut.times, *([None] if cut.to_end else [])]) for p, cut in cuts.items()}


# --- Estimating ---------------------------------------------------------------------


def estimate(
    jobs: Sequence[Job],
    *,
    appended: Sequence[Job] = (),
    dependencies: Mapping[uuid.UUID, Sequence[Job]] | None = None,
    now: datetime | None = None,
    workers: int | None = None,
    arrivals: Mapping[str, float] | None = None,
) -> dict[uuid.UUID, Estimate]:
    """Estimates for stored ``jobs`` and for ``appended`` new ones (not saved yet; queued
    ones join the end of their line in this order). ``dependencies`` gives the new jobs'
    dependencies; stored jobs' are read. ``now``, ``workers`` and ``arrivals`` (work
    submitted per second, per priority) default to the present."""
    everyone = list(jobs) + list(appended)
    if not any(j.status in PENDING_STATUSES or j.status == Status.ACTIVE for j in everyone):
        return {j.id: NONE for j in everyone}  # nothing to estimate: no query
    now = now or timezone.now()
    workers = live_workers() if workers is None else workers
    if workers is None or workers <= 0:
        warning = REDIS_DOWN if workers is None else NO_WORKER
        return {j.id: Estimate(warning=warning) if j.status in PENDING_STATUSES else NONE for j in everyone}
    deps = {**_stored_dependencies(j for j in jobs if j.status == Status.WAITING), **(dependencies or {})}
    everyone += _pending_ancestors(everyone, deps)
    known_new = {j.id for j in appended}
    snap = _snapshot({j.type for j in everyone}, now, workers, arrivals)
    in_line = [j for j in everyone if j.status == Status.QUEUED and j.id not in known_new]
    starts, drained = _walk_line(snap, in_line, [j for j in appended if j.status == Status.QUEUED], everyone)
    return _Resolver(snap, starts, drained, deps).all(everyone)


def for_job(job: Job) -> Estimate:
    return estimate([job])[job.id]


def for_new_job(job_type: str, priority: str, heavy: bool = False) -> Estimate:
    """When a job of this type submitted now would start and finish."""
    probe = Job(id=uuid.uuid4(), type=job_type, priority=priority, heavy=heavy, status=Status.QUEUED)
    return estimate([], appended=[probe])[probe.id]


def outlook(types: Mapping[str, bool]) -> dict[str, dict[str, Estimate]]:
    """Per priority, per job type (name → heavy): when one submitted now would start and
    finish. One line walk per priority, for a type no lever touches: an unrestricted type
    changes only the duration and the window; a paused or limited one walks on its own."""
    durations = average_durations(types)
    windows = functools.cache(opening.current)
    rules = flow.rules()
    found: dict[str, dict[str, Estimate]] = {}
    for priority in settings.JOB_QUEUES:
        line = for_new_job(PROBE_TYPE, priority)
        found[priority] = {}
        for name, heavy in types.items():
            rule = rules.for_type(name)
            if rule.paused or rule.limited or priority in rules.paused_queues:
                found[priority][name] = for_new_job(name, priority, heavy)
                continue
            start = line.start_at
            if start is not None and heavy:
                start = opening.deferral_until(start, windows()) or start
            finish = start + timedelta(seconds=durations[name]) if start else None
            found[priority][name] = Estimate(start, finish, line.warning)
    return found


def _walk_line(
    snap: _Snapshot, in_line: list[Job], appended: list[Job], everyone: list[Job]
) -> tuple[dict[uuid.UUID, float], dict[str, float]]:
    """Run the line through the workers. Returns the start (seconds from now) of each job
    in line, and per priority when everything queued at it or above has started."""
    order = settings.JOB_QUEUES[: max((_rank(j.priority) for j in everyone), default=-1) + 1]
    # The whole of a line is counted only where someone stands behind it: a lower
    # priority, a job not in line yet, or a new job joining the end.
    behind = {j.priority for j in everyone if j.status != Status.QUEUED} | {j.priority for j in appended}
    places: defaultdict[str, defaultdict[datetime, list[Job]]] = defaultdict(lambda: defaultdict(list))
    for job in in_line:
        places[job.priority][job.enqueued_at or snap.now].append(job)
    cuts = {p: _Cuts(sorted(places[p]), to_end=(p != order[-1] or p in behind)) for p in order}
    stretches = _line_ahead(cuts)
    starts: dict[uuid.UUID, float] = {}
    drained: dict[str, float] = {}
    for priority in order:
        if priority in snap.rules.paused_queues:
            continue  # nothing of it starts: it takes no worker time from the rest
        asked: list[Job] = []  # jobs asked about fall in the stretch after their cut
        for index, place in enumerate(cuts[priority].times):
            _run(snap, _without(stretches[priority][index], asked))
            asked = places[priority][place]
            _start(snap, asked, starts)
        if cuts[priority].to_end:
            _run(snap, _without(stretches[priority][-1], asked))
            _start(snap, [j for j in appended if j.priority == priority], starts)
            drained[priority] = snap.workers.next_free()
    return starts, drained


def _start(snap: _Snapshot, jobs: list[Job], starts: dict[uuid.UUID, float]) -> None:
    for job in jobs:
        if not snap.paused(job.type, job.priority):
            starts[job.id] = snap.start(job.type)


def _without(counts: Mapping[str, float], jobs: list[Job]) -> dict[str, float]:
    left = dict(counts)
    for job in jobs:
        if left.get(job.type, 0) > 0:
            left[job.type] -= 1
    return left


def _run(snap: _Snapshot, counts: Mapping[str, float]) -> None:
    for job_type, n in sorted(counts.items()):
        if round(n) > 0 and not snap.rules.type_paused(job_type):  # deep in a long line the counts are interpolated
            snap.run(job_type, round(n))


class _Resolver:
    """Starts and finishes from the walked line, readiness, dependencies and the window."""

    def __init__(self, snap, starts, drained, deps):
        self.snap, self.starts, self.drained, self.deps = snap, starts, drained, deps
        self.windows = functools.cache(opening.current)  # read once, only for heavy jobs
        self.done: dict[uuid.UUID, Estimate] = {}

    def all(self, jobs: list[Job]) -> dict[uuid.UUID, Estimate]:
        return {job.id: self.of(job) for job in jobs}

    def of(self, job: Job, depth: int = 0) -> Estimate:
        if job.id not in self.done:
            self.done[job.id] = self._compute(job, depth)
        return self.done[job.id]

    def _compute(self, job: Job, depth: int) -> Estimate:
        snap = self.snap
        if job.status in FINAL_STATUSES:
            return NONE
        if job.status == Status.ACTIVE:
            left = time_left(snap.duration(job.type), job.started_at, job.progress, snap.now)
            return Estimate(job.started_at, snap.now + timedelta(seconds=left))
        pause = snap.rules.pause_of(job.type, job.priority)
        if pause is not None:
            return Estimate(warning=flow.pause_note(pause), paused=True)
        if job.status == Status.QUEUED:
            start = snap.at(self.starts[job.id] * snap.slowdown[job.priority])
        else:
            ready = self._ready_at(job, depth)
            if ready is None:
                return Estimate(warning="a dependency failed or cannot be estimated")
            start = max(ready, snap.at(self.drained[job.priority] * snap.slowdown[job.priority]))
        if job.heavy:
            start = opening.deferral_until(start, self.windows()) or start
        return Estimate(start, start + timedelta(seconds=snap.duration(job.type)))

    def _ready_at(self, job: Job, depth: int) -> datetime | None:
        ready = max(self.snap.now, job.scheduled_for or self.snap.now)
        if job.status != Status.WAITING:
            return ready
        if job.run_at:
            ready = max(ready, job.run_at)
        for dep in self.deps.get(job.id, ()):
            if dep.status == Status.COMPLETE:
                continue
            finish = self.of(dep, depth + 1).finish_at if depth < _DEPENDENCY_DEPTH else None
            if finish is None:
                return None
            ready = max(ready, finish)
        return ready


def _stored_dependencies(waiting: Iterable[Job]) -> dict[uuid.UUID, list[Job]]:
    ids = [j.id for j in waiting]
    if not ids:
        return {}
    links = Job.depends_on.through.objects.filter(from_job_id__in=ids).values_list("from_job_id", "to_job_id")
    by_job = defaultdict(list)
    for job_id, dep_id in links:
        by_job[job_id].append(dep_id)
    wanted = {d for ds in by_job.values() for d in ds}
    found = {j.id: j for j in Job.objects.filter(pk__in=wanted).only(*DEPENDENCY_FIELDS)}
    return {job_id: [found[d] for d in dep_ids if d in found] for job_id, dep_ids in by_job.items()}


def _pending_ancestors(jobs: list[Job], deps: dict[uuid.UUID, Sequence[Job]]) -> list[Job]:
    """Unfinished dependencies (and theirs, a few levels up) join the estimate: a waiting
    job starts after they finish. ``deps`` gains their own dependencies."""
    known = {j.id for j in jobs}
    extra: list[Job] = []
    frontier = [d for j in jobs for d in deps.get(j.id, ()) if d.status in PENDING_STATUSES | {Status.ACTIVE}]
    for _ in range(_DEPENDENCY_DEPTH):
        fresh = list({d.id: d for d in frontier if d.id not in known}.values())
        if not fresh:
            break
        known.update(d.id for d in fresh)
        extra += fresh
        more = _stored_dependencies(d for d in fresh if d.status == Status.WAITING)
        deps.update(more)
        frontier = [d for ds in more.values() for d in ds if d.status in PENDING_STATUSES | {Status.ACTIVE}]
    return extra


# --- Accuracy -----------------------------------------------------------------------


def record_first(jobs: Sequence[Job], dependencies: Mapping[uuid.UUID, Sequence[Job]]) -> None:
    """Stamp new (unsaved) jobs with their first estimate; the claim records the error."""
    pending = [j for j in jobs if j.status in PENDING_STATUSES]
    if not pending:
        return
    guesses = estimate([], appended=pending, dependencies=dependencies)
    for job in pending:
        job.first_estimated_start_at = guesses[job.id].start_at
        job.first_estimated_finish_at = guesses[job.id].finish_at


def accuracy(since: datetime | None = None, limit: int = 1000) -> dict:
    """How far first estimates were from real starts, over the last ``limit`` started jobs.

    ``fraction`` is |error| / wait, the wait being submit → real start (at least 1 s, so
    a job that starts at once does not count as a 100 % miss for a few milliseconds)."""
    rows = Job.objects.filter(eta_error_seconds__isnull=False, first_estimated_start_at__isnull=False)
    if since:
        rows = rows.filter(created_at__gte=since)
    ordered = rows.order_by("-created_at").values_list("eta_error_seconds", "first_estimated_start_at", "created_at")
    samples = cast(list[tuple[float, datetime, datetime]], list(ordered[:limit]))  # filtered not null above
    if not samples:
        return {"samples": 0}
    errors = [abs(e) for e, _, _ in samples]
    fractions = [
        abs(e) / max(1.0, (first + timedelta(seconds=e) - created).total_seconds()) for e, first, created in samples
    ]
    return {
        "samples": len(samples),
        "median_seconds": round(_quantile(errors, 0.5), 3),
        "p90_seconds": round(_quantile(errors, 0.9), 3),
        "median_fraction": round(_quantile(fractions, 0.5), 4),
        "p90_fraction": round(_quantile(fractions, 0.9), 4),
    }


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


BATCH_ESTIMATED_JOBS = 200  # a batch's finish is estimated from its last unfinished jobs in line


def batch_finish(batch_id) -> datetime | None:
    """When a batch's last job should end: the latest finish estimate among its last
    ``BATCH_ESTIMATED_JOBS`` unfinished jobs (the end of its line), or None."""
    unfinished = list(Job.objects.filter(batch_id=batch_id).unfinished().order_by("-created_at")[:BATCH_ESTIMATED_JOBS])
    if not unfinished:
        return None
    finishes = [e.finish_at for e in estimate(unfinished).values() if e.finish_at]
    return max(finishes) if finishes else None
