"""The WebSocket edge through channels' WebsocketCommunicator, against the
real Redis channel layer: who may connect, snapshot first, seq order, terminal close."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client
from rest_framework.authtoken.models import Token

from config.asgi import application
from conftest import exits
from jobs.core import lifecycle, relay
from jobs.core.models import Job, Status
from jobs.core.submit import submit

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://testserver")


def token_header(user) -> tuple[bytes, bytes]:
    token, _ = Token.objects.get_or_create(user=user)
    return (b"authorization", f"Token {token.key}".encode())


def session_headers(user, origin: bytes = b"http://testserver") -> list[tuple[bytes, bytes]]:
    client = Client()
    client.force_login(user)
    return [(b"origin", origin), (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())]


async def connect(path: str, headers=()) -> tuple[WebsocketCommunicator, bool]:
    communicator = WebsocketCommunicator(application, path, headers=list(headers))
    connected, _ = await communicator.connect(timeout=5)
    return communicator, connected


async def close_code(path: str, headers=()) -> int | None:
    """The code the server closes with right after accepting."""
    communicator, connected = await connect(path, headers)
    assert connected, "accepted first, so the close code reaches the client"
    message = await communicator.receive_output(timeout=5)
    # As a server does once the socket is closed: the consumer ends (waiting for it to end
    # by itself took the communicator's whole second each time).
    await communicator.disconnect()
    return message.get("code") if message["type"] == "websocket.close" else None


async def follow(communicator: WebsocketCommunicator, *, timeout: float = 20) -> tuple[list[dict], int]:
    """Every message until the server closes; (messages, close code)."""
    messages: list[dict] = []
    while True:
        output = await communicator.receive_output(timeout=timeout)
        if output["type"] == "websocket.close":
            return messages, output.get("code", 1000)
        messages.append(json.loads(output["text"]))


def test_who_may_connect(alice, bob, operator, watcher, make_user):
    job = submit("diagnostics.sleep", {"seconds": 0}, owner=alice).job
    bare_staff = make_user("bare", staff=True)  # is_staff without permissions: an ordinary user

    @async_to_sync
    async def codes():
        return {
            "anonymous": await close_code(f"/ws/jobs/{job.id}/", [ORIGIN]),
            "bad token": await close_code(f"/ws/jobs/{job.id}/?token=nope"),
            # PostgreSQL refuses to compare a NUL: the handshake raised instead of closing
            "token with a NUL": await close_code(f"/ws/jobs/{job.id}/?token=a%00b"),
            "token longer than any": await close_code(f"/ws/jobs/{job.id}/?token={'f' * 5000}"),
            "no token, no origin": await close_code(f"/ws/jobs/{job.id}/"),
            "someone else's": await close_code(f"/ws/jobs/{job.id}/", [await sync_to_async(token_header)(bob)]),
            "unknown job": await close_code(f"/ws/jobs/{job.id.hex[::-1]}/", [await sync_to_async(token_header)(bob)]),
            "not an id": await close_code("/ws/jobs/../", [await sync_to_async(token_header)(bob)]),
            "unknown path": await close_code("/ws/nothing/", [await sync_to_async(token_header)(bob)]),
            "ops, not staff": await close_code("/ws/ops/", [await sync_to_async(token_header)(alice)]),
            "ops, staff without permission": await close_code(
                "/ws/ops/", [await sync_to_async(token_header)(bare_staff)]
            ),
            "someone else's, staff without permission": await close_code(
                f"/ws/jobs/{job.id}/", [await sync_to_async(token_header)(bare_staff)]
            ),
            "ops, anonymous": await close_code("/ws/ops/", [ORIGIN]),
            "ops, no such status": await close_code(
                "/ws/ops/?status=bogus", [await sync_to_async(token_header)(operator)]
            ),
            "ops, no such type": await close_code("/ws/ops/?type=nope", [await sync_to_async(token_header)(operator)]),
        }

    assert codes() == {
        "anonymous": 4401,
        "bad token": 4401,
        "token with a NUL": 4401,
        "token longer than any": 4401,
        "no token, no origin": 4401,
        "someone else's": 4403,
        "unknown job": 4404,
        "not an id": 4404,
        "unknown path": 4404,
        "ops, not staff": 4403,
        "ops, staff without permission": 4403,
        "someone else's, staff without permission": 4403,
        "ops, anonymous": 4401,
        "ops, no such status": 4400,
        "ops, no such type": 4400,
    }


def test_session_cookies_need_an_allowed_origin(alice):
    job = submit("diagnostics.sleep", {"seconds": 0}, owner=alice).job
    good, evil = session_headers(alice), session_headers(alice, origin=b"http://evil.example")

    @async_to_sync
    async def attempt():
        owner, owner_ok = await connect(f"/ws/jobs/{job.id}/", good)
        snapshot = await owner.receive_json_from(timeout=5) if owner_ok else None
        await owner.disconnect()
        _, evil_ok = await connect(f"/ws/jobs/{job.id}/", evil)
        # Tokens need no Origin: a program is not a browser carrying someone's cookie.
        program, program_ok = await connect(f"/ws/jobs/{job.id}/?token={await sync_to_async(token_of)(alice)}")
        await program.disconnect()
        return snapshot, evil_ok, program_ok

    snapshot, evil_ok, program_ok = attempt()
    assert snapshot["type"] == "snapshot" and snapshot["job_id"] == str(job.id)
    assert evil_ok is False
    assert program_ok is True


def token_of(user) -> str:
    return Token.objects.get_or_create(user=user)[0].key


def test_snapshot_first_then_every_event_in_seq_order_then_close(alice, run_worker, settings):
    settings.PROGRESS_WRITE_INTERVAL = 0  # every report is written and relayed
    job = submit("diagnostics.sleep", {"seconds": 0.25, "steps": 5}, owner=alice).job
    header = token_header(alice)

    @async_to_sync
    async def watch():
        communicator, _ = await connect(f"/ws/jobs/{job.id}/", [header])
        snapshot = await communicator.receive_json_from(timeout=5)
        await sync_to_async(run_worker)()
        rest, code = await follow(communicator)
        return [snapshot, *rest], code

    messages, code = watch()
    assert [m["type"] for m in messages] == ["snapshot", "status"] + ["progress"] * 5 + ["completed"]
    assert messages[0]["status"] == Status.QUEUED and messages[0]["estimated_start_at"] is None  # no worker
    assert messages[1]["status"] == Status.ACTIVE
    assert [m["progress"] for m in messages[2:7]] == [20, 40, 60, 80, 100]
    seqs = [m["seq"] for m in messages]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "one more per event, no gap"
    assert messages[-1]["seq"] == Job.objects.get(pk=job.id).seq
    assert messages[-1]["result_summary"] == Job.objects.get(pk=job.id).result
    assert code == 1000
    for message in messages:
        assert set(message) >= {
            "type", "job_id", "material_id", "job_type", "seq", "timestamp", "status", "progress", "stage",
            "details", "result_summary", "error_category", "user_message", "recovery_actions",
            "estimated_start_at", "estimated_finish_at", "eta_paused",
        }  # fmt: skip


def test_a_finished_job_sends_its_snapshot_and_closes_normally(alice, run_worker):
    job = submit("diagnostics.sleep", {"seconds": 0, "fail_mode": "user_fixable"}, owner=alice).job
    run_worker()

    @async_to_sync
    async def watch():
        communicator, _ = await connect(f"/ws/jobs/{job.id}/", [await sync_to_async(token_header)(alice)])
        return await follow(communicator, timeout=5)

    messages, code = watch()
    assert code == 1000
    assert len(messages) == 1
    snapshot = messages[0]
    assert (snapshot["type"], snapshot["status"], snapshot["error_category"]) == ("snapshot", "failed", "user_fixable")
    assert snapshot["user_message"] and snapshot["recovery_actions"]


def test_failures_arrive_as_error_messages_with_their_advice(alice, run_worker, settings):
    settings.RETRY_BASE_DELAY = 60
    job = submit("diagnostics.sleep", {"seconds": 0, "fail_mode": "temporary"}, owner=alice, max_attempts=2).job

    @async_to_sync
    async def watch():
        communicator, _ = await connect(f"/ws/jobs/{job.id}/", [await sync_to_async(token_header)(alice)])
        await communicator.receive_json_from(timeout=5)  # snapshot
        await sync_to_async(run_worker)()
        messages = [await communicator.receive_json_from(timeout=5)]
        while messages[-1]["status"] != "retrying":
            messages.append(await communicator.receive_json_from(timeout=5))
        await communicator.disconnect()
        return messages

    messages = watch()
    assert messages[0]["status"] == "active"
    retrying = messages[-1]
    assert (retrying["type"], retrying["status"], retrying["error_category"]) == ("error", "retrying", "temporary")
    assert retrying["user_message"]
    assert retrying["recovery_actions"]
    assert retrying["estimated_start_at"] is None  # no live worker: no ETA, not a made-up one


def test_operators_stream_sees_every_job_and_filters(alice, bob, operator, run_worker):
    @async_to_sync
    async def watch():
        header = await sync_to_async(token_header)(operator)
        everything, _ = await connect("/ws/ops/", [header])
        failed_only, _ = await connect("/ws/ops/?status=failed,dead_letter", [header])
        first = await everything.receive_json_from(timeout=5)
        await failed_only.receive_json_from(timeout=5)
        await sync_to_async(submit)("diagnostics.sleep", {"seconds": 0}, owner=alice)
        await sync_to_async(submit)("diagnostics.sleep", {"seconds": 0, "fail_mode": "user_fixable"}, owner=bob)
        await sync_to_async(run_worker)()
        seen = []
        while not {"complete", "failed"} <= {m["status"] for m in seen}:
            seen.append(await everything.receive_json_from(timeout=5))
        failed = await failed_only.receive_json_from(timeout=5)
        nothing_more = await failed_only.receive_nothing(timeout=0.5)
        await everything.disconnect()
        await failed_only.disconnect()
        return first, seen, failed, nothing_more

    first, seen, failed, nothing_more = watch()
    assert first["type"] == "snapshot" and first["details"]["counts"] == {}
    changes = [m["status"] for m in seen if m["type"] != "progress"]
    assert sorted(changes) == sorted(["queued", "queued", "active", "active", "complete", "failed"])
    assert {m["job_type"] for m in seen} == {"diagnostics.sleep"}
    assert failed["status"] == "failed" and failed["error_category"] == "user_fixable"
    assert nothing_more


def test_a_big_submit_s_summary_reaches_the_filtered_streams_it_concerns(alice, operator):
    """More than relay._BULK jobs at once are one summary message with no one type or
    status: a stream filtered by either never heard of them."""
    from jobs.core.submit import JobSpec, submit_many

    @async_to_sync
    async def watch():
        header = await sync_to_async(token_header)(operator)
        streams = {path: (await connect(path, [header]))[0]
                   for path in ("/ws/ops/?type=diagnostics.noop", "/ws/ops/?status=queued",
                                "/ws/ops/?type=diagnostics.sleep", "/ws/ops/?status=failed")}  # fmt: skip
        for stream in streams.values():
            await stream.receive_json_from(timeout=5)  # the snapshot
        await sync_to_async(submit_many)([JobSpec("diagnostics.noop")] * (relay._BULK + 10), owner=alice)
        heard = {}
        for path, stream in streams.items():
            heard[path] = None if await stream.receive_nothing(timeout=1) else await stream.receive_json_from(timeout=5)
            await stream.disconnect()
        return heard

    heard = watch()
    for path in ("/ws/ops/?type=diagnostics.noop", "/ws/ops/?status=queued"):
        assert heard[path] is not None and heard[path]["details"]["submitted"] == relay._BULK + 10, path
    assert heard["/ws/ops/?type=diagnostics.sleep"] is None and heard["/ws/ops/?status=failed"] is None


def test_a_job_s_own_details_named_submitted_are_not_taken_for_a_bulk_summary():
    # A job's message carries its progress details: ctx.progress(…, submitted=120).
    from jobs.live.consumers import OpsConsumer

    consumer, sent = OpsConsumer(), []
    consumer.types, consumer.statuses = frozenset({"reports.export"}), frozenset({"active"})

    async def send_json(msg):
        sent.append(msg)

    consumer.send_json = send_json
    event = {"job_id": "7b0f6c1e-0000-4000-8000-000000000000", "job_type": "reports.export", "status": "active",
             "details": {"submitted": 120}}  # fmt: skip
    async_to_sync(consumer.job_event)({"event": event})
    assert sent == [event]


def test_read_only_operators_watch_every_stream(alice, watcher):
    job = submit("diagnostics.sleep", {"seconds": 0}, owner=alice).job

    @async_to_sync
    async def first_messages():
        header = await sync_to_async(token_header)(watcher)
        ops, _ = await connect("/ws/ops/", [header])
        followed, _ = await connect(f"/ws/jobs/{job.id}/", [header])
        messages = await ops.receive_json_from(timeout=5), await followed.receive_json_from(timeout=5)
        await ops.disconnect()
        await followed.disconnect()
        return messages

    ops, followed = first_messages()
    assert ops["type"] == "snapshot" and followed["type"] == "snapshot" and followed["job_id"] == str(job.id)


def test_operator_moves_reach_followers_with_who_did_them(alice, operator):
    from jobs.core import actions

    job = submit("diagnostics.sleep", {"seconds": 0}, owner=alice, run_at=None).job

    @async_to_sync
    async def watch():
        communicator, _ = await connect(f"/ws/jobs/{job.id}/", [await sync_to_async(token_header)(alice)])
        snapshot = await communicator.receive_json_from(timeout=5)
        await sync_to_async(actions.promote)(job.id, actor=operator)
        promoted = await communicator.receive_json_from(timeout=5)
        await sync_to_async(actions.cancel)(job.id, actor=operator)
        rest, code = await follow(communicator, timeout=5)
        return snapshot, promoted, rest, code

    snapshot, promoted, rest, code = watch()
    assert promoted["seq"] == snapshot["seq"] + 1 and promoted["status"] == "queued"
    assert [m["status"] for m in rest] == ["canceled"] and code == 1000


def test_what_a_client_sends_is_ignored_and_never_ends_its_connection(alice, operator):
    """Followers only listen: a frame from the client (not JSON, nested past Python's
    stack, binary) is not read, and the connection goes on to the job's next event."""
    from jobs.core import actions

    job = submit("diagnostics.sleep", {"seconds": 0}, owner=alice).job

    @async_to_sync
    async def watch():
        communicator, _ = await connect(f"/ws/jobs/{job.id}/", [await sync_to_async(token_header)(alice)])
        snapshot = await communicator.receive_json_from(timeout=5)
        for frame in ("hello", "[" * 5000 + "]" * 5000, '{"type": "cancel"}'):
            await communicator.send_to(text_data=frame)
        await communicator.send_to(bytes_data=b"\x00\x01")
        assert await communicator.receive_nothing(timeout=0.3), "nothing answers a client's frame"
        await sync_to_async(actions.cancel)(job.id, actor=operator)
        rest, code = await follow(communicator, timeout=5)
        return snapshot, rest, code

    snapshot, rest, code = watch()
    assert snapshot["status"] == "queued"
    assert [m["status"] for m in rest] == ["canceled"] and code == 1000


def test_a_progress_write_the_run_no_longer_owns_is_neither_written_nor_relayed(alice):
    from jobs.core import lifecycle
    from jobs.execution.progress import ProgressReporter

    job = submit("diagnostics.sleep", {"seconds": 0}, owner=alice).job
    claimed = lifecycle.claim(job.id, job.rq_job_id, "w1")
    reporter = ProgressReporter(claimed, job.rq_job_id, interval=0)
    reporter.report(10, "one")
    lifecycle.cancel(job.id)
    reporter.report(20, "two")
    reporter.report(30, "three")
    assert reporter.writes == 1
    row = Job.objects.get(pk=job.id)
    assert (row.status, row.progress, row.stage) == ("canceled", 10, "one")


def test_a_held_report_is_written_when_its_interval_is_up(alice):
    """A handler that reports twice quickly and then works silently is not shown stale."""
    from conftest import wait_for
    from jobs.core import lifecycle
    from jobs.execution.progress import ProgressReporter

    job = submit("diagnostics.sleep", {"seconds": 0}, owner=alice).job
    claimed = lifecycle.claim(job.id, job.rq_job_id, "w1")
    reporter = ProgressReporter(claimed, job.rq_job_id, interval=0.3)
    reporter.report(10, "download")
    reporter.report(11, "parse")  # held: too soon after the first
    assert Job.objects.get(pk=job.id).stage == "download"
    wait_for(lambda: Job.objects.get(pk=job.id).stage == "parse", timeout=5, what="the timer's write")
    assert reporter.writes == 2


def test_ten_thousand_reports_make_a_handful_of_writes(alice):
    from jobs.core import lifecycle
    from jobs.execution.progress import ProgressReporter

    job = submit("diagnostics.sleep", {"seconds": 0}, owner=alice).job
    claimed = lifecycle.claim(job.id, job.rq_job_id, "w1")
    reporter = ProgressReporter(claimed, job.rq_job_id, interval=0.1)
    for i in range(10_000):
        reporter.report(i / 100, "tick", {"i": i})
    reporter.flush()
    row = Job.objects.get(pk=job.id)
    assert row.progress_details == {"i": 9999}, "the last report always gets through"
    assert 2 <= reporter.writes <= 50, reporter.writes  # first, a few timed, the final flush
    assert relay.drain(5)


@pytest.mark.slow
def test_watch_job_follows_from_a_terminal_until_the_end(alice, run_worker, spawn, settings):
    from conftest import wait_for

    settings.PROGRESS_WRITE_INTERVAL = 0
    job = submit("diagnostics.sleep", {"seconds": 0.3, "steps": 3}, owner=alice).job
    watcher = spawn("watch_job", str(job.id))
    wait_for(lambda: "queued" in open(watcher.log_path).read(), timeout=20, what="the snapshot line")  # noqa: SIM115
    run_worker()
    assert exits(watcher, 20, "watch_job") == 0
    lines = open(watcher.log_path).read().splitlines()  # noqa: SIM115
    statuses = [line.split()[1] for line in lines if line[:2].isdigit()]
    assert statuses == ["queued", "active", "active", "active", "active", "complete"], lines
    assert "100%" in lines[-1]

    failed = submit("diagnostics.sleep", {"seconds": 0, "fail_mode": "user_fixable"}, owner=alice).job
    run_worker()
    watcher = spawn("watch_job", str(failed.id))
    assert exits(watcher, 20, "watch_job") == 1, "a job that did not complete exits 1"
    assert "user_fixable" in Path(watcher.log_path).read_text()


def test_a_report_inside_the_handlers_transaction_is_written_after_it(alice):
    """A rollback cannot take back an event clients were told about, and a report
    never waits on the database behind the handler's own transaction."""
    from django.db import transaction

    from conftest import wait_for
    from jobs.core import lifecycle
    from jobs.execution.progress import ProgressReporter

    job = submit("diagnostics.sleep", {"seconds": 0}, owner=alice).job
    claimed = lifecycle.claim(job.id, job.rq_job_id, "w1")
    claim_seq = claimed.seq
    reporter = ProgressReporter(claimed, job.rq_job_id, interval=0)
    with pytest.raises(RuntimeError), transaction.atomic():
        reporter.report(40, "inside")
        assert reporter.writes == 0, "not written in the transaction"
        raise RuntimeError("the handler's work failed")
    wait_for(lambda: Job.objects.get(pk=job.id).stage == "inside", timeout=10, what="the write after the rollback")
    assert reporter.writes == 1
    done = lifecycle.complete(job.id, job.rq_job_id, {})
    assert done.seq == claim_seq + 2, "one progress event, then the completion: no phantom, no reused seq"


def test_a_lost_final_message_is_made_good_by_the_periodic_reread(alice, settings, monkeypatch):
    settings.WS_ETA_REFRESH_SECONDS = 0.5
    job = submit("diagnostics.sleep", {"seconds": 0}, owner=alice).job

    @async_to_sync
    async def watch():
        communicator, _ = await connect(f"/ws/jobs/{job.id}/", [await sync_to_async(token_header)(alice)])
        first = await communicator.receive_json_from(timeout=5)
        # The job ends and its message is lost on the way (the layer dropped it).
        monkeypatch.setattr(relay, "send", lambda message, **how: None)
        await sync_to_async(lifecycle.cancel)(job.id)
        rest, code = await follow(communicator, timeout=5)
        return first, rest, code

    first, rest, code = watch()
    assert first["status"] == "queued"
    assert [(m["type"], m["status"], m["seq"]) for m in rest] == [("snapshot", "canceled", first["seq"] + 1)]
    assert code == 1000


def test_a_slow_database_does_not_pile_up_timers_and_bad_reports_never_fail_the_run(alice, monkeypatch):
    import threading

    from django.db import DatabaseError

    from conftest import wait_for
    from jobs.core import lifecycle
    from jobs.execution.progress import ProgressReporter

    job = submit("diagnostics.sleep", {"seconds": 0}, owner=alice).job
    claimed = lifecycle.claim(job.id, job.rq_job_id, "w1")
    reporter = ProgressReporter(claimed, job.rq_job_id, interval=0)
    before = threading.active_count()
    with reporter._writing:  # a write stuck in the database for a while
        for i in range(200):
            reporter.report(i / 2, "busy", {"i": i})
        assert threading.active_count() - before <= 1, "one timer waits; reports just replace what it holds"
    wait_for(lambda: Job.objects.get(pk=job.id).progress_details == {"i": 199}, timeout=10, what="the latest report")
    assert reporter.writes <= 3

    reporter.report(60, "nul\x00stage", {"ratio": float("nan")})  # PostgreSQL would refuse both as given
    reporter.flush()
    row = Job.objects.get(pk=job.id)
    assert (row.stage, list(row.progress_details)) == ("nulstage", ["unstorable_details"])

    def refused(*args, **kwargs):
        raise DatabaseError("connection lost")

    monkeypatch.setattr(lifecycle, "record_progress", refused)
    reporter.report(70, "down")  # logged, retried by the timer: never raised to the handler
    reporter.flush()  # nor at the end, where it would turn a success into a retry


def test_guessing_tokens_over_websockets_is_throttled_like_the_api(alice, settings):
    settings.API_AUTH_FAILURE_RATE = "3/minute"
    job = submit("diagnostics.sleep", {"seconds": 0}, owner=alice).job

    @async_to_sync
    async def attempts():
        guesses = [await close_code(f"/ws/jobs/{job.id}/?token=guess{n}") for n in range(3)]
        good = await sync_to_async(token_of)(alice)
        after, ok = await connect(f"/ws/jobs/{job.id}/?token={good}")
        first = await after.receive_output(timeout=5)
        await after.disconnect()
        return guesses, first

    guesses, first = attempts()
    assert guesses == [4401, 4401, 4401]
    assert first["type"] == "websocket.close" and first["code"] == 4401, "even a right token, from that address"


def test_a_burst_of_more_urgent_work_revises_a_followers_eta_with_the_reason(alice, redis_conn, settings):
    """A follower of a waiting job hears at once when its start leaves the range it was
    shown (not at the next periodic re-read), with why, and the timeline keeps it."""
    from datetime import timedelta

    from django.utils import timezone

    from conftest import past_jobs
    from jobs.core.submit import JobSpec, submit_many
    from jobs.insight import estimates

    settings.WS_ETA_SETTLE_SECONDS = 0.1
    settings.WS_ETA_REFRESH_SECONDS = 60.0  # the revision must not wait for the re-read
    from rq import Worker

    Worker(["normal"], connection=redis_conn, name="idle").register_birth()  # one worker alive, taking nothing
    done = timezone.now() - timedelta(minutes=5)
    past_jobs(
        Job(type="diagnostics.sleep", status=Status.COMPLETE, started_at=done - timedelta(seconds=2), finished_at=done)
        for _ in range(20)
    )
    estimates.clear_cache()
    waiting = submit("diagnostics.sleep", {"seconds": 2}, owner=alice, priority="low").job

    @async_to_sync
    async def watch():
        communicator, connected = await connect(f"/ws/jobs/{waiting.id}/", [await sync_to_async(token_header)(alice)])
        assert connected
        first = await communicator.receive_json_from(timeout=5)
        burst = [JobSpec("diagnostics.sleep", {"seconds": 2}, priority="immediate") for _ in range(12)]
        await sync_to_async(submit_many)(burst)
        revised = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect()
        return first, revised

    first, revised = watch()
    assert first["type"] == "snapshot" and first["eta_revision"] is None and first["priority"] == "low"
    revision = revised["eta_revision"]
    assert revision and revision["reason"] == "12 immediate jobs arrived ahead"
    assert revision["from"] == first["estimated_start_at"] and revision["to"] == revised["estimated_start_at"]
    low, high = revised["estimated_start_range"]
    assert low <= revised["estimated_start_at"] <= high
    assert revised["estimated_start_at"] > first["estimated_start_range"][1], "it left the range it was shown"
    notes = [e for e in waiting.events.all() if "eta_revision" in e.details]
    assert len(notes) == 1 and "12 immediate jobs arrived ahead" in notes[0].message


def test_a_follower_whose_queue_overflows_gets_a_snapshot_at_once_never_a_gap(alice, run_worker, settings, monkeypatch):
    """Two followers of one job in one web process; one is stuck while the job runs, so
    its queue (3 messages here) drops the oldest. It must still end on the final state,
    every message in order and any jump a snapshot — at once, not at the next re-read."""
    import asyncio

    from jobs.core import dropped
    from jobs.live import consumers

    settings.PROGRESS_WRITE_INTERVAL = 0  # every report is an event
    settings.WS_ETA_REFRESH_SECONDS = 600.0  # the periodic re-read cannot be what repairs it
    settings.CHANNEL_LAYERS = {
        "default": {**settings.CHANNEL_LAYERS["default"],
                    "CONFIG": {**settings.CHANNEL_LAYERS["default"]["CONFIG"], "capacity": 3}},
    }  # fmt: skip
    dropped.reset()
    job = submit("diagnostics.sleep", {"seconds": 0.3, "steps": 10}, owner=alice).job
    header = token_header(alice)
    stuck: dict = {}
    real_estimate = consumers.shared_estimate

    async def one_follower_stuck(job_id, seq):  # the first follower to ask waits for its release
        if not stuck:
            stuck["release"] = asyncio.Event()
            await stuck["release"].wait()
        return await real_estimate(job_id, seq)

    monkeypatch.setattr(consumers, "shared_estimate", one_follower_stuck)

    @async_to_sync
    async def watch():
        first, _ = await connect(f"/ws/jobs/{job.id}/", [header])
        second, _ = await connect(f"/ws/jobs/{job.id}/", [header])
        snapshots = [await first.receive_json_from(timeout=5), await second.receive_json_from(timeout=5)]
        await sync_to_async(run_worker)()
        reading = {
            asyncio.ensure_future(follow(communicator, timeout=10)): n for n, communicator in enumerate((first, second))
        }
        # The free follower reads everything (pulling the stuck one's messages into its queue).
        done, _ = await asyncio.wait(reading, return_when=asyncio.FIRST_COMPLETED, timeout=10)
        assert len(done) == 1, "one follower is free, the other stuck"
        started = asyncio.get_running_loop().time()
        stuck["release"].set()
        await asyncio.wait(reading, timeout=10)
        took = asyncio.get_running_loop().time() - started
        by_follower = {reading[task]: task.result() for task in reading}
        free_one = reading[done.pop()]
        return snapshots[free_one], by_follower[free_one], snapshots[1 - free_one], by_follower[1 - free_one], took

    free_snapshot, (free, free_code), stuck_snapshot, (stuck_messages, stuck_code), took = watch()
    final = Job.objects.get(pk=job.id)
    assert free_code == stuck_code == 1000 and took < 5, "the stuck one closes at once once free"
    for got in (free, stuck_messages):
        seqs = [m["seq"] for m in got]
        assert seqs == sorted(set(seqs)), f"in order, no repeat: {seqs}"
        assert (got[-1]["status"], got[-1]["seq"]) == ("complete", final.seq), "ends on the final state"
    assert [m["seq"] for m in free] == list(range(free_snapshot["seq"] + 1, final.seq + 1)), "the free one: every event"
    seen = stuck_snapshot["seq"]
    jumps = []
    for message in stuck_messages:
        if message["seq"] > seen + 1:
            jumps.append(message["type"])
        seen = message["seq"]
    assert jumps == ["snapshot"], f"one jump, made by a snapshot: {[(m['type'], m['seq']) for m in stuck_messages]}"
    dropped.flush()
    counted = dropped.totals()
    assert counted["web_queue"] >= 1 and counted["follower_gap"] >= 1, counted
