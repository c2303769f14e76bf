"""Live progress under load: many WebSocket clients following running jobs.

    DATABASE_URL=postgresql://… python bench/ws.py [--clients 500] [--jobs 20] [--workers 2]

Starts its own Redis, the web tier (uvicorn) serving config.asgi and a worker pool. Submits ``--jobs``
``diagnostics.sleep`` jobs (20 steps over 2 s each), connects ``--clients`` WebSocket
clients spread evenly over them (token auth), waits for every snapshot, then starts the
workers. Each client reads until the server closes after the job's final message.

Prints the latency from ``ctx.progress`` (the message's ``timestamp``, taken when the
handler reported) to the client's receipt, p50 / p99, and messages delivered per second.
Goal: p50 < 20 ms, p99 < 100 ms. Then the order each client saw: gaps (an event whose
``seq`` jumps past one it never got: goal zero), catch-up snapshots (the server's answer
to a lost message: a snapshot at once) and events out of order; and the messages dropped
on the way, per layer (``jobs.core.dropped``, summed over every process of the run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import ROOT, environment, free_port, machine_pace, start_web  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--arrivals", type=int, default=20, help="handshakes in flight at once")
    parser.add_argument("--timeline", action="store_true", help="latency p50 / max per second of the run")
    args = parser.parse_args()
    with environment(
        LOG_LEVEL="WARNING", DEBUG="false", SECRET_KEY="bench-only-secret-" + "x" * 40, ALLOWED_HOSTS="127.0.0.1"
    ):
        run(args)


class Tally:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.received: list[float] = []  # when each latency was measured
        self.messages = 0
        self.closed_normally = 0
        self.gaps = 0  # an event after a hole: the client missed one, and no snapshot made it good
        self.catch_ups = 0  # a snapshot past a hole: the server's repair of a lost message
        self.disorder = 0  # an event older than one already seen
        self.first = self.last = 0.0


async def follow(url: str, tally: Tally, ready: asyncio.Event, waiting: list[int], handshakes) -> None:
    import websockets

    async with handshakes:  # clients arrive over time, not in one instant (see --arrivals)
        ws = await websockets.connect(url, max_queue=None, open_timeout=60)
        snapshot = json.loads(await ws.recv())
    async with ws:
        last_seq = snapshot["seq"]
        waiting[0] -= 1
        if waiting[0] == 0:
            ready.set()
        try:
            async for raw in ws:
                received = time.time()
                msg = json.loads(raw)
                tally.messages += 1
                tally.first = tally.first or received
                tally.last = received
                # (a re-sent snapshot with a new ETA keeps its seq)
                if msg["seq"] > last_seq + 1:
                    tally.catch_ups += msg["type"] == "snapshot"
                    tally.gaps += msg["type"] != "snapshot"
                tally.disorder += msg["seq"] < last_seq
                last_seq = max(last_seq, msg["seq"])
                if msg["type"] == "progress":
                    tally.latencies.append(received - datetime.fromisoformat(msg["timestamp"]).timestamp())
                    tally.received.append(received)
        except websockets.ConnectionClosed:
            pass
        if ws.close_code == 1000:
            tally.closed_normally += 1


async def load(urls: list[str], start_workers, arrivals: int) -> Tally:
    tally = Tally()
    ready = asyncio.Event()
    waiting = [len(urls)]
    handshakes = asyncio.Semaphore(arrivals)
    started = time.perf_counter()
    clients = [asyncio.ensure_future(follow(url, tally, ready, waiting, handshakes)) for url in urls]
    await asyncio.wait_for(ready.wait(), 300)
    took = time.perf_counter() - started
    print(f"{len(urls)} clients connected and got their snapshots in {took:.1f} s ({len(urls) / took:.0f}/s)")
    start_workers()
    await asyncio.wait_for(asyncio.gather(*clients), 600)
    return tally


def run(args) -> None:
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from rest_framework.authtoken.models import Token

    from jobs.core import dropped
    from jobs.core.submit import JobSpec, submit_many

    call_command("migrate", verbosity=0)
    user, _ = get_user_model().objects.get_or_create(username="bench-ws")  # a database used before
    token = Token.objects.get_or_create(user=user)[0].key
    dropped.reset()
    specs = [JobSpec("diagnostics.sleep", {"seconds": 2, "steps": 20}) for _ in range(args.jobs)]
    jobs = submit_many(specs, owner=user)
    port = free_port()
    server = start_web(port)
    urls = [f"ws://127.0.0.1:{port}/ws/jobs/{jobs[i % len(jobs)].job.id}/?token={token}" for i in range(args.clients)]
    workers: list[subprocess.Popen] = []

    def start_workers() -> None:
        command = [sys.executable, "manage.py", "rqworker-pool", "--num-workers", str(args.workers)]
        workers.append(subprocess.Popen([*command, "immediate", "normal", "low"], cwd=ROOT, env=os.environ.copy()))

    try:
        tally = asyncio.run(load(urls, start_workers, args.arrivals))
        time.sleep(2 * dropped._FLUSH_EVERY + 0.5)  # each process adds its drop counts within a second
    finally:
        for process in [*workers, server]:
            process.terminate()
            process.wait(30)
    report(args, tally, dropped.totals())


def report(args, tally: Tally, drops: dict[str, int]) -> None:
    ordered = sorted(tally.latencies)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[int(0.99 * (len(ordered) - 1))] * 1000
    span = max(tally.last - tally.first, 1e-9)
    print(f"clients {args.clients}, jobs {args.jobs}, workers {args.workers}")
    print(f"machine pace: {machine_pace():.0f} ms for bench.harness's reference loop (lower is faster)")
    worst = ordered[-1] * 1000
    print(f"progress latency (ctx.progress → client): p50 {p50:.1f} ms  p99 {p99:.1f} ms  max {worst:.1f} ms")
    print(f"messages delivered: {tally.messages} in {span:.1f} s = {tally.messages / span:.0f}/s")
    print(f"closed normally (1000) after the final message: {tally.closed_normally}/{args.clients}")
    print(f"seq gaps seen by clients: {tally.gaps} (goal 0); catch-up snapshots: {tally.catch_ups}; "
          f"events out of order: {tally.disorder}")  # fmt: skip
    if args.timeline:
        timeline(tally)
    print("messages dropped, per layer:")
    from jobs.core import dropped

    for layer, n in drops.items():
        print(f"  {layer:13} {n:6}  {dropped.LAYERS[layer]}")


def timeline(tally: Tally) -> None:
    """Where the tail is: latency p50 / max per second since the first progress message."""
    seconds: dict[int, list[float]] = {}
    for at, latency in zip(tally.received, tally.latencies, strict=True):
        seconds.setdefault(int(at - tally.first), []).append(latency * 1000)
    for second, latencies in sorted(seconds.items()):
        ordered = sorted(latencies)
        p50, worst = ordered[len(ordered) // 2], ordered[-1]
        print(f"  {second:3d} s: {len(ordered):4d} messages, p50 {p50:6.1f} ms, max {worst:6.1f} ms")


if __name__ == "__main__":
    main()
