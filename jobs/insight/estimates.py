"""When will it start, when will it finish.

The line is simulated, not guessed. W live workers are each free once their running
job's remaining time (from its reported progress, else its type's average duration minus
the time it has run) is spent; the queued jobs ahead — higher priority first, then by enqueue time, the order RQ's
workers take them in — each occupy the next free worker for their type's average
duration. A job not in line yet (``run_at``, retry backoff, the work window, unfinished
dependencies) starts when it becomes ready or when the line ahead of it has drained,
whichever is later; a heavy one only while a work window is open.

The line ahead of every job asked about is counted by type between their places at
once (``jobs.insight.line``), so a page of 50 jobs costs about what one job costs.
Durations per type (and size) come from recent history (``jobs.insight.durations``).

Every estimate carries an 80 % range. The walk adds up the doubt of the work it hands out
before each start: each run's own spread (independent, so it averages out over a long
line) and the doubt about each type's mean (shared by all its jobs, so it does not — a
line of a type never seen is as uncertain as its whole length). The start is about the
work ahead divided among the workers; its spread is taken as a log-normal's with the
estimate as its mean, since a start cannot be earlier than now and runs late more than
early.
"""

from __future__ import annotations

import functools
import heapq
import math
import random
import statistics
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count
from django.utils import timezone
from redis.exceptions import RedisError

from jobs.core import flow, leases, opening, queueing
from jobs.core.models import FINAL_STATUSES, PENDING_STATUSES, Job, Status
from jobs.core.sizes import representative_size
from jobs.core.submit import DEPENDENCY_FIELDS
from jobs.insight import calibration, durations, line
from jobs.insight.calibration import DEFAULT_BOUNDS
from jobs.insight.durations import Duration

NO_WORKER = "No worker is alive, so nothing will start: start one with `manage.py rqworker-pool`."
REDIS_DOWN = "Redis is unreachable, so the live workers are unknown."
# Past this many jobs of one type in one stretch of the line, whole rounds (one job per
# worker) advance at once instead of job by job.
EXACT_JOBS = 1000
COLD_SHARE = 0.25  # an estimate is cold when guesses for types without history make this much of its doubt
PROGRESS_DOUBT = 0.25  # how far a running job's own pace may be off, as a share of what is left
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
    # The 80 % ranges: the start (and finish) falls between low and high 8 times in 10.
    start_low: datetime | None = None
    start_high: datetime | None = None
    finish_low: datetime | None = None
    finish_high: datetime | None = None
    cold: bool = False  # it leans on a guess for a type without history
    start_doubt: float = 0.0  # seconds: the standard deviation behind the start's range
    start_sigma: float = 0.0  # the same as the log-normal's σ of the wait (calibration measures in it)
    bounds: tuple[float, float] = DEFAULT_BOUNDS  # the range's ends, in σ (calibration.bounds)

    @property
    def start_range(self) -> tuple[datetime, datetime] | None:
        return (self.start_low, self.start_high) if self.start_low and self.start_high else None

    @property
    def finish_range(self) -> tuple[datetime, datetime] | None:
        return (self.finish_low, self.finish_high) if self.finish_low and self.finish_high else None


NONE = Estimate()


def spread_range(centre: float, doubt: float, bounds: tuple[float, float] = DEFAULT_BOUNDS) -> tuple[float, float]:
    """The range of a time ``centre`` seconds away with standard deviation ``doubt``: a
    log-normal with that mean and deviation (never before now, longer to the late side),
    from ``bounds[0]`` to ``bounds[1]`` σ around its log-mean (±1.28: 80 %, before
    calibration)."""
    sigma = calibration.log_sigma(centre, doubt)
    if sigma == 0:
        return centre, centre
    mu = math.log(centre) - sigma**2 / 2
    return math.exp(mu + bounds[0] * sigma), math.exp(mu + bounds[1] * sigma)


# --- Inputs: durations, workers, running jobs -----------------------------------------


def clear_cache() -> None:
    global _arrivals
    _arrivals = None
    calibration.clear_cache()
    durations.clear_cache()
    line.clear_cache()


def live_workers() -> int | None:
    """Workers in RQ's registry (their keys expire without heartbeats); None if unknown."""
    try:
        return queueing.worker_count()
    except RedisError:
        return None


# --- The line -----------------------------------------------------------------------


class _Workers:
    """When each live worker is next free, in seconds from now (a min-heap), with the
    variance of that time due to the jobs running now (the queued work handed out later
    is the snapshot's doubt, pooled over all workers)."""

    def __init__(self, free_in: list[float], variances: list[float] | None = None):
        self.free_in = sorted(zip(free_in, variances or [0.0] * len(free_in), strict=True))

    @property
    def count(self) -> int:
        return len(self.free_in)

    def next_free(self) -> float:
        return self.free_in[0][0]

    def next_variance(self) -> float:
        return self.free_in[0][1]

    def take(self, duration: float, count: int = 1) -> None:
        rounds, rest = divmod(count, len(self.free_in)) if count > EXACT_JOBS else (0, count)
        if rounds:  # adding the same amount to every entry keeps it a heap
            self.free_in = [(free + rounds * duration, v) for free, v in self.free_in]
        for _ in range(rest):
            free, variance = self.free_in[0]
            heapq.heapreplace(self.free_in, (free + duration, variance))


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
    workers: _Workers
    # Per priority: what higher priorities' new work does to a wait in its line.
    ahead: dict[str, _Ahead] = field(default_factory=dict)
    running: list[tuple[str, datetime | None, int]] = field(default_factory=list)
    rules: flow.Rules = field(default_factory=flow.Rules)
    # Per work key (a type, or a type and size class: ``line.work``).
    durations: dict[str, Duration] = field(default_factory=dict)
    prior: Duration | None = None  # for types without history and no better guess
    paces: dict[str, Duration] = field(default_factory=dict)  # types without history, from a run
    _limits: dict[str, list[_Slots]] = field(default_factory=dict)
    # The doubt the walk has handed out so far: the runs' own variance (independent), the
    # doubt about each type's mean times its jobs taken (shared), and how much of it came
    # from types without history.
    _independent: float = 0.0
    _shared: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    _cold_independent: float = 0.0
    _cold_types: set[str] = field(default_factory=set)

    def duration(self, key: str) -> Duration:
        if key not in self.durations:
            job_type, klass = line.parts(key)
            # A type without history: one of its runs in progress shows its pace.
            prior = self.paces.get(job_type) or self.prior
            self.durations[key] = durations.of(job_type, representative_size(klass), prior)
        return self.durations[key]

    def at(self, seconds: float) -> datetime:
        return _later(self.now, seconds)

    def paused(self, job_type: str, priority: str) -> bool:
        return self.rules.pause_of(job_type, priority) is not None

    def doubt(self) -> float:
        """Seconds of standard deviation of the next start: the work handed out so far,
        shared among the workers."""
        shared = sum(error**2 for error in self._shared.values())
        return math.sqrt(self.workers.next_variance() + (self._independent + shared) / self.workers.count**2)

    @property
    def cold(self) -> bool:
        """Does a guess for types without history make up much of the doubt so far? (One
        new job far ahead in a long line barely moves an estimate; it is not "cold".)"""
        if not self._cold_types and not self._cold_independent:
            return False
        shared = {t: error**2 for t, error in self._shared.items()}
        cold = self._cold_independent + sum(shared[t] for t in self._cold_types)
        return cold >= COLD_SHARE * (self._independent + sum(shared.values()))

    def stretched(self, priority: str, seconds: float, doubt: float) -> tuple[float, float]:
        """A wait the line alone puts at ``seconds`` (± ``doubt``), with the work of
        higher priorities that keeps arriving: (wait, doubt)."""
        return self.ahead[priority].stretch(seconds, doubt, self.workers.count)

    def owe(self, key: str, count: int = 1, duration: Duration | None = None) -> None:
        """``count`` runs of ``key`` are handed out: their doubt weighs on every later start."""
        d = duration or self.duration(key)
        job_type = line.parts(key)[0]
        self._independent += count * d.spread**2
        self._shared[job_type] += count * d.mean_error
        if d.cold:
            self._cold_independent += count * d.spread**2
            self._cold_types.add(job_type)

    def start(self, key: str) -> float:
        """Start one job of the work on the next free worker — or later, when its type's
        limits say so. The worker is not kept idle meanwhile (a held job never blocks
        one): it is charged the run's time, and the limit only delays this start."""
        start = self.workers.next_free()
        limits = self._limits_of(key)
        for slots in limits:
            start = max(start, slots.next_free())
        self.workers.take(self.duration(key).mean)
        for slots in limits:
            slots.use(start)
        return start

    def run(self, key: str, count: int) -> None:
        """``count`` jobs of the work run, in line ahead of what is asked about."""
        self.owe(key, count)
        limits = self._limits_of(key)
        if not limits:
            self.workers.take(self.duration(key).mean, count)
            return
        exact = min(count, EXACT_JOBS)
        for _ in range(exact):
            self.start(key)
        if count > exact:
            self.workers.take(self.duration(key).mean, count - exact)
            for slots in limits:
                slots.use_many(count - exact)

    def _limits_of(self, key: str) -> list[_Slots]:
        job_type = line.parts(key)[0]
        if job_type not in self._limits:
            self._limits[job_type] = self._slots(job_type)
        return self._limits[job_type]

    def _slots(self, job_type: str) -> list[_Slots]:
        rule, found = self.rules.for_type(job_type), []
        if rule.concurrency:
            average = self.duration(job_type).mean
            running = [
                time_left(average, started, progress, self.now)
                for key, started, progress in self.running
                if line.parts(key)[0] == job_type
            ]  # fmt: skip
            # Canceled runs not stopped yet take a slot too, until their lease passes at most.
            running = sorted(
                running + [(until - self.now).total_seconds() for until in leases.stopping_until(job_type)]
            )
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


def _left_doubt(snap: _Snapshot, key: str, started: datetime | None, progress: int) -> Duration:
    """What a running job still needs, with its doubt: its own pace once it reported
    progress, else what runs of its type that lasted as long still took."""
    duration = snap.duration(key)
    left = time_left(duration.mean, started, progress, snap.now)
    elapsed = max(0.0, (snap.now - started).total_seconds()) if started else 0.0
    if 0 < progress < 100 and elapsed >= MIN_RUN_FOR_PROGRESS:
        return Duration(left, left * PROGRESS_DOUBT, 0.0, duration.cold)
    job_type, klass = line.parts(key)
    prior = snap.paces.get(job_type) or snap.prior
    return durations.remaining(job_type, representative_size(klass), elapsed, prior)


def _rank(priority: str) -> int:
    return settings.JOB_QUEUES.index(priority)


def _snapshot(work: set[str], now: datetime, worker_count: int, arrivals: Mapping[str, float] | None) -> _Snapshot:
    active = Job.objects.filter(status=Status.ACTIVE).values_list("type", "size_class", "started_at", "progress")
    running = [(line.work(t, klass), started, progress) for t, klass, started, progress in active]
    snap = _Snapshot(
        now=now,
        workers=_Workers([]),
        running=running,
        rules=flow.rules(),
        prior=durations.default_prior(durations.of(line.parts(key)[0]) for key in work),
        paces=_paces(running, now),
    )
    lefts = sorted(
        ((key, _left_doubt(snap, key, started, progress)) for key, started, progress in running),
        key=lambda pair: pair[1].mean,
    )
    # More active rows than workers: some are lost runs the reconciler will requeue.
    busy = lefts[:worker_count]
    snap.workers = _Workers(*_freeing_order(snap, busy, worker_count))
    for key, left in busy:  # their doubt about the mean is shared with the line's jobs of the type
        snap.owe(key, duration=Duration(left.mean, 0.0, left.mean_error, left.cold))
    recent = arrival_profile(now) if arrivals is None else ArrivalProfile(dict(arrivals), {}, {})
    snap.ahead = _higher_priorities(recent, worker_count)
    return snap


FREEING_DRAWS = 64  # draws of the running jobs' remaining times (fewer with many workers)
_DRAW_BUDGET = 20_000


def _freeing_order(snap: _Snapshot, busy: list[tuple[str, Duration]], worker_count: int):
    """When the workers come free, first to last: the mean and variance of each order
    statistic of the running jobs' remaining times (idle workers are free now). The
    first of three uncertain runs ends, on average, well before the shortest average:
    drawing them gets that right. The draws are stratified (each job's quantiles, in a
    seeded shuffle), so an estimate neither flickers nor misses a lone job's mean."""
    if not busy:
        return [0.0] * worker_count, [0.0] * worker_count
    rng = random.Random(len(busy))
    draws = max(16, min(FREEING_DRAWS, _DRAW_BUDGET // worker_count))
    columns = [_stratified(left, draws, rng) for _, left in busy]
    columns += [[0.0] * draws] * (worker_count - len(busy))
    ordered = [sorted(values) for values in zip(*columns, strict=True)]
    by_rank = list(zip(*ordered, strict=True))
    return [statistics.fmean(r) for r in by_rank], [durations.pvariance(r) for r in by_rank]


def _stratified(left: Duration, draws: int, rng: random.Random) -> list[float]:
    """``draws`` values of one running job's remaining time at evenly spaced quantiles,
    shuffled: from its type's long runs if known, else a log-normal with its mean and
    spread."""
    if left.draws:
        pool = sorted(left.draws)
        values = [pool[min(len(pool) - 1, int((i + 0.5) / draws * len(pool)))] for i in range(draws)]
    elif left.mean <= 0 or left.spread <= 0:
        values = [left.mean] * draws
    else:
        sigma2 = math.log1p((left.spread / left.mean) ** 2)
        mu, sigma = math.log(left.mean) - sigma2 / 2, math.sqrt(sigma2)
        values = [math.exp(mu + sigma * z) for z in _normal_quantiles(draws)]
    rng.shuffle(values)
    return values


@functools.cache
def _normal_quantiles(draws: int) -> tuple[float, ...]:
    """A standard normal's quantiles at evenly spaced points, worked out once per count
    (every running job's draws scale them: a submit with many running must not redo it)."""
    normal = statistics.NormalDist()
    return tuple(normal.inv_cdf((i + 0.5) / draws) for i in range(draws))


def _paces(running: list[tuple[str, datetime | None, int]], now: datetime) -> dict[str, Duration]:
    """Types without history that have a run in progress reporting progress: how long a
    whole run takes at that pace."""
    found: dict[str, Duration] = {}
    for key, started, progress in running:
        job_type = line.parts(key)[0]
        if started and job_type not in found and not durations.learnt(job_type):
            pace = durations.from_progress((now - started).total_seconds(), progress)
            if pace is not None:
                found[job_type] = pace
    return found


@dataclass(frozen=True)
class _Ahead:
    """What the higher priorities' new work does to a wait in one line.

    * ``slowdown``: the line gets only the workers' time their work leaves over, so its
      wait grows by 1 / (1 − their share), the share capped so a wait stays finite;
    * ``surge``: how lumpy that work is (Σ jobs × E[duration²] per second): work arriving
      over a wait of T seconds varies by surge × T (a compound Poisson process), and
      work arriving while the line clears brings more (a busy period's variance grows
      with the slowdown cubed);
    * ``rate_doubt``: how far the slowdown may be off, as a share of the wait: their rate
      is read from one window's jobs, a count with Poisson doubt (share / √jobs), and a
      wait of 1 / (1 − share) moves by slowdown² per unit of share."""

    slowdown: float = 1.0
    surge: float = 0.0
    rate_doubt: float = 0.0

    def stretch(self, seconds: float, doubt: float, workers: int) -> tuple[float, float]:
        wait = max(0.0, seconds * self.slowdown)
        lumps = self.surge * wait * self.slowdown**2 / workers**2
        rate = (wait * self.rate_doubt) ** 2
        return wait, math.sqrt((doubt * self.slowdown) ** 2 + lumps + rate)


def _higher_priorities(recent: ArrivalProfile, worker_count: int) -> dict[str, _Ahead]:
    """Per priority, what the new work of the priorities above it does to its waits."""
    found: dict[str, _Ahead] = {}
    share, surge, seen = 0.0, 0.0, 0
    for priority in settings.JOB_QUEUES:
        slowdown = 1.0 / (1.0 - min(share, MAX_HIGHER_SHARE))
        share_doubt = share / math.sqrt(seen) if seen else 0.0
        found[priority] = _Ahead(slowdown, surge, share_doubt * slowdown)
        share += recent.load.get(priority, 0.0) / worker_count
        surge += recent.surge.get(priority, 0.0)
        seen += recent.seen.get(priority, 0)
    return found


@dataclass(frozen=True)
class ArrivalProfile:
    load: dict[str, float]  # per priority: work seconds submitted per second
    surge: dict[str, float]  # per priority: Σ jobs × E[duration²] per second (how lumpy that work is)
    seen: dict[str, int]  # per priority: jobs the rates were read from (few jobs, doubtful rates)


_arrivals: tuple[float, ArrivalProfile] | None = None


def arrival_profile(now: datetime | None = None) -> ArrivalProfile:
    """Per priority, the work submitted over the last ARRIVAL_WINDOW seconds (before
    ``now``) and already taken up: what will keep arriving. Jobs still waiting are left
    out: the line counts them, and a one-off bulk submit is no rate."""
    global _arrivals
    if _arrivals is None or _arrivals[0] < time.monotonic():
        since = (now or timezone.now()) - timedelta(seconds=ARRIVAL_WINDOW)
        rows = list(
            Job.objects.filter(created_at__gte=since)
            .exclude(status__in=PENDING_STATUSES)  # what still waits is in the line already
            .values_list("priority", "type")
            .annotate(n=Count("pk"))
            .order_by()
        )
        load: dict[str, float] = defaultdict(float)
        surge: dict[str, float] = defaultdict(float)
        seen: dict[str, int] = defaultdict(int)
        for priority, job_type, n in rows:
            d = durations.of(job_type)
            load[priority] += n * d.mean / ARRIVAL_WINDOW
            surge[priority] += n * (d.mean**2 + d.variance) / ARRIVAL_WINDOW
            seen[priority] += n
        found = ArrivalProfile(dict(load), dict(surge), dict(seen))
        _arrivals = (time.monotonic() + _ARRIVALS_CACHE_SECONDS, found)
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
    snap = _snapshot({_work(j) for j in everyone}, now, workers, arrivals)
    in_line = [j for j in everyone if j.status == Status.QUEUED and j.id not in known_new]
    starts, drained = _walk_line(snap, in_line, [j for j in appended if j.status == Status.QUEUED], everyone)
    return _Resolver(snap, starts, drained, deps).all(everyone)


def _work(job: Job) -> str:
    return line.work(job.type, job.size_class)


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
    windows = functools.cache(opening.current)
    rules = flow.rules()
    found: dict[str, dict[str, Estimate]] = {}
    for priority in settings.JOB_QUEUES:
        probe = for_new_job(PROBE_TYPE, priority)
        found[priority] = {}
        for name, heavy in types.items():
            rule = rules.for_type(name)
            if rule.paused or rule.limited or priority in rules.paused_queues or probe.start_at is None:
                found[priority][name] = for_new_job(name, priority, heavy)
                continue
            found[priority][name] = _after(probe, durations.of(name), heavy, windows)
    return found


def _after(line_end: Estimate, duration: Duration, heavy: bool, windows) -> Estimate:
    """A job of ``duration`` that starts when ``line_end`` says."""
    assert line_end.start_at is not None  # the caller asks only of a line with a start
    now = timezone.now()
    centre = (line_end.start_at - now).total_seconds()
    return _timed(now, centre, line_end.start_doubt, duration, line_end.cold or duration.cold,
                  line_end.bounds, windows if heavy else None, line_end.warning)  # fmt: skip


def _timed(
    now: datetime,
    start: float,
    doubt: float,
    duration: Duration,
    cold: bool,
    bounds: tuple[float, float] = DEFAULT_BOUNDS,
    windows=None,
    warning: str = "",
) -> Estimate:
    """The estimate of a job that starts ``start`` seconds from ``now`` (standard
    deviation ``doubt``) and runs ``duration``; a heavy job (``windows`` given) waits
    for a work window to be open. ``bounds``: the range's, in σ (calibration.bounds)."""
    low, high = spread_range(start, doubt, bounds)
    return _ranged(now, (low, start, high), doubt, duration, cold, bounds, windows, warning)


# The farthest an estimate reaches: a backlog behind a slow rate (one start a month, a
# million jobs), or a run of a huge size at a learnt pace per unit, would otherwise be a
# time past datetime's range — an OverflowError on every page that shows the estimate.
# "A century from now" says the same.
HORIZON_SECONDS = 100 * 365 * 86400.0


def _later(now: datetime, seconds: float) -> datetime:
    return now + timedelta(seconds=min(seconds, HORIZON_SECONDS))


def _ranged(
    now: datetime,
    start: tuple[float, float, float],
    doubt: float,
    duration: Duration,
    cold: bool,
    bounds: tuple[float, float] = DEFAULT_BOUNDS,
    windows=None,
    warning: str = "",
) -> Estimate:
    """As ``_timed``, from a start's range (low, estimate, high) in seconds from now."""
    finish_doubt = math.sqrt(doubt**2 + duration.variance)
    finish_low, finish_high = spread_range(start[1] + duration.mean, finish_doubt, bounds)
    at = lambda seconds: _later(now, seconds)  # noqa: E731
    low, centre, high = (at(t) for t in start)
    if windows is not None:
        current = windows()
        deferred = [opening.deferral_until(t, current) or t for t in (low, centre, high)]
        deferral = (deferred[1] - centre).total_seconds()
        low, centre, high = deferred
        finish_low, finish_high = finish_low + deferral, finish_high + deferral
    after = lambda start_at: at((start_at - now).total_seconds() + duration.mean)  # noqa: E731  # its run, capped too
    return Estimate(
        start_at=centre,
        finish_at=after(centre),
        warning=warning,
        start_low=low,
        start_high=high,
        finish_low=max(low, at(finish_low)),
        finish_high=max(after(high), at(finish_high)),
        cold=cold,
        start_doubt=doubt,
        start_sigma=calibration.log_sigma(start[1], doubt),
        bounds=bounds,
    )


@dataclass(frozen=True)
class _Start:
    seconds: float  # from now, before the slowdown of arrivals
    doubt: float
    cold: bool


def _walk_line(
    snap: _Snapshot, in_line: list[Job], appended: list[Job], everyone: list[Job]
) -> tuple[dict[uuid.UUID, _Start], dict[str, _Start]]:
    """Run the line through the workers. Returns the start of each job in line, and per
    priority when everything queued at it or above has started."""
    order = settings.JOB_QUEUES[: max((_rank(j.priority) for j in everyone), default=-1) + 1]
    # The whole of a line is counted only where someone stands behind it: a lower
    # priority, a job not in line yet, or a new job joining the end.
    behind = {j.priority for j in everyone if j.status != Status.QUEUED} | {j.priority for j in appended}
    places: defaultdict[str, defaultdict[datetime, list[Job]]] = defaultdict(lambda: defaultdict(list))
    for job in in_line:
        places[job.priority][job.enqueued_at or snap.now].append(job)
    cuts = {p: _Cuts(sorted(places[p]), to_end=(p != order[-1] or p in behind)) for p in order}
    stretches = _line_ahead(cuts)
    starts: dict[uuid.UUID, _Start] = {}
    drained: dict[str, _Start] = {}
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
            drained[priority] = _Start(snap.workers.next_free(), snap.doubt(), snap.cold)
    return starts, drained


def _start(snap: _Snapshot, jobs: list[Job], starts: dict[uuid.UUID, _Start]) -> None:
    for job in jobs:
        if not snap.paused(job.type, job.priority):
            key = _work(job)
            doubt, cold = snap.doubt(), snap.cold  # what runs before it, not its own run
            starts[job.id] = _Start(snap.start(key), doubt, cold)
            snap.owe(key)


def _without(counts: Mapping[str, float], jobs: list[Job]) -> dict[str, float]:
    left = dict(counts)
    for job in jobs:
        if left.get(_work(job), 0) > 0:
            left[_work(job)] -= 1
    return left


def _run(snap: _Snapshot, counts: Mapping[str, float]) -> None:
    for key, n in sorted(counts.items()):
        # Deep in a long line the counts are interpolated.
        if round(n) > 0 and not snap.rules.type_paused(line.parts(key)[0]):
            snap.run(key, round(n))


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
        duration = snap.duration(_work(job))
        if job.status == Status.ACTIVE:
            return self._running(job, duration)
        pause = snap.rules.pause_of(job.type, job.priority)
        if pause is not None:
            return Estimate(warning=flow.pause_note(pause), paused=True)
        windows = self.windows if job.heavy else None
        if job.status == Status.QUEUED:
            start = self.starts[job.id]
            centre, doubt = snap.stretched(job.priority, start.seconds, start.doubt)
            cold = start.cold or duration.cold
            return _timed(snap.now, centre, doubt, duration, cold, calibration.bounds(job.priority, cold), windows)
        ready = self._ready_at(job, depth)
        if ready is None:
            return Estimate(warning="a dependency failed or cannot be estimated")
        # It starts once ready and once the line ahead of it has drained, whichever is later.
        line_end = self.drained[job.priority]
        centre, doubt = snap.stretched(job.priority, line_end.seconds, line_end.doubt)
        cold = line_end.cold or duration.cold or ready[3]
        bounds = calibration.bounds(job.priority, cold)
        low, high = spread_range(centre, doubt, bounds)
        start = (max(ready[0], low), max(ready[1], centre), max(ready[2], high))
        return _ranged(
            snap.now, start, (start[2] - start[0]) / (bounds[1] - bounds[0]), duration, cold, bounds, windows
        )

    def _running(self, job: Job, duration: Duration) -> Estimate:
        snap = self.snap
        left = _left_doubt(snap, _work(job), job.started_at, job.progress)
        low, high = spread_range(left.mean, math.sqrt(left.variance))
        return Estimate(
            start_at=job.started_at,
            finish_at=snap.at(left.mean),
            start_low=job.started_at,
            start_high=job.started_at,
            finish_low=snap.at(low),
            finish_high=snap.at(high),
            cold=left.cold,
        )

    def _ready_at(self, job: Job, depth: int) -> tuple[float, float, float, bool] | None:
        """When the job is ready to join its line, in seconds from now: (low, estimate,
        high, leans on a guess), or None when that cannot be known."""
        now = self.snap.now
        earliest = max(now, job.scheduled_for or now)
        if job.status == Status.WAITING and job.run_at:
            earliest = max(earliest, job.run_at)
        seconds = (earliest - now).total_seconds()
        ready = [seconds, seconds, seconds]
        cold = False
        for dep in self.deps.get(job.id, ()) if job.status == Status.WAITING else ():
            if dep.status == Status.COMPLETE:
                continue
            found = self.of(dep, depth + 1) if depth < _DEPENDENCY_DEPTH else NONE
            if found.finish_at is None:
                return None
            finish = (found.finish_low or found.finish_at, found.finish_at, found.finish_high or found.finish_at)
            ready = [max(r, (f - now).total_seconds()) for r, f in zip(ready, finish, strict=True)]
            cold = cold or found.cold
        return ready[0], ready[1], ready[2], cold


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
        guess = guesses[job.id]
        setattr(job, _FIRST, guess)
        job.first_estimated_start_at = guess.start_at
        job.first_estimated_finish_at = guess.finish_at
        job.first_estimated_start_low = guess.start_low
        job.first_estimated_start_high = guess.start_high
        job.first_estimate_cold = guess.cold if guess.start_at else None
        job.first_estimate_sigma = guess.start_sigma or None


_FIRST = "_first_estimate"


def first_of(job: Job) -> Estimate | None:
    """The estimate ``record_first`` gave a job this process just submitted (ranges and
    all; or why there is none, e.g. no live worker), or None: then estimate it again."""
    found = getattr(job, _FIRST, None)
    return found if isinstance(found, Estimate) else None


BATCH_ESTIMATED_JOBS = 200  # a batch's finish is estimated from its last unfinished jobs in line


def batch_finish(batch_id) -> datetime | None:
    """When a batch's last job should end: the latest finish estimate among its last
    ``BATCH_ESTIMATED_JOBS`` unfinished jobs (the end of its line), or None."""
    unfinished = list(Job.objects.filter(batch_id=batch_id).unfinished().order_by("-created_at")[:BATCH_ESTIMATED_JOBS])
    if not unfinished:
        return None
    finishes = [e.finish_at for e in estimate(unfinished).values() if e.finish_at]
    return max(finishes) if finishes else None
