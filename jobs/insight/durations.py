"""How long a job will run, and how sure we are of it.

A duration is an expected value with two kinds of doubt:

* ``spread`` — one run against another (a bimodal or heavy-tailed type varies a lot);
  independent from job to job, so it averages out over a long line;
* ``mean_error`` — doubt about the type's mean itself, shared by every job of the type:
  small after a hundred runs, as large as the mean for a type never seen. It does not
  average out: ten jobs of an unknown type ahead are ten times as uncertain as one.

Warm types learn both from their recent completions. A *sized* type (its jobs declare a
size, e.g. a document's bytes) learns a line ``seconds = base + per_unit × size`` that
outliers cannot bend (Theil–Sen: the median of pairwise slopes) and a spread relative to
it. A type with no history is *cold*: it starts from its declared
``expected_duration``, else from the running attempt's progress rate, else from the
durations of the other types (a wide prior), and says so.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db.models import DurationField, ExpressionWrapper, F

from jobs.core import registry
from jobs.core.models import Job, Status

HISTORY_SIZE = 100  # recent completions per type that make its duration
PRIOR_CV = 0.5  # the spread assumed of a type before its history says otherwise
PRIOR_WEIGHT = 2.0  # that assumption counts as this many runs
COLD_MEAN_ERROR = 1.5  # a prior from other types may be off by more than its whole value
DECLARED_MEAN_ERROR = 0.5  # a declared expected duration is a developer's guess
MIN_PROGRESS_SECONDS = 1.0  # before this, a progress rate says nothing
_CACHE_SECONDS = 30.0
_THIN_CACHE_SECONDS = 2.0


@dataclass(frozen=True)
class Duration:
    mean: float
    spread: float = 0.0
    mean_error: float = 0.0
    cold: bool = False
    # For a running job's remaining time: what runs like it still took (seconds), if known.
    draws: tuple[float, ...] = ()

    @property
    def variance(self) -> float:
        """Of one run, counting the doubt about the mean too."""
        return self.spread**2 + self.mean_error**2


@dataclass(frozen=True)
class _Model:
    """One type's learnt durations: a mean, or a line in the job's size."""

    samples: int
    mean: float = 0.0
    spread: float = 0.0
    base: float = 0.0  # sized: seconds = base + per_unit × size, times (1 ± relative_spread)
    per_unit: float | None = None
    relative_spread: float = 0.0
    # Each run's duration over what the model expected of it, sorted: how much longer
    # than expected runs go on, for jobs still running (``remaining``).
    ratios: tuple[float, ...] = ()

    def at(self, size: float | None) -> Duration:
        if self.per_unit is not None and size is not None:
            expected = max(0.0, self.base + self.per_unit * size)
            spread = expected * self.relative_spread
            return Duration(expected, spread, spread / math.sqrt(self.samples))
        return Duration(self.mean, self.spread, self.spread / math.sqrt(self.samples))


_models: dict[str, tuple[_Model, float]] = {}  # type → (model, cached until monotonic)


def clear_cache() -> None:
    _models.clear()


def of(job_type: str, size: float | None = None, prior: Duration | None = None) -> Duration:
    """The duration of a job of ``job_type`` (of ``size``, if the type is sized). A type
    with no history takes its declared expected duration, else ``prior``."""
    model = _model(job_type)
    if model.samples:
        return model.at(size)
    return cold(job_type, prior)


def cold(job_type: str, prior: Duration | None) -> Duration:
    declared = _declared(job_type)
    if declared is not None:
        return Duration(declared, declared * PRIOR_CV, declared * DECLARED_MEAN_ERROR, cold=True)
    return prior or default_prior()


MIN_TAIL_RUNS = 3  # runs that went on at least as long, to say how much longer one goes


def remaining(job_type: str, size: float | None, elapsed: float, prior: Duration | None = None) -> Duration:
    """How much longer a run that has gone on ``elapsed`` seconds still needs: from the
    runs of its type that lasted at least as long (a heavy-tailed type's long runs tend
    to go on), else its expected duration less the time run, never less than a quarter
    of it (it has not finished, so it needs some time still)."""
    whole = of(job_type, size, prior)
    expected = whole.mean
    model = _model(job_type)
    if expected > 0 and model.ratios:
        ran = elapsed / expected
        longer = [r - ran for r in model.ratios if r > ran]
        if len(longer) >= MIN_TAIL_RUNS:
            mean = expected * statistics.fmean(longer)
            spread = expected * math.sqrt(pvariance(longer))
            draws = tuple(expected * r for r in longer)
            return Duration(mean, spread, whole.mean_error * mean / expected, whole.cold, draws)
    left = max(expected - elapsed, 0.25 * expected)
    return Duration(left, max(whole.spread, left), whole.mean_error, whole.cold)


def learnt(job_type: str) -> bool:
    return _model(job_type).samples > 0


def from_progress(elapsed: float, progress: int) -> Duration | None:
    """A running attempt's own pace, for its type's first estimates: how long a whole run
    takes at the rate it is going."""
    if not 0 < progress < 100 or elapsed < MIN_PROGRESS_SECONDS:
        return None
    total = elapsed * 100 / progress
    return Duration(total, total * PRIOR_CV, total * DECLARED_MEAN_ERROR, cold=True)


def default_prior(others: Iterable[Duration] = ()) -> Duration:
    """For a type nothing is known of: the typical duration of the other types, doubted
    by as much as they differ from one another (at least by its whole value)."""
    means = sorted(d.mean for d in others if not d.cold and d.mean > 0)
    if not means:
        guess = float(settings.ETA_DEFAULT_DURATION)
        return Duration(guess, guess * PRIOR_CV, guess * COLD_MEAN_ERROR, cold=True)
    typical = math.exp(statistics.fmean(math.log(m) for m in means))  # a geometric mean
    between = math.sqrt(pvariance(means)) if len(means) > 1 else 0.0
    return Duration(typical, typical * PRIOR_CV, max(typical * COLD_MEAN_ERROR, between), cold=True)


def _declared(job_type: str) -> float | None:
    found = registry.find(job_type)
    return found.expected_duration if found else None


def _model(job_type: str) -> _Model:
    now = time.monotonic()
    cached = _models.get(job_type)
    if cached is None or cached[1] < now:
        model = _learn(job_type)
        # A thin history is re-read soon: the first completions replace the prior.
        until = now + (_CACHE_SECONDS if model.samples >= HISTORY_SIZE // 5 else _THIN_CACHE_SECONDS)
        cached = _models[job_type] = (model, until)
    return cached[0]


def between(earlier: str, later: str) -> ExpressionWrapper:
    """``later - earlier`` of two datetime fields, worked out by the database: one
    interval read instead of two timestamps parsed (most of what learning cost)."""
    return ExpressionWrapper(F(later) - F(earlier), output_field=DurationField())


def pvariance(values: Sequence[float], mean: float | None = None) -> float:
    """The population variance, summed in floats: ``statistics.pvariance`` sums exact
    fractions, many times slower, for a precision no estimate needs."""
    centre = statistics.fmean(values) if mean is None else mean
    return math.fsum((v - centre) ** 2 for v in values) / len(values)


def _learn(job_type: str) -> _Model:
    runs = (
        Job.objects.filter(type=job_type, status=Status.COMPLETE, started_at__isnull=False)
        .order_by("-finished_at")
        .values_list(between("started_at", "finished_at"), "size")[:HISTORY_SIZE]
    )
    seconds: list[float] = []
    sized: list[tuple[float, float]] = []
    for ran, size in runs:
        assert ran is not None  # a complete job that started has both times
        took = max(0.0, ran.total_seconds())
        seconds.append(took)
        if size is not None:
            sized.append((float(size), took))
    if not seconds:
        return _Model(0)
    mean = statistics.fmean(seconds)
    model = _Model(len(seconds), mean=mean, spread=_shrunk_spread(seconds, mean))
    if len(sized) >= 3 and len({s for s, _ in sized}) >= 2:
        model = _with_size_line(model, sized)
    if model.per_unit is not None:
        expected = [(model.base + model.per_unit * s, t) for s, t in sized]
    else:
        expected = [(mean, t) for t in seconds]
    ratios = tuple(sorted(t / e for e, t in expected if e > 0))
    return dataclasses.replace(model, ratios=ratios)


def _shrunk_spread(seconds: list[float], mean: float) -> float:
    """The runs' standard deviation, pulled towards PRIOR_CV × mean while they are few:
    two runs that took the same time do not prove the next will."""
    observed = pvariance(seconds, mean) if len(seconds) > 1 else 0.0
    assumed = (PRIOR_CV * mean) ** 2
    n = len(seconds)
    return math.sqrt((n * observed + PRIOR_WEIGHT * assumed) / (n + PRIOR_WEIGHT))


def _with_size_line(model: _Model, sized: list[tuple[float, float]]) -> _Model:
    """Theil–Sen: the median of the slopes between every two runs, then the median
    intercept; the spread is relative to the line (a 20 MB file varies in seconds where a
    2 KB one varies in milliseconds), taken robustly (1.4826 × the median deviation)."""
    slopes = [
        (t2 - t1) / (s2 - s1)
        for i, (s1, t1) in enumerate(sized)
        for s2, t2 in sized[i + 1 :]
        if s2 != s1
    ]  # fmt: skip
    per_unit = max(0.0, statistics.median(slopes))
    base = max(0.0, statistics.median(t - per_unit * s for s, t in sized))
    ratios = [t / (base + per_unit * s) for s, t in sized if base + per_unit * s > 0]
    if not ratios:
        return model
    centre = statistics.median(ratios)
    mad = statistics.median(abs(r - centre) for r in ratios)
    n = len(ratios)
    relative = math.sqrt((n * (1.4826 * mad) ** 2 + PRIOR_WEIGHT * PRIOR_CV**2) / (n + PRIOR_WEIGHT))
    return _Model(model.samples, model.mean, model.spread, base, per_unit, relative)
