"""Every status change of a Job, and only here (SPEC §4.2).

Each move locks the row, checks the current status against the states the move allows,
applies a conditional UPDATE (``WHERE status = <seen>``) and writes a ``JobEvent`` in
the same transaction. A move the state forbids raises ``TransitionError``; the edges
turn it into 409 / an admin message. Side effects in Redis (enqueue, schedule, stop)
are not done here: callers register them with ``transaction.on_commit``.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from jobs.core import fastpath, relay
from jobs.core.errors import TransitionError
from jobs.core.joblog import log_job
from jobs.core.models import PENDING_STATUSES, Job, JobEvent, Priority, Status

# States a worker may claim from. The dispatch id check decides whether *this* RQ
# entry is the current one, so a scheduled/retrying job cannot run early.
CLAIMABLE = frozenset({Status.QUEUED, Status.SCHEDULED, Status.DEFERRED, Status.RETRYING})
CANCELABLE = PENDING_STATUSES | {Status.ACTIVE}
REQUEUEABLE = frozenset({Status.FAILED, Status.DEAD_LETTER, Status.CANCELED})
PROMOTABLE = frozenset({Status.QUEUED, Status.SCHEDULED, Status.RETRYING, Status.WAITING, Status.DEFERRED})


class JobNotFound(Exception):
    pass


# The worker's hot path (claim, complete) as single statements on PostgreSQL; tests turn
# it off to compare both paths.
USE_FAST_PATH = True


def new_dispatch_id(job_id) -> str:
    """RQ job id for a re-dispatch: the Job id plus "_" and a token (see Job.rq_job_id)."""
    return f"{job_id}_{secrets.token_hex(4)}"


def _move(
    job_id,
    *,
    action: str,
    allowed: Iterable[str],
    to: str | Callable[[Job], str] | None,
    fields: dict[str, Any] | Callable[[Job], dict[str, Any]] | None = None,
    dispatch: str | None = None,
    actor=None,
    actor_label: str = "",
    message: str = "",
    details: dict | None = None,
    kind: str = JobEvent.Kind.TRANSITION,
) -> Job:
    """Apply one guarded move; ``to=None`` keeps the status (e.g. promote)."""
    allowed = frozenset(allowed)
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None:
            raise JobNotFound(job_id)
        if job.status not in allowed or (dispatch is not None and job.rq_job_id != dispatch):
            raise TransitionError(job_id, action, job.status, allowed)
        from_status = job.status
        now = timezone.now()
        if callable(fields):  # values that depend on the locked row, e.g. attempts + 1
            fields = fields(job)
        changes = {"seq": job.seq + 1, "updated_at": now, **(fields or {})}
        if to is not None:
            changes["status"] = to(job) if callable(to) else to
        guard = Job.objects.filter(pk=job_id, status=from_status, seq=job.seq)
        if guard.update(**changes) != 1:  # cannot happen under the row lock; never trust it blindly
            raise TransitionError(job_id, action, "changed concurrently", allowed)
        previous_dispatch, previous_priority = job.rq_job_id, job.priority
        for name, value in changes.items():
            setattr(job, name, value)
        # What the move saw under the lock, for callers whose side effects depend on it
        # (cancel stops a running dispatch, withdraws a waiting one).
        job.previous_status, job.previous_dispatch = from_status, previous_dispatch
        job.previous_priority = previous_priority
        JobEvent.objects.create(
            job=job,
            seq=job.seq,
            kind=kind,
            from_status=from_status,
            to_status=job.status,
            actor=actor if getattr(actor, "is_authenticated", False) else None,
            actor_label=actor_label,
            message=message or action,
            details=details or {},
        )
    log_job(action, job, from_status=from_status, actor=actor_label or (str(actor) if actor else "system"))
    _relay_on_commit(job)
    return job


def _relay_on_commit(job: Job) -> None:
    """Tell WebSocket clients once the move is durable (at once outside a transaction)."""
    msg = relay.message(job)  # the state as of this move, even if later moves follow
    transaction.on_commit(lambda: relay.send(msg))


# --- Worker-side moves (guarded by the dispatch id) --------------------------------


def _fast(job_id, *, action: str, allowed, to: str, dispatch: str, now, values, expressions=None, actor_label, message):
    """The same guarded move as ``_move`` in one statement (PostgreSQL, see fastpath)."""
    job = fastpath.move(
        job_id, allowed=allowed, to=to, dispatch=dispatch, now=now, values=values, expressions=expressions,
        actor_label=actor_label, message=message,
    )  # fmt: skip
    if job is None:
        current = Job.objects.filter(pk=job_id).values_list("status", flat=True).first()
        if current is None:
            raise JobNotFound(job_id)
        raise TransitionError(job_id, action, current, allowed)
    job.previous_dispatch, job.previous_priority = job.rq_job_id, job.priority
    log_job(action, job, from_status=job.previous_status, actor=actor_label or "system")
    _relay_on_commit(job)
    return job


# How far the first start was from the estimate given at submit (kept from the first start).
_ETA_ERROR_SQL = "COALESCE(j.eta_error_seconds, EXTRACT(EPOCH FROM (%(now)s - j.first_estimated_start_at)))"


def _eta_error(job: Job, now) -> float | None:
    if job.eta_error_seconds is not None or job.first_estimated_start_at is None:
        return job.eta_error_seconds
    return (now - job.first_estimated_start_at).total_seconds()


def claim(job_id, dispatch: str, worker_name: str) -> Job:
    now = timezone.now()
    values = {
        "worker_name": worker_name,
        "runner_host": socket.gethostname(),
        "runner_pid": os.getpid(),
        "started_at": now,
        "finished_at": None,
        "progress": 0,
        "stage": "",
    }
    message = f"started by {worker_name}"
    if USE_FAST_PATH and fastpath.available():
        return _fast(
            job_id, action="claim", allowed=CLAIMABLE, to=Status.ACTIVE, dispatch=dispatch, now=now, values=values,
            expressions={"attempts": "j.attempts + 1", "eta_error_seconds": _ETA_ERROR_SQL}, actor_label=worker_name,
            message=message,
        )  # fmt: skip
    return _move(
        job_id,
        action="claim",
        allowed=CLAIMABLE,
        to=Status.ACTIVE,
        dispatch=dispatch,
        actor_label=worker_name,
        fields=lambda job: {**values, "attempts": job.attempts + 1, "eta_error_seconds": _eta_error(job, now)},
        message=message,
    )


def _finished_fields(**extra) -> dict:
    return {"finished_at": timezone.now(), **extra}


def complete(job_id, dispatch: str, result: Any) -> Job:
    # A success after a retry leaves no advice of the failure behind (the timeline keeps it).
    values = _finished_fields(result=result, progress=100, **_error_fields("", "", "", []))
    if USE_FAST_PATH and fastpath.available():
        return _fast(
            job_id, action="complete", allowed={Status.ACTIVE}, to=Status.COMPLETE, dispatch=dispatch,
            now=values["finished_at"], values=values, actor_label="", message="completed",
        )  # fmt: skip
    return _move(
        job_id,
        action="complete",
        allowed={Status.ACTIVE},
        to=Status.COMPLETE,
        dispatch=dispatch,
        fields=values,
        message="completed",
    )


def _error_fields(category: str, message: str, details: str, recovery_actions: list[str]) -> dict:
    return {
        "error_category": category,
        "error_message": message,
        "error_details": details,
        "recovery_actions": recovery_actions,
    }


def fail(job_id, dispatch: str, *, category: str, message: str, details: str = "", recovery_actions=()) -> Job:
    return _move(
        job_id,
        action="fail",
        allowed={Status.ACTIVE},
        to=Status.FAILED,
        dispatch=dispatch,
        fields=_finished_fields(**_error_fields(category, message, details, list(recovery_actions))),
        message=f"failed ({category}): {message}",
        details={"category": category},
    )


DEAD_LETTER_ACTIONS = [
    "No retry is left: fix the cause (see the message and the timeline), then requeue it (POST …/retry/).",
]


def dead_letter(job_id, dispatch: str, *, message: str, details: str = "", actor_label: str = "") -> Job:
    return _move(
        job_id,
        action="dead_letter",
        allowed={Status.ACTIVE},
        to=Status.DEAD_LETTER,
        dispatch=dispatch,
        actor_label=actor_label,
        # No retry is coming: advice such as "wait for the retry" no longer holds.
        fields=_finished_fields(**_error_fields("temporary", message, details, DEAD_LETTER_ACTIONS)),
        message=f"dead letter after the last attempt: {message}",
    )


def retry_later(
    job_id, dispatch: str, *, delay: float, message: str, details: str = "", recovery_actions=(), actor_label: str = ""
) -> Job:
    run_at = timezone.now() + timedelta(seconds=delay)
    return _move(
        job_id,
        action="retry_later",
        allowed={Status.ACTIVE},
        to=Status.RETRYING,
        dispatch=dispatch,
        actor_label=actor_label,
        fields={
            "scheduled_for": run_at,
            "rq_job_id": new_dispatch_id(job_id),
            "worker_name": "",
            **_error_fields("temporary", message, details, list(recovery_actions)),
        },
        message=f"temporary error, retry in {delay:.1f}s: {message}",
        details={"delay_seconds": round(delay, 3), "retry_at": run_at.isoformat()},
    )


# --- Operator / system moves --------------------------------------------------------


def cancel(job_id, *, actor=None, actor_label: str = "", reason: str = "") -> Job:
    return _move(
        job_id,
        action="cancel",
        allowed=CANCELABLE,
        to=Status.CANCELED,
        actor=actor,
        actor_label=actor_label,
        fields=_finished_fields(),
        message=f"canceled: {reason}" if reason else "canceled",
    )


def requeue(job_id, *, actor=None, actor_label: str = "") -> Job:
    """A new round of attempts for a failed, dead-lettered or canceled job."""
    return _move(
        job_id,
        action="requeue",
        allowed=REQUEUEABLE,
        to=Status.QUEUED,
        actor=actor,
        actor_label=actor_label,
        kind=JobEvent.Kind.ACTION,
        fields={
            "attempts": 0,
            "hooks_done": False,  # the new round's end is followed up again
            # ETA accuracy judges first estimates made at submit; an operator's requeue
            # (maybe months later) is not one of them.
            "first_estimated_start_at": None,
            "first_estimated_finish_at": None,
            "rq_job_id": new_dispatch_id(job_id),
            "enqueued_at": timezone.now(),
            "scheduled_for": None,
            "started_at": None,
            "finished_at": None,
            "worker_name": "",
            "result": None,
            "progress": 0,
            "stage": "",
            **_error_fields("", "", "", []),
        },
        message="requeued for a new round of attempts",
    )


def promote(job_id, *, actor=None, actor_label: str = "") -> Job:
    return _move(
        job_id,
        action="promote",
        allowed=PROMOTABLE,
        to=None,
        actor=actor,
        actor_label=actor_label,
        kind=JobEvent.Kind.ACTION,
        # A fresh dispatch id turns the old RQ entry into a no-op even if withdrawing it fails.
        # A queued job joins the end of the immediate line: its place for ETAs too.
        fields=lambda job: {
            "priority": Priority.IMMEDIATE,
            "rq_job_id": new_dispatch_id(job_id),
            **({"enqueued_at": timezone.now()} if job.status == Status.QUEUED else {}),
        },
        message="promoted to immediate",
    )


RUNNABLE_NOW = frozenset({Status.SCHEDULED, Status.RETRYING})


def run_now(job_id, *, actor=None, actor_label: str = "") -> Job:
    """A job waiting for its ``run_at`` or its retry backoff joins its queue now."""
    return _move(
        job_id,
        action="run_now",
        allowed=RUNNABLE_NOW,
        to=Status.QUEUED,
        actor=actor,
        actor_label=actor_label,
        kind=JobEvent.Kind.ACTION,
        fields=lambda job: {
            "scheduled_for": None,
            "rq_job_id": new_dispatch_id(job_id),  # the scheduled entry becomes a no-op
            "enqueued_at": timezone.now(),
        },
        message="run now, without waiting",
    )


def _queued_or_scheduled(job: Job) -> str:
    if job.scheduled_for and job.scheduled_for > timezone.now():
        return Status.SCHEDULED
    return Status.QUEUED


def release(job_id, *, message: str = "dependencies complete") -> Job:
    """A waiting job whose dependencies all completed joins its queue (or its schedule)."""
    return _move(
        job_id,
        action="release",
        allowed={Status.WAITING},
        to=_queued_or_scheduled,
        fields={"enqueued_at": timezone.now()},
        message=message,
    )


def defer(job_id, dispatch: str, *, until) -> Job:
    """A heavy job claimed while no work window is open goes back to wait for the next
    opening; the attempt it was about to make is not counted."""
    return _move(
        job_id,
        action="defer",
        allowed={Status.ACTIVE},
        to=Status.DEFERRED,
        dispatch=dispatch,
        fields=lambda job: {
            "attempts": max(0, job.attempts - 1),
            # The claim that found the window closed was no start: no ETA error yet.
            **({"eta_error_seconds": None} if job.attempts <= 1 else {}),
            "scheduled_for": until,
            "rq_job_id": new_dispatch_id(job_id),
            "worker_name": "",
            "started_at": None,
        },
        message=f"work window closed: deferred to {until.isoformat()}",
    )


def reschedule(job_id, *, dispatch: str, until) -> Job:
    """A deferred job follows a changed work window: a new opening, or at once."""
    return _move(
        job_id,
        action="reschedule",
        allowed={Status.DEFERRED},
        to=Status.DEFERRED if until else Status.QUEUED,  # deferred also covers a later run_at
        dispatch=dispatch,
        fields={
            "scheduled_for": until,
            "rq_job_id": new_dispatch_id(job_id),
            "enqueued_at": None if until else timezone.now(),
        },
        message=f"work window changed: deferred to {until.isoformat()}" if until else "work window changed: queued",
    )


def wait_for_dependencies(job_id) -> Job:
    """A requeued job whose dependencies are not all complete goes back to waiting."""
    return _move(job_id, action="wait", allowed={Status.QUEUED}, to=Status.WAITING, message="waiting for dependencies")


def redispatch(job_id, *, dispatch: str, actor_label: str, reason: str) -> Job:
    """Give a waiting job whose RQ entry vanished a fresh dispatch id (repair); the
    caller puts it back on its queue or schedule after commit."""
    return _move(
        job_id,
        action="redispatch",
        allowed=CLAIMABLE,
        to=None,
        dispatch=dispatch,
        actor_label=actor_label,
        kind=JobEvent.Kind.NOTE,
        fields={"rq_job_id": new_dispatch_id(job_id), "enqueued_at": timezone.now()},
        message=reason,
    )


def record_progress(job_id, dispatch: str, *, seq: int, percent: int, stage: str, details: dict) -> bool:
    """Write a progress report to an active job's row as event ``seq`` + 1; False when
    the run no longer owns the job (canceled, repaired) or another write came between.

    No JobEvent (a handler may report thousands of times); the sequence number still
    moves so clients can spot what they missed. Not a status change, so no lock: the
    seen ``seq`` is the guard.
    """
    return bool(
        Job.objects.filter(pk=job_id, status=Status.ACTIVE, rq_job_id=dispatch, seq=seq).update(
            progress=percent, stage=stage, progress_details=details, seq=seq + 1, updated_at=timezone.now()
        )
    )


def note(
    job_id, message: str, *, actor=None, actor_label: str = "", details: dict | None = None, kind: str = ""
) -> None:
    """A timeline entry that changes no state (e.g. 'Redis unreachable at submit')."""
    JobEvent.objects.create(
        job_id=job_id, kind=kind or JobEvent.Kind.NOTE, actor=actor if getattr(actor, "is_authenticated", False)
        else None, actor_label=actor_label, message=message, details=details or {},
    )  # fmt: skip
