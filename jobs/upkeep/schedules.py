"""Cron schedules as data: synced from code, edited by operators, fired by the scheduler.

Each ``Schedule`` row knows its next firing (``next_run_at``, UTC, computed in the
entry's zone: ``jobs.core.cron_times``). The scheduler process — rq-scheduler's loop,
``jobs.upkeep.scheduler`` — calls ``fire_due`` on every poll: a due row is advanced to
its next firing by a guarded update (only the process that moves it from the value it
read submits), in the same transaction as the submit, whose idempotency key is the
entry and the tick (``cron:<name>:<tick>``). So a tick runs once however many
schedulers poll, and a scheduler that restarts across a tick finds the row still due
and fires it then: no tick is doubled or lost. The rows live in the database, so a
Redis flush loses nothing.

A scheduler that was down for several ticks fires the first one it missed, once, and
goes on from the present (no burst of catch-up runs).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone
from redis.exceptions import RedisError

from jobs.core import cron_times, queueing, registry
from jobs.core.errors import ActionRefused, InvalidInput, SubmitError
from jobs.core.models import Job, Priority, Schedule
from jobs.core.submit import submit

logger = logging.getLogger("jobs.upkeep.schedules")

EDITABLE = ("job_type", "payload", "priority", "cron", "time_zone")
LAST_RUNS = 10


# --- From code -------------------------------------------------------------------------


def _declared(entry: registry.CronEntry) -> dict[str, Any]:
    return {
        "job_type": entry.job_type, "payload": entry.payload, "priority": entry.priority,
        "cron": entry.schedule, "time_zone": entry.time_zone,
    }  # fmt: skip


def sync_from_code(now: datetime | None = None) -> dict[str, list[str]]:
    """Bring the rows in line with the code's ``jobs.cron(...)`` entries: new ones are
    added, changed ones follow the code unless an operator overrode them, and entries
    removed from the code disappear. Operators' own entries are left alone."""
    now = now or timezone.now()
    entries = registry.cron_entries()
    added, changed = [], []
    for name, entry in entries.items():
        declared = _declared(entry)
        with transaction.atomic():
            row = Schedule.objects.select_for_update().filter(name=name).first()
            if row is None:
                row = _create_quietly(name, declared, now)
                if row is not None:
                    added.append(name)
                continue
            if row.code == declared and row.from_code:
                continue
            row.code, row.from_code = declared, True
            if not row.overridden and _apply_keeping_the_next_tick(row, declared, now):
                changed.append(name)
            row.save()
    removed = list(
        Schedule.objects.filter(from_code=True).exclude(name__in=list(entries)).values_list("name", flat=True)
    )
    Schedule.objects.filter(name__in=removed, from_code=True).delete()
    if added or changed or removed:
        logger.info("schedules synced from code", extra={"added": added, "changed": changed, "removed": removed})
    return {"added": added, "changed": changed, "removed": removed}


def sync_after_migrate(**_signal_kwargs) -> None:
    sync_from_code()


def _create_quietly(name: str, declared: dict, now: datetime) -> Schedule | None:
    row = Schedule(name=name, from_code=True, code=declared, **declared)
    row.next_run_at = _next(row, now)
    try:
        with transaction.atomic():
            row.save()
    except IntegrityError:  # another process synced it meanwhile
        return None
    return row


def _apply(row: Schedule, values: dict[str, Any]) -> bool:
    """Set the definition fields; True when any changed."""
    changed = False
    for key in EDITABLE:
        if key in values and getattr(row, key) != values[key]:
            setattr(row, key, values[key])
            changed = True
    return changed


def _next(row: Schedule, after: datetime) -> datetime:
    return cron_times.next_after(row.cron, row.time_zone, after)


def _apply_keeping_the_next_tick(row: Schedule, values: dict[str, Any], now: datetime) -> bool:
    """``_apply``, then the next firing: computed again from now when the timing changed
    (the cron or its zone), else kept — a tick already due and about to fire is not
    dropped because the entry's payload or priority changed. True when any changed."""
    timing = (row.cron, row.time_zone)
    if not _apply(row, values):
        return False
    if row.paused:
        row.next_run_at = None
    elif row.next_run_at is None or (row.cron, row.time_zone) != timing:
        row.next_run_at = _next(row, now)
    return True


# --- Firing ---------------------------------------------------------------------------


def fire_due(now: datetime | None = None) -> list[Job]:
    """Submit the job of every schedule whose tick has come, once per tick."""
    now = now or timezone.now()
    fired = []
    due = Schedule.objects.filter(paused=False, next_run_at__lte=now).order_by("next_run_at")
    for row in due[:100]:
        try:
            job = _fire(row, now)
        except (RedisError, DatabaseError, OSError):
            raise  # the scheduler waits for the database and Redis to come back
        except Exception as error:  # a bug: this entry says so and goes on (as a refused tick
            # does), and the others still fire — left due, it failed again at every poll
            logger.exception("schedule could not fire", extra={"schedule": row.name})
            _skip_tick(row, now, f"{type(error).__name__}: {error}")
            continue
        if job is not None:
            fired.append(job)
    return fired


def _skip_tick(row: Schedule, now: datetime, error: str) -> None:
    """The tick could not be submitted: say why on the entry and move on to the next."""
    try:
        following: datetime | None = _next(row, now)
    except Exception:  # noqa: BLE001 - the bug may be there: parked, as _fire parks one whose next time is not found
        following = None
    Schedule.objects.filter(pk=row.pk, next_run_at=row.next_run_at, updated_at=row.updated_at).update(
        next_run_at=following, last_run_at=row.next_run_at, last_error=error
    )


def _fire(row: Schedule, now: datetime) -> Job | None:
    tick = row.next_run_at
    assert tick is not None  # filtered on it
    try:
        following = _next(row, now)
    except ValueError as error:  # stored before validation tightened: park it, say why
        Schedule.objects.filter(pk=row.pk, next_run_at=tick).update(next_run_at=None, last_error=str(error))
        return None
    with transaction.atomic():
        # As read: an edit since (a save; firing does not stamp ``updated_at``) may have
        # kept the tick but changed what it submits — the next poll fires it anew.
        moved = Schedule.objects.filter(pk=row.pk, next_run_at=tick, paused=False, updated_at=row.updated_at).update(
            next_run_at=following, last_run_at=tick
        )
        if not moved:
            return None  # another scheduler fired this tick, or an operator changed the entry
        try:
            job = _submit(row, f"cron:{row.name}:{tick.isoformat()}")
        except (SubmitError, ActionRefused) as error:  # e.g. its type is gone from the code: say so on the entry
            Schedule.objects.filter(pk=row.pk).update(last_error=f"{error} {error.hint}".strip())
            logger.warning("schedule could not submit", extra={"schedule": row.name, "error": str(error)})
            return None
        _remember(row.pk, job)
    return job


def _submit(row: Schedule, key: str) -> Job:
    options: dict[str, Any] = {"idempotency_key": key}
    if row.priority:
        options["priority"] = row.priority
    return submit(row.job_type, row.payload, **options).job


# --- What operators do ---------------------------------------------------------------


def get(name: str) -> Schedule:
    row = Schedule.objects.filter(name=name).first()
    if row is None:
        known = ", ".join(Schedule.objects.values_list("name", flat=True)[:50]) or "none"
        raise InvalidInput(f"No schedule named {name!r}.", field="name", hint=f"Schedules: {known}.")
    return row


def validate(values: dict[str, Any], *, internal_ok: Iterable[str] = ()) -> dict[str, Any]:
    """The definition fields, checked as a submit would check them; InvalidInput names
    the field and how to fix it. An internal type (submitted by code only) only where it
    is in ``internal_ok``: the code's own entry's, or the one the entry already has."""
    if "cron" in values:
        _check(values["cron"], "cron", cron_times.parse, cron_times.HINT)
    if "time_zone" in values:
        _check(values["time_zone"], "time_zone", cron_times.zone, cron_times.ZONE_HINT)
    if "cron" in values or "time_zone" in values:
        _check_fires(values.get("cron"), values.get("time_zone"))
    if "priority" in values and values["priority"] not in ("", *Priority.values):
        raise InvalidInput(
            f"Unknown priority {values['priority']!r}.", field="priority",
            hint=f"One of {', '.join(Priority.values)}, or empty for the type's own.",
        )  # fmt: skip
    if "job_type" in values:
        try:
            job_type = registry.get(values["job_type"])
        except SubmitError as unknown:  # named as the schedule calls it, not as a submit does
            raise InvalidInput(unknown.message, field="job_type", hint=unknown.hint) from None
        if not job_type.public and values["job_type"] not in internal_ok:
            raise InvalidInput(
                f"Job type {values['job_type']!r} is internal.", field="job_type",
                hint="It runs from code and the schedules declared in code only: name a public type.",
            )  # fmt: skip
        payload = values.get("payload")  # null or absent: none; [] or 0 is refused, not read as {}
        values["payload"] = job_type.clean_payload({} if payload is None else payload)
    return values


def _check(value: Any, field: str, parse, hint: str) -> None:
    try:
        parse(value)
    except ValueError as error:
        raise InvalidInput(str(error), field=field, hint=hint) from None


def _check_fires(expression: str | None, zone: str | None) -> None:
    if expression is None or zone is None:
        return
    try:
        cron_times.next_after(expression, zone, timezone.now())
    except ValueError as error:
        raise InvalidInput(str(error), field="cron", hint=cron_times.HINT) from None


def create(name: str, values: dict[str, Any], *, by: str = "") -> Schedule:
    """An operator's own entry (``job_type`` and ``cron`` required)."""
    if not registry.NAME_PATTERN.match(name or ""):
        raise InvalidInput(
            f"{name!r} is not a schedule name.", field="name", hint="Letters, digits, '.', '_' and '-'; up to 100."
        )
    for required in ("job_type", "cron"):
        if not values.get(required):
            raise InvalidInput(f"{required} is required.", field=required, hint="Name the job type and its cron.")
    values = validate({"time_zone": "UTC", "payload": {}, "priority": "", **values})
    if Schedule.objects.filter(name=name).exists():
        raise InvalidInput(f"A schedule named {name!r} exists.", field="name", hint="Pick another name, or edit it.")
    row = Schedule(name=name, updated_by=by, **{k: values[k] for k in EDITABLE})
    row.next_run_at = _next(row, timezone.now())
    row.save()
    return row


def edit(name: str, values: dict[str, Any], *, by: str = "") -> Schedule:
    """Change an entry's definition; a code entry keeps the change until ``reset``.
    Takes effect at once: a new cron or zone computes the next firing again from now;
    any other change keeps the next firing (one due now still fires)."""
    changes = {key: value for key, value in values.items() if key in EDITABLE}
    with transaction.atomic():
        row = Schedule.objects.select_for_update().get(pk=get(name).pk)
        kept = (row.job_type, (row.code or {}).get("job_type", ""))  # not a new choice of an internal type
        merged = validate({**{key: getattr(row, key) for key in EDITABLE}, **changes}, internal_ok=kept)
        if _apply_keeping_the_next_tick(row, merged, timezone.now()):
            row.overridden = row.from_code and any(getattr(row, k) != row.code.get(k) for k in EDITABLE)
        row.updated_by = by
        row.save()
    return row


def reset(name: str, *, by: str = "") -> Schedule:
    """A code entry back to what the code declares."""
    with transaction.atomic():
        row = Schedule.objects.select_for_update().get(pk=get(name).pk)
        if not row.from_code:
            raise InvalidInput(
                f"{name!r} was added by an operator: there is no code to reset it to.",
                field="name",
                hint="Edit or delete it instead.",
            )
        _apply_keeping_the_next_tick(row, row.code, timezone.now())
        row.overridden, row.updated_by = False, by
        row.save()
    return row


def set_paused(name: str, paused: bool, *, by: str = "") -> Schedule:
    """Pause: no tick fires. Resume: from the next firing after now (what was missed
    while paused is not made up)."""
    with transaction.atomic():
        row = Schedule.objects.select_for_update().get(pk=get(name).pk)
        row.paused, row.updated_by = paused, by
        row.next_run_at = None if paused else _next(row, timezone.now())
        row.save()
    return row


def delete(name: str) -> None:
    row = get(name)
    if row.from_code:
        raise InvalidInput(
            f"{name!r} is declared in code: deleting it here would bring it back at the next sync.",
            field="name",
            hint="Pause it instead, or remove it from the code.",
        )
    row.delete()


def run_now(name: str) -> Job:
    """One extra run now, outside the timetable (its own key: never a tick's)."""
    get(name)  # unknown: said with the names there are
    with transaction.atomic():
        # Locked for the run: a delete meanwhile comes before (DoesNotExist, the
        # caller's 404) or after it — a 500 from _remember before.
        row = Schedule.objects.select_for_update().get(name=name)
        job = _submit(row, f"cron:{row.name}:now:{uuid.uuid4()}")
        _remember(row.pk, job)
    return job


def _remember(pk: int, job: Job) -> None:
    """Note the run on its entry (newest first, the last few), and clear an old error."""
    row = Schedule.objects.select_for_update().only("recent_jobs").filter(pk=pk).first()
    if row is None:
        return  # deleted while it fired: nothing left to note it on
    ids = [str(job.id), *[i for i in row.recent_jobs if i != str(job.id)]][:LAST_RUNS]
    Schedule.objects.filter(pk=pk).update(recent_jobs=ids, last_error="")


# --- What the console and the API read -------------------------------------------------


@dataclass(frozen=True)
class Run:
    job_id: uuid.UUID
    status: str
    created_at: datetime
    finished_at: datetime | None
    manual: bool


def next_runs(row: Schedule, count: int = 5) -> list[datetime]:
    if row.paused:
        return []
    try:
        return cron_times.next_runs(row.cron, row.time_zone, timezone.now(), count)
    except ValueError:
        return []


def last_runs(row: Schedule) -> list[Run]:
    """Its latest runs, newest first (a job deleted by retention meanwhile is left out)."""
    fields = ("id", "status", "created_at", "finished_at", "idempotency_key")
    found = {job[0]: job for job in Job.objects.filter(pk__in=row.recent_jobs).values_list(*fields)}
    runs = []
    for raw in row.recent_jobs:
        job = found.get(uuid.UUID(raw))
        if job is not None:
            runs.append(Run(job[0], job[1], job[2], job[3], (job[4] or "").startswith(f"cron:{row.name}:now:")))
    return runs


# --- Upgrading ---------------------------------------------------------------------------

LEGACY_TIMER_PREFIX = "jobdesk-cron-"  # before schedules were data, each entry was an rq-scheduler cron


def forget_legacy_timers() -> int:
    """Drop the rq-scheduler cron entries an older Jobdesk registered: the schedules
    fire them now, and both firing would only be saved from doubling by the key."""
    scheduler = queueing.scheduler()
    stale = [job.id for job in scheduler.get_jobs() if job.id.startswith(LEGACY_TIMER_PREFIX)]
    for job_id in stale:
        scheduler.cancel(job_id)
    return len(stale)
