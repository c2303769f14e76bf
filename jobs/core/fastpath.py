"""One-statement guarded moves for the worker's hot path on PostgreSQL.

A claim and a completion happen for every job. Through the ORM each is five round trips
(BEGIN, SELECT … FOR UPDATE, UPDATE, INSERT event, COMMIT) plus query building; here
each is one statement that locks the row, checks its status and dispatch, updates it
and writes the timeline event — the same guarded move, atomic as a single statement.
A single submit, likewise: the row and its first timeline entry in one statement
(``create``), not BEGIN, two INSERTs and COMMIT; a bulk submit's rows copied in
(``insert_many``: COPY), not sent as INSERTs of arrays.
``jobs.core.lifecycle`` decides when to use it; other databases take the ORM path, and
so does PostgreSQL through psycopg2: a project without psycopg 3 (on SQLite, say) does
not need it installed (``pip install 'jobdesk[postgres]'`` brings it).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import re
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DEFAULT_DB_ALIAS, DatabaseError, InterfaceError, OperationalError, connection, connections, models
from django.db.models import Field, JSONField, Model
from django.db.models.base import ModelState
from django.db.models.expressions import Col
from django.db.models.fields.related_descriptors import ForeignKeyDeferredAttribute
from django.db.models.query_utils import DeferredAttribute
from django.db.models.signals import post_init, pre_init

from jobs.core.models import Job, JobEvent, PayloadText

try:
    import psycopg
    from psycopg.types.datetime import TimestamptzLoader
except ImportError:
    HAS_PSYCOPG = False
else:
    HAS_PSYCOPG = True

logger = logging.getLogger("jobs.core.fastpath")

# A move as a chain of CTEs: lock the row, move it, log the event. ``{p}`` names the chain's
# parts: a second move taken along in the same statement (``riding``) is ``r_``.
_MOVE_CHAIN = """{p}locked AS (
    {lock}
), {p}moved AS (
    UPDATE {job} AS j SET status = {to}, seq = j.seq + 1, updated_at = %(now)s, {assignments}
    FROM {p}locked
    WHERE j.id = {p}locked.id AND {p}locked.status IN ({allowed}) AND j.rq_job_id = %(dispatch)s
    RETURNING {returning}, {p}locked.status AS previous_status
), {p}logged AS (
    INSERT INTO {event} (job_id, seq, kind, from_status, to_status, actor_id, actor_label, message, details,
                         created_at)
    SELECT id, seq, {kind}, previous_status, status, NULL, %(actor_label)s, %(message)s, %(details)s::jsonb, %(now)s
    FROM {p}moved
)"""
_LOCK_ALONE = "SELECT id, status FROM {job} WHERE id = %(id)s FOR UPDATE"
# Two moves in one statement lock both rows first, in the keys' order, in one scan: the
# order anyone locking the same two rows in one statement by key takes (no deadlock).
_LOCK_BOTH = """both_locked AS (
    SELECT id, status FROM {job} WHERE id IN (%(id)s, %(r_id)s) ORDER BY id FOR UPDATE
)"""
_LOCK_FROM_BOTH = "SELECT id, status FROM both_locked WHERE id = %(id)s"
_RIDER = "r_"  # the prefix of a second move's parts and parameters in a shared statement
_PLACEHOLDER = re.compile(r"%\((\w+)\)s")
_SPACES = re.compile(r"\s+")


def available() -> bool:
    return HAS_PSYCOPG and connection.vendor == "postgresql" and not connection.in_atomic_block


_CREATE_SQL = """
WITH job AS (INSERT INTO {job} ({job_columns}) VALUES ({job_values}) RETURNING 1){text}
INSERT INTO {event} ({event_columns}) SELECT {event_values} FROM job
"""
_TEXT_SQL = """, text AS (INSERT INTO {table} ({columns}) SELECT {values} FROM job)"""


def create(job: Job, event: JobEvent, text: PayloadText | None = None) -> None:
    """Insert a new job, its first event (``event.job_id`` is ``job.id``) and its payload's
    searchable text, if any (``text.job`` is ``job``), as one statement. Every column
    the ORM would write, as the ORM prepares it: a field added to a model is written
    here too."""
    db = connections[connection.alias]  # the connection itself: each use of the proxy costs a lookup
    # In the statement's order: the job, its text (if any), then its event.
    rows = [job, *([text] if text is not None else []), event]
    values = [value for row in rows for value in _prepared_values(row, db)]
    nulls = tuple(value is None for value in values)
    _execute(db, _create_sql(db.alias, nulls, text is not None), [value for value in values if value is not None])
    for row in rows:  # as a bulk_create leaves them: stored
        row._state.adding, row._state.db = False, db.alias


def copy_available() -> bool:
    """Can ``insert_many`` copy rows here (PostgreSQL through psycopg 3)?"""
    return HAS_PSYCOPG and connection.vendor == "postgresql"


def insert_many(rows: Sequence[Model]) -> None:
    """Insert new rows of one model with PostgreSQL's COPY: a bulk submit's jobs, their
    first events and texts. Every column the ORM would write, as the ORM prepares it, as
    ``create`` does. Django's bulk_create sends a 5,000-job submit as an INSERT of
    arrays (UNNEST), which psycopg spells out in Python, value by value: the copy took
    its insert from 2.4 to 1.4 s. The rows get no key the database numbers (an event's
    id): nothing reads it back from a submit. In the caller's transaction; Django's query
    log (DEBUG, tests counting queries) notes the copy as one statement."""
    if not rows:
        return
    db = connections[connection.alias]  # the connection itself: each use of the proxy costs a lookup
    model = type(rows[0])
    sql = _copy_sql(db.alias, model)
    started = time.monotonic()
    columns = _written_columns(model)
    with db.cursor() as cursor, db.wrap_database_errors, cursor.cursor.copy(sql) as copy:
        for row in rows:
            copy.write_row(_prepared_values(row, db, columns))
    if db.queries_logged:
        db.queries_log.append({"sql": f"{sql} -- {len(rows)} rows", "time": f"{time.monotonic() - started:.3f}"})
    for row in rows:  # as a bulk_create leaves them: stored
        row._state.adding, row._state.db = False, db.alias


def _prepared_values(row: Model, db, columns: list | None = None) -> list:
    """The row's values as an INSERT writes them (every column of ``_inserted``, in its
    order), prepared as the ORM prepares them — but a value the field would leave as it
    is (``_AS_IS``) taken as it is: asking each field was a third of a bulk copy's time
    and a tenth of a lone submit's CPU."""
    values = row.__dict__  # a new instance holds every field's value (Model.__init__)
    return [
        value
        if type(value := values[name]) in plain and (value is None or not aware or value.tzinfo is not None)
        else field.get_db_prep_save(field.pre_save(row, True), db)
        for field, name, plain, aware in columns or _written_columns(type(row))
    ]


# Field classes whose preparation (``get_db_prep_save`` on PostgreSQL) leaves a value of
# these exact types, or None, as it is: such a value is written without asking the
# field. Exact classes only (a subclass may prepare its values); a time only when aware
# (a naive one the ORM makes aware).
_AS_IS: dict[type[Field], tuple[type, ...]] = {
    models.CharField: (str,),
    models.TextField: (str,),
    models.BooleanField: (bool,),
    models.SmallIntegerField: (int,),
    models.IntegerField: (int,),
    models.BigIntegerField: (int,),
    models.PositiveSmallIntegerField: (int,),
    models.PositiveIntegerField: (int,),
    models.FloatField: (float,),
    models.UUIDField: (uuid.UUID,),
    models.DateTimeField: (datetime,),
}


@functools.cache
def _written_columns(model: type[Model]) -> list[tuple[Field, str, frozenset[type], bool]]:
    """Each column an insert writes: its field, the attribute holding its value, the
    value types written as they are (none for a field the ORM always prepares: JSON, a
    time stamped on insert, a foreign key), and whether a time must be aware to be."""
    columns = []
    for field in _inserted(model):
        stamped = getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False)
        plain = () if stamped else _AS_IS.get(type(field), ())
        if datetime in plain and not settings.USE_TZ:
            plain = ()  # the ORM writes a time in the local zone, naive
        columns.append(
            (field, field.attname, frozenset(plain) | {type(None)} if plain else frozenset(), datetime in plain)
        )
    return columns


@functools.cache
def _copy_sql(alias: str, model: type[Model]) -> str:
    quote = connections[alias].ops.quote_name
    columns = ", ".join(quote(str(field.column)) for field in _inserted(model))
    return f"COPY {quote(model._meta.db_table)} ({columns}) FROM STDIN"


@functools.cache
def _create_sql(alias: str, nulls: tuple[bool, ...], with_text: bool = False) -> str:
    """``create``'s statement, with NULL written where the value is None — as psycopg
    would render it — and a parameter for every other value. psycopg parses a statement
    of more than 50 parameters anew on every execution (and a lone submit has 58, 21 of
    them None): with fewer it parses each statement once. Made once per pattern of
    Nones (a few)."""
    quote = connections[alias].ops.quote_name
    job_fields, event_fields, text_fields = _inserted(Job), _inserted(JobEvent), _inserted(PayloadText)
    values = ["NULL" if null else "%s" for null in nulls]
    event_start = len(job_fields) + (len(text_fields) if with_text else 0)
    text = ""
    if with_text:
        text = _TEXT_SQL.format(
            table=quote(PayloadText._meta.db_table),
            columns=", ".join(quote(str(f.column)) for f in text_fields),
            values=", ".join(values[len(job_fields) : event_start]),
        )
    return _CREATE_SQL.format(
        job=quote(Job._meta.db_table),
        job_columns=", ".join(quote(str(f.column)) for f in job_fields),
        job_values=", ".join(values[: len(job_fields)]),
        text=text,
        event=quote(JobEvent._meta.db_table),
        event_columns=", ".join(quote(str(f.column)) for f in event_fields),
        event_values=", ".join(values[event_start:]),
    )


@functools.cache
def _inserted(model) -> list[Field]:
    """The fields an INSERT writes, as Django's insert compiler: all but an
    auto-incremented key (the database numbers it)."""
    return [
        f
        for f in model._meta.concrete_fields
        if not (f.primary_key and f.db_returning) and not getattr(f, "generated", False)  # the database computes it
    ]


def move(
    job_id,
    *,
    allowed,
    to: str,
    dispatch: str,
    now: datetime,
    values: dict,
    expressions: dict[str, str] | None = None,
    actor_label: str,
    message: str,
    details: dict | None = None,
) -> Job | None:
    """Apply the move; the moved Job (with ``previous_status``), or None if refused.

    ``values`` are the same field → Python value changes the ORM path writes (passed as
    parameters; JSON cast, None as NULL); ``expressions`` are computed from the locked
    row, as SQL over ``j`` (e.g. ``{"attempts": "j.attempts + 1"}``).

    A move this thread already made, taken along with an earlier one (``riding``), is
    not made again: its answer is returned (or the error it met raised).
    """
    answered = _answer_ahead(job_id, dispatch, to)
    if answered is not None:
        return answered.take()
    shape, params = _statement(
        job_id, allowed=allowed, to=to, dispatch=dispatch, now=now, values=values, expressions=expressions,
        actor_label=actor_label, message=message, details=details,
    )  # fmt: skip
    db = connections[DEFAULT_DB_ALIAS]
    rider = getattr(_riding, "rider", None)
    if rider is not None and rider.rides_with(job_id, dispatch):
        _riding.rider = None  # one ride
        return _move_with_rider(db, shape, params, rider)
    row = _execute(db, _move_sql(*shape), params, fetch=True)
    return None if row is None else _read_moved(db, row)


def _statement(
    job_id, *, allowed, to: str, dispatch: str, now: datetime, values: dict, expressions: dict[str, str] | None,
    actor_label: str, message: str, details: dict | None,
) -> tuple[_Shape, dict]:  # fmt: skip
    """The move's shape (what ``_move_sql`` makes its statement of) and its parameters."""
    assignments, params = _assignments(values)
    assignments.update((_column(name), expression) for name, expression in (expressions or {}).items())
    shape = (tuple(assignments.items()), tuple(sorted(allowed)), to)
    params["id"], params["now"], params["dispatch"] = job_id, now, dispatch
    params["actor_label"], params["message"] = actor_label, message
    params["details"] = json.dumps(details, cls=DjangoJSONEncoder) if details else "{}"
    return shape, params


# --- A second move in the same statement ----------------------------------------------
#
# A simple worker writes a run's record and, right behind it, the next run's claim, which
# the next run waits for: two round trips in a row on its critical path. ``riding`` lets
# the claim go in the record's statement (one round trip, one statement: both moves or
# neither), and keeps its answer for the claim's own call to ``move``.


class _Rider:
    """A move to take along with another one this thread makes: its host's."""

    def __init__(self, job_id, dispatch: str, to: str, build: Callable[[], dict], host: tuple[str, str]) -> None:
        self.job_id, self.dispatch, self.to, self.build = job_id, dispatch, to, build
        self.host = host

    def rides_with(self, job_id, dispatch: str) -> bool:
        """Is this move its host (and not of the rider's own job)?"""
        return (str(job_id), dispatch) == self.host and str(job_id) != str(self.job_id)


class _Answer:
    """A move made ahead of its own call: the Job moved, None (refused), or the error
    the shared statement met when it may have been made (its answer lost)."""

    def __init__(self, rider: _Rider, job: Job | None = None, error: Exception | None = None) -> None:
        self.rider, self.job, self.error = rider, job, error

    def take(self) -> Job | None:
        if self.error is not None:
            raise self.error
        return self.job


_riding = threading.local()  # .rider: a move to take along; .answer: one made ahead


@contextlib.contextmanager
def riding(job_id, dispatch: str, to: str, build: Callable[[], dict], *, host: tuple[str, str]) -> Iterator[None]:
    """Inside: this thread's move of the ``host`` (job id, dispatch) takes this one along,
    in the same statement, after it (its ``build()``: ``move``'s keywords but the job's
    id, asked for then — its times come after the host's). The answer is kept for this
    move's own call (the same job, dispatch and target) — only if that is the next move
    this thread makes. Nothing hosted inside, nothing taken along: the move's own call
    makes it."""
    _riding.answer = None
    _riding.rider = _Rider(job_id, dispatch, to, build, (str(host[0]), host[1]))
    try:
        yield
    finally:
        _riding.rider = None


def made_ahead(job_id, dispatch: str, to: str) -> bool:
    """Was this move made ahead, with another (``riding``), its answer waiting for its call?"""
    answer = getattr(_riding, "answer", None)
    if answer is None or answer.error is not None or answer.job is None:
        return False
    return _same(answer.rider, job_id, dispatch, to)


def _answer_ahead(job_id, dispatch: str, to: str) -> _Answer | None:
    """The answer made ahead for this move, taken. Any other is dropped: kept only for the
    very next move's call, nothing stale is ever taken."""
    answer = getattr(_riding, "answer", None)
    if answer is None:
        return None
    _riding.answer = None
    return answer if _same(answer.rider, job_id, dispatch, to) else None


def _same(rider: _Rider, job_id, dispatch: str, to: str) -> bool:
    return str(rider.job_id) == str(job_id) and rider.dispatch == dispatch and rider.to == to


def _move_with_rider(db, shape: _Shape, params: dict, rider: _Rider) -> Job | None:
    """Make the move and the rider's in one statement; keep the rider's answer."""
    try:
        rider_shape, rider_params = _statement(rider.job_id, **rider.build())
        both = _pair_sql(shape, rider_shape)
    except Exception:  # never the host's loss: it goes alone, and the rider's call makes its own
        logger.exception("a move to take along could not be made", extra={"job_id": str(rider.job_id)})
        row = _execute(db, _move_sql(*shape), params, fetch=True)
        return None if row is None else _read_moved(db, row)
    params.update((_RIDER + name, value) for name, value in rider_params.items())
    try:
        rows = _execute(db, both, params, fetch_all=True)
        moved = {row[0]: _read_moved(db, row[1:]) for row in rows}
    except (OperationalError, InterfaceError) as error:
        # Both moves or neither, the answer lost with the connection: maybe made. The
        # rider's call learns the same (a worker then looks whether its claim was made).
        _riding.answer = _Answer(rider, error=error)
        raise
    # (Any other error: neither was made, and the rider's call makes its own.)
    _riding.answer = _Answer(rider, job=moved.get(1))
    return moved.get(0)


@functools.lru_cache(maxsize=16)
def _pair_sql(first: _Shape, second: _Shape) -> str:
    """Two moves' chains in one statement, both rows locked first (``_LOCK_BOTH``), the
    second's parts and parameters renamed (``_RIDER``); each moved row tagged 0 or 1.
    Their rows differ (a rider never rides with its own job's move), so each sees its
    row as the statement found it. Runs of spaces made one: psycopg parses a statement
    over 4 KB again at every run instead of keeping what it made of it."""
    chain = _move_chain(*second, lock=_LOCK_FROM_BOTH).replace("{p}", _RIDER)
    chain = _PLACEHOLDER.sub(lambda m: f"%({_RIDER}{m[1]})s", chain)
    sql = (
        f"WITH {_LOCK_BOTH.format(job=Job._meta.db_table)}, "
        f"{_move_chain(*first, lock=_LOCK_FROM_BOTH).replace('{p}', '')},\n{chain}\n"
        f"SELECT 0, * FROM moved UNION ALL SELECT 1, * FROM {_RIDER}moved"
    )
    return _SPACES.sub(" ", sql)


# What a server answers when it cannot run a statement prepared on this connection: the
# table's columns changed under it (a migration from another host: "cached plan must not
# change result type"), or the statement is not there (a transaction pooler sent the run
# to another server session).
_PREPARED_REFUSED = (psycopg.errors.FeatureNotSupported, psycopg.errors.InvalidSqlStatementName) if HAS_PSYCOPG else ()
_prepared_connections: weakref.WeakSet = weakref.WeakSet()  # the psycopg connections set to prepare
# Each connection's cursors for prepared statements, one a statement, are kept open and
# used again, on the connection's Django wrapper (``_KEPT``: a ``_Kept``): making one per
# run (psycopg's cursor and its adapters, the loader, Django's wrapper) was a tenth of a
# worker's bookkeeping CPU. Used only while they are on the wrapper's current connection:
# a reconnect replaces them, and the closed connection goes with the old ones (not kept
# in a map of their own: a cursor holds its connection, which stayed alive for good).
_KEPT = "_jobdesk_kept_cursors"
_pooler_refused = False  # a pooler lost a prepared statement: this process prepares no more
_TIMESTAMPTZ_OID = psycopg.postgres.types["timestamptz"].oid if HAS_PSYCOPG else 0


def _execute(db, sql: str, params, *, fetch: bool = False, fetch_all: bool = False):
    """Run the statement prepared (``_prepared_cursor``); the row when ``fetch``. A server
    that refuses the prepared statement turns preparing off — for this connection, or
    for the process when a pooler lost it — and the statement runs again unprepared
    (unless inside the caller's transaction, which the refusal aborted: its retry then
    runs unprepared). Every row when ``fetch_all``."""
    try:
        return _run(_prepared_cursor(db, sql), sql, params, fetch, fetch_all)
    except DatabaseError as error:
        if not isinstance(error.__cause__, _PREPARED_REFUSED):
            raise
        _stop_preparing(db, error.__cause__)
        if db.in_atomic_block:
            raise
    return _run(db.cursor(), sql, params, fetch, fetch_all)


def _run(cursor, sql: str, params, fetch: bool, fetch_all: bool):
    try:
        cursor.execute(sql, params)
        if fetch_all:
            return cursor.fetchall()
        return cursor.fetchone() if fetch else None
    finally:
        if getattr(cursor.db, _KEPT, {}).get(sql) is not cursor:
            cursor.close()


def _stop_preparing(db, cause: Exception) -> None:
    global _pooler_refused
    if db.connection is not None:
        db.connection.prepare_threshold = None  # this connection prepares no more
    if isinstance(cause, psycopg.errors.InvalidSqlStatementName):
        _pooler_refused = True
        logger.warning(
            "a prepared statement was lost (a transaction pooler?): this process prepares no more; "
            "set DB_PREPARED_STATEMENTS=false behind such a pooler",
            extra={"error": str(cause)},
        )
    else:
        logger.info("a prepared statement went stale (the table changed): this connection prepares no more")


def _prepared_cursor(db, sql: str):
    """The connection's cursor for this statement, which the server prepares once per
    connection and then only runs (kept open: ``_KEPT``): a move's planning cost about
    0.4 ms, every time (1.3 → 0.9 ms a move), and a lone submit's insert about 0.5 ms.
    Django binds parameters on the client and never prepares (for connection poolers
    that cannot keep prepared statements: DB_PREPARED_STATEMENTS=false turns this off
    here too); this is psycopg's server-binding cursor, inside Django's wrapper (errors
    translated, queries logged). One cursor a statement: psycopg keeps a cursor's
    adapters for its result's columns only while it runs the same statement again, and
    a worker alternates two (the claim, the completion) — building them afresh for a
    whole job row was a fifth of its bookkeeping thread's time."""
    if not settings.DB_PREPARED_STATEMENTS or db.force_debug_cursor or _pooler_refused:
        # Queries being captured (a test or a bench counting them) get their SQL with the
        # values in it, as Django's own cursor gives it: a prepared statement's is not
        # kept (with DEBUG on, Django's query log shows None for these two statements).
        return db.cursor()
    db.close_if_health_check_failed()  # as Django's own cursor(): CONN_HEALTH_CHECKS
    db.ensure_connection()
    if db.connection not in _prepared_connections:
        # Only server-binding cursors prepare, and only this module makes them.
        db.connection.prepare_threshold = 0
        _prepared_connections.add(db.connection)
    elif db.connection.prepare_threshold is None:
        return db.cursor()  # this connection stopped preparing (_stop_preparing)
    kept = _kept_cursors(db)
    cursor = kept.get(sql)
    if cursor is None or cursor.cursor.closed:
        if len(kept) >= _KEPT_MAX:  # statements of many shapes (the moves' are a few): start over
            _close_all(kept)
        with db.wrap_database_errors:
            raw = psycopg.Cursor(db.connection)
            if kept.utc:
                raw.adapters.register_loader(_TIMESTAMPTZ_OID, TimestamptzLoader)
        cursor = kept[sql] = db._prepare_cursor(raw)
    return cursor


class _Kept(dict):
    """A connection's kept cursors by statement, and what they were made for: its
    psycopg connection, Django's query logging (its wrapper logs queries or not), and
    whether the session reads times in UTC (``_utc_session``)."""

    def __init__(self, connection, logged: bool, utc: bool) -> None:
        super().__init__()
        self.connection, self.logged, self.utc = connection, logged, utc


_KEPT_MAX = 32  # statements kept a connection


def _kept_cursors(db) -> _Kept:
    """The wrapper's kept cursors, made again for a new connection, when Django would now
    wrap them otherwise (DEBUG turned on or off) or when the session's zone changed."""
    kept = getattr(db, _KEPT, None)
    if kept is not None and kept.connection is not db.connection:
        kept = None  # gone with their connection
    elif kept is not None and (kept.logged != db.queries_logged or kept.utc != _utc_session(db)):
        _close_all(kept)
        kept = None
    if kept is None:
        kept = _Kept(db.connection, db.queries_logged, _utc_session(db))
        setattr(db, _KEPT, kept)
    return kept


def _close_all(kept: _Kept) -> None:
    for cursor in kept.values():
        cursor.close()
    kept.clear()


def _utc_session(db) -> bool:
    """Whether psycopg's own timestamp loader (in C, with the binary package) reads a
    time as Django's would: aware, in UTC. Django loads every timestamp in Python to set
    its zone — five a move, a tenth of the move's CPU — and gets the same datetime when
    both its zone and the session's are UTC."""
    return db.timezone is UTC and db.connection.pgconn.parameter_status(b"TimeZone") == b"UTC"


@functools.cache
def _returning() -> tuple[str, list[str], list[tuple[int, list, Col]]]:
    """What a move returns: the job's columns, named (not ``j.*``: a column a newer
    migration added is not this code's), then ``previous_status``; the fields' names in
    that order; and the converters from each column's database value, as the ORM
    applies them (e.g. JSON text to a dict). Worked out once: a RawQuerySet did it for
    every claim and completion, from the cursor's description."""
    db = connections[DEFAULT_DB_ALIAS]
    fields = list(Job._meta.concrete_fields)
    converters = []
    for index, field in enumerate(fields):
        column = field.get_col(Job._meta.db_table)
        found = db.ops.get_db_converters(column) + column.get_db_converters(db)
        if found:
            converters.append((index, found, column))
    returning = ", ".join(f"j.{db.ops.quote_name(str(field.column))}" for field in fields)
    return returning, [field.attname for field in fields], converters


def _read_moved(db, row) -> Job:
    """The moved row as a Job (as the ORM would build it), with ``previous_status``."""
    _, names, converters = _returning()
    values = list(row[: len(names)])
    for index, functions, column in converters:
        value = values[index]
        for convert in functions:
            value = convert(value, column, db)
        values[index] = value
    job = _job_of(db.alias, names, values)
    job.previous_status = row[len(names)]
    return job


def _job_of(alias: str, names: list[str], values: list) -> Job:
    """``Job.from_db`` for a whole row, without ``Model.__init__``'s setattr per field
    (a third of reading the row back): an equal instance, built the same way, when Job
    builds itself as every model does, and nothing listens to its init signals — else
    Django builds it, and the signals are sent."""
    if not _built_as_any_model() or pre_init.has_listeners(Job) or post_init.has_listeners(Job):
        return Job.from_db(alias, names, values)
    job = Job.__new__(Job)
    job.__dict__.update(zip(names, values, strict=True))  # a whole row: every field
    job._state = ModelState()
    job._state.adding, job._state.db = False, alias
    return job


@functools.cache
def _built_as_any_model() -> bool:
    """Does Job build and load itself as Django's Model does — no ``__init__``,
    ``from_db`` or ``__setattr__`` of its own — and does setting each field's attribute
    only store the value (Django's deferred attributes; a foreign key's also forgets a
    cached related object, which a new instance has none of)? A field with a descriptor
    of its own (a file's) would not. Worked out at the first move (a test that changes
    Job clears it)."""
    plain = (DeferredAttribute, ForeignKeyDeferredAttribute)
    return (
        Job.__init__ is Model.__init__
        and Job.from_db.__func__ is Model.from_db.__func__  # type: ignore[attr-defined]
        and Job.__setattr__ is object.__setattr__
        and all(type(getattr(Job, field.attname)) in plain for field in Job._meta.concrete_fields)
    )


def _assignments(values: dict) -> tuple[dict[str, str], dict]:
    """Column names come from the model's fields, values travel as parameters."""
    assignments: dict[str, str] = {}
    params: dict = {}
    for name, value in values.items():
        column, placeholder, is_json = _assignment(name)
        if value is None:
            assignments[column] = "NULL"  # as the ORM stores None
        else:
            assignments[column] = placeholder
            params[f"v_{name}"] = json.dumps(value, cls=DjangoJSONEncoder) if is_json else value
    return assignments, params


@functools.cache
def _assignment(name: str) -> tuple[str, str, bool]:
    """A field's column, its value's placeholder, whether it travels as JSON text."""
    if isinstance(Job._meta.get_field(name), JSONField):
        return _column(name), f"%(v_{name})s::jsonb", True
    return _column(name), f"%(v_{name})s", False


@functools.cache
def _column(name: str) -> str:
    field = Job._meta.get_field(name)
    assert isinstance(field, Field) and field.column is not None  # values name the job's own columns
    return field.column


# What a move's statement is made of: its assignments (column, SQL), the statuses it
# moves from, and the one it moves to.
_Shape = tuple[tuple[tuple[str, str], ...], tuple[str, ...], str]


@functools.lru_cache(maxsize=64)
def _move_sql(assignments: tuple[tuple[str, str], ...], allowed: tuple[str, ...], to: str) -> str:
    """A move's statement, made once per shape (which columns are set, and to NULL or
    not: a few per move): formatting its 2 KB for every move, and psycopg hashing a new
    string to find it in its caches, were a tenth of a move's CPU."""
    chain = _move_chain(assignments, allowed, to, lock=_LOCK_ALONE.format(job=Job._meta.db_table))
    return f"WITH {chain.replace('{p}', '')}\nSELECT * FROM moved"


@functools.lru_cache(maxsize=64)
def _move_chain(assignments: tuple[tuple[str, str], ...], allowed: tuple[str, ...], to: str, *, lock: str) -> str:
    """A move's chain of CTEs, its parts' prefix left as ``{p}``, its row locked by the
    query ``lock``. The statuses are the transitions table's own names, written in as
    literals (fewer parameters to send)."""
    if not allowed:
        raise ValueError("a move allowed from no status")  # IN () is no SQL
    return _MOVE_CHAIN.format(
        p="{p}",
        lock=lock,
        job=Job._meta.db_table,
        event=JobEvent._meta.db_table,
        assignments=", ".join(f"{column} = {expression}" for column, expression in assignments),
        returning=_returning()[0],
        allowed=", ".join(_status_literal(status) for status in allowed),
        to=_status_literal(to),
        kind=_status_literal(JobEvent.Kind.TRANSITION),
    )


def _status_literal(name: str) -> str:
    name = str(name)
    if not name.replace("_", "").isalpha():  # a status or kind of ours, never input: checked all the same
        raise ValueError(f"not a status: {name!r}")
    return f"'{name}'"
