"""``diagnostics.sleep``: a job for operators and load tests.

Sleeps ``seconds`` in ``steps`` (reporting progress and honouring cancel between
steps), then ends the way ``fail_mode`` says. ``log_lines`` lines per step go to its job
log (``ctx.log`` for the first of each step, ``logging`` for the rest). ``fail_times`` limits failing to the
first N attempts, so "temporary, then success" can be exercised. ``trace`` records
every run in Redis (``jobdesk:diag:runs:<job id>``) and counts runs that overlapped
another live run of the same job (``jobdesk:diag:overlaps``): the proof that a job
never runs twice at once, even while workers are being killed.

``diagnostics.sleep_inline`` and ``diagnostics.noop_inline`` are the same handlers with
``fork=False``: the default worker runs them in its own process, without a work-horse.
"""

from __future__ import annotations

import logging
import os
import socket
import time

import redis

from jobs.core.errors import AdminRequiredError, SubmitError, TemporaryError, UserFixableError
from jobs.core.liveness import process_started_at
from jobs.core.registry import job_type

FAIL_MODES = ("none", "temporary", "user_fixable", "admin_required", "crash")
MAX_SECONDS = 3600.0
MAX_STEPS = 10_000
MAX_LOG_LINES = 100_000  # per step

logger = logging.getLogger("jobs.diagnostics")


def _number(payload: dict, name: str, default, low, high, kind):
    value = payload.get(name, default)
    not_a_number = isinstance(value, bool) or not isinstance(value, (int, float))
    # float(value) of an int past ~1e308 raised OverflowError (a 500): only a float can
    # be a fraction.
    if not_a_number or (kind is int and isinstance(value, float) and not value.is_integer()):
        raise SubmitError(f"{name} must be a {'whole ' if kind is int else ''}number.", field=f"payload.{name}")
    if not low <= value <= high:
        raise SubmitError(f"{name} must be between {low} and {high}.", field=f"payload.{name}")
    return kind(value)


def validate_sleep(payload: dict) -> dict:
    unknown = set(payload) - {"seconds", "steps", "fail_mode", "fail_times", "result", "trace", "log_lines"}
    if unknown:
        raise SubmitError(
            f"Unknown payload field(s): {', '.join(sorted(unknown))}.",
            field="payload",
            hint="diagnostics.sleep takes seconds, steps, fail_mode, fail_times, result, trace, log_lines.",
        )
    fail_mode = payload.get("fail_mode", "none")
    if fail_mode not in FAIL_MODES:
        raise SubmitError(
            f"Unknown fail_mode {fail_mode!r}.", field="payload.fail_mode", hint=f"Use one of: {', '.join(FAIL_MODES)}."
        )
    cleaned = {
        "seconds": _number(payload, "seconds", 1.0, 0.0, MAX_SECONDS, float),
        "steps": _number(payload, "steps", 10, 1, MAX_STEPS, int),
        "fail_mode": fail_mode,
        "fail_times": _number(payload, "fail_times", 0, 0, 1000, int),
    }
    if payload.get("log_lines"):
        cleaned["log_lines"] = _number(payload, "log_lines", 0, 0, MAX_LOG_LINES, int)
    if "result" in payload:
        cleaned["result"] = payload["result"]
    if payload.get("trace"):
        cleaned["trace"] = True
    return cleaned


@job_type("diagnostics.sleep", validate=validate_sleep, timeout=int(MAX_SECONDS) + 60)
def sleep(ctx) -> dict:
    seconds, steps = ctx.payload["seconds"], ctx.payload["steps"]
    started = time.monotonic()
    tracer = _RunTracer(str(ctx.job.id), ctx.attempt) if ctx.payload.get("trace") else None
    try:
        for step in range(steps):
            if ctx.is_canceled():
                return {"canceled_at_step": step}
            time.sleep(seconds / steps)
            if tracer:
                tracer.mark("alive")
            _log_step(ctx, step + 1, steps, ctx.payload.get("log_lines", 0))
            ctx.progress(100 * (step + 1) / steps, "sleeping", step=step + 1, of=steps)
        _maybe_fail(ctx.payload, ctx.attempt)
    finally:
        if tracer:
            tracer.finish()
    return {
        "slept": round(time.monotonic() - started, 3),
        "attempt": ctx.attempt,
        "pid": os.getpid(),
        "result": ctx.payload.get("result"),
    }


def _log_step(ctx, step: int, steps: int, lines: int) -> None:
    if lines <= 0:
        return
    ctx.log(f"attempt {ctx.attempt}: step {step} of {steps}")
    for line in range(2, lines + 1):
        logger.info("attempt %d: step %d line %d", ctx.attempt, step, line)


class _RunTracer:
    """Marks this job as running in this process; flags a live concurrent run.

    With ``DIAGNOSTICS_TRACE_DIR`` set (tests across network hosts), each run also
    appends its start and every step, with host and wall-clock time, to a file per
    job: a record that outlives a host cut off from Redis, to check runs for overlap.
    """

    def __init__(self, job_id: str, attempt: int) -> None:
        from django.conf import settings

        trace_dir = os.environ.get("DIAGNOSTICS_TRACE_DIR")
        self.file = os.path.join(trace_dir, job_id) if trace_dir else ""
        self.attempt = attempt
        self.mark("start")
        self.redis = redis.Redis.from_url(settings.REDIS_URL)
        self.key = f"jobdesk:diag:running:{job_id}"
        self.me = str(os.getpid())
        self.redis.rpush(f"jobdesk:diag:runs:{job_id}", self.me)
        if not self.redis.set(self.key, self.me, nx=True):
            holder = self.redis.get(self.key)
            if holder is not None and process_started_at(int(holder)) is not None:
                self.redis.incr("jobdesk:diag:overlaps")
            self.redis.set(self.key, self.me)  # the earlier run is dead: take over

    def mark(self, event: str) -> None:
        if self.file:
            with open(self.file, "a") as trace:
                trace.write(f"{time.time():.3f} {event} {socket.gethostname()} {os.getpid()} {self.attempt}\n")

    def finish(self) -> None:
        self.mark("end")
        if self.redis.get(self.key) == self.me.encode():
            self.redis.delete(self.key)


def _maybe_fail(payload: dict, attempt: int) -> None:
    mode, fail_times = payload["fail_mode"], payload["fail_times"]
    if mode == "none" or (fail_times and attempt > fail_times):
        return
    if mode == "temporary":
        raise TemporaryError("diagnostics: simulated temporary failure", recovery_actions=["Wait for the retry"])
    if mode == "user_fixable":
        raise UserFixableError(
            "diagnostics: simulated bad input", recovery_actions=["Submit again with fail_mode=none"]
        )
    if mode == "admin_required":
        raise AdminRequiredError("diagnostics: simulated misconfiguration", recovery_actions=["Page the operator"])
    raise RuntimeError("diagnostics: simulated crash")


@job_type("diagnostics.noop", timeout=60)
def noop(ctx) -> dict:
    """The cheapest possible job: for throughput benchmarks."""
    return {}


# The same handlers without a work-horse (fork=False): for tests and benchmarks of
# inline execution in the default worker.
job_type("diagnostics.sleep_inline", validate=validate_sleep, timeout=int(MAX_SECONDS) + 60, fork=False)(sleep)
job_type("diagnostics.noop_inline", timeout=60, fork=False)(noop)
