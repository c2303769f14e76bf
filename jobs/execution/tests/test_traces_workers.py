"""Traces across real processes: the web server, a `manage.py rqworker` and its
work-horses export OTLP over HTTP to a collector this test runs on 127.0.0.1, and the
spans of a job's way form one trace with the right parents — and a collector that is
down costs the jobs nothing."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from rest_framework.authtoken.models import Token

from conftest import answers, exits, free_port, wait_for
from devtools import web as web_tier
from jobs.core import tracing
from jobs.core.models import Batch, Job, Status
from jobs.core.submit import JobSpec, submit, submit_many
from jobs.upkeep import reconcile

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

QUEUES = ("immediate", "normal", "low")


class Collector:
    """A tiny OTLP/HTTP receiver: every span posted to /v1/traces, decoded."""

    def __init__(self) -> None:
        self.spans: list[dict] = []
        self._lock = threading.Lock()
        collector = self

        class Receive(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                collector.add(request)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Receive)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(self, request: ExportTraceServiceRequest) -> None:
        with self._lock:
            for resource_spans in request.resource_spans:
                resource = attributes_of(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        self.spans.append(
                            {
                                "name": span.name,
                                "service": resource.get("service.name"),
                                "trace": span.trace_id.hex(),
                                "id": span.span_id.hex(),
                                "parent": span.parent_span_id.hex() or None,
                                "attributes": attributes_of(span.attributes),
                                "events": [
                                    (e.name, attributes_of(e.attributes), e.time_unix_nano) for e in span.events
                                ],
                                "status": span.status.code,
                                "start": span.start_time_unix_nano,
                                "end": span.end_time_unix_nano,
                            }
                        )

    def of(self, job_id, name: str | None = None) -> list[dict]:
        with self._lock:
            found = [s for s in self.spans if s["attributes"].get("jobdesk.job.id") == str(job_id)]
        return sorted((s for s in found if name in (None, s["name"])), key=lambda s: s["start"])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def attributes_of(pairs) -> dict:
    values = {}
    for pair in pairs:
        kind = pair.value.WhichOneof("value")
        values[pair.key] = getattr(pair.value, kind) if kind else None
    return values


@pytest.fixture
def collector() -> Iterator[Collector]:
    running = Collector()
    yield running
    running.close()


def traced(endpoint: str, service: str, **more: str) -> dict[str, str]:
    """The standard variables that turn traces on (quick batches, for the test's pace)."""
    return {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_SERVICE_NAME": service,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        **more,
    }


def only(spans: list[dict]) -> dict:
    assert len(spans) == 1, [(s["name"], s["attributes"]) for s in spans]
    return spans[0]


def test_one_trace_from_the_web_submit_through_the_worker_to_the_batch_callback(spawn, collector, alice):
    port = free_port()
    spawn(*web_tier.command("127.0.0.1", port)[1:], **traced(collector.endpoint, "jobdesk-web"))
    wait_for(lambda: answers(f"http://127.0.0.1:{port}/api/health/live/"), timeout=30, what="the web server")
    spawn("rqworker", *QUEUES, **traced(collector.endpoint, "jobdesk-worker"))
    body = {"on_complete": "diagnostics.noop",
            "jobs": [{"type": "diagnostics.sleep", "payload": {"seconds": 0.6, "steps": 3}}]}  # fmt: skip
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/batches/",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Token {Token.objects.create(user=alice).key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        created = json.loads(response.read())
    (job_id,) = created["jobs"]
    batch = Batch.objects.get(pk=created["id"])

    def callback_recorded():
        batch.refresh_from_db()
        return batch.complete_job and collector.of(batch.complete_job, "jobdesk.record")

    wait_for(callback_recorded, timeout=60, what="the batch callback's record span")
    callback_id = batch.complete_job
    assert Job.objects.get(pk=job_id).status == Status.COMPLETE

    # Submit (web) → claim → run (horse) → record → callbacks → the callback's submit → …
    submitted = only([s for s in collector.spans if s["name"] == "jobdesk.submit" and s["service"] == "jobdesk-web"])
    names = ("jobdesk.claim", "jobdesk.run", "jobdesk.record", "jobdesk.callbacks")
    claim, run, record, callbacks = (only(collector.of(job_id, n)) for n in names)
    callback_submit = only([s for s in collector.spans if s["name"] == "jobdesk.submit" and s is not submitted])
    callback_claim, callback_run, callback_record = (
        only(collector.of(callback_id, n)) for n in ("jobdesk.claim", "jobdesk.run", "jobdesk.record")
    )
    everything = [submitted, claim, run, record, callbacks, callback_submit, callback_claim, callback_run,
                  callback_record]  # fmt: skip
    assert {s["trace"] for s in everything} == {submitted["trace"]}, "one trace"
    assert submitted["parent"] is None
    parents = {
        "claim": (claim, submitted),
        "run": (run, claim),
        "record": (record, claim),
        "callbacks": (callbacks, record),
        "the callback's submit": (callback_submit, callbacks),
        "the callback's claim": (callback_claim, callback_submit),
        "the callback's run": (callback_run, callback_claim),
        "the callback's record": (callback_record, callback_claim),
    }
    for what, (child, parent) in parents.items():
        assert child["parent"] == parent["id"], what
    assert [s["service"] for s in (claim, run, record, callbacks, callback_submit)] == ["jobdesk-worker"] * 5

    about = {"jobdesk.job.id": job_id, "jobdesk.job.type": "diagnostics.sleep", "jobdesk.job.attempt": 1}
    assert submitted["attributes"] == {"jobdesk.job.id": job_id, "jobdesk.job.type": "diagnostics.sleep",
                                       "jobdesk.job.count": 1}  # fmt: skip
    assert claim["attributes"] == about
    assert run["attributes"] == {**about, "jobdesk.job.outcome": "success"}
    assert record["attributes"] == {**about, "jobdesk.job.outcome": "complete"}
    assert callbacks["attributes"] == {**about, "jobdesk.job.outcome": "complete"}
    assert callback_record["attributes"]["jobdesk.job.outcome"] == "complete"
    assert callback_submit["attributes"]["jobdesk.job.type"] == "diagnostics.noop"

    # The handler's progress, as events of its run (in the horse, handed back to the parent).
    progress = [(attrs["jobdesk.progress.percent"], attrs["jobdesk.progress.stage"]) for name, attrs, _ in run["events"]
                if name == "progress"]  # fmt: skip
    assert progress == [(33, "sleeping"), (66, "sleeping"), (100, "sleeping")]
    assert all(run["start"] <= at <= run["end"] for _, _, at in run["events"])
    # Time flows along the way.
    assert submitted["start"] <= claim["start"] <= claim["end"] <= run["start"] <= run["end"] <= record["start"]


def test_retries_and_a_redis_flush_stay_in_the_job_s_trace(spawn, collector, redis_conn, scheduler_tick, spans):
    job = submit("diagnostics.sleep", {"seconds": 0, "steps": 1, "fail_mode": "temporary", "fail_times": 1}).job
    (submitted,) = spans.get_finished_spans()
    redis_conn.flushall()  # the dispatch is gone: the row is what is left
    assert len(reconcile.run(grace_seconds=0).requeued) == 1

    # A pool's worker (forked by rqworker-pool) exports as a lone worker does.
    spawn("rqworker-pool", *QUEUES, "--num-workers", "1",
          **traced(collector.endpoint, "jobdesk-worker", RETRY_BASE_DELAY="0"))  # fmt: skip

    def complete_and_exported():
        scheduler_tick()  # the retry's dispatch, due at once
        return Job.objects.get(pk=job.id).status == Status.COMPLETE and len(collector.of(job.id, "jobdesk.record")) == 2

    wait_for(complete_and_exported, timeout=60, what="two attempts, the second complete, and their spans")
    trace_id = f"{submitted.context.trace_id:032x}"
    claims, runs, records = (collector.of(job.id, n) for n in ("jobdesk.claim", "jobdesk.run", "jobdesk.record"))
    assert {s["trace"] for s in claims + runs + records} == {trace_id}
    assert [c["parent"] for c in claims] == [f"{submitted.context.span_id:016x}"] * 2
    assert [c["attributes"]["jobdesk.job.attempt"] for c in claims] == [1, 2]
    assert [r["attributes"]["jobdesk.job.outcome"] for r in runs] == ["temporary", "success"]
    assert [r["attributes"]["jobdesk.job.outcome"] for r in records] == ["retrying", "complete"]
    assert [r["parent"] for r in runs] == [c["id"] for c in claims] == [r["parent"] for r in records]
    assert runs[0]["status"] == 2  # STATUS_CODE_ERROR


def test_a_collector_that_is_down_costs_the_jobs_nothing(spawn, spans):
    closed = free_port()  # nothing listens there
    # A blocking export would retry a refused connection for up to 30 s; a flush at the
    # worker's end waits at most tracing.EXIT_FLUSH_SECONDS.
    env = traced(f"http://127.0.0.1:{closed}", "jobdesk-worker", OTEL_EXPORTER_OTLP_TIMEOUT="30")
    jobs = [r.job for r in submit_many([JobSpec("diagnostics.sleep", {"seconds": 0.2, "steps": 2})] * 3)]
    ids = [j.id for j in jobs]
    worker = spawn("rqworker", *QUEUES, "--burst", **env)
    wait_for(lambda: Job.objects.filter(pk__in=ids, status=Status.COMPLETE).count() == 3, timeout=60,
             what="the 3 jobs to complete")  # fmt: skip
    done = time.monotonic()
    for job in Job.objects.filter(pk__in=ids):
        assert job.trace_context  # traced: each attempt made spans, which found nobody to take them
        assert (job.finished_at - job.started_at).total_seconds() < 3.0, "claim to record, with a 0.2 s handler"
    started = sorted(j.started_at for j in Job.objects.filter(pk__in=ids))
    assert (started[-1] - started[0]).total_seconds() < 6.0, "no job waited on the previous one's spans"
    assert exits(worker, 30, "the worker") == 0
    assert time.monotonic() - done < tracing.EXIT_FLUSH_SECONDS + 5, "the worker's exit waited on the collector"


def test_rqs_own_forking_worker_class_exports_from_its_horses(spawn, collector, spans):
    """With RQ's ``Worker`` the horse claims, runs and records itself, then flushes its
    spans (at most tracing.HORSE_FLUSH_SECONDS) before its os._exit."""
    job = submit("diagnostics.sleep", {"seconds": 0, "steps": 1}).job
    (submitted,) = spans.get_finished_spans()
    spawn("rqworker", *QUEUES, "--worker-class", "rq.Worker", "--burst", **traced(collector.endpoint, "jobdesk-rq"))
    wait_for(lambda: collector.of(job.id, "jobdesk.record"), timeout=60, what="the horse's record span")
    claim, run, record = (only(collector.of(job.id, n)) for n in ("jobdesk.claim", "jobdesk.run", "jobdesk.record"))
    assert claim["parent"] == f"{submitted.context.span_id:016x}"
    assert run["parent"] == record["parent"] == claim["id"]
    assert {s["trace"] for s in (claim, run, record)} == {f"{submitted.context.trace_id:032x}"}
    assert record["attributes"]["jobdesk.job.outcome"] == "complete"
