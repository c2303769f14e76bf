"""Job types register here by name, with their defaults, validation and hooks.

`jobs` never imports the apps that register types: they call ``@job_type`` from their
own modules, loaded by their ``AppConfig.ready()``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.conf import settings

from jobs.core import cron_times, rates
from jobs.core.errors import PayloadTooLarge, SubmitError, TypeLoadFailed
from jobs.core.models import Job, Priority

MAX_ATTEMPTS_LIMIT = 100  # a type's or a submit's max_attempts, at most
Handler = Callable[[Any], Any]  # receives a jobs.execution.context.JobContext
Validator = Callable[[dict], dict]
Hook = Callable[[Any], None]  # receives the finished jobs.core.models.Job


@dataclass(frozen=True)
class JobType:
    name: str
    handler: Handler
    heavy: bool = False
    timeout: int | None = None  # None → settings.JOB_TIMEOUT
    max_attempts: int | None = None  # None → settings.JOB_MAX_ATTEMPTS
    priority: str = Priority.NORMAL
    validate: Validator | None = None
    on_success: tuple[Hook, ...] = field(default_factory=tuple)
    on_failure: tuple[Hook, ...] = field(default_factory=tuple)
    # Internal types (crons, maintenance) are not submittable by ordinary API users.
    public: bool = True
    # What the job works on, from its payload: {subject field: id}, e.g.
    # {"document_id": …}. Its events also go to each subject's WebSocket group and carry
    # the field (see subject_field).
    subjects: Callable[[dict], dict[str, Any]] | None = None
    # Told once the run's outcome is recorded, in the worker (a notification, not a
    # hook: no retry, no replay by the reconciler).
    after_record: Hook | None = None
    # Flow control's defaults (operators may change them at runtime: jobs.core.flow):
    # at most this many active at once across all workers, at most this many starts
    # per period ("100/minute").
    concurrency: int | None = None
    rate: str = ""
    # For ETAs: roughly how long one run takes, until its history says (jobs.insight.
    # durations), and how big a job is (e.g. a document's bytes) when its run time grows
    # with its work: the estimate then learns seconds per unit of size.
    expected_duration: float | None = None
    size: Callable[[dict], float | None] | None = None
    # False: the default JobdeskWorker runs it inside its own long-lived process, without
    # a work-horse (no fork per job). For short, trusted handlers that leave no state
    # behind: a crash, a leak or a hang of the handler is the worker's own.
    fork: bool = True

    def size_of(self, payload: dict) -> float | None:
        """The job's size from its payload; None when the type is not sized or cannot say."""
        if self.size is None:
            return None
        try:
            value = self.size(payload)
        except Exception:  # an estimate's input: a sizing bug must never refuse a submit
            return None
        return float(value) if isinstance(value, int | float) and value >= 0 else None

    # As a batch's callback: the payload that hands it the batch's summary (a standard
    # task takes it as its one argument). None: the summary is the payload.
    summary_payload: Callable[[dict], dict] | None = None

    @property
    def has_hooks(self) -> bool:
        return bool(self.on_success or self.on_failure)

    def clean_payload(self, payload: Any) -> dict:
        if payload is None:
            payload = {}
        if not isinstance(payload, dict):
            raise SubmitError(
                "payload must be a JSON object", field="payload", hint="Send a JSON object, or {} for none."
            )
        check_storable(payload, "payload")
        if not self.validate:
            return payload
        cleaned = self.validate(payload)
        if not isinstance(cleaned, dict):  # the type's code, not the submitter's input
            raise TypeError(
                f"job type {self.name}: its validate returned {type(cleaned).__name__}, not the payload: "
                "return the cleaned payload (a dict), or raise SubmitError to refuse it"
            )
        return cleaned


# A NUL as json.dumps writes it: \u0000 after an even number of backslashes (an odd one
# is the text "\u0000" itself: a backslash, escaped, then "u0000").
_ESCAPED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def check_storable(value: Any, field: str, limit: int | None = None) -> None:
    """A JSON object the database keeps as given: no NUL character (PostgreSQL's jsonb
    cannot store one), no lone UTF-16 surrogate (no character at all: a page showing it
    fails to encode it), at most ``limit`` bytes (MAX_PAYLOAD_BYTES) of JSON."""
    limit = settings.MAX_PAYLOAD_BYTES if limit is None else limit
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if "\\u0000" in text and _ESCAPED_NUL.search(text):
        raise SubmitError(f"{field} contains a NUL character (\\u0000).", field=field, hint="Remove it.")
    try:
        size = len(text.encode())
    except UnicodeEncodeError:
        raise SubmitError(
            f"{field} contains half of a UTF-16 surrogate pair (a lone \\ud800-\\udfff).",
            field=field,
            hint="Send whole characters: a pair, or the character itself.",
        ) from None
    if size > limit:
        raise PayloadTooLarge(
            f"{field} is {size:,} bytes of JSON; at most {limit:,} are taken.",
            field=field,
            hint="Store big data elsewhere (a file, a table) and pass its id instead.",
        )


def stored_result(value: Any, refuse: Callable[..., Exception], *, who: str, advice: str, encoder=None) -> Any:
    """``value`` as a job's result is kept (through JSON), or ``refuse(message,
    recovery_actions=[advice])`` raised saying why: not JSON, or what PostgreSQL's jsonb
    cannot store (a NUL character, half a UTF-16 surrogate pair: a record refused for
    either failed every retry), or over MAX_RESULT_BYTES. ``who`` returned it (the
    handler, the task): each caller refuses in its own category."""
    try:
        text = json.dumps(value, cls=encoder, allow_nan=False)
    except (TypeError, ValueError) as error:
        message = f"The {who} returned {type(value).__name__}, which cannot be stored as JSON ({error})."
        raise refuse(message, recovery_actions=[advice]) from None
    loaded = json.loads(text)
    try:
        check_storable(loaded, "result", limit=settings.MAX_RESULT_BYTES)
    except SubmitError as refused:
        said = refused.message.removeprefix("result ") + (
            " (MAX_RESULT_BYTES)" if isinstance(refused, PayloadTooLarge) else ""
        )
        raise refuse(f"The {who} returned a result that {said}", recovery_actions=[advice]) from None
    return loaded


_types: dict[str, JobType] = {}


def job_type(
    name: str,
    *,
    heavy: bool = False,
    timeout: int | None = None,
    max_attempts: int | None = None,
    priority: str = Priority.NORMAL,
    validate: Validator | None = None,
    on_success: Hook | None = None,
    on_failure: Hook | None = None,
    public: bool = True,
    subjects: Callable[[dict], dict[str, Any]] | None = None,
    after_record: Hook | None = None,
    concurrency: int | None = None,
    rate: str | None = None,
    expected_duration: float | None = None,
    size: Callable[[dict], float | None] | None = None,
    summary_payload: Callable[[dict], dict] | None = None,
    fork: bool = True,
) -> Callable[[Handler], Handler]:
    """Register ``handler`` as the job type ``name``. Re-registering a name replaces it."""
    longest = Job._meta.get_field("type").max_length or 0
    if len(name) > longest:  # a task's name is its module path: it may be long
        raise ValueError(f"job type {name}: its name is {len(name)} characters, at most {longest} are stored")
    if priority not in Priority.values:
        raise ValueError(f"job type {name}: unknown priority {priority!r}")
    if concurrency is not None and (type(concurrency) is not int or concurrency < 1):
        raise ValueError(f"job type {name}: concurrency must be a whole number >= 1 (or None for no limit)")
    if rate:
        rates.parse(rate)  # a malformed rate fails at start-up, with the hint
    if timeout is not None and (type(timeout) is not int or timeout < 1):
        raise ValueError(f"job type {name}: timeout must be a whole number of seconds >= 1 (or None: JOB_TIMEOUT)")
    if max_attempts is not None and (type(max_attempts) is not int or not 1 <= max_attempts <= MAX_ATTEMPTS_LIMIT):
        raise ValueError(
            f"job type {name}: max_attempts must be a whole number from 1 to {MAX_ATTEMPTS_LIMIT} "
            "(1: no retries; None: JOB_MAX_ATTEMPTS)"
        )
    if not isinstance(fork, bool):
        raise ValueError(f"job type {name}: fork must be True or False")
    if expected_duration is not None and not (isinstance(expected_duration, int | float) and expected_duration > 0):
        raise ValueError(f"job type {name}: expected_duration must be a number of seconds > 0 (or None)")

    def register(handler: Handler) -> Handler:
        _types[name] = JobType(
            name=name,
            handler=handler,
            heavy=heavy,
            timeout=timeout,
            max_attempts=max_attempts,
            priority=priority,
            validate=validate,
            on_success=(on_success,) if on_success else (),
            on_failure=(on_failure,) if on_failure else (),
            public=public,
            subjects=subjects,
            after_record=after_record,
            concurrency=concurrency,
            rate=rate or "",
            expected_duration=float(expected_duration) if expected_duration is not None else None,
            size=size,
            summary_payload=summary_payload,
            fork=bool(fork),
        )
        return handler

    return register


@dataclass(frozen=True)
class CronEntry:
    """A job submitted on a schedule, visible as a Job each time. The cron expression
    reads ``time_zone``'s clock; ``priority`` "" is the job type's own."""

    name: str
    schedule: str
    job_type: str
    payload: dict = field(default_factory=dict)
    priority: str = ""
    time_zone: str = "UTC"


_crons: dict[str, CronEntry] = {}
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_subject_fields: list[str] = []


def subject_field(name: str) -> None:
    """Declare a kind of subject jobs can work on (e.g. ``"document_id"``): every live
    message carries the field (None when a job has no such subject), and followers of
    one subject join its group (``relay.subject_group``)."""
    if name not in _subject_fields:
        _subject_fields.append(name)


def subject_fields() -> list[str]:
    return list(_subject_fields)


def cron(
    name: str,
    schedule: str,
    job_type: str,
    payload: dict | None = None,
    *,
    priority: str = "",
    time_zone: str = "UTC",
) -> None:
    """Declare a cron entry. The scheduler syncs it into a ``Schedule`` row, which
    operators see and may edit (``jobs.upkeep.schedules``). A malformed expression, zone
    or name fails here, at start-up."""
    if not NAME_PATTERN.match(name):
        raise ValueError(f"cron name {name!r}: use letters, digits, '.', '_' and '-' only.")
    if priority and priority not in Priority.values:
        raise ValueError(f"cron {name!r}: priority must be one of {', '.join(Priority.values)}.")
    cron_times.next_after(schedule, time_zone, datetime.now(UTC))  # ValueError with a hint when it cannot fire
    _crons[name] = CronEntry(name, schedule, job_type, dict(payload or {}), priority, time_zone)


def cron_entries() -> dict[str, CronEntry]:
    return dict(_crons)


def all_types() -> dict[str, JobType]:
    return dict(_types)


def find(name: str) -> JobType | None:
    """The type ``name`` if this process knows it (no resolving, no error)."""
    return _types.get(name)


def is_registered(name: str) -> bool:
    return name in _types


# Ways to find a type this process has not registered yet, by its name: a worker runs
# standard tasks whose module nobody imported in it (jobs.tasks adds one).
_resolvers: list[Callable[[str], None]] = []


def add_resolver(resolver: Callable[[str], None]) -> None:
    """``resolver(name)`` may register the type ``name`` (e.g. by importing its module)."""
    if resolver not in _resolvers:
        _resolvers.append(resolver)


def get(name: str, *, resolve: bool = False) -> JobType:
    """The type ``name``. ``resolve`` (worker side only: it may import code named by the
    job) asks the resolvers for a type this process has not seen yet."""
    if name not in _types and resolve:
        for resolver in _resolvers:
            try:
                resolver(name)
            except Exception as broken:  # not "unknown" (a resolver returns for that): its code is broken
                raise TypeLoadFailed(
                    f"The code of job type {name!r} fails to load: {type(broken).__name__}: {broken}",
                    field="type", hint="Fix the module that declares it and deploy again.",
                ) from broken  # fmt: skip
    try:
        return _types[name]
    except KeyError:
        known = ", ".join(sorted(n for n, t in _types.items() if t.public)) or "none"
        raise SubmitError(f"Unknown job type {name!r}.", field="type", hint=f"Known types: {known}.") from None


def unregister(name: str) -> None:
    """For tests that register throwaway types."""
    _types.pop(name, None)
