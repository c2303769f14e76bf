"""Traces in one process (the SDK's in-memory exporter): off by default, the submit span
and what it leaves on the job, and a work-horse's spans handed back to its parent. The
way across real processes: jobs/execution/tests/test_traces_workers.py."""

from __future__ import annotations

import pytest
from opentelemetry.trace import StatusCode

from jobs.core import tracing
from jobs.core.models import Job
from jobs.core.submit import JobSpec, submit, submit_many

pytestmark = pytest.mark.django_db


def parsed(traceparent: str) -> tuple[int, int]:
    version, trace_id, span_id, flags = traceparent.split("-")
    assert version == "00" and int(flags, 16) & 0x01  # sampled (0x02: the SDK's ids are random)
    return int(trace_id, 16), int(span_id, 16)


@pytest.mark.parametrize(
    "environment, exporters",
    [
        ({}, []),
        ({"OTEL_SERVICE_NAME": "jobdesk-web"}, []),  # naming a service turns nothing on
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, []),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, []),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "console, otlp"}, ["console", "otlp"]),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, ["otlp"]),  # the spec's default exporter
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, ["otlp"]),
    ],
)
def test_traces_are_off_unless_the_standard_variables_turn_them_on(monkeypatch, environment, exporters):
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_SDK_DISABLED", "OTEL_EXPORTER_OTLP_ENDPOINT",
                 "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SERVICE_NAME"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert tracing._exporter_names() == exporters


def test_off_a_submit_records_no_trace_context():
    assert not tracing.enabled()  # the suite runs without OTEL_* variables
    job = submit("diagnostics.noop").job
    assert Job.objects.get(pk=job.id).trace_context == ""
    assert tracing.traceparent() == ""


def test_the_submit_span_names_its_job_and_the_job_carries_its_context(spans):
    job = submit("diagnostics.sleep", {"seconds": 0}).job

    (span,) = spans.get_finished_spans()
    assert span.name == "jobdesk.submit" and span.parent is None
    assert dict(span.attributes or {}) == {
        "jobdesk.job.id": str(job.id),
        "jobdesk.job.type": "diagnostics.sleep",
        "jobdesk.job.count": 1,
    }
    stored = Job.objects.get(pk=job.id).trace_context
    assert parsed(stored) == (span.context.trace_id, span.context.span_id)


def test_a_bulk_submit_is_one_span_and_its_jobs_share_its_trace(spans):
    made = submit_many([JobSpec("diagnostics.noop")] * 3)

    (span,) = spans.get_finished_spans()
    assert dict(span.attributes or {}) == {"jobdesk.job.count": 3}
    stored = set(Job.objects.filter(pk__in=[m.job.id for m in made]).values_list("trace_context", flat=True))
    assert {parsed(t) for t in stored} == {(span.context.trace_id, span.context.span_id)}


def test_a_submit_inside_a_span_is_its_child(spans):
    outer = tracing._tracer.start_span("a handler's own work")
    from opentelemetry import trace

    with trace.use_span(outer, end_on_exit=True):
        submit("diagnostics.noop")
    submit_span = next(s for s in spans.get_finished_spans() if s.name == "jobdesk.submit")
    assert submit_span.parent.span_id == outer.get_span_context().span_id
    assert submit_span.context.trace_id == outer.get_span_context().trace_id


def test_a_refused_submit_is_an_error_span_and_no_job(spans):
    with pytest.raises(Exception, match="Unknown job type|not registered|unknown"):
        submit("no.such.type")
    (span,) = spans.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR


def test_a_work_horses_spans_go_back_to_its_parent_whole(spans):
    job = submit("diagnostics.noop").job
    job.refresh_from_db()
    job.attempts = 1
    tracing.claimed(job, "dispatch-1", tracing.now())

    tracing.in_work_horse()  # what the forked horse does: keep, do not export
    with tracing.running(job, "dispatch-1") as run:
        from datetime import UTC, datetime

        tracing.progress("dispatch-1", 40, "parsing", datetime(2026, 11, 28, 12, 0, tzinfo=UTC))
        tracing.ran(run, {"ok": False, "category": "user_fixable", "message": "bad input"})
    outcome = tracing.hand_back({"ok": False, "category": "user_fixable"})
    assert [s.name for s in spans.get_finished_spans()] == ["jobdesk.submit", "jobdesk.claim"]  # the run is kept

    tracing.export_from_here()  # the parent, which records
    assert tracing.take_back(outcome) == {"ok": False, "category": "user_fixable"}
    submit_span, claim, run = spans.get_finished_spans()
    assert run.name == "jobdesk.run"
    assert run.context.trace_id == submit_span.context.trace_id
    assert claim.parent.span_id == submit_span.context.span_id and run.parent.span_id == claim.context.span_id
    assert dict(run.attributes or {}) == {
        "jobdesk.job.id": str(job.id),
        "jobdesk.job.type": "diagnostics.noop",
        "jobdesk.job.attempt": 1,
        "jobdesk.job.outcome": "user_fixable",
    }
    (event,) = run.events
    assert event.name == "progress" and dict(event.attributes or {}) == {
        "jobdesk.progress.percent": 40,
        "jobdesk.progress.stage": "parsing",
    }
    assert event.timestamp == int(datetime(2026, 11, 28, 12, 0, tzinfo=UTC).timestamp() * 1e9)
    assert run.status.status_code == StatusCode.ERROR and run.status.description == "bad input"
    assert run.start_time < run.end_time


def test_flush_waits_at_most_its_bound_for_a_stuck_exporter():
    import threading
    import time

    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    release = threading.Event()

    class Stuck(SpanExporter):
        def export(self, spans):
            release.wait(30)  # a collector that never answers
            return SpanExportResult.FAILURE

    tracing.start([BatchSpanProcessor(Stuck(), schedule_delay_millis=60_000)])
    try:
        with tracing.submitting():
            pass
        started = time.monotonic()
        assert tracing.flush(0.2) is False
        assert time.monotonic() - started < 1.0
    finally:
        release.set()
        tracing.stop()


def test_an_api_submit_continues_the_callers_trace(spans, alice, api_as):
    caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    answer = api_as(alice).post("/api/jobs/", {"type": "diagnostics.noop"}, format="json", HTTP_TRACEPARENT=caller)
    assert answer.status_code == 201
    (span,) = spans.get_finished_spans()
    assert (span.context.trace_id, span.parent.span_id) == (0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331)
    assert parsed(Job.objects.get(pk=answer.json()["id"]).trace_context) == (
        span.context.trace_id,
        span.context.span_id,
    )

    batch = api_as(alice).post("/api/batches/", {"jobs": [{"type": "diagnostics.noop"}]}, format="json",
                               HTTP_TRACEPARENT="not a traceparent")  # fmt: skip
    assert batch.status_code == 201
    second = spans.get_finished_spans()[-1]
    assert second.name == "jobdesk.submit" and second.parent is None  # a malformed one: a trace of its own
