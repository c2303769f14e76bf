"""Batches: a durable group of jobs with one progress and callbacks submitted exactly once.

* A batch is a ``Batch`` row; its jobs point at it (``Job.batch``). Every count, the
  progress and "is it done?" are read from the jobs' rows, never from counters.
* Jobs join through the one way in (``submit_many(…, batch=…)``, or any submit — a
  standard task's ``enqueue`` too — inside ``with jobs.batch(…)``), while the batch is
  open, or later from a running job of the batch (fan-out of unknown size).
* ``settle`` fires the callbacks: when the batch is closed and none of its jobs is
  unfinished, a guarded UPDATE (``completed_at IS NULL`` / ``succeeded_at IS NULL``)
  and the callback's submit commit together, so whichever process gets there first
  submits it and every other one finds the guard taken. It runs after each batch job's
  end (``outcomes.finished``) and in the reconciler, for a worker killed in between.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import signal
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Avg, Case, Count, Exists, IntegerField, OuterRef, Value, When
from django.utils import timezone

from jobs.core import flow, lifecycle, outcomes, registry, relay
from jobs.core.errors import (
    ActionRefused,
    BatchCanceled,
    BatchClosed,
    BatchFinished,
    NothingToCancel,
    SubmitError,
    TransitionError,
    TypeLoadFailed,
)
from jobs.core.models import (
    BROKEN_DEPENDENCY_STATUSES,
    ERRORED_STATUSES,
    FINAL_STATUSES,
    PENDING_STATUSES,
    UNFINISHED_IN_ORDER,
    UNFINISHED_STATUSES,
    Batch,
    Job,
    Status,
)

logger = logging.getLogger("jobs.core.batches")

# The batch that submits inside ``with batch(...)`` join (``submit_many`` reads it).
current: contextvars.ContextVar[Batch | None] = contextvars.ContextVar("jobdesk_current_batch", default=None)

MAX_DESCRIPTION = 500
# Bytes of a callback's payload besides the context: the summary's other fields (the
# description at its longest, four bytes a character) and their names.
_SUMMARY_ROOM = 1024 + 4 * MAX_DESCRIPTION


def callback_name(callback: Any) -> str:
    """A callback as its job type's name: a name, or a standard task (its module path)."""
    if not callback:
        return ""
    name = getattr(callback, "module_path", callback)
    if not isinstance(name, str):
        raise SubmitError(f"A batch callback must be a job type name or a task, not {type(callback).__name__}.")
    return name


def _check_callback(name: str, field: str, allow_internal: bool, description: str, context: dict) -> None:
    if not name:
        return
    try:
        # A name from a request is imported only once code has submitted a job of it
        # (flow.known_type): a request must not make the web process import any module.
        job_type = registry.get(name, resolve=True) if allow_internal else flow.known_type(name)
    except SubmitError:
        raise SubmitError(
            f"Unknown job type {name!r} for {field}.", field=field, hint="Name a registered job type or task."
        ) from None
    if not job_type.public and not allow_internal:
        raise SubmitError(f"Job type {name!r} is internal.", field=field, hint="It is submitted by code only.")
    # The callback's payload is the batch's summary: a type whose payload cannot be one
    # (its validator refuses the summary's fields) would fail at every settle, and the
    # batch would never finish. Tried now on a summary of this batch's shape.
    empty = Progress(total=0, counts=dict.fromkeys(Status.values, 0), percent=0.0)
    summary = {**_summary(uuid.uuid4(), description, context, empty), "callback": field.removeprefix("on_")}
    try:
        job_type.clean_payload(job_type.summary_payload(summary) if job_type.summary_payload else summary)
    except Exception as refused:  # its validator's refusal, or its failure on fields it did not expect
        reason = refused.message if isinstance(refused, SubmitError) else f"{type(refused).__name__}: {refused}"
        raise SubmitError(
            f"Job type {name!r} cannot be {field}: its payload does not take a batch's summary ({reason})",
            field=field,
            hint="Name a type or task written for a batch's summary (batch_id, counts, context, ...).",
        ) from None


# --- Making one -------------------------------------------------------------------------


def open_batch(
    *,
    owner=None,
    description: str = "",
    on_complete: Any = None,
    on_success: Any = None,
    context=None,
    allow_internal: bool = True,
) -> Batch:
    """A new open batch (jobs join until ``close_batch``). Callbacks are job type names
    or standard tasks; ``allow_internal=False`` (the API) takes public types only."""
    complete, success = callback_name(on_complete), callback_name(on_success)
    if len(description) > MAX_DESCRIPTION:
        raise SubmitError(f"description is longer than {MAX_DESCRIPTION} characters.", field="description")
    if context is not None and not isinstance(context, dict):
        raise SubmitError("context must be a JSON object.", field="context")
    # The context goes into each callback's payload, beside the batch's summary: one a
    # callback's payload could not take would leave the batch unfinished for good.
    registry.check_storable(context or {}, "context", limit=settings.MAX_PAYLOAD_BYTES - _SUMMARY_ROOM)
    _check_callback(complete, "on_complete", allow_internal, description, context or {})
    _check_callback(success, "on_success", allow_internal, description, context or {})
    return Batch.objects.create(
        owner=owner if getattr(owner, "is_authenticated", False) else None,
        description=description,
        on_complete=complete,
        on_success=success,
        context=context or {},
    )


def create_batch(
    specs: Sequence,
    *,
    owner=None,
    description: str = "",
    on_complete: Any = None,
    on_success: Any = None,
    context=None,
    keep_open: bool = False,
    allow_internal: bool = True,
) -> tuple[Batch, list]:
    """A batch with its jobs in one transaction (the bulk-submit path); closed unless
    ``keep_open``, so a batch of no jobs finishes at once."""
    from jobs.core import submit

    with transaction.atomic():
        batch = open_batch(
            owner=owner, description=description, on_complete=on_complete, on_success=on_success, context=context,
            allow_internal=allow_internal,
        )  # fmt: skip
        submitted = submit.submit_many(specs, owner=owner, allow_internal=allow_internal, batch=batch)
        if not keep_open:
            Batch.objects.filter(pk=batch.pk).update(closed_at=timezone.now())
    if not keep_open:
        settle(batch.pk)
    batch.refresh_from_db()
    return batch, submitted


@contextlib.contextmanager
def batch(
    *, owner=None, description: str = "", on_complete: Any = None, on_success: Any = None, context=None
) -> Iterator[Batch]:
    """``with jobs.batch(on_complete="reports.mail_owner") as b:`` — every submit inside
    (``jobs.submit``, ``submit_many``, a standard task's ``enqueue``) joins ``b``; the
    batch closes when the block ends (its callbacks wait for every job), or is canceled
    when the block raises."""
    made = open_batch(
        owner=owner, description=description, on_complete=on_complete, on_success=on_success, context=context
    )
    token = current.set(made)
    try:
        yield made
    except BaseException:
        current.reset(token)
        try:
            cancel(made.pk, actor_label="batch block raised")
        except Exception:  # e.g. the caller's transaction is broken: it rolls the batch back anyway
            logger.exception("could not cancel the batch of a block that raised", extra={"batch_id": str(made.pk)})
        raise
    current.reset(token)
    close_batch(made.pk)
    made.refresh_from_db()


def owner_of(batch_id):
    """The batch's owner (None: a system batch, or no such batch — refused later)."""
    found = Batch.objects.select_related("owner").filter(pk=batch_id).first()
    return found.owner if found is not None else None


def lock_for_adding(batch_id, *, from_job=None) -> Batch:
    """Inside the submit's transaction: the batch, locked (a guarded write, so a
    concurrent ``settle`` either sees the new jobs or finishes before they are refused),
    if jobs may still join it — open, or closed but ``from_job`` is one of its running
    jobs (a fan-out: the batch cannot finish while that job runs)."""
    found = Batch.objects.filter(pk=batch_id, completed_at__isnull=True).update(updated_at=timezone.now())
    batch = Batch.objects.filter(pk=batch_id).first()
    if batch is None:
        raise SubmitError(f"Unknown batch {batch_id}.", field="batch")
    if not found:
        raise BatchFinished(f"Batch {batch_id} has finished: no job can join it.")
    if batch.canceled_at is not None:
        raise BatchCanceled(f"Batch {batch_id} was canceled: no job may join it.")
    if batch.closed_at is not None:
        inside = from_job is not None and (
            Job.objects.filter(pk=from_job, batch_id=batch_id, status__in=UNFINISHED_STATUSES).exists()
        )
        if not inside:
            raise BatchClosed(f"Batch {batch_id} is closed: only its own running jobs may add more (ctx.add_to_batch).")
    return batch


def add_to_batch(batch_id, specs: Sequence, *, owner=None, from_job=None, allow_internal: bool = True) -> list:
    """Submit more jobs into a batch (see ``lock_for_adding`` for when they may join)."""
    from jobs.core import submit

    return submit.submit_many(specs, owner=owner, allow_internal=allow_internal, batch=batch_id, from_job=from_job)


def close_batch(batch_id) -> Batch:
    """No more jobs from outside; the callbacks fire once every job is final (at once
    for a batch with none)."""
    Batch.objects.filter(pk=batch_id, closed_at__isnull=True).update(closed_at=timezone.now())
    settle(batch_id)
    return Batch.objects.get(pk=batch_id)


# --- Settling: the callbacks, exactly once ---------------------------------------------


def job_finished(job: Job) -> None:
    """After a batch job's end is committed (``outcomes.finished``). The common case —
    others still unfinished — is one indexed query; the last one settles the batch."""
    if job.batch_id is None or _any_unfinished(job.batch_id):
        return
    _failpoint("batch.before_settle")
    settle(job.batch_id)


def _any_unfinished(batch_id) -> bool:
    # In the words of the partial index job_batch_unfinished: one seek.
    return Job.objects.filter(batch_id=batch_id, status__in=UNFINISHED_IN_ORDER).exists()


def _failpoint(name: str) -> None:
    """Die here, as a SIGKILL would, when the process was started with
    ``JOBDESK_FAILPOINT=<name>`` (the chaos tests' way to stop between two writes). A
    worker's bookkeeper, which records for it, takes the worker along: the worker is
    what dies."""
    if os.environ.get("JOBDESK_FAILPOINT") == name:
        worker = lifecycle.claiming_for()
        if worker is not None:
            os.kill(worker, signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)


def settle(batch_id) -> list[Job]:
    """Submit the callbacks whose condition now holds and were not submitted yet; the
    callback jobs submitted (none when another process got there first, or when the
    batch is open or has unfinished jobs)."""
    fired: list[Job] = []
    with transaction.atomic():
        now = timezone.now()
        # The guarded write first: it takes the row (and, on SQLite, the write lock), so
        # the count below sees every job committed before it and no other settle can
        # pass the same guard until this transaction ends.
        completed = Batch.objects.filter(pk=batch_id, closed_at__isnull=False, completed_at__isnull=True).update(
            completed_at=now, updated_at=now
        )
        if completed:
            if _any_unfinished(batch_id):
                transaction.set_rollback(True)  # not yet: the guard stays open
                return []
            batch = Batch.objects.get(pk=batch_id)
            if batch.on_complete:
                job = _submit_callback(batch, batch.on_complete, "complete")
                if job is not None:
                    Batch.objects.filter(pk=batch_id).update(complete_job=job.id)
                    fired.append(job)
        # Success may come later than completion: retry-failed can turn the last
        # failures into completions after on_complete ran.
        succeeded = 0
        if not Job.objects.filter(batch_id=batch_id).exclude(status=Status.COMPLETE).exists():
            succeeded = Batch.objects.filter(pk=batch_id, completed_at__isnull=False, succeeded_at__isnull=True).update(
                succeeded_at=now, updated_at=now
            )
            if succeeded:
                batch = Batch.objects.get(pk=batch_id)
                if batch.on_success:
                    job = _submit_callback(batch, batch.on_success, "success")
                    if job is not None:
                        Batch.objects.filter(pk=batch_id).update(success_job=job.id)
                        fired.append(job)
        if completed or succeeded:
            transaction.on_commit(lambda: relay.batch_changed(batch_id))  # its followers' final message
    return fired


def _submit_callback(batch: Batch, type_name: str, which: str) -> Job | None:
    from jobs.core import submit

    summary = {**summarise(batch), "callback": which}
    try:
        job_type = registry.get(type_name, resolve=True)
    except SubmitError:
        job_type = None
    payload = job_type.summary_payload(summary) if job_type and job_type.summary_payload else summary
    try:
        with transaction.atomic():  # a savepoint: a refused submit leaves the settle's writes as they are
            return submit.submit_one(submit.JobSpec(type=type_name, payload=payload), owner=batch.owner, batch=None).job
    except TypeLoadFailed:
        raise  # a broken deploy: the settle is tried again (the reconciler) once it is mended
    except SubmitError as refused:
        # The callback's type was removed or renamed since the batch was made: refused at
        # every settle, the batch would never finish. It finishes without the callback.
        logger.error(
            "batch callback could not be submitted: the batch finishes without it",
            extra={"batch_id": str(batch.pk), "callback": type_name, "which": which, "error": refused.message},
        )
        return None


# --- Reading ----------------------------------------------------------------------------


@dataclass
class Progress:
    total: int
    counts: dict[str, int]  # every status, zeros too
    percent: float  # mean of the jobs' progress, a final job counting 100

    @property
    def unfinished(self) -> int:
        return sum(n for status, n in self.counts.items() if status not in FINAL_STATUSES)


def batch_progress(batch_id) -> Progress:
    """One grouped query over the batch's jobs."""
    rows = (
        Job.objects.filter(batch_id=batch_id)
        .values("status")
        .annotate(
            n=Count("id"),
            mean=Avg(
                Case(When(status__in=FINAL_STATUSES, then=Value(100)), default="progress", output_field=IntegerField())
            ),
        )
        .order_by()
    )
    counts = dict.fromkeys(Status.values, 0)
    total, weighted = 0, 0.0
    for row in rows:
        counts[row["status"]] = row["n"]
        total += row["n"]
        weighted += (row["mean"] or 0) * row["n"]
    return Progress(total=total, counts=counts, percent=round(weighted / total, 1) if total else 100.0)


def state(batch: Batch, measured: Progress | None = None) -> str:
    """open | running | complete (every job complete) | finished (every job final, some
    not complete) — each once its callbacks are submitted: after a retry-failed, a batch
    whose jobs all completed again is running until its success is settled (it had been
    "complete" from the first round's settle, and its followers heard so before
    ``on_success`` was submitted)."""
    measured = measured or batch_progress(batch.pk)
    if batch.closed_at is None:
        return "open"
    if measured.unfinished or batch.completed_at is None:
        return "running"
    if measured.counts[Status.COMPLETE] != measured.total:
        return "finished"
    success_due = bool(batch.on_success) and batch.succeeded_at is None
    # Past the reconciler's watch for a late on_success nothing more will come (and a
    # batch whose failed jobs were pruned is all complete without having succeeded).
    watched = batch.updated_at is None or batch.updated_at > timezone.now() - SUCCESS_WATCH
    return "running" if success_due and watched else "complete"


def summarise(batch: Batch) -> dict[str, Any]:
    """What a callback gets: the batch, its counts by status, and how it ended."""
    return _summary(batch.pk, batch.description, batch.context, batch_progress(batch.pk))


def _summary(batch_id, description: str, context: dict, measured: Progress) -> dict[str, Any]:
    counts = measured.counts
    return {
        "batch_id": str(batch_id),
        "description": description,
        "context": context,
        "total": measured.total,
        "counts": {status: n for status, n in counts.items() if n},
        "complete": counts[Status.COMPLETE],
        "failed": sum(counts[s] for s in ERRORED_STATUSES),
        "canceled": counts[Status.CANCELED],
        "succeeded": counts[Status.COMPLETE] == measured.total,
    }


# --- Acting on one ----------------------------------------------------------------------


def cancel(batch_id, *, actor=None, actor_label: str = "") -> int:
    """Close the batch and cancel its jobs still waiting (running ones finish, but add
    no more: ``lock_for_adding``); the number canceled. The callbacks fire once the
    running ones end. A finished batch is refused (NothingToCancel)."""
    if Batch.objects.filter(pk=batch_id, completed_at__isnull=False).exists():
        raise NothingToCancel(f"Batch {batch_id} has finished: nothing to cancel.")
    now = timezone.now()
    unfinished = Batch.objects.filter(pk=batch_id, completed_at__isnull=True)  # nor finishing meanwhile
    unfinished.filter(closed_at__isnull=True).update(closed_at=now)
    unfinished.filter(canceled_at__isnull=True).update(canceled_at=now)
    canceled = []
    waiting = Job.objects.filter(batch_id=batch_id, status__in=PENDING_STATUSES).order_by("created_at")
    for job_id in waiting.values_list("id", flat=True):
        try:
            canceled.append(
                lifecycle.cancel(job_id, actor=actor, actor_label=actor_label, reason="its batch was canceled")
            )
        except TransitionError:
            continue  # started or ended meanwhile
    # Followed up once every waiting job is canceled: one job's follow-up releases its
    # dependents, and one that runs when a dependency fails (on_dependency_failure="run")
    # was started by a worker before the loop came to cancel it.
    for job in canceled:
        outcomes.finished(job)
    settle(batch_id)
    return len(canceled)


def retry_failed(batch_id, *, actor=None, actor_label: str = "") -> int:
    """Requeue the batch's failed, dead-lettered and canceled jobs; the number requeued.
    ``on_complete`` has run already if the batch had finished; ``on_success`` fires if
    these now all complete.

    A job whose dependency is still broken is refused its requeue until that one is
    requeued, and rows need not be in dependency order: passes go on while one requeues
    something, so a whole chain comes back. Each job is requeued once a call at most (one
    that fails again meanwhile is not sent round again by the same call)."""
    from jobs.core import actions

    requeued: set = set()
    refused = True
    while refused:
        refused, before = False, len(requeued)
        broken = Job.objects.filter(batch_id=batch_id, status__in=BROKEN_DEPENDENCY_STATUSES).order_by("created_at")
        for job_id in broken.exclude(pk__in=requeued).values_list("id", flat=True):
            try:
                actions.requeue(job_id, actor=actor, actor_label=actor_label)
            except TransitionError:
                continue
            except ActionRefused:
                refused = True
                continue
            requeued.add(job_id)
        refused = refused and len(requeued) > before  # another pass only if this one moved something
    if requeued:  # the batch's work goes on: its running jobs may fan out again
        Batch.objects.filter(pk=batch_id, canceled_at__isnull=False).update(canceled_at=None)
    return len(requeued)


# --- Repair -----------------------------------------------------------------------------

# How long after a batch job's requeue the reconciler watches for a late on_success.
SUCCESS_WATCH = timedelta(days=1)


def reopened(batch_id) -> None:
    """One of the batch's jobs was requeued: its on_success may yet come due (the
    reconciler watches such batches for ``SUCCESS_WATCH``)."""
    Batch.objects.filter(pk=batch_id).update(updated_at=timezone.now())


def unsettled(limit: int = 500) -> list:
    """Closed batches without their on_complete, none of whose jobs is unfinished: what
    the reconciler settles (a worker died between the last job's end and the callback)."""
    unfinished = Job.objects.filter(batch_id=OuterRef("pk"), status__in=UNFINISHED_IN_ORDER)  # job_batch_unfinished
    candidates = Batch.objects.filter(closed_at__isnull=False, completed_at__isnull=True).filter(~Exists(unfinished))
    return list(candidates.order_by("closed_at").values_list("id", flat=True)[:limit])


def unsettled_success(limit: int = 500) -> list:
    """Batches whose on_success came due after on_complete (failed jobs requeued and now
    all complete) but was never submitted: requeued within ``SUCCESS_WATCH``."""
    not_complete = Job.objects.filter(batch_id=OuterRef("pk")).exclude(status=Status.COMPLETE)
    candidates = (
        Batch.objects.filter(completed_at__isnull=False, succeeded_at__isnull=True)
        .exclude(on_success="")
        .filter(updated_at__gte=timezone.now() - SUCCESS_WATCH)
        .filter(~Exists(not_complete))
    )
    return list(candidates.order_by("updated_at").values_list("id", flat=True)[:limit])
