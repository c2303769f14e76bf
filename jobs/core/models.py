"""The durable record of background work. The database, not Redis, is truth.

``Job.status`` is written by ``jobs.core.lifecycle`` only: every other write of it —
``update(status=…)``, ``save()``, ``bulk_create``/``bulk_update`` — raises
``StatusWriteRefused``, so a change that bypasses the lifecycle (and its guard, its
timeline entry and its Redis follow-up) fails the first time it runs.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import uuid
from collections.abc import Iterator

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Status(models.TextChoices):
    QUEUED = "queued"
    SCHEDULED = "scheduled"  # run_at in the future
    DEFERRED = "deferred"  # heavy job waiting for the work window
    WAITING = "waiting"  # depends on unfinished jobs
    ACTIVE = "active"
    RETRYING = "retrying"  # temporary error, next attempt scheduled
    COMPLETE = "complete"
    FAILED = "failed"
    DEAD_LETTER = "dead_letter"
    CANCELED = "canceled"


# The vocabulary of statuses: every module asks these (or the queryset methods below)
# rather than listing statuses of its own.
FINAL_STATUSES = frozenset({Status.COMPLETE, Status.FAILED, Status.DEAD_LETTER, Status.CANCELED})
# States in which the job waits for its turn; an ETA applies to these.
PENDING_STATUSES = frozenset({Status.QUEUED, Status.SCHEDULED, Status.DEFERRED, Status.WAITING, Status.RETRYING})
# Not final: waiting or running.
UNFINISHED_STATUSES = PENDING_STATUSES | {Status.ACTIVE}
# The same, as one fixed list: a partial index's condition and the queries that must
# match it (job_batch_unfinished) say it in the same words.
UNFINISHED_IN_ORDER = tuple(sorted(UNFINISHED_STATUSES))
# Waiting for a moment (run_at, a retry's backoff, a work window): rq-scheduler holds them.
TIMED_STATUSES = frozenset({Status.SCHEDULED, Status.RETRYING, Status.DEFERRED})
# Ended in an error an operator may want to look at.
ERRORED_STATUSES = frozenset({Status.FAILED, Status.DEAD_LETTER})
# Carry an error message (a retry's last one, a cancel's reason); a success clears it.
WITH_ERROR_MESSAGE = ERRORED_STATUSES | {Status.RETRYING, Status.CANCELED}
# A dependency ending in one of these cancels its dependents.
BROKEN_DEPENDENCY_STATUSES = frozenset({Status.FAILED, Status.DEAD_LETTER, Status.CANCELED})


class StatusWriteRefused(RuntimeError):
    """``Job.status`` written outside ``jobs.core.lifecycle``."""


_lifecycle_writing: contextvars.ContextVar[bool] = contextvars.ContextVar("jobdesk_lifecycle_writing", default=False)


@contextlib.contextmanager
def status_writes() -> Iterator[None]:
    """The lifecycle's licence to write ``status`` (and, for tests and benchmarks that
    build rows directly, an explicit and greppable one)."""
    token = _lifecycle_writing.set(True)
    try:
        yield
    finally:
        _lifecycle_writing.reset(token)


def _refuse_status_write(how: str) -> None:
    if not _lifecycle_writing.get():
        raise StatusWriteRefused(
            f"Job.status written through {how} outside jobs.core.lifecycle: ask the lifecycle for a move instead."
        )


class JobQuerySet(models.QuerySet):
    def pending(self) -> JobQuerySet:
        return self.filter(status__in=PENDING_STATUSES)

    def unfinished(self) -> JobQuerySet:
        return self.filter(status__in=UNFINISHED_STATUSES)

    def final(self) -> JobQuerySet:
        return self.filter(status__in=FINAL_STATUSES)

    def errored(self) -> JobQuerySet:
        return self.filter(status__in=ERRORED_STATUSES)

    def running(self) -> JobQuerySet:
        return self.filter(status=Status.ACTIVE)

    def owned_by(self, job_id, dispatch: str) -> JobQuerySet:
        """The job, if this dispatch still owns it: active, and not taken away (canceled,
        repaired, retried) since this run claimed it."""
        return self.filter(pk=job_id, status=Status.ACTIVE, rq_job_id=dispatch)

    def update(self, **kwargs):
        if "status" in kwargs:
            _refuse_status_write("QuerySet.update()")
        return super().update(**kwargs)

    def bulk_update(self, objs, fields, *args, **kwargs):
        if "status" in fields:
            _refuse_status_write("bulk_update()")
        return super().bulk_update(objs, fields, *args, **kwargs)

    def bulk_create(self, objs, *args, **kwargs):
        _refuse_status_write("bulk_create()")  # a new row's status is a decision too
        return super().bulk_create(objs, *args, **kwargs)


class Hold(models.TextChoices):
    """Why a queued job is parked in the database instead of its queue (``Job.hold``):
    a worker met it while an operator's lever (``FlowControl``) said "not now". It
    waits without spending an attempt until the lever lets it go (``jobs.core.flow``)."""

    QUEUE_PAUSED = "queue_paused"
    TYPE_PAUSED = "type_paused"
    CONCURRENCY = "concurrency"
    RATE = "rate"


class Priority(models.TextChoices):
    IMMEDIATE = "immediate"
    NORMAL = "normal"
    LOW = "low"


class ErrorCategory(models.TextChoices):
    TEMPORARY = "temporary"
    USER_FIXABLE = "user_fixable"
    ADMIN_REQUIRED = "admin_required"


class DependencyFailure(models.TextChoices):
    """What a waiting job does when one of its dependencies fails, is dead-lettered or
    canceled: be canceled too (the default), or run once all of them are final and see
    the failure (``ctx.dependency_results()``)."""

    CANCEL = "cancel"
    RUN = "run"


class Batch(models.Model):
    """A durable group of jobs with one progress and callbacks (``jobs.core.batches``).

    Counts and progress are read from its jobs (``Job.batch``), never kept as counters.
    ``completed_at`` / ``succeeded_at`` are set by a guarded UPDATE (``… IS NULL``) in
    the same transaction that submits the ``on_complete`` / ``on_success`` job: each
    callback is submitted exactly once, by whichever process first sees the condition
    hold (a worker recording the last job, or the reconciler after one died)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    description = models.CharField(max_length=500, blank=True, default="")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="job_batches"
    )
    # Job type names (a standard task's is its module path); "" for none.
    on_complete = models.CharField(max_length=200, blank=True, default="", help_text="every job final")
    on_success = models.CharField(max_length=200, blank=True, default="", help_text="every job complete")
    context = models.JSONField(default=dict, blank=True, help_text="handed to the callbacks with the summary")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Open: jobs may still be added from anywhere. Closed: only a job of the batch that
    # is still running may add more (fan-out); the callbacks wait for every job.
    closed_at = models.DateTimeField(null=True, blank=True)
    # Canceled: closed, and not even its running jobs may add more (until retry-failed).
    canceled_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True, help_text="every job final: on_complete submitted")
    complete_job = models.UUIDField(null=True, blank=True)
    succeeded_at = models.DateTimeField(null=True, blank=True, help_text="every job complete: on_success submitted")
    success_job = models.UUIDField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "batches"
        indexes = [
            models.Index(fields=["owner", "-created_at"], name="batch_owner_created"),
            # The reconciler's pass: closed batches whose callbacks are not all in.
            models.Index(fields=["closed_at"], condition=Q(completed_at__isnull=True), name="batch_unsettled"),
        ]

    def __str__(self) -> str:
        return self.description or f"batch {self.id}"


class Job(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    type = models.CharField(max_length=100)
    payload = models.JSONField(default=dict, blank=True)
    priority = models.CharField(max_length=10, choices=Priority.choices, default=Priority.NORMAL)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED)
    heavy = models.BooleanField(default=False)
    # No index of its own: job_owner_created (owner, -created_at) serves every lookup by
    # owner, and each index is one more entry written at every move of every job.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs",
        db_index=False,
    )  # fmt: skip

    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=4)
    timeout = models.PositiveIntegerField(default=1800, help_text="seconds")
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)
    depends_on = models.ManyToManyField("self", symmetrical=False, related_name="dependents", blank=True)
    # Set (under this row's lock) when another job starts depending on this one, so the
    # common case — nobody waits on it — costs no query when it finishes.
    has_dependents = models.BooleanField(default=False)
    on_dependency_failure = models.CharField(
        max_length=6, choices=DependencyFailure.choices, default=DependencyFailure.CANCEL
    )
    # No index of its own: job_batch_status (batch, status) serves every lookup by batch,
    # and "any unfinished job in this batch?" must seek by status, not scan the batch.
    batch = models.ForeignKey(
        Batch, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs", db_index=False
    )
    # False while something must follow the job's end: its type's hooks, or dependents
    # to settle. Set once those ran; the reconciler replays them for final jobs still
    # without it (a worker died in between). True from the start for the common case —
    # a type without hooks, nobody depending on it — so that case costs no write.
    hooks_done = models.BooleanField(default=False)

    result = models.JSONField(null=True, blank=True)
    error_category = models.CharField(max_length=20, choices=ErrorCategory.choices, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    error_details = models.TextField(blank=True, default="", help_text="traceback")
    recovery_actions = models.JSONField(default=list, blank=True)

    progress = models.PositiveSmallIntegerField(default=0)
    stage = models.CharField(max_length=200, blank=True, default="")
    progress_details = models.JSONField(default=dict, blank=True)
    seq = models.PositiveIntegerField(default=0, help_text="event sequence number, +1 per change")

    # The RQ job id of the current dispatch. The first dispatch uses the Job id itself;
    # later ones (retry, requeue, repair) get "<job id>_<token>" so a stale RQ entry can
    # never claim the row and RQ never reuses a hash it is still finishing.
    rq_job_id = models.CharField(max_length=64, blank=True, default="")
    worker_name = models.CharField(max_length=200, blank=True, default="")
    # The process that claimed the row (the RQ work-horse): liveness is decided by it,
    # not by a timeout, so a slow job whose process is alive is never declared lost.
    runner_host = models.CharField(max_length=255, blank=True, default="")
    runner_pid = models.PositiveIntegerField(null=True, blank=True)
    # The run's lease (jobs.core.leases), on the database's clock: set by the claim,
    # renewed by the worker while the run goes on, cleared when its outcome is recorded.
    # Another host may take the job over only once it has passed.
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    # The submit's moment, set by the submit in the order the jobs were sent (a bulk
    # inserts its rows in key order: auto_now_add stamped them so, and results of
    # dependencies "in the order they were submitted" came out in key order).
    created_at = models.DateTimeField(default=timezone.now, editable=False, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    scheduled_for = models.DateTimeField(null=True, blank=True)
    run_at = models.DateTimeField(null=True, blank=True, help_text="earliest start the submitter asked for")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    # Parked by flow control (Hold; "" when not): a held job is queued in the database
    # and in no RQ queue until released. ``held_at`` stays set from the hold until the
    # claim, so a released job still on its way to a worker counts against its limit.
    hold = models.CharField(max_length=20, choices=Hold.choices, blank=True, default="")
    held_at = models.DateTimeField(null=True, blank=True)

    # The estimate given at submit (current ones are computed on read: jobs.insight.estimates);
    # the claim records how far the first start was from it.
    first_estimated_start_at = models.DateTimeField(null=True, blank=True)
    first_estimated_finish_at = models.DateTimeField(null=True, blank=True)
    eta_error_seconds = models.FloatField(null=True, blank=True, help_text="actual start − first estimate")
    # The first estimate's 80 % range, and whether it leaned on a prior (a type without
    # history in play): how often real starts fall inside is the range's calibration.
    first_estimated_start_low = models.DateTimeField(null=True, blank=True)
    first_estimated_start_high = models.DateTimeField(null=True, blank=True)
    first_estimate_cold = models.BooleanField(null=True, blank=True)
    # The spread behind that range (the log-normal's σ of the wait): what the real start
    # is measured in to calibrate later ranges (jobs.insight.calibration).
    first_estimate_sigma = models.FloatField(null=True, blank=True)
    # How much work the job is, in its type's unit (e.g. a document's bytes), when its type
    # is sized; ``size_class`` buckets it so the line can be counted by type and class.
    size = models.FloatField(null=True, blank=True, help_text="work in the type's unit (e.g. bytes)")
    size_class = models.SmallIntegerField(null=True, blank=True)
    # The W3C traceparent of the span that submitted the job (jobs.core.tracing), when
    # traces are on: every attempt's claim, run and record join that trace, whichever
    # host runs them and however often Redis loses the dispatch. Blank: not traced.
    trace_context = models.CharField(max_length=64, blank=True, default="")

    objects = JobQuerySet.as_manager()

    # Not fields: set on the instance a lifecycle move returns (jobs.core.lifecycle), what the
    # move saw under the row lock. Annotations only, so instances without a move lack them.
    previous_status: str
    previous_dispatch: str
    previous_priority: str

    class Meta:
        ordering = ["-created_at"]
        # Django's internal queries (related lookups) go through the guarded queryset too.
        base_manager_name = "objects"
        indexes = [
            # The line in the order workers take it; with type and size class, so ETAs
            # count the jobs ahead by type from the index alone.
            models.Index(fields=["status", "priority", "enqueued_at", "type", "size_class"], name="job_line"),
            # Recent run times per type (ETAs, stats).
            models.Index(fields=["type", "status", "finished_at"], name="job_type_status_finished"),
            models.Index(fields=["owner", "-created_at"], name="job_owner_created"),
            # A batch's jobs by status (its counts, the job list's batch filter), and its
            # unfinished ones alone: "is any still unfinished?" after each of its jobs' end
            # is one seek, however many of its jobs are done.
            models.Index(fields=["batch", "status"], condition=Q(batch__isnull=False), name="job_batch_status"),
            models.Index(
                fields=["batch"],
                condition=Q(batch__isnull=False, status__in=UNFINISHED_IN_ORDER),
                name="job_batch_unfinished",
            ),
            models.Index(fields=["-created_at"], name="job_created"),
            # The console's list filtered by status (dead letters, failures), newest first.
            models.Index(fields=["status", "-created_at"], name="job_status_created"),
            models.Index(fields=["status", "finished_at"], name="job_status_finished"),
            # Stats over a period select by finish time alone.
            models.Index(fields=["finished_at"], name="job_finished"),
            models.Index(fields=["finished_at"], condition=Q(hooks_done=False), name="job_hooks_pending"),
            # The console's "heavy" filter: few jobs are, and finding none must not scan all.
            models.Index(fields=["-created_at"], condition=Q(heavy=True), name="job_heavy_created"),
            # The console's search: a UUID may be an idempotency key.
            models.Index(fields=["idempotency_key"], condition=Q(idempotency_key__isnull=False), name="job_idem_key"),
            # Held jobs by type, in line order: what the release pass and the console read.
            models.Index(fields=["type", "priority", "enqueued_at"], condition=~Q(hold=""), name="job_held"),
            # Canceled runs that may not have stopped yet (they count against their type's
            # limit: jobs.core.leases.stopping); a handful at any time.
            models.Index(
                fields=["type", "lease_expires_at"],
                condition=Q(lease_expires_at__isnull=False) & ~Q(status="active"),
                name="job_stopping",
            ),
            # Released jobs not claimed yet (they count against their type's limit).
            models.Index(fields=["type"], condition=Q(held_at__isnull=False, hold=""), name="job_released"),
            # ETA accuracy: the latest jobs that have both a first estimate and a real start.
            models.Index(
                fields=["-created_at"],
                condition=Q(eta_error_seconds__isnull=False, first_estimated_start_at__isnull=False),
                name="job_eta_samples",
            ),
        ]
        constraints = [
            # Idempotency: one job per (owner, key); ownerless jobs (crons) share one space.
            models.UniqueConstraint(
                fields=["owner", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False, owner__isnull=False),
                name="job_idempotency_per_owner",
            ),
            models.UniqueConstraint(
                fields=["idempotency_key"],
                condition=Q(idempotency_key__isnull=False, owner__isnull=True),
                name="job_idempotency_system",
            ),
            models.CheckConstraint(condition=Q(progress__lte=100), name="job_progress_le_100"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.id} [{self.status}]"

    def save(self, *args, **kwargs) -> None:
        update_fields = kwargs.get("update_fields")
        if update_fields is None or "status" in update_fields:
            _refuse_status_write("Job.save()")
        super().save(*args, **kwargs)

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class PayloadText(models.Model):
    """A job's payload as JSON text, for the console's search (jobs.insight.payload_search;
    a trigram index on it on PostgreSQL, migration 0017). Written once, with the job (a
    payload never changes), and only for a payload that is not empty. In a table of its
    own because PostgreSQL updates no row in place when an indexed column changes (a
    job's status is indexed): every move of a job wrote its payload's trigrams into an
    index on the job's row again — about a millisecond a move for a 2 KB payload."""

    # No foreign key in the database: Django deletes a job's text with it (CASCADE), and
    # without one the insert checks and locks no job row, the copy of a million payloads
    # (migration 0017) cannot be failed by a job deleted meanwhile, and code that knows
    # nothing of this table (during a deploy) can still delete jobs. A text left without
    # its job (deleted by raw SQL) finds nothing.
    job = models.OneToOneField(Job, on_delete=models.CASCADE, primary_key=True, related_name="+", db_constraint=False)
    text = models.TextField()

    def __str__(self) -> str:
        return f"{self.job_id} {self.text[:40]}"

    @classmethod
    def of(cls, job: Job) -> PayloadText | None:
        """The row to write with a new job; None for an empty payload (nothing to find).
        The JSON with ``", "`` and ``": "`` between items, as PostgreSQL renders it, so a
        search for ``"sku": "A-1`` finds what it found in ``payload::text``. (Copied
        rows of older jobs are PostgreSQL's own rendering: keys in its order, numbers
        as stored.)"""
        if not job.payload:
            return None
        return cls(job=job, text=json.dumps(job.payload, cls=DjangoJSONEncoder, ensure_ascii=False))


class JobEvent(models.Model):
    """One line of a job's timeline: state changes, retry decisions, operator actions."""

    class Kind(models.TextChoices):
        TRANSITION = "transition"
        PROGRESS = "progress"
        ACTION = "action"
        NOTE = "note"

    # Indexed by jobevent_job_created (job, created_at); the actor by jobevent_actor, only
    # where there is one (an operator): a worker writes two events a job, with none.
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="events", db_index=False)
    seq = models.PositiveIntegerField(default=0)
    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.TRANSITION)
    from_status = models.CharField(max_length=12, blank=True, default="")
    to_status = models.CharField(max_length=12, blank=True, default="")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    actor_label = models.CharField(max_length=200, blank=True, default="", help_text="system actor, e.g. worker name")
    message = models.TextField(blank=True, default="")
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["job", "created_at"], name="jobevent_job_created"),
            models.Index(fields=["created_at"], name="jobevent_created"),
            models.Index(fields=["actor"], condition=Q(actor__isnull=False), name="jobevent_actor"),
        ]

    def __str__(self) -> str:
        return f"{self.job_id} {self.from_status}→{self.to_status} {self.message[:40]}"

    @property
    def who(self) -> str:
        if self.actor_id:
            return str(self.actor)
        return self.actor_label or "system"


class JobLog(models.Model):
    """What one run (attempt) of a job's handler logged: its ``logging`` records and
    ``ctx.log(...)`` lines, the last ``JOB_LOG_LINES`` of them (``jobs.execution.capture``).

    One row per run holding a bounded JSON list, not one row per line: the worker
    buffers lines in memory and each batch write is a single UPDATE of this row however
    many lines it carries; keeping only the last N needs no DELETE of older rows (the
    list is replaced); the count of dropped lines sits beside the lines it qualifies; and
    reading a job's logs is one indexed query. Each line is
    ``{"n", "at", "level", "logger", "message"}`` (``n`` counts from 1 in the run, so
    ``n`` of the first kept line − 1 = lines dropped before it)."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="logs")
    attempt = models.PositiveIntegerField()
    # The run's RQ dispatch id: an attempt number repeats after a requeue (a new round of
    # attempts), a dispatch never does.
    dispatch = models.CharField(max_length=64)
    lines = models.JSONField(default=list, blank=True)
    total = models.PositiveIntegerField(default=0, help_text="lines the run emitted, kept or not")
    dropped = models.PositiveIntegerField(default=0, help_text="oldest lines not kept (over JOB_LOG_LINES)")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [models.UniqueConstraint(fields=["job", "dispatch"], name="joblog_job_dispatch")]
        indexes = [models.Index(fields=["created_at"], name="joblog_created")]  # pruning

    def __str__(self) -> str:
        return f"{self.job_id} attempt {self.attempt}: {self.total} lines"


class JobStatsHour(models.Model):
    """Finished jobs of one type in one hour, folded for stats over long periods
    (jobs.insight.rollup). Histograms: {"<measure letter><bucket>": count}."""

    hour = models.DateTimeField()
    type = models.CharField(max_length=100)
    finished = models.PositiveIntegerField(default=0)
    complete = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    dead_letter = models.PositiveIntegerField(default=0)
    canceled = models.PositiveIntegerField(default=0)
    duration_max = models.FloatField(null=True, blank=True)
    histograms = models.JSONField(default=dict)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["hour", "type"], name="statshour_hour_type")]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h {self.type}"


class FlowControl(models.Model):
    """An operator's lever on one queue or one job type, kept in the database so it
    survives Redis flushes and restarts: a pause (with who and why), and for a type a
    concurrency limit and a rate limit. A type's limits default to its code's
    (``@job_type(concurrency=…, rate=…)``) until an operator sets them (``*_custom``)."""

    class Kind(models.TextChoices):
        QUEUE = "queue"
        TYPE = "type"

    kind = models.CharField(max_length=5, choices=Kind.choices)
    name = models.CharField(max_length=100)
    paused = models.BooleanField(default=False)
    paused_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    paused_reason = models.TextField(blank=True, default="")
    paused_by_label = models.CharField(
        max_length=200, blank=True, default="", help_text="who paused it, as the audit trail names them"
    )
    paused_at = models.DateTimeField(null=True, blank=True)
    # Types only. With ``*_custom`` False the code's value applies (and these are ignored).
    concurrency = models.PositiveIntegerField(null=True, blank=True, help_text="jobs active at once; empty: no limit")
    concurrency_custom = models.BooleanField(default=False)
    rate = models.CharField(max_length=40, blank=True, default="", help_text='starts per period, e.g. "100/minute"')
    rate_custom = models.BooleanField(default=False)
    # Epoch seconds of the latest starts (at most the rate's count), written under this
    # row's lock by the claim: the sliding window the rate is checked against.
    rate_starts = models.JSONField(default=list, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "name"], name="flowcontrol_kind_name")]
        ordering = ["kind", "name"]

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


class FlowChange(models.Model):
    """The audit trail of the levers: who changed what, when, why, and from what."""

    control = models.ForeignKey(FlowControl, on_delete=models.CASCADE, related_name="changes")
    action = models.CharField(max_length=20)  # paused | resumed | limits | reset
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(max_length=200, blank=True, default="")
    reason = models.TextField(blank=True, default="")
    before = models.JSONField(default=dict, blank=True)
    after = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["control", "-created_at"], name="flowchange_control_created")]

    def __str__(self) -> str:
        return f"{self.control} {self.action}"

    @property
    def who(self) -> str:
        if self.actor_id:
            return str(self.actor)
        return self.actor_label or "system"


class Schedule(models.Model):
    """A cron entry as data: what to submit (type, payload, priority), when (a cron
    expression read in a time zone), and whether it is paused. Entries declared in code
    (``jobs.cron(...)``) are synced in (``from_code``) and follow the code until an
    operator edits them (``overridden``, kept until reset to ``code``); operators add
    their own. The scheduler fires what is due (``next_run_at``) once per tick
    (``jobs.upkeep.schedules``)."""

    name = models.CharField(max_length=100, unique=True)
    job_type = models.CharField(max_length=100)
    payload = models.JSONField(default=dict, blank=True)
    priority = models.CharField(
        max_length=10, choices=Priority.choices, blank=True, default="", help_text="empty: the job type's own"
    )
    cron = models.CharField(max_length=100, help_text='five fields: minute hour day month weekday, e.g. "0 7 * * *"')
    time_zone = models.CharField(
        max_length=64, default="UTC", help_text='the cron reads this zone\'s clock, e.g. "Europe/Kyiv"'
    )
    paused = models.BooleanField(default=False)
    from_code = models.BooleanField(default=False, editable=False)
    overridden = models.BooleanField(default=False, editable=False, help_text="an operator changed the code's entry")
    code = models.JSONField(default=dict, blank=True, editable=False)  # the code's declaration, for reset
    next_run_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_run_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True, default="", editable=False)
    # The latest runs' job ids, newest first (ticks and "run now"): the console shows
    # them without searching the jobs table by key.
    recent_jobs = models.JSONField(default=list, blank=True, editable=False)
    updated_by = models.CharField(max_length=200, blank=True, default="", editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        indexes = [
            models.Index(fields=["next_run_at"], name="schedule_due", condition=Q(paused=False)),
        ]

    def __str__(self) -> str:
        return self.name
