"""How right were the first ETAs, and how wide must a range be to hold 8 starts in 10?

Every job is estimated at submit; the claim records how far its real start was from that
first estimate. From those records:

* ``accuracy()`` reports the error (median and p90, in seconds and as a share of the
  wait), warm and cold estimates apart, and the *coverage*: how often the real start fell
  inside the 80 % range it was given.
* ``bounds(priority)`` keeps the ranges honest. The estimator's spread is a model (work
  ahead, its doubt, arrivals as a Poisson stream); where the model is too sure or too
  shy, the recent record says by how much. Each start is measured in units of the
  spread its estimate had (the log-normal's σ of the wait), and a new range spans the
  10th to 90th percentile of those measures — conformal calibration: ranges cover about
  80 % of starts on the workload that actually runs, whatever the model got wrong.
  Until enough starts are recorded, the model's own ±1.28 σ is used.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from jobs.core.models import Job
from jobs.insight import durations

RANGE_Z = 1.2816  # a normal's 10th and 90th percentiles lie this many deviations out
DEFAULT_BOUNDS = (-RANGE_Z, RANGE_Z)
TRIVIAL_WAIT = 1.0  # seconds: a start this close to the submit, estimated and real, proves nothing
COVERAGE_SLACK = 0.2  # seconds a start may miss its range by and count as inside (claim latency)
CALIBRATION_SAMPLES = 400  # recent starts that calibrate the ranges
MIN_SAMPLES = 40  # fewer than this (per priority, else all together): the model's own bounds
# How far calibration may move the model's bounds: a run of odd starts must not make every
# range a point or the whole day.
MIN_Z, MAX_Z = 0.3, 6.0
_CACHE_SECONDS = 30.0

_bounds: tuple[float, dict[str, tuple[float, float]]] | None = None


def clear_cache() -> None:
    global _bounds
    _bounds = None


def log_sigma(centre: float, doubt: float) -> float:
    """The σ of a log-normal with mean ``centre`` and standard deviation ``doubt``."""
    return math.sqrt(math.log1p((doubt / centre) ** 2)) if centre > 0 and doubt > 0 else 0.0


def bounds(priority: str, cold: bool = False) -> tuple[float, float]:
    """Where an 80 % range starts and ends, in σ of the wait from its log-mean. A cold
    estimate (a type without history in play) is never narrowed: the record it would
    be narrowed by is of other types."""
    global _bounds
    if _bounds is None or _bounds[0] < time.monotonic():
        _bounds = (time.monotonic() + _CACHE_SECONDS, _learn_bounds())
    found = _bounds[1].get(priority) or _bounds[1].get("") or DEFAULT_BOUNDS
    if cold:
        return min(found[0], DEFAULT_BOUNDS[0]), max(found[1], DEFAULT_BOUNDS[1])
    return found


def _learn_bounds() -> dict[str, tuple[float, float]]:
    rows = (
        # Warm estimates only: a cold one's miss says how wrong a guess was, not how wide
        # the model's ranges should be (and cold ranges are never narrowed anyway).
        Job.objects.filter(
            eta_error_seconds__isnull=False,
            first_estimated_start_at__isnull=False,
            first_estimate_sigma__gt=0,
            first_estimate_cold=False,
        )
        .order_by("-created_at")
        .values_list(
            "priority",
            durations.between("created_at", "first_estimated_start_at"),
            "eta_error_seconds",
            "first_estimate_sigma",
        )  # fmt: skip
    )
    measures: dict[str, list[float]] = {}
    for priority, estimated, error, sigma in rows[:CALIBRATION_SAMPLES]:
        measure = _measure(estimated, error, sigma)
        if measure is not None:
            measures.setdefault(priority, []).append(measure)
            measures.setdefault("", []).append(measure)
    return {p: _percentile_bounds(m) for p, m in measures.items() if len(m) >= MIN_SAMPLES}


def _measure(estimate: timedelta | None, error: float | None, sigma: float | None) -> float | None:
    """Where the real start fell, in σ from the estimate's log-mean (None: it did not wait)."""
    if estimate is None or error is None or not sigma:
        return None
    estimated = estimate.total_seconds()
    waited = estimated + error
    if estimated < TRIVIAL_WAIT or waited <= 0:
        return None
    mu = math.log(estimated) - sigma**2 / 2
    return (math.log(waited) - mu) / sigma


def _percentile_bounds(measures: list[float]) -> tuple[float, float]:
    low, high = _quantile(measures, 0.1), _quantile(measures, 0.9)
    return max(-MAX_Z, min(-MIN_Z, low)), min(MAX_Z, max(MIN_Z, high))


# --- The record ---------------------------------------------------------------------


def accuracy(since: datetime | None = None, limit: int = 1000) -> dict:
    """How far first estimates were from real starts, over the last ``limit`` started jobs,
    for all of them and apart for ``warm`` and ``cold`` ones (a type without history in
    play), and how often the real start fell inside the estimate's 80 % range
    (``coverage``, over jobs that waited: estimated or real start a second or more after
    the submit; a calibrated range covers about 0.8).

    ``fraction`` is |error| / wait, the wait being submit → real start (at least 1 s, so
    a job that starts at once does not count as a 100 % miss for a few milliseconds)."""
    rows = Job.objects.filter(eta_error_seconds__isnull=False, first_estimated_start_at__isnull=False)
    if since:
        rows = rows.filter(created_at__gte=since)
    ordered = rows.order_by("-created_at").values_list(
        "eta_error_seconds", "first_estimated_start_at", "created_at",
        "first_estimated_start_low", "first_estimated_start_high", "first_estimate_cold",
    )  # fmt: skip
    samples = [_Sample(*cast(tuple[float, datetime, datetime, Any, Any, Any], row)) for row in ordered[:limit]]
    if not samples:
        return {"samples": 0}
    return {
        **_errors(samples),
        "coverage": _coverage(samples),
        "warm": _errors([s for s in samples if not s.cold]),
        "cold": _errors([s for s in samples if s.cold]),
    }


@dataclass(frozen=True)
class _Sample:
    error: float
    first: datetime
    created: datetime
    low: datetime | None
    high: datetime | None
    cold: bool | None

    @property
    def started(self) -> datetime:
        return self.first + timedelta(seconds=self.error)

    @property
    def fraction(self) -> float:
        return abs(self.error) / max(1.0, (self.started - self.created).total_seconds())

    @property
    def waited(self) -> bool:
        return max(self.started, self.first) >= self.created + timedelta(seconds=TRIVIAL_WAIT)


def _errors(samples: list[_Sample]) -> dict:
    if not samples:
        return {"samples": 0}
    errors = [abs(s.error) for s in samples]
    fractions = [s.fraction for s in samples]
    return {
        "samples": len(samples),
        "median_seconds": round(_quantile(errors, 0.5), 3),
        "p90_seconds": round(_quantile(errors, 0.9), 3),
        "median_fraction": round(_quantile(fractions, 0.5), 4),
        "p90_fraction": round(_quantile(fractions, 0.9), 4),
    }


def _coverage(samples: list[_Sample]) -> dict:
    """Of the jobs that waited and had a range, the share whose real start fell inside it
    (to half a second: times are shown to the second)."""
    ranged = [s for s in samples if s.low and s.high and s.waited]
    if not ranged:
        return {"samples": 0, "share": None}
    slack = timedelta(seconds=COVERAGE_SLACK)
    inside = sum(1 for s in ranged if s.low and s.high and s.low - slack <= s.started <= s.high + slack)
    return {"samples": len(ranged), "share": round(inside / len(ranged), 4)}


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
