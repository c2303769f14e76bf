"""One-statement guarded moves for the worker's hot path on PostgreSQL.

A claim and a completion happen for every job. Through the ORM each is five round trips
(BEGIN, SELECT … FOR UPDATE, UPDATE, INSERT event, COMMIT) plus query building; here
each is one statement that locks the row, checks its status and dispatch, updates it
and writes the timeline event — the same guarded move, atomic as a single statement.
A single submit, likewise: the row and its first timeline entry in one statement
(``create``), not BEGIN, two INSERTs and COMMIT.
``jobs.core.lifecycle`` decides when to use it; other databases take the ORM path.
"""

from __future__ import annotations

import functools
import json
from datetime import datetime

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, connections
from django.db.models import Field, JSONField

from jobs.core.models import Job, JobEvent

_MOVE_SQL = """
WITH locked AS (
    SELECT id, status FROM {job} WHERE id = %(id)s FOR UPDATE
), moved AS (
    UPDATE {job} AS j SET status = %(to)s, seq = j.seq + 1, updated_at = %(now)s, {assignments}
    FROM locked
    WHERE j.id = locked.id AND locked.status = ANY(%(allowed)s) AND j.rq_job_id = %(dispatch)s
    RETURNING j.*, locked.status AS previous_status
), logged AS (
    INSERT INTO {event} (job_id, seq, kind, from_status, to_status, actor_id, actor_label, message, details,
                         created_at)
    SELECT id, seq, %(kind)s, previous_status, status, NULL, %(actor_label)s, %(message)s, %(details)s::jsonb, %(now)s
    FROM moved
)
SELECT * FROM moved
"""


def available() -> bool:
    return connection.vendor == "postgresql" and not connection.in_atomic_block


_CREATE_SQL = """
WITH job AS (INSERT INTO {job} ({job_columns}) VALUES ({job_values}) RETURNING 1)
INSERT INTO {event} ({event_columns}) SELECT {event_values} FROM job
"""


def create(job: Job, event: JobEvent) -> None:
    """Insert a new job and its first event (``event.job`` is ``job``) as one statement.
    Every column the ORM would write, as the ORM prepares it: a field added to either
    model is written here too."""
    db = connections[connection.alias]  # the connection itself: each use of the proxy costs a lookup
    job_fields, event_fields = _inserted(Job), _inserted(JobEvent)
    rows = ((job, job_fields), (event, event_fields))
    values = [f.get_db_prep_save(f.pre_save(row, True), db) for row, fields in rows for f in fields]
    nulls = tuple(value is None for value in values)
    with db.cursor() as cursor:
        cursor.execute(_create_sql(db.alias, nulls), [value for value in values if value is not None])
    for row in (job, event):  # as a bulk_create leaves them: stored
        row._state.adding, row._state.db = False, db.alias


@functools.cache
def _create_sql(alias: str, nulls: tuple[bool, ...]) -> str:
    """``create``'s statement, with NULL written where the value is None — as psycopg
    would render it — and a parameter for every other value. psycopg parses a statement
    of more than 50 parameters anew on every execution (and a lone submit has 58, 21 of
    them None): with fewer it parses each statement once. Made once per pattern of
    Nones (a few)."""
    quote = connections[alias].ops.quote_name
    job_fields = _inserted(Job)
    values = ["NULL" if null else "%s" for null in nulls]
    return _CREATE_SQL.format(
        job=quote(Job._meta.db_table),
        job_columns=", ".join(quote(str(f.column)) for f in job_fields),
        job_values=", ".join(values[: len(job_fields)]),
        event=quote(JobEvent._meta.db_table),
        event_columns=", ".join(quote(str(f.column)) for f in _inserted(JobEvent)),
        event_values=", ".join(values[len(job_fields) :]),
    )


@functools.cache
def _inserted(model) -> list[Field]:
    """The fields an INSERT writes, as Django's insert compiler: all but an
    auto-incremented key (the database numbers it)."""
    return [f for f in model._meta.concrete_fields if not (f.primary_key and f.db_returning)]


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
    """
    assignments, params = _assignments(values)
    assignments.update(expressions or {})
    sql = _MOVE_SQL.format(
        job=Job._meta.db_table,
        event=JobEvent._meta.db_table,
        assignments=", ".join(f"{column} = {expression}" for column, expression in assignments.items()),
    )
    params.update(
        {
            "id": job_id,
            "to": to,
            "now": now,
            "allowed": [str(status) for status in allowed],
            "dispatch": dispatch,
            "kind": JobEvent.Kind.TRANSITION,
            "actor_label": actor_label,
            "message": message,
            "details": json.dumps(details or {}, cls=DjangoJSONEncoder),
        }
    )
    rows = list(Job.objects.raw(sql, params))
    return rows[0] if rows else None


def _assignments(values: dict) -> tuple[dict[str, str], dict]:
    """Column names come from the model's fields, values travel as parameters."""
    assignments: dict[str, str] = {}
    params: dict = {}
    for name, value in values.items():
        field = Job._meta.get_field(name)
        assert isinstance(field, Field) and field.column is not None  # values name the job's own columns
        key = f"v_{name}"
        if value is None:
            assignments[field.column] = "NULL"  # as the ORM stores None
        elif isinstance(field, JSONField):
            assignments[field.column] = f"%({key})s::jsonb"
            params[key] = json.dumps(value, cls=DjangoJSONEncoder)
        else:
            assignments[field.column] = f"%({key})s"
            params[key] = value
    return assignments, params
