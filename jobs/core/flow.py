"""Flow control: pause a queue or a job type, cap a type's concurrency and its rate.

The levers live in the database (``FlowControl``: they survive Redis flushes and
restarts; every change is in ``FlowChange``). They act at the claim, the one moment
every start passes through: a worker that meets a job a lever refuses parks it
(``Hold``: still queued, in the database only, no attempt spent) and takes the next
one, so nothing behind it waits. Parked jobs go back to the front of their queue when
the lever lets them: at once on a resume, a raised limit or a freed slot (a job of the
type left ``active``), and on every scheduler poll (each second) for the rest — a rate's
next opening, a release a crashed process never made.

A concurrency limit is exact across workers and hosts: a limited type's claims lock
its ``FlowControl`` row and count its active rows, so the count is the database's, and a
slot held by a killed worker comes back when the reconciler repairs that job. A rate
is a sliding window over the type's latest starts, kept in the same locked row.

What the claim consults for unlimited work is a snapshot of the levers at most
``RULES_MAX_AGE`` old (one small query per process per interval): a pause takes effect
within that time, and limits set at runtime on a type that had none likewise.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Case, Count, IntegerField, Value, When
from django.utils import timezone

from jobs.core import leases, lifecycle, rates, registry
from jobs.core.errors import InvalidInput, JobNotFound, SubmitError, TransitionError, TypeLoadFailed
from jobs.core.models import FlowChange, FlowControl, Hold, Job, Priority, Status

logger = logging.getLogger("jobs.core.flow")

RULES_MAX_AGE = 0.5  # seconds a process trusts its snapshot of the levers
# The API's cap too; beyond the column's range PostgreSQL would refuse the write (a 500).
MAX_CONCURRENCY = 100_000
Kind = FlowControl.Kind
_UNSET: Any = object()


# --- The rules: the levers, merged with the code's defaults ---------------------------


@dataclass(frozen=True)
class TypeRule:
    paused: bool = False
    concurrency: int | None = None
    rate: rates.Rate | None = None

    @property
    def limited(self) -> bool:
        return self.concurrency is not None or self.rate is not None


@dataclass(frozen=True)
class Rules:
    paused_queues: frozenset[str] = frozenset()
    controls: dict[str, FlowControl] = field(default_factory=dict)  # types with a lever row
    queues: dict[str, FlowControl] = field(default_factory=dict)  # queues with a lever row

    def for_type(self, name: str) -> TypeRule:
        return type_rule(self.controls.get(name), _registered(name))

    def type_paused(self, name: str) -> bool:
        control = self.controls.get(name)
        return control is not None and control.paused

    def pause_of(self, job_type: str, priority: str) -> FlowControl | None:
        """The lever that keeps a job of this type in this queue from starting, if any."""
        for control in (self.queues.get(priority), self.controls.get(job_type)):
            if control is not None and control.paused:
                return control
        return None

    @functools.cached_property
    def _restricting(self) -> bool:
        limited = {t.name for t in _all_types() if t.concurrency or t.rate}
        return bool(self.paused_queues) or any(
            rule.paused or rule.limited for rule in map(self.for_type, limited | set(self.controls))
        )

    def restrict_anything(self) -> bool:
        """False in the common case (no pause, no limit in force — a lever row left
        from a resume or a reset counts for nothing): claims skip every check."""
        return self._restricting


def type_rule(control: FlowControl | None, job_type: registry.JobType | None) -> TypeRule:
    """What applies to a type: the operator's values where set, else the code's."""
    concurrency = job_type.concurrency if job_type else None
    rate_text = job_type.rate if job_type else ""
    if control is not None and control.concurrency_custom:
        concurrency = control.concurrency
    if control is not None and control.rate_custom:
        rate_text = control.rate
    return TypeRule(
        paused=bool(control and control.paused),
        concurrency=concurrency,
        rate=_parsed(rate_text),
    )


def _parsed(text: str) -> rates.Rate | None:
    if not text:
        return None
    try:
        return rates.parse(text, stored=True)
    except ValueError:  # validated on the way in; a bad stored value must not stop workers
        logger.error("ignoring a malformed rate", extra={"rate": text})
        return None


def _registered(name: str) -> registry.JobType | None:
    try:
        return registry.get(name, resolve=True)
    except SubmitError:
        return None


def _all_types() -> Iterable[registry.JobType]:
    return registry.all_types().values()


_snapshot: tuple[float, Rules] | None = None


def rules(max_age: float = RULES_MAX_AGE) -> Rules:
    """The levers as this process last read them (at most ``max_age`` seconds ago)."""
    global _snapshot
    now = time.monotonic()
    if _snapshot is None or now - _snapshot[0] > max_age:
        controls = list(FlowControl.objects.all())
        _snapshot = (
            now,
            Rules(
                paused_queues=frozenset(c.name for c in controls if c.kind == Kind.QUEUE and c.paused),
                controls={c.name: c for c in controls if c.kind == Kind.TYPE},
                queues={c.name: c for c in controls if c.kind == Kind.QUEUE},
            ),
        )
    return _snapshot[1]


def forget_rules() -> None:
    """After a change in this process: the next claim reads the levers again."""
    global _snapshot
    _snapshot = None


# --- The gate: claim, or hold ----------------------------------------------------------


def claim(job_id, dispatch: str, worker_name: str, *, known: tuple[str, str] | None = None) -> Job | None:
    """Claim the job for this dispatch unless a lever refuses it now; then park it
    (``Hold``) and return None. Raises like ``lifecycle.claim`` when the dispatch is stale.
    ``known`` is the job's (type, queue) as its dispatch says (the RQ job's meta and
    queue): it spares reading them from the row. A claim already made along with this
    thread's last record (``lifecycle.claim_along``, where no lever applied) is taken
    as it was made: the levers as read then, as any claim's snapshot."""
    if lifecycle.claim_made_along(job_id, dispatch):
        return lifecycle.claim(job_id, dispatch, worker_name)
    current = rules()
    if not current.restrict_anything():
        return lifecycle.claim(job_id, dispatch, worker_name)
    found = known or Job.objects.filter(pk=job_id).values_list("type", "priority").first()
    if found is None:
        raise JobNotFound(job_id)
    job_type, priority = found
    if _nothing_to_check(current, job_type, priority):
        return lifecycle.claim(job_id, dispatch, worker_name)
    return _claim_under_levers(job_id, dispatch, worker_name, job_type, priority, current.for_type(job_type), current)


def claims_outright(known: tuple[str, str] | None) -> bool:
    """Would ``claim`` now make a plain claim, no lever to check, of a job of this (type,
    queue)? (Unknown: only when nothing is restricted.)"""
    current = rules()
    if not current.restrict_anything():
        return True
    return known is not None and _nothing_to_check(current, *known)


def _nothing_to_check(current: Rules, job_type: str, priority: str) -> bool:
    rule = current.for_type(job_type)
    return priority not in current.paused_queues and not rule.paused and not rule.limited


def _claim_under_levers(
    job_id, dispatch: str, worker_name: str, job_type: str, priority: str, rule: TypeRule, current: Rules
) -> Job | None:
    """Decide under the levers' row locks, reading them afresh: a pause, a resume or
    another worker's claim of the same type cannot come between the check and the
    claim (or the hold). Limited types' claims take their turn: one at a time per type.
    A queue the snapshot shows unpaused is not locked (a pause reaches the claims
    within the snapshot's age, as for unlimited work)."""
    known_lever = current.controls.get(job_type)
    type_lever_id = (known_lever.pk if known_lever else lever(Kind.TYPE, job_type).pk) if rule.limited else None
    with transaction.atomic():
        if priority in current.paused_queues:
            queue_lever = FlowControl.objects.select_for_update().filter(kind=Kind.QUEUE, name=priority).first()
            if queue_lever is not None and queue_lever.paused:
                return _hold(job_id, dispatch, Hold.QUEUE_PAUSED, f"queue {priority} is paused")
        levers = FlowControl.objects.select_for_update()
        control = (
            levers.get(pk=type_lever_id) if type_lever_id else levers.filter(kind=Kind.TYPE, name=job_type).first()
        )
        rule = type_rule(control, _registered(job_type))
        if rule.paused:
            return _hold(job_id, dispatch, Hold.TYPE_PAUSED, f"type {job_type} is paused")
        if rule.concurrency is not None:
            active = _in_slots(job_type)
            if active >= rule.concurrency:
                return _hold(job_id, dispatch, Hold.CONCURRENCY, f"{active} of at most {rule.concurrency} active")
        if rule.rate is not None and control is not None and not rule.rate.allows(control.rate_starts, time.time()):
            return _hold(job_id, dispatch, Hold.RATE, f"rate limit {rule.rate} reached")
        job = lifecycle.claim(job_id, dispatch, worker_name, in_callers_transaction=True)
        if rule.rate is not None and control is not None:
            _note_start(control, rule.rate, job)
        return job


def _note_start(control: FlowControl, rate: rates.Rate, job: Job) -> None:
    """Add the claim's start to the type's window (the latest ``count`` starts)."""
    assert job.started_at is not None  # the claim sets it
    started = job.started_at.timestamp()
    kept = rates.recent(control.rate_starts, started, rate)[-(rate.count - 1) :] if rate.count > 1 else []
    FlowControl.objects.filter(pk=control.pk).update(rate_starts=[*kept, started])


def _hold(job_id, dispatch: str, hold: str, reason: str) -> Job | None:
    """Park the job; None, as the claim answers for "not started"."""
    lifecycle.hold(job_id, dispatch, hold=hold, reason=reason)
    return None


# --- Release: send parked jobs back when their lever lets them -------------------------


def release_held(job_type: str | None = None) -> int:
    """Return held jobs (of one type, or all) that the levers now allow to their queues'
    fronts, oldest first within priority. Safe to run anywhere, any time, concurrently."""
    held = Job.objects.filter(status=Status.QUEUED).exclude(hold="")
    if job_type is not None:
        held = held.filter(type=job_type)
    types = sorted(set(held.values_list("type", flat=True).distinct()))
    if not types:
        return 0
    current = rules(max_age=0)
    released = 0
    for name in types:
        try:
            released += _release_type(name, current)
        except Exception:  # one type's trouble must not keep the others parked
            logger.exception("releasing held jobs failed", extra={"job_type": name})
    return released


def _release_type(name: str, current: Rules) -> int:
    rule = current.for_type(name)
    if rule.paused:
        return 0
    open_queues = [q for q in settings.JOB_QUEUES if q not in current.paused_queues]
    if not rule.limited:
        return _unhold(_held_in_line(name, open_queues, None), "its lever allows it again")
    with transaction.atomic():  # the same lock the limited claims take: the room is exact
        control = FlowControl.objects.select_for_update().get(pk=lever(Kind.TYPE, name).pk)
        rule = type_rule(control, _registered(name))
        if rule.paused:
            return 0
        room = _room(name, rule, control)
        if room <= 0:
            return 0
        ids = _held_in_line(name, open_queues, room)
    return _unhold(ids, "a slot is free")


def _room(name: str, rule: TypeRule, control: FlowControl) -> int:
    """How many more of this type may start now, minus those already on their way."""
    on_the_way = Job.objects.filter(type=name, status=Status.QUEUED, hold="", held_at__isnull=False).count()
    room = 1_000_000
    if rule.concurrency is not None:
        room = rule.concurrency - _in_slots(name)
    if rule.rate is not None:
        room = min(room, rule.rate.free(control.rate_starts, time.time()))
    return room - on_the_way


def _in_slots(name: str) -> int:
    """The type's runs that take a slot of its concurrency limit: the active ones, and
    the canceled ones that have not stopped yet (``leases.stopping``)."""
    return Job.objects.filter(type=name, status=Status.ACTIVE).count() + leases.stopping(name)


_PRIORITY_RANK = Case(
    *(When(priority=p, then=Value(rank)) for rank, p in enumerate(Priority.values)), output_field=IntegerField()
)


def _held_in_line(name: str, queues: list[str], limit: int | None) -> list:
    line = (
        Job.objects.filter(type=name, status=Status.QUEUED, priority__in=queues)
        .exclude(hold="")
        .order_by(_PRIORITY_RANK, "enqueued_at")
        .values_list("id", flat=True)
    )
    return list(line[:limit] if limit is not None else line)


def _unhold(job_ids: list, reason: str) -> int:
    released = 0
    for job_id in job_ids:
        try:
            lifecycle.unhold(job_id, reason=reason)
            released += 1
        except TransitionError:
            continue  # canceled, promoted or released by another pass meanwhile
    return released


def on_job_left_active(sender, job: Job, **kwargs) -> None:
    """A job left ``active``: if its type is limited, its slot may go to a held job."""
    slot_freed(job.type)


def slot_freed(job_type: str) -> None:
    """A run of the type ended (or a canceled one stopped, ``leases.release``): if the
    type is limited, its slot may go to a held job."""
    try:
        if rules().for_type(job_type).concurrency is not None:
            release_held(job_type)
    except Exception:  # the scheduler's next poll releases what this could not
        logger.exception("releasing after a freed slot failed", extra={"job_type": job_type})


# --- The levers: read, pause, resume, limits -------------------------------------------


def lever(kind: str, name: str) -> FlowControl:
    """The lever row for a queue or type, created on first use."""
    try:
        control, _ = FlowControl.objects.get_or_create(kind=kind, name=name)
    except IntegrityError:  # created by another process between the get and the create
        control = FlowControl.objects.get(kind=kind, name=name)
    return control


def check_target(kind: str, name: str) -> None:
    """A queue Jobdesk has, or a registered job type; else a 400 naming the known ones."""
    if kind == Kind.QUEUE:
        if name not in settings.JOB_QUEUES:
            raise InvalidInput(
                f"Unknown queue {name!r}.", field="name", hint=f"Queues: {', '.join(settings.JOB_QUEUES)}."
            )
        return
    if kind != Kind.TYPE:
        raise InvalidInput(f"Unknown kind {kind!r}.", field="kind", hint="Use queue or type.")
    known_type(name)


def known_type(name: str) -> registry.JobType:
    """A registered type, or one this process has not imported yet but that code has
    submitted (its name is in the jobs table): only then is its module imported, never
    for a name that merely arrived in a request. Else a 400 naming the known ones — all
    of them: levers are the operators', and they move internal types too (a submit's
    refusal names the public ones only)."""
    # No stored text holds NUL (PostgreSQL refuses it in a query: a DataError).
    seen = name in registry.all_types() or ("\x00" not in name and Job.objects.filter(type=name).exists())
    try:
        return registry.get(name, resolve=seen)
    except TypeLoadFailed:
        raise
    except SubmitError as unknown:
        known = ", ".join(sorted(registry.all_types()))
        raise SubmitError(unknown.message, field=unknown.field, hint=f"Known types: {known}.") from None


# What an audit row records of a lever, in reading order (the stored JSON keeps no order:
# PostgreSQL's jsonb sorts its keys).
STATE_FIELDS = ("paused", "paused_reason", "concurrency", "rate")


def _state(control: FlowControl) -> dict:
    return {
        "paused": control.paused,
        "paused_reason": control.paused_reason,
        "concurrency": control.concurrency if control.concurrency_custom else "code",
        "rate": control.rate if control.rate_custom else "code",
    }


def _actor_label(actor, actor_label: str) -> str:
    """How the audit names whoever moved a lever: the user, else the label (a command)."""
    return str(actor) if getattr(actor, "is_authenticated", False) else actor_label


def _change(control: FlowControl, action: str, before: dict, *, actor, actor_label: str, reason: str) -> None:
    FlowChange.objects.create(
        control=control,
        action=action,
        actor=actor if getattr(actor, "is_authenticated", False) else None,
        actor_label=actor_label,
        reason=reason,
        before=before,
        after=_state(control),
    )
    forget_rules()
    logger.info(
        "flow control changed",
        extra={"lever": f"{control.kind} {control.name}", "action": action, "actor": actor_label or str(actor or "")},
    )


def _check_reason(reason: str) -> None:
    if "\x00" in reason:  # PostgreSQL stores no NUL in text
        raise InvalidInput("The reason holds a NUL character.", field="reason", hint="Write it in plain text.")


def pause(kind: str, name: str, *, actor=None, actor_label: str = "", reason: str = "") -> FlowControl:
    """Stop starting work of a queue or type. Running jobs finish; queued ones wait."""
    check_target(kind, name)
    _check_reason(reason)
    with transaction.atomic():
        control = FlowControl.objects.select_for_update().get(pk=lever(kind, name).pk)
        before = _state(control)
        control.paused, control.paused_reason, control.paused_at = True, reason, timezone.now()
        control.paused_by = actor if getattr(actor, "is_authenticated", False) else None
        control.paused_by_label = _actor_label(actor, actor_label)
        control.save()
        _change(control, "paused", before, actor=actor, actor_label=actor_label, reason=reason)
    return control


def resume(kind: str, name: str, *, actor=None, actor_label: str = "", reason: str = "") -> FlowControl:
    """Start work of a queue or type again: what was held goes back to its queue."""
    check_target(kind, name)
    _check_reason(reason)
    with transaction.atomic():
        control = FlowControl.objects.select_for_update().get(pk=lever(kind, name).pk)
        before = _state(control)
        control.paused, control.paused_reason, control.paused_at, control.paused_by = False, "", None, None
        control.paused_by_label = ""
        control.save()
        _change(control, "resumed", before, actor=actor, actor_label=actor_label, reason=reason)
        transaction.on_commit(release_held)
    return control


def set_limits(
    name: str, *, concurrency: Any = _UNSET, rate: Any = _UNSET, actor=None, actor_label: str = "", reason: str = ""
) -> FlowControl:
    """An operator's limits for a type (None: no limit), kept until reset to the code's."""
    check_target(Kind.TYPE, name)
    _check_reason(reason)
    if concurrency is not _UNSET:
        validate_concurrency(concurrency)
    if rate is not _UNSET and rate:
        validate_rate(rate)
    with transaction.atomic():
        control = FlowControl.objects.select_for_update().get(pk=lever(Kind.TYPE, name).pk)
        before = _state(control)
        if concurrency is not _UNSET:
            control.concurrency, control.concurrency_custom = concurrency, True
        if rate is not _UNSET:
            control.rate, control.rate_custom = rate or "", True
        control.save()
        _change(control, "limits", before, actor=actor, actor_label=actor_label, reason=reason)
        transaction.on_commit(lambda: release_held(name))  # a raised limit has room at once
    return control


def reset_limits(name: str, *, actor=None, actor_label: str = "", reason: str = "") -> FlowControl:
    """Back to the code's limits for a type."""
    check_target(Kind.TYPE, name)
    _check_reason(reason)
    with transaction.atomic():
        control = FlowControl.objects.select_for_update().get(pk=lever(Kind.TYPE, name).pk)
        before = _state(control)
        control.concurrency, control.concurrency_custom, control.rate, control.rate_custom = None, False, "", False
        control.save()
        _change(control, "reset", before, actor=actor, actor_label=actor_label, reason=reason)
        transaction.on_commit(lambda: release_held(name))
    return control


def validate_concurrency(value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CONCURRENCY:
        raise InvalidInput(
            f"concurrency must be a whole number from 1 to {MAX_CONCURRENCY:,}, not {value!r}.",
            field="concurrency",
            hint="Send e.g. 3, or null for no limit (pause the type to stop it altogether).",
        )


def validate_rate(value: Any) -> None:
    if not isinstance(value, str):
        raise InvalidInput(f"rate must be text, not {value!r}.", field="rate", hint=rates.HINT)
    longest = FlowControl._meta.get_field("rate").max_length or 0
    if len(value) > longest:  # one the parser reads ("1   …   /minute") may not fit the column
        raise InvalidInput(f"rate must be at most {longest} characters.", field="rate", hint=rates.HINT)
    try:
        rates.parse(value)
    except ValueError as error:
        message = str(error).replace(f" {rates.HINT}", "")  # the hint once, as the hint
        raise InvalidInput(message, field="rate", hint=rates.HINT) from None


# --- What the console, the API, ETAs and health read ----------------------------------


def held_counts() -> dict[tuple[str, str], int]:
    """(type, hold) → how many jobs are parked."""
    rows = Job.objects.filter(status=Status.QUEUED).exclude(hold="").values("type", "hold").annotate(n=Count("id"))
    return {(row["type"], row["hold"]): row["n"] for row in rows.order_by()}


def pause_note(control: FlowControl) -> str:
    """What an estimate says instead of a time while a lever pauses the work: why, not
    who (every job's owner reads it; who paused it is for those who see the levers)."""
    why = f" ({control.paused_reason})" if control.paused_reason else ""
    return f"Paused: the {control.kind} {control.name} was paused{why}; it starts once resumed."


def paused_queues() -> list[str]:
    return sorted(rules().paused_queues)


def paused_types() -> list[str]:
    current = rules()
    return sorted(name for name in current.controls if current.type_paused(name))


def describe_queue(name: str, control: FlowControl | None = None, held: int | None = None) -> dict:
    """A queue's lever as the API and the console show it."""
    if control is None:
        control = FlowControl.objects.filter(kind=Kind.QUEUE, name=name).first()
    held = held if held is not None else _held_by_queue().get(name, 0)
    return {
        "name": name,
        "paused": bool(control and control.paused),
        "paused_reason": control.paused_reason if control and control.paused else "",
        "paused_by": control.paused_by_label if control and control.paused else "",
        "paused_at": control.paused_at if control and control.paused else None,
        "held": held,
    }


def describe_queues() -> list[dict]:
    controls = {
        c.name: c for c in FlowControl.objects.filter(kind=Kind.QUEUE)
    }  # fmt: skip
    held = _held_by_queue()
    return [describe_queue(name, controls.get(name), held.get(name, 0)) for name in settings.JOB_QUEUES]


def _held_by_queue() -> dict[str, int]:
    rows = Job.objects.filter(status=Status.QUEUED, hold=Hold.QUEUE_PAUSED).values("priority").annotate(n=Count("id"))
    return {row["priority"]: row["n"] for row in rows.order_by()}


def describe_type(name: str, control: FlowControl | None = None, counts: dict | None = None) -> dict:
    """A type's levers as the API and the console show them: what applies and where it
    comes from (the code, or an operator until reset), what is active and what is held."""
    job_type = known_type(name)
    if control is None:
        control = FlowControl.objects.filter(kind=Kind.TYPE, name=name).first()
    counts = counts if counts is not None else _type_counts([name])
    rule = type_rule(control, job_type)
    paused = bool(control and control.paused)
    return {
        "name": job_type.name,
        "priority": job_type.priority,
        "heavy": job_type.heavy,
        "paused": paused,
        "paused_reason": control.paused_reason if control and paused else "",
        "paused_by": control.paused_by_label if control and paused else "",
        "paused_at": control.paused_at if control and paused else None,
        "concurrency": rule.concurrency,
        "concurrency_from": "operator" if control and control.concurrency_custom else "code",
        "rate": (control.rate if control and control.rate_custom else job_type.rate) or None,
        "rate_from": "operator" if control and control.rate_custom else "code",
        "code_concurrency": job_type.concurrency,
        "code_rate": job_type.rate or None,
        "active": counts.get((name, "active"), 0),
        "stopping": counts.get((name, "stopping"), 0),
        "held": {hold: counts.get((name, hold), 0) for hold in Hold.values},
    }


def describe_types() -> list[dict]:
    names = sorted(registry.all_types())
    controls = {
        c.name: c for c in FlowControl.objects.filter(kind=Kind.TYPE)
    }  # fmt: skip
    counts = _type_counts(names)
    return [describe_type(name, controls.get(name), counts) for name in names]


def _type_counts(names: list[str]) -> dict[tuple[str, str], int]:
    """(type, "active"), (type, "stopping") and (type, hold) → how many jobs. Stopping:
    canceled runs whose lease still holds, which take a slot as the active ones do
    (``_in_slots``)."""
    counts = dict(held_counts())
    active = Job.objects.filter(status=Status.ACTIVE, type__in=names).values("type").annotate(n=Count("id"))
    counts.update({(row["type"], "active"): row["n"] for row in active.order_by()})
    stopping = leases.stopping_by_type(names)
    counts.update({(name, "stopping"): n for name, n in stopping.items()})
    return counts


def recent_changes(kind: str, name: str, limit: int = 20) -> list[FlowChange]:
    """The audit trail of one lever, newest first."""
    return list(
        FlowChange.objects.filter(control__kind=kind, control__name=name).select_related("actor")[:limit]
    )  # fmt: skip


def latest_changes(limit: int = 30) -> list[FlowChange]:
    """The audit trail of every lever, newest first (the console's page lists it whole)."""
    return list(FlowChange.objects.select_related("control", "actor")[:limit])
