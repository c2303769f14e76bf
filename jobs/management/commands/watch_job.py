"""``manage.py watch_job <id>``: follow a job live from a terminal.

Listens on the same channel-layer group as ``/ws/jobs/<id>/`` (no web server or token
needed on a machine that runs Jobdesk): the snapshot first, then every event, until the
job ends, with the job's log lines as they are written (read every ``LOG_POLL_SECONDS``).
Exit status 0 when it completed, 1 when it ended otherwise.
"""

from __future__ import annotations

import asyncio
import json
import uuid

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from redis.exceptions import RedisError

from jobs.core import logbook, relay
from jobs.core.models import Job
from jobs.live import snapshots

QUIET_SECONDS = 10  # without an event this long, the database is asked again
LOG_POLL_SECONDS = 1.0  # how often new log lines are read (workers write them every 0.5 s at most)


def describe_line(line: dict) -> str:
    """One log line: time, attempt, level, logger, message (or how many were dropped)."""
    if "dropped" in line:
        return f"          log #{line['attempt']}: … {line['dropped']:,} earlier lines dropped (JOB_LOG_LINES)"
    return f"{line['time'][11:19]}  log #{line['attempt']} {line['level']:<7} {line['logger']}: {line['message']}"


def describe(msg: dict) -> str:
    """One line for people: time, status, progress bar, stage, ETA or error."""
    bar = "#" * (msg["progress"] // 5)
    line = f"{msg['timestamp'][11:19]}  {msg['status']:<11} [{bar:<20}] {msg['progress']:>3}%  {msg['stage']}"
    if msg.get("estimated_finish_at"):
        line += f"  (ETA {msg['estimated_finish_at'][11:19]})"
    if msg.get("user_message"):
        line += f"\n          {msg['error_category']}: {msg['user_message']}"
        line += "".join(f"\n          - {action}" for action in msg.get("recovery_actions") or [])
    return line


class Command(BaseCommand):
    help = "Follow a job's progress live: its current state, then every event until it ends."

    def add_arguments(self, parser) -> None:
        parser.add_argument("job_id")
        parser.add_argument(
            "--json",
            dest="as_json",
            action="store_true",
            help="print the raw WebSocket messages (README: Live progress) as JSON lines",
        )

    def handle(self, *args, job_id: str, as_json: bool, **options) -> None:
        try:
            job_id = str(uuid.UUID(job_id))
        except ValueError:
            raise CommandError(f"{job_id!r} is not a job id (a UUID, as in GET /api/jobs/).") from None
        self.as_json = as_json
        if not Job.objects.filter(pk=job_id).exists():
            raise CommandError(f"No job {job_id}.")
        try:
            final = asyncio.run(self.follow(job_id))
        except (OSError, RedisError) as error:
            raise CommandError(
                f"Cannot reach the channel layer ({_layer_address()}: {error}). "
                "Run watch_job with the same channel layer settings (CHANNEL_LAYERS; here "
                "REDIS_URL / CHANNEL_LAYER_URL) as the workers."
            ) from None
        if final.get("status") != "complete":
            raise SystemExit(1)

    async def follow(self, job_id: str) -> dict:
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(relay.job_group(job_id), channel)  # before the snapshot: nothing missed
        msg = await database_sync_to_async(snapshots.job_snapshot)(job_id)
        if msg is None:
            raise CommandError(f"No job {job_id}.")
        last_seq = msg["seq"]
        self.show(msg)
        cursor: dict[int, int] = {}
        read_logs = database_sync_to_async(logbook.since)
        self.show_lines(await read_logs(job_id, cursor))
        quiet_since = asyncio.get_running_loop().time()
        while not relay.is_terminal(msg):
            try:
                event = (await asyncio.wait_for(layer.receive(channel), LOG_POLL_SECONDS))["event"]
                quiet_since = asyncio.get_running_loop().time()
            except TimeoutError:
                event = None
                if asyncio.get_running_loop().time() - quiet_since >= QUIET_SECONDS:
                    # quiet for a while: make sure no event was lost on the way
                    quiet_since = asyncio.get_running_loop().time()
                    event = await database_sync_to_async(snapshots.job_snapshot)(job_id)
                    event = event or snapshots.gone_snapshot(job_id)
            self.show_lines(await read_logs(job_id, cursor))  # before the event they led to
            if event and (event["seq"] > last_seq or (event["type"] == "snapshot" and relay.is_terminal(event))):
                msg, last_seq = event, event["seq"]
                self.show(msg)
        await layer.group_discard(relay.job_group(job_id), channel)
        return msg

    def show_lines(self, lines: list[dict]) -> None:
        for line in lines:
            self.stdout.write(json.dumps({"type": "log", **line}) if self.as_json else describe_line(line))

    def show(self, msg: dict) -> None:
        self.stdout.write(json.dumps(msg) if self.as_json else describe(msg))


def _layer_address() -> str:
    """Where the channel layer is, as the settings say: this project's CHANNEL_LAYER_URL,
    else the default layer's first host (a project of its own configures only that)."""
    url = getattr(settings, "CHANNEL_LAYER_URL", None)
    if url:
        return str(url)
    hosts = getattr(settings, "CHANNEL_LAYERS", {}).get("default", {}).get("CONFIG", {}).get("hosts") or ["?"]
    first = hosts[0]
    return str(first.get("address", "?") if isinstance(first, dict) else first)
