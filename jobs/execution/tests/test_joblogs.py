"""Job logs: a handler's ``logging`` records and ``ctx.log`` lines, kept per attempt,
bounded, and readable through the API with the jobs' owner isolation."""

from __future__ import annotations

import logging
import threading

import pytest

from conftest import exits, past_job, wait_for
from jobs.core import logbook, registry
from jobs.core.models import Job, JobLog, Status
from jobs.core.submit import submit
from jobs.execution import runner

pytestmark = pytest.mark.django_db

log = logging.getLogger("tests.joblogs.handler")


@pytest.fixture
def handler_type():
    """Register a throwaway job type around a test's handler."""
    made: list[str] = []

    def make(name: str, handler) -> str:
        registry.job_type(name)(handler)
        made.append(name)
        return name

    yield make
    for name in made:
        registry.unregister(name)


def run_attempt(job: Job, attempt: int) -> runner.Outcome:
    """Run the job's handler as its worker would for one attempt (no RQ, no lifecycle)."""
    job.attempts = attempt
    return runner.run_handler(job, f"{job.id}_a{attempt}")


def an_active_job(job_type: str, **fields) -> Job:
    return past_job(type=job_type, status=Status.ACTIVE, attempts=1, owner=fields.pop("owner", None), **fields)


def test_logging_records_and_ctx_log_lines_are_kept_with_the_attempt(handler_type, settings):
    settings.JOB_LOG_WRITE_INTERVAL = 3600  # one write, at the end

    def chatty(ctx):
        log.info("fetched %d rows", 20)
        ctx.log("half way")
        logging.getLogger("somebody.else").warning("slow peer")
        ctx.log("a detail", level="debug")  # ctx.log keeps it whatever the logging config says
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("handled it")
        return {}

    job = an_active_job(handler_type("tests.chatty", chatty))
    assert run_attempt(job, 1)["ok"]

    got = logbook.read(job)
    assert [(line["level"], line["logger"], line["message"].splitlines()[0]) for line in got["lines"]] == [
        ("INFO", "tests.joblogs.handler", "fetched 20 rows"),
        ("INFO", "jobs.handler.tests.chatty", "half way"),
        ("WARNING", "somebody.else", "slow peer"),
        ("DEBUG", "jobs.handler.tests.chatty", "a detail"),
        ("ERROR", "tests.joblogs.handler", "handled it"),
    ]
    assert "ValueError: boom" in got["lines"][-1]["message"]  # the traceback comes along
    assert {line["attempt"] for line in got["lines"]} == {1}
    assert [line["n"] for line in got["lines"]] == [1, 2, 3, 4, 5]
    assert got["dropped"] == 0 and got["runs"][0]["total"] == 5
    assert JobLog.objects.get(job=job).dispatch == f"{job.id}_a1"


def test_only_the_handlers_thread_is_captured_and_only_while_it_runs(handler_type, settings):
    settings.JOB_LOG_WRITE_INTERVAL = 3600

    def with_a_thread(ctx):
        other = threading.Thread(target=lambda: log.info("from another thread"))
        other.start()
        other.join()
        log.info("mine")
        return {}

    job = an_active_job(handler_type("tests.threaded", with_a_thread))
    run_attempt(job, 1)
    log.info("after the run")
    assert [line["message"] for line in logbook.read(job)["lines"]] == ["mine"]
    assert all(not isinstance(h, logging.Handler) or type(h).__name__ != "LogCapture" for h in logging.root.handlers)


def test_a_run_that_logs_nothing_writes_nothing(handler_type):
    job = an_active_job(handler_type("tests.quiet", lambda ctx: {}))
    run_attempt(job, 1)
    assert not JobLog.objects.filter(job=job).exists()


def test_100000_lines_keep_the_last_n_and_count_the_dropped(handler_type, settings):
    settings.JOB_LOG_LINES = 1000
    settings.JOB_LOG_LINE_CHARS = 100
    settings.JOB_LOG_WRITE_INTERVAL = 3600

    def flood(ctx):
        for i in range(100_000):
            log.info("line %d", i + 1)
        ctx.log("x" * 500)  # over the per-line cap
        return {}

    job = an_active_job(handler_type("tests.flood", flood))
    assert run_attempt(job, 1)["ok"]
    got = logbook.read(job)
    assert len(got["lines"]) == 1000
    assert got["dropped"] == 100_001 - 1000
    assert got["runs"] == [
        {**got["runs"][0], "attempt": 1, "total": 100_001, "kept": 1000, "dropped": 99_001},
    ]
    assert got["lines"][0]["n"] == 99_002 and got["lines"][0]["message"] == "line 99002"
    assert got["lines"][-2]["message"] == "line 100000"
    assert len(got["lines"][-1]["message"]) == 100 and got["lines"][-1]["message"].endswith("…")


def test_capture_off_with_zero_lines(handler_type, settings):
    settings.JOB_LOG_LINES = 0

    def chatty(ctx):
        log.info("not kept")
        ctx.log("nor this")
        return {}

    job = an_active_job(handler_type("tests.off", chatty))
    assert run_attempt(job, 1)["ok"]
    assert not JobLog.objects.filter(job=job).exists()


def test_each_attempt_has_its_own_lines(handler_type, settings):
    settings.JOB_LOG_WRITE_INTERVAL = 3600

    def flaky(ctx):
        ctx.log(f"try {ctx.attempt}")
        if ctx.attempt == 1:
            log.warning("peer said no")
            raise RuntimeError("try again")
        return {}

    job = an_active_job(handler_type("tests.flaky", flaky))
    assert not run_attempt(job, 1)["ok"]
    assert run_attempt(job, 2)["ok"]
    got = logbook.read(job)
    assert [(line["attempt"], line["message"]) for line in got["lines"]] == [
        (1, "try 1"), (1, "peer said no"), (2, "try 2"),
    ]  # fmt: skip
    assert [(line["attempt"], line["message"]) for line in logbook.read(job, attempt=2)["lines"]] == [(2, "try 2")]


def test_lines_go_with_their_job(handler_type, settings):
    settings.JOB_LOG_WRITE_INTERVAL = 3600
    job = an_active_job(handler_type("tests.once", lambda ctx: ctx.log("hello")))
    run_attempt(job, 1)
    assert JobLog.objects.filter(job=job).count() == 1
    Job.objects.filter(pk=job.pk).delete()
    assert not JobLog.objects.exists()


def test_old_logs_are_pruned_with_old_events(handler_type, settings):
    from datetime import timedelta

    from django.utils import timezone

    from jobs.upkeep import pruning

    settings.JOB_LOG_WRITE_INTERVAL = 3600
    job = an_active_job(handler_type("tests.old", lambda ctx: ctx.log("old news")))
    run_attempt(job, 1)
    run_attempt(job, 2)
    old = timezone.now() - timedelta(days=settings.JOB_EVENT_RETENTION_DAYS + 1)
    JobLog.objects.filter(attempt=1).update(created_at=old)
    assert pruning.prune_events.call()["deleted_logs"] == 1
    assert list(JobLog.objects.values_list("attempt", flat=True)) == [2]


# --- the API ----------------------------------------------------------------------------


def test_logs_api_owner_isolation(api_as, alice, bob, operator, handler_type, settings):
    settings.JOB_LOG_WRITE_INTERVAL = 3600

    def chatty(ctx):
        log.info("for alice's eyes")
        return {}

    job = an_active_job(handler_type("tests.owned", chatty), owner=alice)
    run_attempt(job, 1)
    url = f"/api/jobs/{job.id}/logs/"

    mine = api_as(alice).get(url)
    assert mine.status_code == 200, mine.content
    body = mine.json()
    assert body["dropped"] == 0
    assert [(line["attempt"], line["level"], line["logger"], line["message"]) for line in body["lines"]] == [
        (1, "INFO", "tests.joblogs.handler", "for alice's eyes")
    ]
    assert set(body["lines"][0]) == {"attempt", "n", "time", "level", "logger", "message"}
    assert body["runs"][0]["attempt"] == 1 and body["runs"][0]["dropped"] == 0
    assert api_as(bob).get(url).status_code == 404
    assert api_as(operator).get(url).status_code == 200
    assert api_as(None).get(url).status_code == 401
    assert api_as(alice).get(url, {"attempt": 2}).json()["lines"] == []
    assert api_as(alice).get(url, {"attempt": "x"}).status_code == 400
    empty = api_as(alice).get(url, {"attempt": ""})  # was every attempt's lines, as if left out
    assert empty.status_code == 400 and "attempt" in empty.json()["error"]["fields"]


def test_logs_are_in_the_openapi_schema(api_as, alice):
    schema = api_as(alice).get("/api/schema/", HTTP_ACCEPT="application/json").json()
    operation = schema["paths"]["/api/jobs/{id}/logs/"]["get"]
    assert "attempt" in {p["name"] for p in operation["parameters"]}
    ref = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert ref.endswith("/JobLogs")


# --- a real worker ------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_worker_process_runs_a_job_that_logs_and_the_api_returns_its_lines(spawn, api_as, alice):
    """A forked work-horse captures, writes in batches while it runs, and the API reads."""
    job = submit("diagnostics.sleep", {"seconds": 1.5, "steps": 3, "log_lines": 3}, owner=alice).job
    # The capture sees what the logging configuration lets through: INFO here.
    spawn("rqworker", "immediate", "normal", "low", LOG_LEVEL="INFO")
    url = f"/api/jobs/{job.id}/logs/"
    # While it runs: the first step's lines are there before the job ends (batches, not only the end).
    live = wait_for(lambda: (body := api_as(alice).get(url).json())["lines"] and body, timeout=60, what="live lines")
    assert live["status"] == Status.ACTIVE, "lines were readable while the job ran"
    wait_for(lambda: Job.objects.get(pk=job.pk).status == Status.COMPLETE, timeout=60, what="the job to complete")
    body = api_as(alice).get(url).json()
    assert [(line["attempt"], line["logger"], line["message"]) for line in body["lines"]] == [
        (1, logger, message)
        for step in (1, 2, 3)
        for logger, message in (
            ("jobs.handler.diagnostics.sleep", f"attempt 1: step {step} of 3"),
            ("jobs.diagnostics", f"attempt 1: step {step} line 2"),
            ("jobs.diagnostics", f"attempt 1: step {step} line 3"),
        )
    ]
    assert body["runs"] == [{**body["runs"][0], "attempt": 1, "total": 9, "kept": 9, "dropped": 0}]


@pytest.mark.slow
def test_watch_job_prints_the_log_lines_as_they_arrive(alice, run_worker, spawn, settings):
    settings.PROGRESS_WRITE_INTERVAL = 0
    settings.JOB_LOG_WRITE_INTERVAL = 0.1
    job = submit("diagnostics.sleep", {"seconds": 0.6, "steps": 3, "log_lines": 2}, owner=alice).job
    watcher = spawn("watch_job", str(job.id))
    wait_for(lambda: "queued" in open(watcher.log_path).read(), timeout=20, what="the snapshot line")  # noqa: SIM115
    run_worker()
    assert exits(watcher, 20, "watch_job") == 0
    out = open(watcher.log_path).read().splitlines()  # noqa: SIM115
    logged = [line.split(": ", 1)[1] for line in out if " log #1 " in line]
    assert logged == [f"attempt 1: step {s} {what}" for s in (1, 2, 3) for what in ("of 3", "line 2")], out
    # Each line before the job's end, and the first ones before its last progress.
    assert out.index(next(line for line in out if "step 3 line 2" in line)) < len(out) - 1
    assert "complete" in out[-1]
