"""The one way in for background work.

API, admin, ingestion and crons all call ``submit`` / ``submit_many``: validation,
idempotency (race-safe through unique constraints) and dependencies happen here; the
first status, the rows and the enqueue after commit are the lifecycle's
(``lifecycle.set_initial_status``, ``lifecycle.create_submitted``), and the first ETA is
whatever estimator is plugged in (``set_estimator``: jobs.insight's, at start-up).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, OperationalError, transaction
from django.utils import timezone

from jobs.core import access, batches, cyclegc, fastpath, lifecycle, opening, outcomes, registry, tracing
from jobs.core.errors import DependencyCycle, IdempotencyConflict, SubmitError
from jobs.core.models import FINAL_STATUSES, DependencyFailure, Job, Priority, Status
from jobs.core.registry import MAX_ATTEMPTS_LIMIT
from jobs.core.sizes import size_class

MAX_SIZE = 1e15  # a job's size, in its type's unit: beyond any real count of bytes or rows
# Rounds a submit tries when it loses a race (a concurrent submit's key committed first,
# a deadlock): at least these, and more while each round finds more of its keys' jobs.
_RACE_RETRIES = 3
# PostgreSQL's "deadlock detected" and "could not serialize": the loser of a race between
# transactions, rolled back whole, to be tried again.
_RACE_LOST_SQLSTATES = frozenset({"40P01", "40001"})
# What a dependency needs loaded: its status, and what its own ETA is made of.
DEPENDENCY_FIELDS = ("id", "type", "status", "priority", "heavy", "enqueued_at", "scheduled_for", "run_at",
                     "size_class", "started_at", "progress")  # fmt: skip

# Records the first estimate on new jobs, given {job id: its dependencies}. jobs.insight
# plugs in the ETA model at start-up; without one, jobs carry no first estimate.
Estimator = Callable[[list[Job], dict[Any, list[Job]]], None]
_estimator: Estimator | None = None


def set_estimator(estimator: Estimator | None) -> None:
    global _estimator
    _estimator = estimator


@dataclass
class JobSpec:
    """What a caller asks for. ``ref`` names the spec so others in one batch can depend on it."""

    type: str
    payload: dict[str, Any] | None = None
    priority: str | None = None
    max_attempts: int | None = None
    depends_on: Sequence[Any] = ()
    run_at: datetime | None = None
    idempotency_key: str | None = None
    heavy: bool | None = None
    ref: str | None = None
    size: float | None = None  # the work, in the type's unit (else the type's ``size`` says)
    # A failed, dead-lettered or canceled dependency cancels this job ("cancel", the
    # default) or lets it run once all are final, to see the failure ("run").
    on_dependency_failure: str | None = None


@dataclass
class Submitted:
    job: Job
    created: bool


@dataclass
class _Plan:
    spec: JobSpec
    job: Job
    dependencies: list[Job] = field(default_factory=list)
    created: bool = True


_NO_BATCH: Any = object()  # "whatever batch encloses the call" (see submit_many)


def submit(
    type: str,
    payload: dict[str, Any] | None = None,
    *,
    owner=None,
    allow_internal: bool = True,
    batch: Any = _NO_BATCH,
    **options: Any,
) -> Submitted:
    """Submit one job. Raises ``SubmitError`` (field + hint) for input the caller must fix."""
    return submit_one(JobSpec(type=type, payload=payload, **options), owner=owner, allow_internal=allow_internal,
                      batch=batch)  # fmt: skip


def submit_one(spec: JobSpec, *, owner=None, allow_internal: bool = True, batch: Any = _NO_BATCH) -> Submitted:
    """``submit`` of a spec made already. A refusal names the field alone (``type``);
    ``submit_many`` names the item even in a list of one (``jobs[0].type``)."""
    return _submit([spec], owner, allow_internal, batch, None, single=True)[0]


_PAUSE_COLLECTOR_FROM = 100  # jobs in one submit from which jobs.core.cyclegc pauses the collector


def submit_many(
    specs: Sequence[JobSpec], *, owner=None, allow_internal: bool = True, batch: Any = _NO_BATCH, from_job=None
) -> list[Submitted]:
    """Submit jobs atomically: all rows or none, one Redis pipeline after commit.

    ``batch`` (a ``Batch`` or its id) puts them in a batch (``jobs.core.batches``);
    without it they join the batch of an enclosing ``with jobs.batch(…)``, if any
    (``batch=None``: in no batch whatever encloses the call). ``from_job``: the running
    job of the batch that adds them (a closed batch takes jobs from its own jobs only)."""
    return _submit(specs, owner, allow_internal, batch, from_job, single=False)


def _submit(specs: Sequence[JobSpec], owner, allow_internal: bool, batch, from_job, *, single: bool) -> list[Submitted]:
    if batch is _NO_BATCH:
        batch = batches.current.get()
    batch_id = getattr(batch, "pk", batch)
    if owner is None and batch_id is not None:
        # Submitted into a user's batch by code that names no owner (a task's enqueue in
        # ``with jobs.batch(owner=alice)``, ``jobs.add_to_batch(id, …)``): the jobs are
        # the batch's owner's, who lists, cancels and requeues them one by one.
        owner = batch.owner if isinstance(batch, batches.Batch) else batches.owner_of(batch_id)
    if not specs:
        return []
    with tracing.submitting() as span, cyclegc.paused(len(specs) >= _PAUSE_COLLECTOR_FROM):
        submitted = _submit_many(specs, owner, allow_internal, batch_id, from_job, tracing.traceparent(), single)
        tracing.submitted(span, [s.job for s in submitted])
    return submitted


def _submit_many(
    specs: Sequence[JobSpec], owner, allow_internal: bool, batch_id, from_job, traceparent: str, single: bool
) -> list[Submitted]:
    # One job depending on nothing, outside any transaction, on PostgreSQL: a single
    # statement writes it (and its timeline), so no transaction is opened around reads.
    alone = len(specs) == 1 and batch_id is None and not specs[0].depends_on and fastpath.available()
    keyed = any(s.idempotency_key for s in specs)
    found_before, found = -1, 0
    for attempt in itertools.count():
        try:
            with contextlib.nullcontext() if alone else transaction.atomic():
                if batch_id is not None:
                    batches.lock_for_adding(batch_id, from_job=from_job)
                creation_order, plans = _plan(specs, owner, allow_internal, single)
                found = sum(not p.created for p in plans)
                for plan in creation_order:
                    if plan.created:
                        plan.job.batch_id = batch_id
                        plan.job.trace_context = traceparent  # every attempt joins the submit's trace
                if batch_id is not None:
                    _refuse_outsiders(plans, batch_id)
                new = [p for p in creation_order if p.created]
                dependencies = {p.job.id: p.dependencies for p in new}
                if _estimator is not None:
                    _estimator([p.job for p in new], dependencies)
                lifecycle.create_submitted([p.job for p in new], dependencies)
                _link_dependencies(new)
                _as_prefetched(new)
        except IntegrityError:
            # A concurrent submit with the same idempotency key won the race; the next
            # round finds its job through the key and returns it. Several may commit one
            # after another under a long bulk: go on while each round finds more.
            if not keyed or (attempt >= _RACE_RETRIES - 1 and found <= found_before):
                raise
            found_before = found
            continue
        except OperationalError as error:
            # Two bulks whose keys' rows wait on each other (their inserts are ordered by
            # key, but their dependencies' locks may still cross): the database rolled
            # this one back; it goes again.
            if getattr(error.__cause__, "sqlstate", None) not in _RACE_LOST_SQLSTATES or attempt >= _RACE_RETRIES:
                raise
            continue
        # Enqueue only once the rows are visible to workers, i.e. after the caller's
        # outermost transaction commits (runs at once when there is none).
        transaction.on_commit(functools.partial(_settle_canceled, plans))
        return [Submitted(p.job, p.created) for p in plans]
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


# --- Validation and planning ---------------------------------------------------------


def _plan(specs: Sequence[JobSpec], owner, allow_internal: bool, single: bool) -> tuple[list[_Plan], list[_Plan]]:
    order = _dependency_order(specs, single)
    keys = [_in_batch(index, single, _checked_key, spec.idempotency_key) for index, spec in enumerate(specs)]
    existing = _existing_by_key(owner, [key for key in keys if key])
    external = _load_dependencies(specs, owner, single)
    windows = functools.cache(opening.current)  # read once, and only if a heavy job asks
    plans: dict[int, _Plan] = {}
    by_ref: dict[str, _Plan] = {}
    by_key: dict[str, tuple[int, _Plan]] = {}  # each key's first item in this request
    for index in order:
        spec = specs[index]
        key = keys[index]
        if key and key in existing:
            plan = _Plan(
                spec, _same_request(spec, existing[key], _item(index, single, "idempotency_key")), created=False
            )
        elif key and key in by_key:  # the same key twice in one batch: one job
            first, earlier = by_key[key]
            job = _same_request(spec, earlier.job, _item(index, single, "idempotency_key"), first)
            plan = _Plan(spec, job, created=False)
        else:
            plan = _in_batch(index, single, _new_plan, spec, owner, allow_internal, external, by_ref, windows)
        plans[index] = plan
        if spec.ref:
            by_ref[spec.ref] = plan
        if key:
            by_key.setdefault(key, (index, plan))
    # Create in dependency order (bulk_create keeps it), answer in the caller's order.
    return [plans[i] for i in order], [plans[i] for i in range(len(specs))]


def _in_batch(index: int, single: bool, make, *args):
    """A refusal in a batch names the item: "jobs[3].type", "job 3: …"."""
    try:
        return make(*args)
    except SubmitError as refused:
        if single:
            raise
        field = _item(index, single, refused.field)
        raise type(refused)(f"Job {index}: {refused.message}", field=field, hint=refused.hint) from None


def _refuse_outsiders(plans: list[_Plan], batch_id) -> None:
    """A key that finds a job outside this batch: that job cannot join it (a job is in
    one batch at most, from its submit on). Answered as one of the batch's jobs, it was
    counted nowhere, and the batch's callbacks fired without waiting for it."""
    for index, plan in enumerate(plans):
        if not plan.created and str(plan.job.batch_id) != str(batch_id):  # the id as given: a UUID or its text
            where = f"batch {plan.job.batch_id}" if plan.job.batch_id else "no batch"
            raise IdempotencyConflict(
                f"Job {index}: idempotency key {plan.spec.idempotency_key!r} was already used for job "
                f"{plan.job.id}, in {where}: it cannot join this one."
            )


def _same_request(spec: JobSpec, job: Job, field: str | None, earlier: int | None = None) -> Job:
    """A repeated key must repeat the request; reusing it for other work is a conflict,
    named by the item's key field (and the earlier item of this request that has it)."""
    if spec.type != job.type:
        differs = f"a {job.type} job, not {spec.type}"
    elif not _same_json(registry.get(spec.type).clean_payload(spec.payload), job.payload):
        differs = "a different payload"
    else:
        return job
    used = f"given to job {earlier} of this request too" if earlier is not None else f"already used for job {job.id}"
    raise IdempotencyConflict(f"Idempotency key {spec.idempotency_key!r} was {used}: {differs}.", field=field)


def _same_json(sent, stored) -> bool:
    """Equal as JSON values: PostgreSQL keeps a number as its decimal value, so 1e23
    sent comes back as the integer 100000000000000000000000 (and 1e23 != 10**23 in
    Python): repeating the very request answered 409."""
    return _as_decimals(sent) == _as_decimals(stored)


def _as_decimals(value):
    # By JSON kind, not Python class: a str or int subclass (a choices member) is stored
    # as the plain value; a bool is not the number 1 in JSON.
    if isinstance(value, bool):
        return ("bool", value)
    if value is None:
        return ("null",)
    if isinstance(value, str):
        return ("str", str(value))
    if isinstance(value, float):
        return Decimal(repr(float(value)))
    if isinstance(value, int):
        return Decimal(int(value))
    if isinstance(value, dict):
        return {k: _as_decimals(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_as_decimals(v) for v in value]
    return value


def _checked_key(key) -> str | None:
    """An idempotency key from Python as the API checks one: text the column can hold."""
    if key is None or key == "":
        return None
    if not isinstance(key, str) or len(key) > _KEY_LENGTH or "\x00" in key or not _encodable(key):
        raise SubmitError(
            f"idempotency_key must be text of at most {_KEY_LENGTH} characters.",
            field="idempotency_key",
            hint="e.g. a UUID or 'report-2026-11'; no NUL characters.",
        )
    return key


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


_KEY_LENGTH = Job._meta.get_field("idempotency_key").max_length or 200


# The choices' values as sets, made once: ``Choices.values`` builds its list on each
# call, twice a job in a bulk submit. (A value is checked to be a string first: an
# unhashable one from Python code is refused like any other, not a TypeError.)
_PRIORITIES = frozenset(Priority.values)
_DEPENDENCY_FAILURES = frozenset(DependencyFailure.values)


def _new_plan(spec: JobSpec, owner, allow_internal: bool, external: dict, by_ref: dict, windows) -> _Plan:
    job_type = registry.get(spec.type)
    if not job_type.public and not allow_internal:
        raise SubmitError(
            f"Job type {spec.type!r} is internal.", field="type", hint="It is submitted by code and crons only."
        )
    payload = job_type.clean_payload(spec.payload)
    priority = spec.priority or job_type.priority
    if not isinstance(priority, str) or priority not in _PRIORITIES:
        raise SubmitError(
            f"Unknown priority {priority!r}.", field="priority", hint=f"Use one of: {', '.join(Priority.values)}."
        )
    max_attempts = _max_attempts(spec, job_type)
    # Each once, in the order given: a job named twice (or by its id and its ref) is one
    # dependency (one link; the second was a duplicate row: a 500).
    dependency_jobs = list(
        {
            job.id: job
            for job in (
                by_ref[d].job if isinstance(d, str) and d in by_ref else external[_as_uuid(d)] for d in spec.depends_on
            )
        }.values()
    )
    size = _size(spec, job_type, payload)
    job_id = uuid.uuid4()
    now = timezone.now()
    job = Job(
        id=job_id,
        type=spec.type,
        payload=payload,
        priority=priority,
        heavy=job_type.heavy if spec.heavy is None else bool(spec.heavy),
        owner=owner if getattr(owner, "is_authenticated", False) else None,
        max_attempts=max_attempts,
        timeout=job_type.timeout or settings.JOB_TIMEOUT,
        idempotency_key=spec.idempotency_key or None,
        on_dependency_failure=_dependency_failure(spec),
        rq_job_id=str(job_id),
        hooks_done=not job_type.has_hooks,
        seq=1,
        created_at=now,
        updated_at=now,
        size=size,
        size_class=size_class(size),
    )
    lifecycle.set_initial_status(job, spec.run_at, dependency_jobs, now, windows)
    return _Plan(spec, job, dependencies=dependency_jobs)


def _size(spec: JobSpec, job_type, payload: dict) -> float | None:
    if spec.size is None:
        return job_type.size_of(payload)
    if isinstance(spec.size, bool) or not isinstance(spec.size, int | float) or not 0 <= spec.size <= MAX_SIZE:
        raise SubmitError(
            "size must be a number >= 0.", field="size", hint="The job's work in its type's unit, e.g. bytes."
        )
    return float(spec.size)


def _dependency_failure(spec: JobSpec) -> str:
    value = spec.on_dependency_failure or DependencyFailure.CANCEL
    if not isinstance(value, str) or value not in _DEPENDENCY_FAILURES:
        raise SubmitError(
            f"Unknown on_dependency_failure {value!r}.",
            field="on_dependency_failure",
            hint="cancel (the default) or run (it runs and sees the failure in its dependency results).",
        )
    return value


def _max_attempts(spec: JobSpec, job_type) -> int:
    # 0 is a value given (and refused), not "the default".
    value = spec.max_attempts if spec.max_attempts is not None else job_type.max_attempts or settings.JOB_MAX_ATTEMPTS
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_ATTEMPTS_LIMIT:
        raise SubmitError(
            f"max_attempts must be a whole number from 1 to {MAX_ATTEMPTS_LIMIT}.",
            field="max_attempts",
            hint="1 means no retries.",
        )
    return value


def _as_uuid(value: Any) -> uuid.UUID:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        raise SubmitError(
            f"depends_on entry {value!r} is neither a job id nor a ref in this batch.",
            field="depends_on",
            hint="Use the id of an existing job, or the ref of another job of this batch (the API's depends_on_refs).",
        ) from None


def _load_dependencies(specs: Sequence[JobSpec], owner, single: bool) -> dict[uuid.UUID, Job]:
    refs = {s.ref for s in specs if s.ref}
    wanted: dict[uuid.UUID, int] = {}  # each dependency by id → the first job of the batch naming it
    for index, spec in enumerate(specs):
        for d in spec.depends_on:
            if not (isinstance(d, str) and d in refs):  # "jobs[3].depends_on" for a ref no job of the batch has
                wanted.setdefault(_in_batch(index, single, _as_uuid, d), index)
    if not wanted:
        return {}
    # Lock the dependencies: one that finishes meanwhile either commits first (and we
    # see its final status) or sees has_dependents=True when it settles its dependents.
    visible = Job.objects.select_for_update().filter(pk__in=wanted)
    if getattr(owner, "is_authenticated", False):
        visible = access.visible(visible, owner)
    found = {j.id: j for j in visible.only(*DEPENDENCY_FIELDS).order_by("pk")}
    missing = wanted.keys() - found.keys()
    if missing:
        first = min(missing, key=str)
        raise SubmitError(
            f"Unknown job in depends_on: {first}.",
            field=_item(wanted[first], single, "depends_on"),
            hint="Depend only on jobs that exist and that you own.",
        )
    return found


def _dependency_order(specs: Sequence[JobSpec], single: bool) -> list[int]:
    """Positions of the batch in topological order of its refs; a cycle is a submit error.
    A depth-first walk with a stack of its own: a recursive one went a level deeper per
    job of a chain sent last-first, past the interpreter's stack (a 500) before 1,000."""
    by_ref: dict[str, int] = {}
    for index, spec in enumerate(specs):
        if spec.ref:
            if spec.ref in by_ref:
                raise SubmitError(f"ref {spec.ref!r} is used twice in this submit.", field=_item(index, single, "ref"))
            by_ref[spec.ref] = index
    ordered: list[int] = []
    state: dict[int, str] = {}  # position → "visiting" | "done"
    for root in range(len(specs)):
        if root in state:
            continue
        state[root] = "visiting"
        stack = [(root, _refs_of(specs[root], by_ref))]
        while stack:
            index, dependencies = stack[-1]
            for dependency in dependencies:
                if state.get(dependency) == "done":
                    continue
                if state.get(dependency) == "visiting":  # on the stack: a cycle through it
                    on_stack = [i for i, _ in stack]
                    cycle = [*on_stack[on_stack.index(dependency) :], dependency]
                    raise DependencyCycle(
                        f"Dependency cycle: {' → '.join(specs[i].ref or '?' for i in cycle)}.",
                        field=_item(index, single, "depends_on"),
                        hint="A job cannot (indirectly) depend on itself.",
                    )
                state[dependency] = "visiting"
                stack.append((dependency, _refs_of(specs[dependency], by_ref)))
                break
            else:  # every dependency placed: this one next
                stack.pop()
                state[index] = "done"
                ordered.append(index)
    return ordered


def _refs_of(spec: JobSpec, by_ref: dict[str, int]) -> Iterator[int]:
    """The positions of the jobs of this batch ``spec`` depends on (by ref)."""
    return iter([by_ref[d] for d in spec.depends_on if isinstance(d, str) and d in by_ref])


def _item(index: int, single: bool, field: str | None) -> str | None:
    """A field of one job of a list, as a refusal names it ("jobs[3].ref"; "jobs[3]" for
    the job itself); the field alone for a job submitted on its own."""
    if single:
        return field
    return f"jobs[{index}].{field}" if field else f"jobs[{index}]"


def _existing_by_key(owner, keys: list[str]) -> dict[str, Job]:
    if not keys:
        return {}
    scope = {"owner": owner} if getattr(owner, "is_authenticated", False) else {"owner__isnull": True}
    # With what the answer shows of each (its owner's name, its dependencies): a 5,000-job
    # retry asked two queries a job.
    found = Job.objects.filter(idempotency_key__in=keys, **scope).select_related("owner").prefetch_related("depends_on")
    return {j.idempotency_key: j for j in found if j.idempotency_key is not None}  # never None: found by key


def forget_keys_of(sender, instance, **kwargs) -> None:
    """A user is being deleted (``pre_delete``): their jobs stay, owner-less, but give
    up their idempotency keys. Owner-less keys are the system's — a cron tick's
    (``cron:<name>:<tick>``) — so a deleted user's key stood in for a tick (or refused it
    as a conflict), and two deleted users' same key clashed (the delete failed).

    A submit of theirs committing between this and the delete's SET NULL keeps its key.
    Locking the user's row here closed that window but deadlocked the delete against a
    submit that locks one of their jobs (a dependency) before its row's foreign key
    locks the user."""
    Job.objects.filter(owner=instance, idempotency_key__isnull=False).update(idempotency_key=None)


# --- After the rows are written ------------------------------------------------------


def _link_dependencies(new: list[_Plan]) -> None:
    links = [(p.job.id, dep.id) for p in new for dep in p.dependencies]
    if not links:
        return
    through = Job.depends_on.through
    through.objects.bulk_create([through(from_job_id=job_id, to_job_id=dep) for job_id, dep in links])
    # Only unfinished dependencies (locked above) will have dependents to settle.
    Job.objects.filter(pk__in={dep for _, dep in links}, has_dependents=False).exclude(
        status__in=FINAL_STATUSES
    ).update(has_dependents=True, hooks_done=False)


def _as_prefetched(new: list[_Plan]) -> None:
    """New jobs' dependencies are known: kept as Django's prefetch would keep them, so
    ``job.depends_on.all()`` (the API's answer lists them) asks the database nothing.
    The jobs that depend on nothing share one empty answer (a queryset made per job was
    7 % of a bulk submit); it is never changed in place: adding a dependency drops it."""
    nothing = None  # not tested for truth: an empty queryset is false
    for plan in new:
        if plan.dependencies:
            known = _prefetched(Job.objects.filter(pk__in=[d.pk for d in plan.dependencies]), plan.dependencies)
        else:
            if nothing is None:
                nothing = _prefetched(Job.objects.none(), [])
            known = nothing
        plan.job._prefetched_objects_cache = {"depends_on": known}  # type: ignore[attr-defined]


def _prefetched(query, jobs: list[Job]):
    query._result_cache = list(jobs)  # what prefetch_related sets
    query._prefetch_done = True
    return query


def _settle_canceled(plans: list[_Plan]) -> None:
    """A job canceled at submit (a dependency had already failed) ends at once: its hooks
    run and whatever waits on it (in the same batch) is canceled too."""
    for plan in plans:
        if plan.created and plan.job.status == Status.CANCELED:
            outcomes.finished(plan.job)
