"""Traces: OpenTelemetry spans along a job's way, one trace per submit.

```
jobdesk.submit (web, scheduler, a handler: wherever jobs.submit is called)
└─ jobdesk.claim           worker parent, one per attempt
   ├─ jobdesk.run          the work-horse: the handler, its progress as span events
   └─ jobdesk.record       worker parent: the outcome written
      └─ jobdesk.callbacks hooks, dependents, a batch's callbacks (whose submit nests here)
```

The submit span's W3C ``traceparent`` is stored on the job's row (``Job.trace_context``),
so every attempt's spans join the submit's trace whichever host claims it, after any
retry, and after Redis lost the dispatch (the reconciler re-dispatches from the row).
Each span carries ``jobdesk.job.id``, ``.type``, ``.attempt`` and ``.outcome``.

Off unless the standard variables ask for it (``OTEL_TRACES_EXPORTER=otlp|console``, or
an OTLP endpoint; ``OTEL_SDK_DISABLED=true`` wins): then nothing of the SDK is imported
and each hook below is one check of a module global. On, every process kind (web,
workers, scheduler) sets up its own provider from the same variables at start-up
(``JobsConfig.ready``): a batch span processor exports from a thread of its own, so a
collector that is down or slow costs a job nothing; spans that cannot wait are dropped.
A forked work-horse exports nothing itself (it ends with ``os._exit`` and would lose or
wait for them): ``in_work_horse`` keeps its finished spans, ``hand_back`` puts them into
the outcome it returns through RQ, and the parent's ``take_back`` exports them.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, SpanContext, Tracer

    from jobs.core.models import Job

logger = logging.getLogger("jobs.core.tracing")

ID, TYPE, ATTEMPT, OUTCOME = "jobdesk.job.id", "jobdesk.job.type", "jobdesk.job.attempt", "jobdesk.job.outcome"
COUNT = "jobdesk.job.count"  # jobs submitted by one call
EXIT_FLUSH_SECONDS = 2.0  # at most, at a process's end, for spans still waiting
HORSE_FLUSH_SECONDS = 0.5  # at most, after a job run by RQ's own forking worker class
_HAND_BACK_LIMIT = 256  # spans a work-horse hands back (the handler's own ones included)
_HANDED_BACK = "trace_spans"  # the outcome's key for them

_tracer: Tracer | None = None  # None: traces are off
_provider: TracerProvider | None = None
_pipeline: _Pipeline | None = None
_configured = False
_attempts: dict[str, SpanContext] = {}  # dispatch → its claim span: the attempt's other spans' parent
_runs: dict[str, Span] = {}  # dispatch → its running handler's span (progress events)
_flushing: threading.Thread | None = None


def enabled() -> bool:
    return _tracer is not None


# --- setting up ---------------------------------------------------------------------------


def configure() -> bool:
    """Set up this process's traces from the standard ``OTEL_*`` variables (once; the
    ``JobsConfig.ready`` of every process kind calls it). True when traces are on."""
    global _configured
    if _configured:
        return enabled()
    _configured = True
    names = _exporter_names()
    if not names:
        return False
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    exporters: list[SpanExporter] = []
    for name in names:
        if name == "console":
            exporters.append(ConsoleSpanExporter())
        elif name == "otlp" and _protocol() not in ("", "http/protobuf"):
            logger.warning("traces: OTLP over %s is not shipped (use http/protobuf); not exporting", _protocol())
        elif name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporters.append(OTLPSpanExporter())  # endpoint, headers, timeout: OTEL_EXPORTER_OTLP_*
        else:
            logger.warning("traces: unknown OTEL_TRACES_EXPORTER %r ignored", name)
    if not exporters:
        return False
    start([BatchSpanProcessor(exporter) for exporter in exporters], set_global=True)  # OTEL_BSP_* apply
    atexit.register(flush, EXIT_FLUSH_SECONDS)
    return True


def _exporter_names() -> list[str]:
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    named = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if not named:  # unset: on only when an OTLP endpoint is given (the spec's default exporter is OTLP)
        endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        return ["otlp"] if endpoint else []
    return [n for n in (part.strip() for part in named.split(",")) if n and n != "none"]


def _protocol() -> str:
    value = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    return (value or "").strip().lower()


def start(processors: list, *, set_global: bool = False) -> None:
    """Turn traces on with these span processors (``configure`` does it from the
    environment; tests pass a ``SimpleSpanProcessor`` over an in-memory exporter).
    ``set_global``: also the process's global provider, for the handlers' own spans."""
    global _tracer, _provider, _pipeline
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    named = os.environ.get("OTEL_SERVICE_NAME") or "service.name=" in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    # The process's end flushes within a bound of ours (``flush``), not the SDK's 30 s.
    provider = TracerProvider(
        resource=Resource.create({} if named else {"service.name": "jobdesk"}), shutdown_on_exit=False
    )
    pipeline = _Pipeline(processors)
    provider.add_span_processor(pipeline)  # type: ignore[arg-type]  # a SpanProcessor by its methods: no SDK import when off
    if set_global and isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        trace.set_tracer_provider(provider)
    _provider, _pipeline, _tracer = provider, pipeline, provider.get_tracer("jobdesk")


def stop() -> None:
    """Traces off (tests): what is pending is exported first."""
    global _tracer, _provider, _pipeline
    if _provider is not None:
        _provider.force_flush()
        _provider.shutdown()
    _tracer = _provider = _pipeline = None
    _attempts.clear()
    _runs.clear()


def flush(timeout: float) -> bool:
    """Export what is pending, waiting at most ``timeout`` seconds: a collector that is
    down holds a thread of its own, never the caller. True when all went out."""
    global _flushing
    if _provider is None:
        return True
    provider = _provider
    if _flushing is None or not _flushing.is_alive():  # one at a time: a stuck one is waited on, not joined by more
        _flushing = threading.Thread(target=provider.force_flush, name="jobdesk-trace-flush", daemon=True)
        _flushing.start()
    _flushing.join(timeout)
    return not _flushing.is_alive()


# --- the spans ----------------------------------------------------------------------------


def traceparent() -> str:
    """The current span's W3C traceparent ("" when none is recorded)."""
    if _tracer is None:
        return ""
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return ""
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


@contextlib.contextmanager
def continuing(traceparent: str | None) -> Iterator[None]:
    """A caller's trace (e.g. an API request's ``traceparent`` header) as the parent of
    the spans started inside; a malformed one starts a new trace."""
    if _tracer is None or not traceparent:
        yield
        return
    from opentelemetry import context

    token = context.attach(_context_of(traceparent))
    try:
        yield
    finally:
        context.detach(token)


@contextlib.contextmanager
def submitting() -> Iterator[Span | None]:
    """The span of one submit call (a child of the caller's span, if any); the jobs it
    creates carry its ``traceparent()``."""
    if _tracer is None:
        yield None
        return
    with _tracer.start_as_current_span("jobdesk.submit") as span:
        yield span


def submitted(span: Span | None, jobs: list[Job]) -> None:
    if span is None:
        return
    span.set_attribute(COUNT, len(jobs))
    if len(jobs) == 1:
        span.set_attributes({ID: str(jobs[0].id), TYPE: jobs[0].type})


def now() -> int | None:
    """A start time for a span opened later (``claimed``), when traces are on."""
    return time.time_ns() if _tracer is not None else None


def claimed(job: Job, dispatch: str, started: int | None) -> None:
    """The claim of one attempt, from ``started`` to now: a child of the job's submit.
    The attempt's run and record become its children."""
    if _tracer is None:
        return
    span = _tracer.start_span(
        "jobdesk.claim", context=_job_context(job), attributes=_about(job), start_time=started or time.time_ns()
    )
    span.end()
    _attempts[dispatch] = span.get_span_context()


def attempt_of(dispatch: str) -> SpanContext | None:
    """The claim span of the attempt this dispatch runs, if this process claimed it."""
    return _attempts.get(dispatch)


def adopt_attempt(dispatch: str, claim: SpanContext | None) -> None:
    """An attempt claimed by another process (a worker's bookkeeper): its run's spans,
    in a horse forked from here, are the claim's children."""
    if claim is not None:
        _attempts[dispatch] = claim


def forget_attempt(dispatch: str) -> None:
    """The adopted attempt is over here (another process records it)."""
    _attempts.pop(dispatch, None)


@contextlib.contextmanager
def running(job: Job, dispatch: str) -> Iterator[Span | None]:
    """The handler's run, current while it runs (a handler's own spans nest in it)."""
    if _tracer is None:
        yield None
        return
    with _in_attempt("jobdesk.run", job, dispatch) as span:
        _runs[dispatch] = span
        try:
            yield span
        finally:
            _runs.pop(dispatch, None)


def ran(span: Span | None, outcome: dict) -> None:
    """What the run ended with: ``success`` or the error's category."""
    if span is None:
        return
    if outcome.get("ok"):
        span.set_attribute(OUTCOME, "success")
        return
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute(OUTCOME, str(outcome.get("category") or "temporary"))
    span.set_status(Status(StatusCode.ERROR, str(outcome.get("message") or "")[:500]))


def progress(dispatch: str, percent: int, stage: str, at: datetime) -> None:
    """A written progress report, as an event of the run's span."""
    if _tracer is None:
        return
    span = _runs.get(dispatch)
    if span is not None:
        attributes: dict[str, Any] = {"jobdesk.progress.percent": percent, "jobdesk.progress.stage": stage}
        span.add_event("progress", attributes, timestamp=int(at.timestamp() * 1e9))


@contextlib.contextmanager
def recording(job: Job, dispatch: str) -> Iterator[Span | None]:
    """Writing an attempt's outcome (and what follows it: the callbacks nest here)."""
    if _tracer is None:
        yield None
        return
    with _in_attempt("jobdesk.record", job, dispatch) as span:
        yield span
    _attempts.pop(dispatch, None)  # recorded (an error keeps it for the next try)


@contextlib.contextmanager
def following(job: Job) -> Iterator[Span | None]:
    """What follows a job's end: its hooks, its dependents, its batch's callbacks. A child
    of the current span (the record), else of the job's submit (a cancel, the reconciler)."""
    if _tracer is None:
        yield None
        return
    from opentelemetry import trace

    parent = None if trace.get_current_span().is_recording() else _job_context(job)
    attributes = {**_about(job), OUTCOME: str(job.status)}
    with _tracer.start_as_current_span("jobdesk.callbacks", context=parent, attributes=attributes) as span:
        yield span


def outcome(span: Span | None, value: str) -> None:
    if span is not None:
        span.set_attribute(OUTCOME, value)


def _about(job: Job) -> dict[str, Any]:
    return {ID: str(job.id), TYPE: job.type, ATTEMPT: job.attempts}


def _job_context(job: Job) -> Context:
    """The job's submit span as a parent; a new trace when the job carries none."""
    from opentelemetry.context import Context

    return _context_of(job.trace_context) if job.trace_context else Context()


def _context_of(traceparent: str) -> Context:
    """A context whose parent is the span a W3C ``traceparent`` names."""
    from opentelemetry.context import Context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract({"traceparent": traceparent}, context=Context())


def _in_attempt(name: str, job: Job, dispatch: str):
    """A span of the attempt (a child of its claim), current inside."""
    assert _tracer is not None
    return _tracer.start_as_current_span(name, context=_attempt_context(job, dispatch), attributes=_about(job))


def _attempt_context(job: Job, dispatch: str) -> Context:
    claim = _attempts.get(dispatch)
    if claim is None:  # claimed before traces were on here, or by another process
        return _job_context(job)
    from opentelemetry.context import Context
    from opentelemetry.trace import NonRecordingSpan, set_span_in_context

    return set_span_in_context(NonRecordingSpan(claim), Context())


# --- a work-horse's spans, handed back to its parent -------------------------------------


def in_work_horse() -> None:
    """In a forked work-horse: keep finished spans for ``hand_back`` instead of exporting."""
    if _pipeline is not None:
        _pipeline.kept = []


def export_from_here() -> None:
    """This process exports its spans itself (a horse that claims and records for itself)."""
    if _pipeline is not None:
        _pipeline.kept = None


def hand_back(outcome: dict) -> dict:
    """The outcome a work-horse returns, with the spans it kept (if any)."""
    if _pipeline is None or not _pipeline.kept:
        return outcome
    kept, _pipeline.kept = _pipeline.kept, []
    return {**outcome, _HANDED_BACK: kept}


def take_back(outcome: dict) -> dict:
    """The outcome without the spans its work-horse handed back; those are exported here."""
    if _HANDED_BACK not in outcome:
        return outcome
    outcome = dict(outcome)
    spans = outcome.pop(_HANDED_BACK) or []
    if _pipeline is not None and _provider is not None:
        for plain in spans:
            try:
                _pipeline.export(_rebuilt(plain, _provider))
            except Exception:  # a span never costs a job its outcome
                logger.warning("a work-horse's span could not be rebuilt", exc_info=True)
    return outcome


class _Pipeline:
    """Jobdesk's span processor: hands finished spans to the exporting processors, or,
    in a work-horse, keeps them (as plain data) for the parent."""

    def __init__(self, processors: list) -> None:
        self.processors = processors
        self.kept: list[dict] | None = None

    def on_start(self, span, parent_context=None) -> None:
        pass

    def _on_ending(self, span) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if self.kept is None:
            self.export(span)
        elif len(self.kept) < _HAND_BACK_LIMIT:
            self.kept.append(_plain(span))

    def export(self, span: ReadableSpan) -> None:
        for processor in self.processors:
            processor.on_end(span)

    def shutdown(self) -> None:
        for processor in self.processors:
            processor.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return all([processor.force_flush(timeout_millis) for processor in self.processors])


def _plain(span: ReadableSpan) -> dict:
    """A finished span as picklable data (RQ keeps the outcome with it for a moment)."""
    context, parent, scope = span.get_span_context(), span.parent, span.instrumentation_scope
    assert context is not None  # a finished SDK span has one
    return {
        "name": span.name,
        "context": (context.trace_id, context.span_id, int(context.trace_flags)),
        "parent": (parent.trace_id, parent.span_id, int(parent.trace_flags), parent.is_remote) if parent else None,
        "kind": span.kind.value,
        "start": span.start_time,
        "end": span.end_time,
        "attributes": dict(span.attributes or {}),
        "events": [(e.name, dict(e.attributes or {}), e.timestamp) for e in span.events],
        "links": [
            (link.context.trace_id, link.context.span_id, int(link.context.trace_flags), dict(link.attributes or {}))
            for link in span.links
        ],
        "status": (span.status.status_code.value, span.status.description),
        "scope": (scope.name, scope.version) if scope else ("jobdesk", None),
    }


def _rebuilt(plain: dict, provider: TracerProvider) -> ReadableSpan:
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

    trace_id, span_id, flags = plain["context"]
    parent = None
    if plain["parent"] is not None:
        p_trace, p_span, p_flags, p_remote = plain["parent"]
        parent = SpanContext(p_trace, p_span, is_remote=p_remote, trace_flags=TraceFlags(p_flags))
    code, description = plain["status"]
    return ReadableSpan(
        name=plain["name"],
        context=SpanContext(trace_id, span_id, is_remote=False, trace_flags=TraceFlags(flags)),
        parent=parent,
        resource=provider.resource,
        attributes=plain["attributes"],
        events=[Event(name, attributes, timestamp) for name, attributes, timestamp in plain["events"]],
        links=[
            Link(SpanContext(t, s, is_remote=True, trace_flags=TraceFlags(f)), attributes)
            for t, s, f, attributes in plain["links"]
        ],
        kind=SpanKind(plain["kind"]),
        status=Status(StatusCode(code), description),
        start_time=plain["start"],
        end_time=plain["end"],
        instrumentation_scope=InstrumentationScope(*plain["scope"]),
    )
