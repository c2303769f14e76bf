"""The submit service: validation, idempotency under races, dependencies, initial status."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import django_rq
import pytest
from django.db import transaction
from django.utils import timezone

from conftest import run_at_once, wait_for
from jobs.core import actions
from jobs.core.errors import SubmitError
from jobs.core.models import Job, Status
from jobs.core.submit import JobSpec, submit, submit_many

pytestmark = pytest.mark.django_db


def test_unknown_type_is_rejected_naming_the_field():
    with pytest.raises(SubmitError) as error:
        submit("no.such.type")
    assert error.value.field == "type"
    assert "diagnostics.sleep" in error.value.hint
    assert Job.objects.count() == 0


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"seconds": "soon"}, "payload.seconds"),
        ({"seconds": -1}, "payload.seconds"),
        ({"steps": 1.5}, "payload.steps"),
        ({"fail_mode": "explode"}, "payload.fail_mode"),
        ({"colour": "red"}, "payload"),
    ],
)
def test_invalid_payload_is_rejected_naming_the_field(payload, field):
    with pytest.raises(SubmitError) as error:
        submit("diagnostics.sleep", payload)
    assert error.value.field == field
    assert Job.objects.count() == 0


@pytest.mark.django_db(transaction=True)  # threads see only committed rows
def test_twenty_concurrent_submits_with_one_key_make_one_job(alice):
    def one_submit():
        outcome = submit("diagnostics.noop", owner=alice, idempotency_key="report-2026-11")
        return outcome.job.id, outcome.created

    results, errors = run_at_once(20, one_submit)

    assert errors == []
    assert len(results) == 20
    assert len({job_id for job_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert Job.objects.filter(idempotency_key="report-2026-11").count() == 1
    assert django_rq.get_queue("normal").count == 1  # enqueued once, too


def test_idempotency_keys_are_per_owner(alice, bob):
    a = submit("diagnostics.noop", owner=alice, idempotency_key="k")
    b = submit("diagnostics.noop", owner=bob, idempotency_key="k")
    again = submit("diagnostics.noop", owner=alice, idempotency_key="k")
    assert a.created and b.created and not again.created
    assert a.job.id != b.job.id and again.job.id == a.job.id


def test_dependent_waits_then_runs_after_its_dependency(run_worker):
    a = submit("diagnostics.noop").job
    b = submit("diagnostics.noop", depends_on=[a.id]).job
    assert b.status == Status.WAITING
    assert django_rq.get_queue("normal").job_ids == [str(a.id)]  # B is not in Redis yet

    run_worker()

    a.refresh_from_db()
    b.refresh_from_db()
    assert a.status == Status.COMPLETE and b.status == Status.COMPLETE
    assert b.started_at >= a.finished_at


def test_dependency_failure_cancels_the_dependent_with_the_reason(run_worker):
    a = submit("diagnostics.sleep", {"seconds": 0, "fail_mode": "user_fixable"}).job
    b = submit("diagnostics.noop", depends_on=[a.id]).job
    c = submit("diagnostics.noop", depends_on=[b.id]).job
    run_worker()
    for job in (a, b, c):
        job.refresh_from_db()
    assert a.status == Status.FAILED
    assert b.status == Status.CANCELED and c.status == Status.CANCELED
    assert b.events.filter(to_status=Status.CANCELED, message__contains=f"dependency {a.id} ended failed").exists()
    assert c.events.filter(message__contains=f"dependency {b.id} ended canceled").exists()


def test_depending_on_an_already_failed_job_is_canceled_at_once(run_worker):
    a = submit("diagnostics.sleep", {"seconds": 0, "fail_mode": "user_fixable"}).job
    run_worker()
    b = submit("diagnostics.noop", depends_on=[a.id]).job
    assert b.status == Status.CANCELED
    assert str(a.id) in b.error_message


def test_cycles_in_a_batch_are_rejected():
    specs = [
        JobSpec("diagnostics.noop", ref="a", depends_on=["c"]),
        JobSpec("diagnostics.noop", ref="b", depends_on=["a"]),
        JobSpec("diagnostics.noop", ref="c", depends_on=["b"]),
    ]
    with pytest.raises(SubmitError) as error:
        submit_many(specs)
    assert error.value.field == "jobs[1].depends_on" and "cycle: a → c → b → a" in error.value.message
    assert Job.objects.count() == 0


def test_batch_refs_become_dependencies(run_worker):
    results = submit_many(
        [
            JobSpec("diagnostics.noop", ref="second", depends_on=["first"]),
            JobSpec("diagnostics.noop", ref="first"),
        ]
    )
    second, first = (r.job for r in results)  # answered in the caller's order
    assert list(second.depends_on.all()) == [first]
    assert second.status == Status.WAITING and first.status == Status.QUEUED
    run_worker()
    second.refresh_from_db()
    assert second.status == Status.COMPLETE


def test_unknown_or_foreign_dependency_is_rejected(alice, bob):
    bobs = submit("diagnostics.noop", owner=bob).job
    with pytest.raises(SubmitError) as error:
        submit("diagnostics.noop", owner=alice, depends_on=[bobs.id])
    assert error.value.field == "depends_on"
    with pytest.raises(SubmitError):
        submit("diagnostics.noop", depends_on=["not-a-uuid"])


def test_run_at_schedules_through_rq_scheduler(run_worker, scheduler_tick):
    from jobs.core import queueing

    soon = timezone.now() + timedelta(seconds=1)
    job = submit("diagnostics.noop", run_at=soon).job
    assert job.status == Status.SCHEDULED and job.scheduled_for == soon
    assert queueing.scheduler().count() == 1
    scheduler_tick()
    run_worker()
    job.refresh_from_db()
    assert job.status == Status.SCHEDULED  # not before its time

    from conftest import wait_for

    def due_and_run():
        scheduler_tick()
        run_worker()
        job.refresh_from_db()
        return job.status == Status.COMPLETE

    wait_for(due_and_run, timeout=10, what="scheduled job to run")
    assert job.started_at >= soon


@pytest.mark.redis
def test_bulk_submit_enqueues_everything_once():
    results = submit_many([JobSpec("diagnostics.noop", priority=p) for p in ["low", "normal", "normal"] * 100])
    assert len(results) == 300 and all(r.created for r in results)
    assert django_rq.get_queue("normal").count == 200
    assert django_rq.get_queue("low").count == 100


def test_submit_succeeds_while_redis_is_down(queues_unreachable, run_worker):
    job = submit("diagnostics.noop").job
    job.refresh_from_db()
    assert job.status == Status.QUEUED
    assert job.events.filter(message__contains="Redis unreachable").exists()


def test_cancel_waiting_job_and_requeue(run_worker):
    job = submit("diagnostics.noop").job
    actions.cancel(job.id, reason="not needed")
    assert django_rq.get_queue("normal").count == 0  # withdrawn from its queue
    run_worker()
    job.refresh_from_db()
    assert job.status == Status.CANCELED and job.attempts == 0

    actions.requeue(job.id)
    run_worker()
    job.refresh_from_db()
    assert job.status == Status.COMPLETE and job.attempts == 1


def test_promote_moves_a_queued_job_to_immediate(run_worker):
    first = submit("diagnostics.noop", priority="low").job
    second = submit("diagnostics.noop", priority="low").job
    actions.promote(second.id)
    assert django_rq.get_queue("immediate").count == 1
    assert django_rq.get_queue("low").count == 1
    run_worker()
    first.refresh_from_db()
    second.refresh_from_db()
    assert second.priority == "immediate"
    assert second.started_at < first.started_at


@pytest.mark.redis
def test_the_same_spec_object_repeated_makes_that_many_jobs():
    spec = JobSpec("diagnostics.noop")
    results = submit_many([spec] * 6)
    assert len({r.job.id for r in results}) == 6
    assert Job.objects.count() == 6 and django_rq.get_queue("normal").count == 6


def test_follow_up_flags_mark_only_what_has_something_to_follow(run_worker):
    plain = submit("diagnostics.noop").job
    assert plain.hooks_done  # no hooks, no dependents: its end needs no follow-up write
    run_worker()
    late = submit("diagnostics.noop", depends_on=[plain.id]).job  # depends on a finished job
    plain.refresh_from_db()
    assert plain.hooks_done and not plain.has_dependents and late.status == Status.QUEUED
    first = submit("diagnostics.noop").job
    submit("diagnostics.noop", depends_on=[first.id])
    first.refresh_from_db()
    assert first.has_dependents and not first.hooks_done
    run_worker()
    first.refresh_from_db()
    assert first.hooks_done  # dependents settled, then marked


@pytest.mark.django_db(transaction=True)
def test_one_job_alone_is_one_statement_on_postgresql_writing_what_the_orm_writes(alice):
    """The single-statement submit (PostgreSQL, outside a transaction) stores the same row
    and first event as the ORM's path inside a transaction — every column."""
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from jobs.core.models import JobEvent, PayloadText

    if connection.vendor != "postgresql":
        pytest.skip("the one-statement submit is PostgreSQL's")
    options = {"priority": "low", "max_attempts": 2, "idempotency_key": "k1"}
    with CaptureQueriesContext(connection) as statements:
        alone = submit("diagnostics.sleep", {"seconds": 1}, owner=alice, **options).job
    with transaction.atomic():
        orm = submit("diagnostics.sleep", {"seconds": 1}, owner=alice, **{**options, "idempotency_key": "k2"}).job
    writes = [q["sql"].strip() for q in statements.captured_queries if not q["sql"].startswith("SELECT")]
    assert len(writes) == 1 and writes[0].startswith("WITH job AS (INSERT"), writes

    def stored(job) -> dict:
        row = Job.objects.filter(pk=job.pk).values().get()
        keys_and_times = ("id", "rq_job_id", "idempotency_key", "created_at", "updated_at", "enqueued_at")
        return {k: v for k, v in row.items() if k not in keys_and_times}

    def event(job) -> dict:
        found = JobEvent.objects.filter(job=job).values().get()
        return {k: v for k, v in found.items() if k not in ("id", "job_id", "created_at")}

    def text(job) -> str:
        return PayloadText.objects.filter(job=job).values_list("text", flat=True).get()

    assert stored(alone) == stored(orm)
    assert event(alone) == event(orm)
    assert text(alone) == text(orm) == json.dumps(orm.payload), "the payload's searchable text, in the same statement"
    assert Job.objects.get(pk=alone.pk).created_at == alone.created_at
    again = submit("diagnostics.sleep", {"seconds": 1}, owner=alice, **options)
    assert (again.created, again.job.pk) == (False, alone.pk), "the key finds it"


@pytest.mark.django_db(transaction=True)
def test_a_lone_submit_s_statement_has_few_enough_parameters_for_psycopg_to_parse_it_once(alice, monkeypatch):
    """psycopg (3.3) parses a statement of more than 50 parameters anew on every
    execution: a lone submit's NULLs are written into it, not passed."""
    from django.db import connection

    from jobs.core import fastpath

    if connection.vendor != "postgresql":
        pytest.skip("the one-statement submit is PostgreSQL's")
    made, make = [], fastpath._create_sql

    def recorded(alias, nulls, with_text=False):
        made.append((nulls, make(alias, nulls, with_text)))
        return made[-1][1]

    monkeypatch.setattr(fastpath, "_create_sql", recorded)
    submit("diagnostics.noop", {}, owner=alice)
    submit("diagnostics.sleep", {"seconds": 1}, priority="low", idempotency_key="k")
    assert len(made) == 2 and any(made[0][0])
    for nulls, sql in made:
        assert sql.count("%s") == nulls.count(False) <= 50
        assert sql.count("NULL") >= nulls.count(True)


def test_a_bulk_submit_copies_its_rows_on_postgresql_writing_what_the_orm_writes(alice, monkeypatch):
    """Many jobs go in by COPY (PostgreSQL): the same rows, first events and searchable
    texts as the ORM's bulk insert — every column."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from jobs.core import fastpath
    from jobs.core.models import JobEvent, PayloadText

    if connection.vendor != "postgresql":
        pytest.skip("the copy is PostgreSQL's")

    later = timezone.now() + timedelta(hours=1)

    def specs(tag: str) -> list[JobSpec]:
        return [
            JobSpec("diagnostics.sleep", {"seconds": 1, "result": "é\\t\n\\N"}, ref="a", idempotency_key=f"{tag}-a"),
            JobSpec("diagnostics.noop", depends_on=["a"], priority="low", max_attempts=2),
            JobSpec("diagnostics.noop", run_at=later),
        ]

    with CaptureQueriesContext(connection) as statements:
        copied = [s.job for s in submit_many(specs("copy"), owner=alice)]
    copies = [q["sql"] for q in statements.captured_queries if q["sql"].startswith("COPY")]
    assert [sql.split()[1] for sql in copies] == ['"jobs_job"', '"jobs_jobevent"', '"jobs_payloadtext"'], copies
    inserts = [q["sql"].split()[2] for q in statements.captured_queries if q["sql"].startswith("INSERT")]
    assert inserts == ['"jobs_job_depends_on"'], "the links (a few) are the ORM's"
    monkeypatch.setattr(fastpath, "copy_available", lambda: False)
    inserted = [s.job for s in submit_many(specs("orm"), owner=alice)]

    def stored(job) -> dict:
        row = Job.objects.filter(pk=job.pk).values().get()
        keys_and_times = ("id", "rq_job_id", "idempotency_key", "created_at", "updated_at", "enqueued_at")
        return {k: v for k, v in row.items() if k not in keys_and_times}

    def events(job) -> list[dict]:
        found = JobEvent.objects.filter(job=job).values()
        drop = ("id", "job_id", "created_at", "details")
        return [{k: v for k, v in event.items() if k not in drop} for event in found]

    for mine, theirs in zip(copied, inserted, strict=True):
        assert stored(mine) == stored(theirs)
        assert events(mine) == events(theirs)
    texts = PayloadText.objects.filter(job__in=[copied[0], inserted[0]]).values_list("text", flat=True)
    expected = json.dumps(copied[0].payload, ensure_ascii=False)
    assert list(texts) == [expected] * 2, "the payload's searchable text, escapes and all"
    assert Job.objects.get(pk=copied[1].pk).depends_on.get() == copied[0]
    assert JobEvent.objects.get(job=copied[1]).details == {"dependencies": [str(copied[0].id)]}
    again = submit_many(specs("copy"), owner=alice)
    assert (again[0].created, again[0].job.pk) == (False, copied[0].pk), "the key finds it"


@pytest.mark.django_db(transaction=True)
def test_a_copy_that_breaks_a_constraint_is_django_s_integrity_error():
    """A concurrent submit's idempotency race ends in IntegrityError, whatever path wrote
    the rows: the submit's retry catches Django's, not psycopg's."""
    from django.db import IntegrityError, connection, transaction

    from jobs.core import fastpath

    if connection.vendor != "postgresql":
        pytest.skip("the copy is PostgreSQL's")
    first = submit("diagnostics.noop").job
    twin = Job.objects.get(pk=first.pk)
    with pytest.raises(IntegrityError), transaction.atomic():
        fastpath.insert_many([twin])
    assert Job.objects.count() == 1


@pytest.mark.django_db
def test_a_payload_is_kept_as_searchable_text_once_and_an_empty_one_not_at_all():
    """The console's payload search reads PayloadText, written with the job (single or
    bulk) and never again: an index on the job's own row was written at every move."""
    from jobs.core.models import PayloadText

    lone = submit("diagnostics.sleep", {"seconds": 1, "result": "Ünïcode A-1042"}).job
    many = [r.job for r in submit_many([JobSpec("diagnostics.sleep", {"seconds": n}) for n in (1, 2)])]
    empty = submit("diagnostics.noop").job
    texts = dict(PayloadText.objects.values_list("job_id", "text"))
    assert set(texts) == {lone.id, *(job.id for job in many)}, "none for an empty payload"
    assert "Ünïcode A-1042" in texts[lone.id] and json.loads(texts[lone.id]) == lone.payload
    assert [json.loads(texts[job.id])["seconds"] for job in many] == [1, 2]
    assert empty.id not in texts


@pytest.mark.parametrize(
    "options, named",
    [({"timeout": 0}, "timeout"), ({"timeout": 1.5}, "timeout"), ({"max_attempts": 0}, "max_attempts"),
     ({"max_attempts": True}, "max_attempts"), ({"fork": "no"}, "fork")],
)  # fmt: skip
def test_a_job_type_s_options_out_of_range_stop_its_definition(options, named):
    from jobs.core import registry

    with pytest.raises(ValueError, match=f"job type t.bad: {named} must be"):
        registry.job_type("t.bad", **options)(lambda ctx: None)
    assert not registry.is_registered("t.bad")


def test_a_validator_that_returns_no_payload_is_named_not_a_database_error():
    """A validator that only raises on bad input (and returns None) stored a NULL payload:
    an IntegrityError at the insert. Now its type is named, with what to return."""
    from jobs.core import registry

    registry.job_type("t.checks_only", validate=lambda payload: None)(lambda ctx: None)
    try:
        with pytest.raises(TypeError, match=r"t.checks_only: its validate returned NoneType, not the payload"):
            submit("t.checks_only", {"rows": 3})
    finally:
        registry.unregister("t.checks_only")
    assert not Job.objects.exists()


def test_canceling_the_head_of_a_long_chain_cancels_all_of_it_without_recursing():
    """Each canceled dependent was finished by a recursive call: a 900-job chain went past
    the interpreter's stack, half canceled, the rest left to the reconciler (a 500)."""
    import sys

    length = 200  # the old recursion took a few frames a job: past a stack of 300 more frames
    later = timezone.now() + timedelta(days=1)
    specs = [JobSpec("diagnostics.noop", ref="r0", run_at=later)]
    specs += [JobSpec("diagnostics.noop", ref=f"r{i}", depends_on=[f"r{i - 1}"]) for i in range(1, length)]
    head = submit_many(specs)[0].job
    limit, depth = sys.getrecursionlimit(), len(__import__("inspect").stack(0))
    sys.setrecursionlimit(depth + 300)  # a short chain stands for a long one: a few hundred frames to spare
    try:
        actions.cancel(head.id, reason="not needed")
    finally:
        sys.setrecursionlimit(limit)
    assert Job.objects.filter(status=Status.CANCELED).count() == length
    assert not Job.objects.filter(hooks_done=False).exists()


def test_a_dependent_requeued_to_wait_is_released_when_its_retried_dependency_completes():
    """B depends on A; both were canceled; A is retried and runs; B is retried and waits.
    A's end released B only at the reconciler's next pass: A had not been marked as
    having dependents (it was final when B first ended)."""
    from jobs.core import lifecycle, outcomes

    a = submit("diagnostics.noop", run_at=timezone.now() + timedelta(days=1)).job
    actions.cancel(a.id, reason="later")
    b = submit("diagnostics.noop", depends_on=[a.id]).job
    assert Job.objects.get(pk=b.id).status == Status.CANCELED
    a = lifecycle.requeue(a.id)
    assert lifecycle.requeue(b.id).status == Status.WAITING
    a = Job.objects.get(pk=a.id)
    lifecycle.claim(a.id, a.rq_job_id, "w")
    outcomes.finished(lifecycle.complete(a.id, a.rq_job_id, None))
    assert Job.objects.get(pk=b.id).status == Status.QUEUED


def test_a_long_chain_sent_last_first_is_ordered_without_recursing():
    """The topological walk recursed a level per job: a chain sent last-first went past
    the interpreter's stack (a 500 for a bulk submit the limit of 5,000 allows)."""
    import sys

    length = sys.getrecursionlimit() + 200
    specs = [JobSpec("diagnostics.noop", ref=f"r{i}", depends_on=[f"r{i - 1}"] if i else []) for i in range(length)]
    submitted = submit_many(list(reversed(specs)))
    assert len(submitted) == length
    assert Job.objects.filter(status=Status.QUEUED).count() == 1  # r0; the rest wait on it


@pytest.mark.parametrize(
    "specs, field, message",
    [
        ([JobSpec("diagnostics.noop", ref="a"), JobSpec("diagnostics.noop", ref="a")], "jobs[1].ref", "used twice"),
        (
            [
                JobSpec("diagnostics.noop", ref="x"),
                JobSpec("diagnostics.noop", ref="a", depends_on=["b"]),
                JobSpec("diagnostics.noop", ref="b", depends_on=["a"]),
            ],
            "jobs[2].depends_on",
            "Dependency cycle: a → b → a.",
        ),
        (
            [
                JobSpec("diagnostics.noop"),
                JobSpec("diagnostics.noop", depends_on=["7b0f6c1e-0000-4000-8000-000000000000"]),
            ],
            "jobs[1].depends_on",
            "Unknown job in depends_on",
        ),
    ],
)
def test_a_batch_s_cross_item_refusals_name_the_item(specs, field, message):
    with pytest.raises(SubmitError) as refused:
        submit_many(specs)
    assert refused.value.field == field and message in refused.value.message
    assert not Job.objects.exists()


def test_a_batch_s_own_repeated_key_is_one_job_and_its_id_may_be_text():
    """A key twice in one batch is one job (it was refused: the twin's batch was not set
    yet); adding again with the batch's id as text finds the same job."""
    from jobs.core import batches

    batch, submitted = batches.create_batch(
        [JobSpec("diagnostics.noop", idempotency_key="k1"), JobSpec("diagnostics.noop", idempotency_key="k1")],
        keep_open=True,
    )
    assert submitted[0].job.pk == submitted[1].job.pk and not submitted[1].created
    again = batches.add_to_batch(str(batch.pk), [JobSpec("diagnostics.noop", idempotency_key="k1")])
    assert again[0].job.pk == submitted[0].job.pk
    assert Job.objects.filter(batch=batch).count() == 1


def test_jobs_that_depend_on_nothing_share_one_empty_prefetched_answer(alice, django_assert_num_queries):
    """One empty answer serves every job of a submit that depends on nothing, and
    changing one job's dependencies drops only that job's."""
    first, second = (s.job for s in submit_many([JobSpec("diagnostics.noop")] * 2, owner=alice))
    with django_assert_num_queries(0):
        assert first.depends_on.all() is second.depends_on.all()
        assert list(first.depends_on.all()) == []
    first.depends_on.add(second)
    assert list(first.depends_on.all()) == [second]
    assert list(second.depends_on.all()) == []


@pytest.mark.parametrize("field, value", [("priority", ["high"]), ("on_dependency_failure", ["run"])])
def test_an_unhashable_choice_from_python_is_refused_naming_the_field(field, value):
    with pytest.raises(SubmitError) as error:
        submit("diagnostics.noop", **{field: value})
    assert error.value.field == field
    with pytest.raises(SubmitError) as error:
        submit_many([JobSpec("diagnostics.noop", **{field: value})])
    assert error.value.field == f"jobs[0].{field}", "a list of one names its item"


@pytest.mark.django_db(transaction=True)  # threads see only committed rows
def test_two_bulks_with_the_same_keys_in_opposite_orders_both_succeed(alice):
    """Each inserted its keys in the order sent, waiting on the other's uncommitted
    rows: a deadlock, and one of them refused (a 503 through the API) every time."""
    keys = [f"order-{n}" for n in range(300)]
    orders = iter([keys, keys[::-1]])
    lock = threading.Lock()

    def one_bulk():
        with lock:
            mine = next(orders)
        specs = [JobSpec("diagnostics.noop", {"k": key}, idempotency_key=key) for key in mine]
        return {s.job.idempotency_key: s.job.id for s in submit_many(specs, owner=alice)}

    results, errors = run_at_once(2, one_bulk)

    assert errors == []
    assert results[0] == results[1]  # the same job for each key, whoever made it
    assert Job.objects.filter(owner=alice).count() == 300


@pytest.mark.parametrize("key", [7, "k" * 201, "a\x00b", "\ud800"])
def test_a_key_the_column_cannot_hold_is_refused_naming_the_field(key):
    """From Python: an int key was stored as "7" and never found again (IntegrityError on
    the repeat); a NUL, a lone surrogate or 201 characters were database errors."""
    with pytest.raises(SubmitError) as error:
        submit_many([JobSpec("diagnostics.noop"), JobSpec("diagnostics.noop", idempotency_key=key)])
    assert error.value.field == "jobs[1].idempotency_key"
    assert not Job.objects.exists()


def test_a_repeated_key_compares_payloads_as_json_values(alice):
    """What the database gives back (a number as its decimal value, a choices member as
    its text) is the same payload; a bool is not the number 1."""
    from jobs.core.errors import IdempotencyConflict
    from jobs.core.models import Priority

    first = submit("diagnostics.noop", {"n": 1e23, "p": Priority.LOW, "b": True}, owner=alice, idempotency_key="j")
    again = submit("diagnostics.noop", {"n": 1e23, "p": "low", "b": True}, owner=alice, idempotency_key="j")
    assert (first.created, again.created, again.job.id) == (True, False, first.job.id)
    with pytest.raises(IdempotencyConflict):
        submit("diagnostics.noop", {"n": 1e23, "p": "low", "b": 1}, owner=alice, idempotency_key="j")


@pytest.mark.django_db(transaction=True)
def test_a_bulk_behind_several_committing_submits_goes_on_while_it_finds_more(alice):
    """Three submits hold some of a bulk's keys in open transactions and commit one after
    another, each while the bulk waits on it: the bulk lost a race a round, and gave up
    after a fixed three with an IntegrityError (a 500). It goes on while each round
    finds more of its keys' jobs."""
    from django.db import connection, connections

    if connection.vendor != "postgresql":
        pytest.skip("waits on another transaction's uncommitted key: PostgreSQL's row locks")
    groups = [[f"g{g}-{n}" for n in range(5)] for g in range(3)]
    held, commit = [threading.Event() for _ in groups], [threading.Event() for _ in groups]
    backends: dict[str, int] = {}

    def backend() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            return cursor.fetchone()[0]

    def holder(index: int) -> None:
        try:
            with transaction.atomic():
                submit_many([JobSpec("diagnostics.noop", idempotency_key=k) for k in groups[index]], owner=alice)
                backends[f"holder {index}"] = backend()
                held[index].set()
                assert commit[index].wait(30)
        finally:
            connections.close_all()

    bulk_result: list = []

    def bulk() -> None:
        try:
            backends["bulk"] = backend()
            specs = [JobSpec("diagnostics.noop", idempotency_key=k) for group in groups for k in group]
            bulk_result.append(submit_many(specs + [JobSpec("diagnostics.noop", idempotency_key="new")], owner=alice))
        except Exception as error:  # the test asserts on it
            bulk_result.append(error)
        finally:
            connections.close_all()

    def bulk_waits_on(index: int) -> bool:
        if "bulk" not in backends:
            return False
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_blocking_pids(%s)", [backends["bulk"]])
            return backends[f"holder {index}"] in cursor.fetchone()[0]

    holders = [threading.Thread(target=holder, args=(i,)) for i in range(3)]
    for thread in holders:
        thread.start()
    assert all(event.wait(30) for event in held)
    bulk_thread = threading.Thread(target=bulk)
    bulk_thread.start()
    for index in range(3):  # each commit while the bulk waits on its keys
        wait_for(lambda i=index: bulk_waits_on(i), timeout=30, what=f"the bulk waiting on submit {index}")
        commit[index].set()
        holders[index].join(30)
    bulk_thread.join(60)

    assert len(bulk_result) == 1 and not isinstance(bulk_result[0], Exception), bulk_result
    assert [s.created for s in bulk_result[0]] == [False] * 15 + [True]
    assert Job.objects.filter(owner=alice).count() == 16


def test_users_who_used_the_same_key_can_all_be_deleted_and_their_jobs_stay(django_user_model):
    """Their jobs become owner-less, where a key is unique among all (the crons' keys):
    they give their keys up, or the second delete broke that uniqueness (a 500)."""
    users = [django_user_model.objects.create_user(name) for name in ("ann", "ben")]
    jobs = [submit("diagnostics.noop", owner=user, idempotency_key="nightly-2026-11-24").job for user in users]
    for user in users:
        user.delete()
    assert list(Job.objects.filter(pk__in=[j.id for j in jobs]).values_list("owner", "idempotency_key")) == [
        (None, None),
        (None, None),
    ]


def test_a_keyed_bulk_keeps_the_order_it_was_sent_in_created_at_and_dependency_results():
    """Its rows are inserted in key order (two bulks with the same keys cannot deadlock),
    and auto_now_add stamped them so: dependency results "in the order they were
    submitted" came out in key order, and so did the list's newest-first."""
    from jobs.core import dependencies

    x, y, z = (s.job for s in submit_many([
        JobSpec("diagnostics.noop", ref="x", idempotency_key="k-2"),
        JobSpec("diagnostics.noop", ref="y", idempotency_key="k-1"),
        JobSpec("diagnostics.noop", depends_on=["x", "y"]),
    ]))  # fmt: skip
    stored = Job.objects.in_bulk([x.id, y.id, z.id])
    assert stored[x.id].created_at < stored[y.id].created_at < stored[z.id].created_at
    assert list(dependencies.results_of(z.id)) == [str(x.id), str(y.id)]


@pytest.mark.django_db(transaction=True)
def test_a_kept_statement_cursor_lets_its_connection_go_once_closed():
    """One-statement moves keep a cursor per connection (for speed): kept in a map keyed
    by the connection, the cursor held its connection, and every connection that ever
    ran one stayed in memory after closing (16 KB a submit with CONN_MAX_AGE=0; a
    review). Now only the wrapper's current connection's is kept."""
    import gc

    from django.db import connection

    from jobs.core import fastpath

    if not fastpath.available():
        pytest.skip("the one-statement path is PostgreSQL's (psycopg 3)")
    import weakref

    used = []
    for n in range(20):
        assert fastpath._execute(connection, "SELECT %s::int", [n], fetch=True) == (n,)
        assert fastpath._execute(connection, "SELECT %s::int", [n + 1], fetch=True) == (n + 1,)  # the kept one again
        used.append(weakref.ref(connection.connection))
        connection.close()
    gc.collect()
    assert sum(ref() is not None for ref in used) <= 1  # at most the last one, until the next statement


@pytest.mark.django_db(transaction=True)
def test_each_statement_keeps_its_own_cursor_so_its_result_adapters_stay():
    """psycopg builds a cursor's loaders for its result's columns afresh whenever the
    cursor runs another statement than its last; a worker alternates the claim and the
    completion, whose rows are the whole job: one kept cursor a statement keeps them. A
    connection keeps at most ``_KEPT_MAX`` (statements of many shapes start over)."""
    from django.db import connection

    from jobs.core import fastpath

    if not fastpath.available():
        pytest.skip("the one-statement path is PostgreSQL's (psycopg 3)")
    first, second = "SELECT %s::int AS a", "SELECT %s::text AS b"
    assert fastpath._execute(connection, first, [1], fetch=True) == (1,)
    kept_first = fastpath._prepared_cursor(connection, first)
    loaders = kept_first.cursor._tx  # what psycopg made for the first statement's result
    assert fastpath._execute(connection, second, ["x"], fetch=True) == ("x",)
    assert fastpath._execute(connection, first, [2], fetch=True) == (2,)
    assert fastpath._prepared_cursor(connection, first) is kept_first
    assert kept_first.cursor._tx is loaders  # not made again after the other statement ran
    assert fastpath._prepared_cursor(connection, second) is not kept_first
    for n in range(fastpath._KEPT_MAX + 1):
        assert fastpath._execute(connection, f"SELECT %s::int + {n}", [0], fetch=True) == (n,)
    assert len(getattr(connection, fastpath._KEPT)) <= fastpath._KEPT_MAX
    assert kept_first.cursor.closed  # let go when the connection's kept cursors started over
