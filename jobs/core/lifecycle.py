"""Every status change of a Job, and only here.

Each move locks the row, checks the current status against the statuses the move
allows (``jobs.core.transitions``: the moves as data), applies a conditional UPDATE
(``WHERE status = <seen>``) and writes a ``JobEvent`` in the same transaction. A move the
state forbids raises ``TransitionError``; the edges turn it into 409 / an admin
message. Each move registers its own follow-up for after the commit: the message to
WebSocket followers and what changes in Redis (enqueue, schedule, withdraw, stop), as
the table says — so no caller can forget it or do it before the row is durable.

``Job.status`` cannot be written anywhere else (``jobs.core.models.status_writes``).
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.dispatch import Signal
from django.utils import timezone

from jobs.core import fastpath, leases, opening, queueing, relay, transitions
from jobs.core.errors import ActionRefused, JobNotFound, SubmitError, TransitionError
from jobs.core.joblog import log_job
from jobs.core.models import (
    BROKEN_DEPENDENCY_STATUSES,
    FINAL_STATUSES,
    DependencyFailure,
    Job,
    JobEvent,
    PayloadText,
    Priority,
    Status,
    status_writes,
)
from jobs.core.transitions import FollowUp

__all__ = ["JobNotFound"]  # raised here, defined with the other errors

# Sent once a move that took a job out of ``active`` is committed (with ``job``): a
# concurrency slot of its type is free (jobs.core.flow listens).
job_left_active = Signal()

# The worker's hot path (claim, complete) as single statements on PostgreSQL; tests turn
# it off to compare both paths.
USE_FAST_PATH = True
# How far ahead a run_at may be.
MAX_RUN_AT_AHEAD = timedelta(days=3660)


def new_dispatch_id(job_id) -> str:
    """RQ job id for a re-dispatch: the Job id plus "_" and a token (see Job.rq_job_id)."""
    return f"{job_id}_{secrets.token_hex(4)}"


def still_owns(job_id, dispatch: str) -> bool:
    """Does this run (dispatch) still own the job? False once it was canceled, repaired
    or retried elsewhere: the run must stop and its outcome is not recorded."""
    return Job.objects.owned_by(job_id, dispatch).exists()


def _move(
    job_id,
    name: str,
    *,
    to: str | Callable[[Job], str] | None = None,
    fields: dict[str, Any] | Callable[[Job], dict[str, Any]] | None = None,
    dispatch: str | None = None,
    actor=None,
    actor_label: str = "",
    message: str = "",
    details: dict | None = None,
    kind: str = JobEvent.Kind.TRANSITION,
) -> Job:
    """Apply the move ``name`` (see ``transitions.MOVES``) to one job. ``to`` picks the
    target when the move has several; a move whose targets are its sources keeps the
    status (e.g. promote)."""
    move = transitions.move(name)
    if move.by_worker and dispatch is None:
        raise ValueError(f"{name} is a worker's move: it needs the dispatch id")
    with transaction.atomic(), status_writes():
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None:
            raise JobNotFound(job_id)
        if not move.allows(job.status) or (dispatch is not None and job.rq_job_id != dispatch):
            raise TransitionError(job_id, name, job.status, move.sources)
        from_status = job.status
        if callable(fields):  # values that depend on the locked row, e.g. attempts + 1
            fields = fields(job)
        changes = {"seq": job.seq + 1, "updated_at": timezone.now(), **(fields or {})}
        if "hold" not in changes:  # any other move ends a hold (a cancel, a promote, …)
            changes.update(hold="", held_at=None)
        changes["status"] = _target(move, job, to)
        if dispatch is not None and from_status == Status.ACTIVE != changes["status"]:
            changes.setdefault("lease_expires_at", None)  # the run's outcome is in: its lease ends
        guard = Job.objects.filter(pk=job_id, status=from_status, seq=job.seq)
        if guard.update(**changes) != 1:  # cannot happen under the row lock; never trust it blindly
            raise TransitionError(job_id, name, "changed concurrently", move.sources)
        previous_dispatch, previous_priority = job.rq_job_id, job.priority
        for field, value in changes.items():
            setattr(job, field, value)
        computed = [field for field, value in changes.items() if hasattr(value, "resolve_expression")]
        if computed:  # values the database worked out (a lease on its clock): read them back
            for field, value in Job.objects.filter(pk=job_id).values(*computed).get().items():
                setattr(job, field, value)
        # What the move saw under the lock, for the follow-up (cancel stops a running
        # dispatch, withdraws a waiting one) and for callers.
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
            message=message or name,
            details=details or {},
        )
    log_job(name, job, from_status=from_status, actor=actor_label or (str(actor) if actor else "system"))
    _follow_up_on_commit(job, move.follow_up)
    return job


def _target(move: transitions.Move, job: Job, to) -> str:
    if to is None:
        if move.targets == move.sources:
            return job.status  # the move keeps the status
        (target,) = move.targets  # a move with several targets must say which
        return target
    target = to(job) if callable(to) else to
    if target not in move.targets:
        raise AssertionError(f"{move.name} cannot end in {target}: the transitions table says {sorted(move.targets)}")
    return target


def _follow_up_on_commit(job: Job, follow_up: FollowUp) -> None:
    """Once the move is durable (at once outside a transaction): tell WebSocket clients,
    and bring Redis in line with the row."""
    msg = relay.message(job)  # the state as of this move, even if later moves follow
    previous = getattr(job, "previous_dispatch", ""), getattr(job, "previous_priority", job.priority)
    was = getattr(job, "previous_status", "")

    # A move that queues the job tells its followers without the relay's gathering:
    # another worker may claim it at once, and its "active" must not overtake this.
    queues = follow_up in (FollowUp.REPLACE, FollowUp.DISPATCH, FollowUp.RETURN)

    def after_commit() -> None:
        relay.send(msg, at_once=queues)
        if follow_up is FollowUp.STOP_OR_WITHDRAW:
            if was == Status.ACTIVE:
                queueing.stop(previous[0])
            elif was != Status.WAITING:  # a waiting job has nothing in Redis
                queueing.withdraw(*previous)
        elif follow_up is FollowUp.REPLACE:
            queueing.withdraw(*previous)
            queueing.dispatch(job)
        elif follow_up is FollowUp.DISPATCH:
            queueing.dispatch(job)
        elif follow_up is FollowUp.RETURN:
            queueing.enqueue(job, at_front=True)
        if was == Status.ACTIVE:
            job_left_active.send(sender=Job, job=job)

    transaction.on_commit(after_commit)


# --- The first status: submit ---------------------------------------------------------


def set_initial_status(
    job: Job, run_at: datetime | None, dependencies: Sequence[Job], now: datetime, windows: Callable[[], list]
) -> None:
    """Decide a new job's first status (not saved yet): canceled when a dependency
    already failed, waiting while dependencies run, scheduled for a future ``run_at``,
    deferred when it is heavy and no work window is open, else queued."""
    if run_at is not None and timezone.is_naive(run_at):
        raise SubmitError("run_at needs a time zone.", field="run_at", hint="Send e.g. 2026-01-31T08:00:00Z.")
    if run_at is not None and run_at > now + MAX_RUN_AT_AHEAD:
        raise SubmitError(
            f"run_at is more than {MAX_RUN_AT_AHEAD.days} days ahead.", field="run_at", hint="Schedule nearer work."
        )
    after = waiting_verdict(job.on_dependency_failure, [d.status for d in dependencies])
    if after == "cancel":
        broken = [d for d in dependencies if d.status in BROKEN_DEPENDENCY_STATUSES]
        job.status, job.finished_at = Status.CANCELED, now
        job.error_message = f"dependency {broken[0].id} is {broken[0].status}"
        return
    if run_at is not None and run_at > now:
        job.scheduled_for = job.run_at = run_at
    if after == "wait":
        job.status = Status.WAITING
    elif job.scheduled_for:
        job.status = Status.SCHEDULED
    else:
        job.status, job.enqueued_at = Status.QUEUED, now
    if job.heavy and job.status in (Status.QUEUED, Status.SCHEDULED):
        until = opening.deferral_until(job.scheduled_for or now, windows())
        if until is not None:
            job.status, job.scheduled_for, job.enqueued_at = Status.DEFERRED, until, None


def waiting_verdict(on_dependency_failure: str, statuses: Sequence[str]) -> str:
    """What a job depending on jobs in ``statuses`` does now: "wait", "release" (run)
    or "cancel". By default any failed, dead-lettered or canceled dependency cancels it
    and it runs once all completed; a job that asked to run after failures
    (``on_dependency_failure="run"``) runs once all are final, whatever they ended in."""
    if on_dependency_failure == DependencyFailure.RUN:
        return "wait" if any(s not in FINAL_STATUSES for s in statuses) else "release"
    if any(s in BROKEN_DEPENDENCY_STATUSES for s in statuses):
        return "cancel"
    return "wait" if any(s != Status.COMPLETE for s in statuses) else "release"


def create_submitted(jobs: Sequence[Job], dependencies: dict) -> None:
    """Write new jobs (their status decided by ``set_initial_status``) with their first
    timeline entry, and, once committed, put them where their status says. Redis down
    then: the rows stay as they are, with a note, for the reconciler to enqueue."""
    events = [
        JobEvent(
            job_id=job.id,  # ids, not the objects: a bulk submit makes thousands
            seq=1,
            from_status="",
            to_status=job.status,
            actor_id=job.owner_id,
            message=job.error_message or "submitted",
            details={"dependencies": [str(d.id) for d in dependencies[job.id]]} if dependencies.get(job.id) else {},
        )
        for job in jobs
    ]
    texts = [text for text in map(PayloadText.of, jobs) if text is not None]
    if len(jobs) == 1 and fastpath.available():  # one statement: no transaction needed
        fastpath.create(jobs[0], events[0], texts[0] if texts else None)
    elif len(jobs) > 1 and fastpath.copy_available():  # many: copied, in the submit's transaction
        for rows in (_in_key_order(jobs), events, texts):
            fastpath.insert_many(rows)
    else:
        with status_writes():
            Job.objects.bulk_create(_in_key_order(jobs))
        JobEvent.objects.bulk_create(events)
        PayloadText.objects.bulk_create(texts)
    transaction.on_commit(lambda: _dispatch_submitted(list(jobs)))


def _in_key_order(jobs: Sequence[Job]) -> Sequence[Job]:
    """The rows as they are inserted: those with an idempotency key in the keys' order.
    Each waits on a concurrent submit's uncommitted row of the same key; two bulks that
    sent the same keys in opposite orders each waited on the other (a deadlock, one of
    them refused). Enqueued in the order sent all the same (``_dispatch_submitted``)."""
    if not any(job.idempotency_key for job in jobs):
        return jobs
    return sorted(jobs, key=lambda job: (job.idempotency_key is None, job.idempotency_key or ""))


def _dispatch_submitted(jobs: list[Job]) -> None:
    for job in jobs:
        log_job("submitted", job)
    relay.publish_new(jobs)
    now_jobs = [j for j in jobs if j.status == Status.QUEUED]
    later_jobs = [j for j in jobs if j.status in (Status.SCHEDULED, Status.DEFERRED)]
    ok = queueing.enqueue_many(now_jobs)
    for job in later_jobs:
        assert job.scheduled_for is not None  # scheduled and deferred jobs have their time
        ok = queueing.schedule(job, job.scheduled_for) and ok
    if not ok:
        for job in now_jobs + later_jobs:
            note(job.id, "Redis unreachable at submit; the reconciler will enqueue it", actor_label="submit")


# --- Worker-side moves (guarded by the dispatch id) --------------------------------


def _fast(
    job_id, name: str, *, dispatch: str, now, values, expressions=None, actor_label: str, message: str,
    details: dict | None = None,
) -> Job:  # fmt: skip
    """The same guarded move as ``_move`` in one statement (PostgreSQL, see fastpath);
    only for moves that need no follow-up in Redis."""
    move = transitions.move(name)
    job = fastpath.move(
        job_id, **_fast_keywords(
            name, dispatch=dispatch, now=now, values=values, expressions=expressions, actor_label=actor_label,
            message=message, details=details,
        ),
    )  # fmt: skip
    if job is None:
        current = Job.objects.filter(pk=job_id).values_list("status", flat=True).first()
        if current is None:
            raise JobNotFound(job_id)
        raise TransitionError(job_id, name, current, move.sources)
    job.previous_dispatch, job.previous_priority = job.rq_job_id, job.priority
    log_job(name, job, from_status=job.previous_status, actor=actor_label or "system")
    _follow_up_on_commit(job, move.follow_up)
    return job


def _fast_keywords(name: str, **keywords) -> dict:
    """``fastpath.move``'s keywords for the named move (its statuses) but the job's id."""
    move = transitions.move(name)
    (to,) = move.targets
    return {"allowed": move.sources, "to": to, **keywords}


def _fast_path() -> bool:
    return USE_FAST_PATH and fastpath.available()


# How far the first start was from the estimate given at submit (kept from the first start).
_ETA_ERROR_SQL = "COALESCE(j.eta_error_seconds, EXTRACT(EPOCH FROM (%(now)s - j.first_estimated_start_at)))"


def _eta_error(job: Job, now) -> float | None:
    if job.eta_error_seconds is not None or job.first_estimated_start_at is None:
        return job.eta_error_seconds
    return (now - job.first_estimated_start_at).total_seconds()


# The process a claim names as the job's runner (``runner_pid``): this one, unless it
# claims for another (``claim_for``).
_claimant_pid: int | None = None


def claiming_for() -> int | None:
    """The worker this process claims for (its bookkeeper), if it is not itself."""
    return _claimant_pid


def claim_for(pid: int) -> None:
    """In a worker's bookkeeper (jobs.execution.bookkeeper): its claims name the worker's
    process, which runs the job and which operators see, not the bookkeeper's."""
    global _claimant_pid
    _claimant_pid = pid


def claim(job_id, dispatch: str, worker_name: str, *, in_callers_transaction: bool = False) -> Job:
    """queued → active for this dispatch, with a fresh lease (jobs.core.leases) the
    claiming worker must keep renewing. ``in_callers_transaction``: the caller holds
    its own transaction on purpose (flow control's lever lock) and the one-statement
    move may run inside it — it needs nothing after commit but what on_commit does. A
    claim taken along with this thread's last record (``claim_along``) is not made
    again: its answer is taken."""
    if _fast_path() or (in_callers_transaction and USE_FAST_PATH and connection.vendor == "postgresql"):
        return _fast(job_id, "claim", **_claim_statement(dispatch, worker_name))
    now, values, message, details = _claim_values(worker_name)
    return _move(
        job_id,
        "claim",
        dispatch=dispatch,
        actor_label=worker_name,
        fields=lambda job: {
            **values,
            "attempts": job.attempts + 1,
            "eta_error_seconds": _eta_error(job, now),
            "lease_expires_at": leases.deadline(),
        },
        message=message,
        details=details,
    )


@contextmanager
def claim_along(job_id, dispatch: str, worker_name: str, *, record: tuple[Any, str]) -> Iterator[None]:
    """Inside: this thread's one-statement move of the ``record``'s run (job id, dispatch:
    the last run's record) takes this claim along, in the same statement, after it — one
    round trip where the claim waited for the record's — and the claim's own ``claim``
    takes its answer, if it is this thread's next move. Only where a plain claim is all
    there is to it (no lever to check: the record's run is still counted as active when
    the claim is made)."""
    if not _fast_path():
        yield
        return

    def statement() -> dict:  # asked for when the record is sent: the claim's times come after its
        return _fast_keywords("claim", **_claim_statement(dispatch, worker_name))

    (to,) = transitions.move("claim").targets
    with fastpath.riding(job_id, dispatch, to, statement, host=record):
        yield


def claim_made_along(job_id, dispatch: str) -> bool:
    """Was this claim made along with this thread's last record (``claim_along``), its
    answer waiting for the claim's own call?"""
    (to,) = transitions.move("claim").targets
    return fastpath.made_ahead(job_id, dispatch, to)


def _claim_values(worker_name: str) -> tuple[datetime, dict, str, dict]:
    """A claim's time, the row's values it sets, its event's message and details."""
    now = timezone.now()
    host, pid = socket.gethostname(), _claimant_pid or os.getpid()
    values = {
        "worker_name": worker_name,
        "runner_host": host,
        "runner_pid": pid,
        "started_at": now,
        "finished_at": None,
        "progress": 0,
        "stage": "",
        "hold": "",
        "held_at": None,
    }
    # The claiming process as an operator finds it (RQ's name is 32 hex characters): the
    # worker's own host:pid when the claim runs in its parent (JobdeskWorker), as the
    # dashboard shows it. The console shows it for the name; the message keeps the name.
    return now, values, f"started by {worker_name}", {"worker": f"{host}:{pid}"}


def _claim_statement(dispatch: str, worker_name: str) -> dict:
    """The one-statement claim's keywords for ``_fast``."""
    now, values, message, details = _claim_values(worker_name)
    return {
        "dispatch": dispatch, "now": now, "values": values,
        "expressions": {
            "attempts": "j.attempts + 1", "eta_error_seconds": _ETA_ERROR_SQL,
            "lease_expires_at": leases.deadline_sql(),
        },
        "actor_label": worker_name, "message": message, "details": details,
    }  # fmt: skip


def _finished_fields(**extra) -> dict:
    return {"finished_at": timezone.now(), **extra}


def complete(job_id, dispatch: str, result: Any) -> Job:
    # A success after a retry leaves no advice of the failure behind (the timeline keeps
    # it); a finished job no longer shows the stage it was last in.
    values = _finished_fields(
        result=result, progress=100, stage="", lease_expires_at=None, **_error_fields("", "", "", [])
    )
    if _fast_path():
        return _fast(
            job_id, "complete", dispatch=dispatch, now=values["finished_at"], values=values, actor_label="",
            message="completed",
        )  # fmt: skip
    return _move(job_id, "complete", dispatch=dispatch, fields=values, message="completed")


def _error_fields(category: str, message: str, details: str, recovery_actions: list[str]) -> dict:
    return {
        "error_category": category,
        "error_message": message,
        "error_details": details,
        "recovery_actions": recovery_actions,
    }


# What a failed attempt's timeline entry keeps of its traceback (the row keeps the last whole).
_EVENT_TRACEBACK_CHARS = 16_000


def _attempt_error(exception: str, details: str) -> dict[str, str]:
    """The failed attempt's exception, for its timeline entry (the standard task API
    reads them back as the result's errors, one per attempt)."""
    return {"exception_class": exception, "traceback": details[-_EVENT_TRACEBACK_CHARS:]} if exception else {}


def fail(
    job_id, dispatch: str, *, category: str, message: str, details: str = "", recovery_actions=(), exception: str = ""
) -> Job:
    return _move(
        job_id,
        "fail",
        dispatch=dispatch,
        fields=_finished_fields(stage="", **_error_fields(category, message, details, list(recovery_actions))),
        message=f"failed ({category}): {message}",
        details={"category": category, **_attempt_error(exception, details)},
    )


DEAD_LETTER_ACTIONS = [
    "No retry is left: fix the cause (see the message and the timeline), then requeue it (POST …/retry/).",
]


def dead_letter(
    job_id, dispatch: str, *, message: str, details: str = "", actor_label: str = "", exception: str = ""
) -> Job:
    return _move(
        job_id,
        "dead_letter",
        dispatch=dispatch,
        actor_label=actor_label,
        # No retry is coming: advice such as "wait for the retry" no longer holds.
        fields=_finished_fields(stage="", **_error_fields("temporary", message, details, DEAD_LETTER_ACTIONS)),
        message=f"dead letter after the last attempt: {message}",
        details=_attempt_error(exception, details),
    )


def retry_later(
    job_id,
    dispatch: str,
    *,
    delay: float,
    message: str,
    details: str = "",
    recovery_actions=(),
    actor_label: str = "",
    exception: str = "",
) -> Job:
    """Back to waiting for a later attempt; scheduled in rq-scheduler once committed."""
    run_at = timezone.now() + timedelta(seconds=delay)
    return _move(
        job_id,
        "retry_later",
        dispatch=dispatch,
        actor_label=actor_label,
        fields={
            "scheduled_for": run_at,
            "rq_job_id": new_dispatch_id(job_id),
            "worker_name": "",
            **_error_fields("temporary", message, details, list(recovery_actions)),
        },
        message=f"temporary error, retry in {delay:.1f}s: {message}",
        details={
            "delay_seconds": round(delay, 3),
            "retry_at": run_at.isoformat(),
            **_attempt_error(exception, details),
        },
    )


def defer(job_id, dispatch: str, *, until) -> Job:
    """A heavy job claimed while no work window is open goes back to wait for the next
    opening; the attempt it was about to make is not counted."""
    return _move(
        job_id,
        "defer",
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


def hold(job_id, dispatch: str, *, hold: str, reason: str) -> Job:
    """Park a job a flow-control lever refuses now (jobs.core.flow): queued in the
    database only, with no attempt spent, until the release pass returns it. The fresh
    dispatch id is never put in Redis; the release gives it another."""
    return _move(
        job_id,
        "hold",
        dispatch=dispatch,
        fields=lambda job: {
            "hold": hold,
            "held_at": job.held_at or timezone.now(),
            "rq_job_id": new_dispatch_id(job_id),
            "scheduled_for": None,
            "enqueued_at": job.enqueued_at or timezone.now(),
            "worker_name": "",
        },
        message=f"held: {reason}",
        details={"hold": hold},
    )


def unhold(job_id, *, reason: str) -> Job:
    """Send a held job back to the front of its queue (it had reached the head once).
    ``held_at`` stays until the claim: on its way, it still counts against its limit."""

    def fields(job: Job) -> dict:
        if not job.hold:
            raise TransitionError(job_id, "unhold", "queued and not held", frozenset({"held"}))
        return {"hold": "", "held_at": job.held_at, "rq_job_id": new_dispatch_id(job_id)}

    return _move(job_id, "unhold", fields=fields, message=f"released: {reason}")


# --- Operator / system moves --------------------------------------------------------


def cancel(job_id, *, actor=None, actor_label: str = "", reason: str = "") -> Job:
    """A waiting job is withdrawn from Redis, a running one stopped (RQ's stop-job; its
    Jobdesk parent also stops it within seconds), once committed."""
    return _move(
        job_id,
        "cancel",
        actor=actor,
        actor_label=actor_label,
        fields=_finished_fields(),
        message=f"canceled: {reason}" if reason else "canceled",
    )


def _queued_or_waiting(job: Job) -> str:
    # Locked, as a submit locks them: one finishing meanwhile either is final here or
    # sees itself marked as having dependents when it settles them.
    dependencies = Job.objects.select_for_update().filter(dependents=job.id).order_by("pk")
    statuses = list(dependencies.values_list("status", flat=True))
    if waiting_verdict(job.on_dependency_failure, statuses) == "release":
        return Status.QUEUED
    # Waiting again: the dependencies not yet final settle it when they end, as after a
    # submit. A dependency that was final when this job first ended (and was retried
    # since) was not marked, and this job waited for the reconciler, up to a minute.
    Job.objects.filter(dependents=job.id, has_dependents=False).exclude(status__in=FINAL_STATUSES).update(
        has_dependents=True, hooks_done=False
    )
    return Status.WAITING


# The estimate made at submit and how far the first start was from it, forgotten when an
# operator's hand moves the job before that start (a run-now, a promote) or sends it
# round again (a requeue): ETA accuracy judges the estimator, not the operator. Left
# set, a 2030 job run now counted as a three-year miss, and a requeue kept the range
# and the error of a start it no longer owned.
_NO_FIRST_ESTIMATE: dict[str, Any] = {
    "first_estimated_start_at": None,
    "first_estimated_finish_at": None,
    "first_estimated_start_low": None,
    "first_estimated_start_high": None,
    "first_estimate_cold": None,
    "first_estimate_sigma": None,
    "eta_error_seconds": None,
}


def _not_judged_if_unstarted(job: Job) -> dict[str, Any]:
    """An operator moved a job that has not started yet: its first estimate is not judged."""
    return _NO_FIRST_ESTIMATE if job.eta_error_seconds is None else {}


def requeue(job_id, *, actor=None, actor_label: str = "") -> Job:
    """A new round of attempts for a failed, dead-lettered or canceled job: queued, or
    waiting again while its dependencies have not all completed."""
    return _move(
        job_id,
        "requeue",
        to=_queued_or_waiting,
        actor=actor,
        actor_label=actor_label,
        kind=JobEvent.Kind.ACTION,
        fields={
            "attempts": 0,
            "hooks_done": False,  # the new round's end is followed up again
            # ETA accuracy judges first estimates made at submit; an operator's requeue
            # (maybe months later) is not one of them.
            **_NO_FIRST_ESTIMATE,
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
        "promote",
        actor=actor,
        actor_label=actor_label,
        kind=JobEvent.Kind.ACTION,
        fields=_promotion,
        message="promoted to immediate",
    )


def _promotion(job: Job) -> dict[str, Any]:
    """Under the row's lock: what promoting it changes. A fresh dispatch id turns the old
    RQ entry into a no-op even if withdrawing it fails; a queued job joins the end of the
    immediate line (its place for ETAs too). One already immediate, and not held back by
    a lever, is refused: promoting it again would only send it to the back of that line."""
    if job.priority == Priority.IMMEDIATE and not job.hold:
        raise ActionRefused(f"Job {job.id} is already at immediate priority: nothing to promote.")
    return {
        "priority": Priority.IMMEDIATE,
        "rq_job_id": new_dispatch_id(job.id),
        **({"enqueued_at": timezone.now()} if job.status == Status.QUEUED else {}),
        **_not_judged_if_unstarted(job),
    }


def run_now(job_id, *, actor=None, actor_label: str = "") -> Job:
    """A job waiting for its ``run_at`` or its retry backoff joins its queue now."""
    return _move(
        job_id,
        "run_now",
        actor=actor,
        actor_label=actor_label,
        kind=JobEvent.Kind.ACTION,
        fields=lambda job: {
            "scheduled_for": None,
            "rq_job_id": new_dispatch_id(job_id),  # the scheduled entry becomes a no-op
            "enqueued_at": timezone.now(),
            **_not_judged_if_unstarted(job),
        },
        message="run now, without waiting",
    )


def _queued_or_scheduled(job: Job) -> str:
    if job.scheduled_for and job.scheduled_for > timezone.now():
        return Status.SCHEDULED
    return Status.QUEUED


def release(job_id, *, message: str = "dependencies complete") -> Job:
    """A waiting job whose dependencies all completed joins its queue (or its schedule)."""
    return _move(job_id, "release", to=_queued_or_scheduled, fields={"enqueued_at": timezone.now()}, message=message)


def reschedule(job_id, *, dispatch: str, until) -> Job:
    """A deferred job follows a changed work window: a new opening, or at once."""
    return _move(
        job_id,
        "reschedule",
        to=Status.DEFERRED if until else Status.QUEUED,  # deferred also covers a later run_at
        dispatch=dispatch,
        fields={
            "scheduled_for": until,
            "rq_job_id": new_dispatch_id(job_id),
            "enqueued_at": None if until else timezone.now(),
        },
        message=f"work window changed: deferred to {until.isoformat()}" if until else "work window changed: queued",
    )


def redispatch(job_id, *, dispatch: str, actor_label: str, reason: str) -> Job:
    """Give a waiting job whose RQ entry vanished a fresh dispatch id, and put it back on
    its queue or schedule once committed (the reconciler's repair)."""
    return _move(
        job_id,
        "redispatch",
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
        Job.objects.owned_by(job_id, dispatch)
        .filter(seq=seq)
        .update(progress=percent, stage=stage, progress_details=details, seq=seq + 1, updated_at=timezone.now())
    )


def note(
    job_id, message: str, *, actor=None, actor_label: str = "", details: dict | None = None, kind: str = ""
) -> None:
    """A timeline entry that changes no state (e.g. 'Redis unreachable at submit')."""
    JobEvent.objects.create(
        job_id=job_id, kind=kind or JobEvent.Kind.NOTE, actor=actor if getattr(actor, "is_authenticated", False)
        else None, actor_label=actor_label, message=message, details=details or {},
    )  # fmt: skip
