"""Live progress end to end, with real processes: the web tier (uvicorn) serving config.asgi,
a real rqworker, the Redis channel layer and real WebSocket clients (``websockets``)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import pytest
import websockets
from rest_framework.authtoken.models import Token

from conftest import wait_for
from jobs.core.models import Job, Status
from jobs.core.submit import submit

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

QUEUES = ("immediate", "normal", "low")
STEPS = 20


async def receive_until_closed(ws, into: list[dict], *, timeout: float = 60) -> int:
    """Append every message to ``into`` until the server closes; the close code."""
    try:
        while True:
            into.append(json.loads(await asyncio.wait_for(ws.recv(), timeout)))
    except websockets.ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else 1006


def assert_in_order(messages: list[dict]) -> None:
    seqs = [m["seq"] for m in messages]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"a gap or a repeat: {seqs}"


def test_two_clients_follow_a_job_from_snapshot_to_completed(spawn, web_server, alice):
    token = Token.objects.create(user=alice).key
    job = submit("diagnostics.sleep", {"seconds": 4, "steps": STEPS}, owner=alice).job
    url = f"{web_server.url}/ws/jobs/{job.id}/?token={token}"

    async def follow_both():
        first: list[dict] = []
        second: list[dict] = []
        async with websockets.connect(url) as ws1:
            first.append(json.loads(await ws1.recv()))  # the snapshot, before any worker
            spawn("rqworker", *QUEUES)
            reading = asyncio.ensure_future(receive_until_closed(ws1, first))
            deadline = time.monotonic() + 60
            while not any(m["type"] == "progress" and m["progress"] >= 50 for m in first):
                await asyncio.sleep(0.02)
                assert not reading.done(), [(m["type"], m["seq"], m["progress"]) for m in first]
                assert time.monotonic() < deadline, "no progress past 50 % within 60 s"
            async with websockets.connect(url) as ws2:  # joins mid-way
                code2 = await receive_until_closed(ws2, second)
            code1 = await reading
        return first, code1, second, code2

    first, code1, second, code2 = asyncio.run(follow_both())

    assert first[0]["type"] == "snapshot" and first[0]["status"] == Status.QUEUED
    progress = [m["progress"] for m in first if m["type"] == "progress"]
    assert progress == [100 * i // STEPS for i in range(1, STEPS + 1)], "every step, in order"
    assert first[-1]["type"] == "completed" and code1 == 1000
    assert_in_order(first)

    snapshot = second[0]
    assert snapshot["type"] == "snapshot" and snapshot["status"] == Status.ACTIVE
    assert 50 <= snapshot["progress"] < 100, "the snapshot has the progress made so far"
    rest = [m["progress"] for m in second[1:] if m["type"] == "progress"]
    assert rest == [p for p in progress if p > snapshot["progress"]], "then the rest, nothing missed"
    assert second[-1]["type"] == "completed" and code2 == 1000
    assert_in_order(second)
    assert second[-1]["seq"] == first[-1]["seq"] == Job.objects.get(pk=job.id).seq

    # Both followers gone, the web process stops at once: no closed follower's channel
    # receive goes on (jobs.live.layer), which uvicorn would wait for up to its 10 s grace.
    stopping = time.monotonic()
    web_server.process.send_signal(signal.SIGTERM)
    web_server.process.wait(15)
    assert time.monotonic() - stopping < 5, "the web process waited for a closed follower"

    # uvicorn logs each WebSocket's path and query, even with its access log off: the
    # token in it is blanked (apikit.redact).
    log = Path(web_server.process.log_path).read_text()
    assert '/?token=[redacted]" [accepted]' in log and token not in log, log[-2000:]


def test_channel_layer_down_the_job_still_completes_and_a_reconnect_gets_the_truth(spawn, web, alice):
    token = Token.objects.create(user=alice).key
    # The worker's channel layer points at a port nobody listens on: every relay fails.
    worker = spawn("rqworker", *QUEUES, CHANNEL_LAYER_URL="redis://127.0.0.1:1/0", LOG_LEVEL="WARNING")
    job = submit("diagnostics.sleep", {"seconds": 1, "steps": 10}, owner=alice).job
    url = f"{web}/ws/jobs/{job.id}/?token={token}"

    async def snapshot_now() -> tuple[list[dict], int | None]:
        messages: list[dict] = []
        async with websockets.connect(url) as ws:
            messages.append(json.loads(await ws.recv()))
            if messages[0]["status"] in ("complete", "failed"):
                return messages, await receive_until_closed(ws, messages, timeout=5)
        return messages, None

    while_running, _ = asyncio.run(snapshot_now())
    assert while_running[0]["type"] == "snapshot"
    wait_for(lambda: Job.objects.get(pk=job.id).status == Status.COMPLETE, timeout=30, what="completion")
    after, code = asyncio.run(snapshot_now())
    assert [m["type"] for m in after] == ["snapshot"] and code == 1000
    assert (after[0]["status"], after[0]["progress"]) == ("complete", 100)
    assert after[0]["seq"] == Job.objects.get(pk=job.id).seq
    log = Path(worker.log_path).read_text()
    assert "channel layer unreachable" in log
    assert log.count("channel layer unreachable") <= 3, "logged once per retry pause, not per message"
