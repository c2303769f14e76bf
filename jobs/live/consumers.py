"""WebSocket edge: follow one job, or the operators' stream of all of them.

Thin: who may follow what, then snapshot → events → close. Messages are built by
``jobs.core.relay`` (the code that sends them from workers and the API) and
``jobs.live.snapshots``. A follower joins the group *before* reading the snapshot and drops
any event whose ``seq`` the snapshot already covers, so nothing falls between the two.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import time
import uuid
import zlib
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from jobs.core import access, dropped, registry, relay
from jobs.core.models import PENDING_STATUSES, Batch, Job, Status
from jobs.insight import revisions
from jobs.live import snapshots

logger = logging.getLogger("jobs.live.consumers")

# Reads for many connections at once run side by side, not one after another on the
# single thread Django's sync code shares.
read = functools.partial(database_sync_to_async, thread_sensitive=False)

# Close codes: 4401 not logged in, 4403 not yours, 4404 no such object.
NOT_LOGGED_IN, FORBIDDEN, NOT_FOUND = 4401, 4403, 4404
# 4400: /ws/ops/ filtered by a status or job type that does not exist.
BAD_FILTER = 4400
# 1013 "try again later": the snapshot was sent, but live updates are unavailable.
LIVE_UNAVAILABLE = 1013


class Refused(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


def parse_uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise Refused(NOT_FOUND) from None


def may_see(user, owner_id, model: str = access.JOBS) -> bool:
    return access.may_see(user, owner_id, model)


class _Socket(AsyncJsonWebsocketConsumer):
    group: str | None = None

    async def receive(self, text_data=None, bytes_data=None, **kwargs) -> None:
        """Followers only listen: what a client sends is not read — nor decoded, so no
        frame (not JSON, or nested past Python's stack) can end the connection with an
        error, as channels' JSON consumer would."""

    async def refuse(self, code: int) -> None:
        # Accept first: a close before accepting is an HTTP 403 and the code is lost.
        await self.accept()
        await self.close(code=code)

    async def join(self, group: str) -> bool:
        """Join the group; False when the channel layer is down (a snapshot still goes)."""
        self.group = group
        try:
            await self.channel_layer.group_add(group, self.channel_name)
            return True
        except Exception as error:
            logger.warning("channel layer unreachable", extra={"group": group, "error": str(error)})
            return False

    async def disconnect(self, code) -> None:
        for group in (self.group, *getattr(self, "extra_groups", ())):
            if group:
                # If the layer is gone, so is the group entry's use; it expires on its own.
                with contextlib.suppress(Exception):
                    await self.channel_layer.group_discard(group, self.channel_name)


class FollowConsumer(_Socket):
    """Snapshot first, then every event of the followed job in ``seq`` order; closes
    normally (1000) after a final state. Subclasses say what is followed."""

    def locate(self, user) -> tuple[str, uuid.UUID | None]:
        """(group, job id) for the connecting user, or raise Refused. Runs in a thread."""
        raise NotImplementedError

    def snapshot(self) -> dict:
        """The current state of what is followed. Runs in a thread."""
        return snapshots.job_snapshot(self.job_id) or snapshots.gone_snapshot(self.job_id)

    async def connect(self) -> None:
        self.last_seq: dict[str, int] = {}
        self.finish_estimate: dict[str, str | None] = {}
        self.shown: dict[str, Any] = {}  # the last snapshot or status sent: its estimate and range
        self.refresher: asyncio.Task | None = None
        self.reviser: asyncio.Task | None = None
        self.arrived: collections.Counter[str] = collections.Counter()
        self.extra_groups: list[str] = []
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            return await self.refuse(NOT_LOGGED_IN)
        try:
            group, self.job_id = await read(self.locate)(user)
        except Refused as refused:
            return await self.refuse(refused.code)
        await self.accept()
        live = await self.join(group)
        if await self.deliver(await read(self.snapshot)()):
            return
        if not live:
            return await self.close(code=LIVE_UNAVAILABLE)
        if self.shown.get("status") in PENDING_STATUSES:
            # Told when work joins the line: more urgent work may move this one's start.
            with contextlib.suppress(Exception):
                await self.channel_layer.group_add(relay.LINE_GROUP, self.channel_name)
                self.extra_groups.append(relay.LINE_GROUP)
        self.refresher = asyncio.ensure_future(self.refresh_estimates())

    async def disconnect(self, code) -> None:
        for task in (getattr(self, "refresher", None), getattr(self, "reviser", None)):  # unset if connect never ran
            if task:
                task.cancel()
        await super().disconnect(code)

    async def job_event(self, envelope: dict) -> None:
        msg = envelope["event"]
        if msg.get("type") == "line":
            return self.line_moved(msg)
        if not self.is_new(msg):
            return
        missed = self.missed(msg)
        if missed:
            # Lost on the way (a full queue, a relay that could not send): the state
            # now, at once, rather than a follower left behind until the next re-read.
            dropped.count("follower_gap", missed)
            try:
                if await self.deliver(await self.shared_snapshot(("gap", msg["seq"]))) or not self.is_new(msg):
                    return
            except Exception:  # the database hiccuped: the event goes as it is, the re-read follows
                logger.warning("snapshot after a gap failed", exc_info=True)
        await self.deliver(await self.with_estimate(msg))

    def missed(self, msg: dict) -> int:
        """How many events of the followed job fell between the last one sent and this."""
        last = self.last_seq.get(msg["job_id"])
        return msg["seq"] - last - 1 if last is not None and msg["type"] != "snapshot" else 0

    async def shared_snapshot(self, occasion: tuple) -> dict:
        """A snapshot read once for every follower of the same thing in this process that
        needs it on the same occasion (a tick of the re-read, a gap at one seq)."""
        fresh = await shared(("snapshot", type(self), self.group, *occasion), read(self.snapshot))
        if fresh.get("job_id") and fresh.get("status") != "deleted":
            self.job_id = uuid.UUID(fresh["job_id"])  # (a subject's current job: whoever read it)
        return fresh

    def line_moved(self, msg: dict) -> None:
        """Work joined the line. Arrivals a moment apart (a burst, many submitters) are
        gathered, then the estimate is read once and, if it left the range shown, sent
        with the reason."""
        if not revisions.arrived_ahead(msg.get("arrived") or {}, self.shown.get("priority")):
            return  # it all joins behind this job
        self.arrived.update(msg.get("arrived") or {})
        if self.reviser is None or self.reviser.done():
            self.reviser = asyncio.ensure_future(self.revise_after_arrivals())

    async def revise_after_arrivals(self) -> None:
        await asyncio.sleep(settings.WS_ETA_SETTLE_SECONDS)
        reason = revisions.arrived_ahead(dict(self.arrived), self.shown.get("priority"))
        self.arrived.clear()
        await self.send_revision(reason)

    async def send_revision(self, reason: str = "") -> bool:
        """Read the state; send it when the estimate left the range shown (with the
        revision: from, to, why). True when that was final (closed)."""
        try:
            fresh = await read(self.snapshot)()
        except Exception:  # the database hiccuped: the periodic re-read tries again
            logger.warning("estimate revision failed", exc_info=True)
            return False
        revision = await self.revision(fresh, reason)
        return await self.deliver({**fresh, "eta_revision": revision}) if revision else False

    async def revision(self, fresh: dict, reason: str = "") -> dict | None:
        """The revision ``fresh`` makes of the estimate shown (noted on the job's
        timeline), or None when it stayed in its range (no thread, no query then)."""
        if not revisions.moved(self.shown, fresh):
            return None
        # Noted once: the followers of the job in this process that were shown the same
        # estimate share one note (the others' were a row lock each, queued on one row).
        shown = self.shown.get("estimated_start_range"), self.shown.get("estimated_start_at")
        key = ("revision", self.job_id, *map(str, shown), fresh.get("estimated_start_at"), reason)
        try:
            return await shared(key, functools.partial(read(revisions.revise), self.job_id, self.shown, fresh, reason))
        except Exception:
            logger.warning("estimate revision failed", exc_info=True)
            return None

    def is_new(self, msg: dict) -> bool:
        """Events after the last one sent; snapshots not older than it (a re-sent
        snapshot keeps the seq of the event it reflects)."""
        last = self.last_seq.get(msg["job_id"], -1)
        if msg["type"] == "snapshot":
            return msg["seq"] >= last or msg.get("status") == "deleted"  # a deleted job has no seq left
        return msg["seq"] > last

    async def deliver(self, msg: dict) -> bool:
        """Send a message (if not already covered); True when it was final (closed)."""
        if msg.get("job_id"):
            if not self.is_new(msg):
                return False
            self.last_seq[msg["job_id"]] = msg["seq"]
            self.finish_estimate[msg["job_id"]] = msg.get("estimated_finish_at")
            if msg["type"] != "progress":
                self.shown = msg
        await self.send_json(msg)
        if relay.is_terminal(msg):
            await self.close(code=1000)
            return True
        return False

    async def with_estimate(self, msg: dict) -> dict:
        """Status changes of unfinished jobs get a fresh ETA; progress keeps the last one."""
        if msg["type"] == "progress":
            return {**msg, "estimated_finish_at": self.finish_estimate.get(msg["job_id"])}
        if relay.is_terminal(msg):
            return msg
        try:
            return {**msg, **await shared_estimate(msg["job_id"], msg["seq"])}
        except Exception:  # an ETA is a nicety: the event itself must get through
            logger.warning("estimate failed", extra={"job_id": msg["job_id"]}, exc_info=True)
            return msg

    async def refresh_estimates(self) -> None:
        """Every few seconds, re-read the state: a waiting job's ETA moves as the line
        ahead moves, and a last event lost on the way (the layer hiccuped, a work-horse
        died mid-send) must not leave the client waiting for a close that never comes. A
        changed ETA, status or seq is sent as a new snapshot.

        The followers of one thing in a process re-read it together, once (a tick of
        its own, so the process's re-reads are spread over the period, not bunched where
        its clients connected); and a state ahead of the last event sent gives the
        events on their way a moment to arrive before a snapshot overtakes them."""
        period = settings.WS_ETA_REFRESH_SECONDS
        offset = zlib.crc32(str(self.group).encode()) % 1000 / 1000 * period
        tick = (time.time() - offset) // period + 1  # the first a whole period after connecting
        while True:
            tick += 1
            await asyncio.sleep(max(0.0, tick * period + offset - time.time()))
            try:
                fresh = await self.shared_snapshot(("tick", tick))
            except Exception:  # the database hiccuped: try again next round
                logger.warning("snapshot refresh failed", exc_info=True)
                continue
            if await self.refreshed(fresh):
                return

    async def refreshed(self, fresh: dict) -> bool:
        """Send what a re-read found new; True when that was final (closed)."""
        job_id = fresh.get("job_id")
        if not job_id:
            return False
        last = self.last_seq.get(job_id)
        if fresh["status"] == "deleted":
            return await self.deliver(fresh)
        if last is None or fresh["seq"] > last:
            # Ahead of the last event sent: events on their way, or lost ones.
            if last is not None:
                if await self.caught_up(fresh):
                    return False
                dropped.count("follower_gap", fresh["seq"] - last)
            return await self.deliver(await self.shared_snapshot(("late", fresh["seq"])))
        if fresh["seq"] == last and fresh.get("estimated_finish_at") != self.finish_estimate.get(job_id):
            # The same state, a new estimate: out of the range shown, it is a revision.
            revision = await self.revision(fresh)
            return await self.deliver({**fresh, "eta_revision": revision} if revision else fresh)
        return False

    async def caught_up(self, fresh: dict) -> bool:
        """Whether the events up to ``fresh`` arrive within ``CATCH_UP_SECONDS``."""
        deadline = time.monotonic() + CATCH_UP_SECONDS
        while self.last_seq.get(fresh["job_id"], -1) < fresh["seq"] and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return self.last_seq.get(fresh["job_id"], -1) >= fresh["seq"]


# A re-read that finds the job ahead of the last event sent waits this long (seconds)
# for the events on their way before it sends a snapshot instead.
CATCH_UP_SECONDS = 0.5

_in_flight: dict[tuple, asyncio.Future] = {}
_KEPT = 2.0  # seconds a shared read's answer is reused by the process's other followers


async def shared(key: tuple, reader) -> Any:
    """``await reader()``, once per ``key`` per event loop however many followers ask
    within ``_KEPT`` seconds (a job's events reach all its followers at the same moment)."""
    loop = asyncio.get_running_loop()
    key = (id(loop), *key)
    if key not in _in_flight:
        _in_flight[key] = asyncio.ensure_future(reader())
        loop.call_later(_KEPT, _in_flight.pop, key, None)
    return await asyncio.shield(_in_flight[key])


async def shared_estimate(job_id: str, seq: int) -> dict:
    """The ETA for one event of a job, computed once per process however many clients
    follow the job (a status change reaches them all at the same moment)."""
    return await shared(("estimate", job_id, seq), functools.partial(read(snapshots.estimate_fields), job_id))


class JobConsumer(FollowConsumer):
    """``/ws/jobs/<id>/``: one job, for its owner and staff."""

    def locate(self, user) -> tuple[str, uuid.UUID]:
        job_id = parse_uuid(self.scope["url_route"]["kwargs"]["job_id"])
        owner = Job.objects.filter(pk=job_id).values_list("owner_id", flat=True)
        if not owner.exists():
            raise Refused(NOT_FOUND)
        if not may_see(user, owner.first()):
            raise Refused(FORBIDDEN)
        return relay.job_group(job_id), job_id


# A batch's followers re-read its aggregate at most this often (seconds) however fast
# its jobs move: one grouped query per follower per interval.
BATCH_UPDATE_INTERVAL = 0.25


class BatchConsumer(_Socket):
    """``/ws/batches/<id>/``: a batch's aggregate, for its owner and staff. A snapshot,
    then ``progress`` messages (counts, progress, ETA) as its jobs move — re-read from
    the database, throttled to ``BATCH_UPDATE_INTERVAL`` — and ``finished`` once every
    job is final and its callbacks are submitted; then it closes (1000)."""

    async def connect(self) -> None:
        self.pending: asyncio.Task | None = None
        self.refresher: asyncio.Task | None = None
        self.last: dict | None = None
        self.closed = False
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            return await self.refuse(NOT_LOGGED_IN)
        try:
            self.batch_id = await read(self.locate)(user)
        except Refused as refused:
            return await self.refuse(refused.code)
        await self.accept()
        live = await self.join(relay.batch_group(self.batch_id))
        if await self.deliver(await read(snapshots.batch_snapshot)(self.batch_id)):
            return
        if not live:
            return await self.close(code=LIVE_UNAVAILABLE)
        self.refresher = asyncio.ensure_future(self.refresh())

    def locate(self, user) -> uuid.UUID:
        batch_id = parse_uuid(self.scope["url_route"]["kwargs"]["batch_id"])
        owner = Batch.objects.filter(pk=batch_id).values_list("owner_id", flat=True)
        if not owner.exists():
            raise Refused(NOT_FOUND)
        if not may_see(user, owner.first(), Batch._meta.label_lower):
            raise Refused(FORBIDDEN)
        return batch_id

    async def disconnect(self, code) -> None:
        for task in (getattr(self, "pending", None), getattr(self, "refresher", None)):
            if task:
                task.cancel()
        await super().disconnect(code)

    async def job_event(self, envelope: dict) -> None:
        self.soon()

    async def batch_event(self, envelope: dict) -> None:
        self.soon()

    def soon(self) -> None:
        if self.pending is None and not self.closed:
            self.pending = asyncio.ensure_future(self.update_after(BATCH_UPDATE_INTERVAL))

    async def update_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self.pending = None
        await self.deliver(await read(snapshots.batch_snapshot)(self.batch_id, "progress"))

    async def refresh(self) -> None:
        """A lost message must not leave the follower without its final one."""
        while not self.closed:
            await asyncio.sleep(settings.WS_ETA_REFRESH_SECONDS)
            try:
                if await self.deliver(await read(snapshots.batch_snapshot)(self.batch_id, "progress")):
                    return
            except Exception:  # the database hiccuped: try again next round
                logger.warning("batch refresh failed", exc_info=True)

    async def deliver(self, msg: dict | None) -> bool:
        """Send it if anything changed; True once final (closed)."""
        if self.closed:
            return True
        if msg is None:  # deleted meanwhile
            msg = {"type": "finished", "batch_id": str(self.batch_id), "state": "deleted"}
        unchanged = {k: v for k, v in msg.items() if k not in ("type", "timestamp")}
        if msg["type"] != "snapshot" and unchanged == self.last:
            return False
        self.last = unchanged
        await self.send_json(msg)
        if msg["type"] == "finished":
            self.closed = True
            await self.close(code=1000)
            return True
        return False


class OpsConsumer(_Socket):
    """``/ws/ops/``: every job's events, for staff. ``?type=a,b&status=x,y`` narrows it.
    The snapshot is the counts by status; then events pass through as they come."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            return await self.refuse(NOT_LOGGED_IN)
        if not await read(access.sees_all)(user):
            return await self.refuse(FORBIDDEN)
        query = parse_qs(self.scope.get("query_string", b"").decode("latin1"))
        self.types, self.statuses = _wanted(query.get("type")), _wanted(query.get("status"))
        if not self.statuses <= set(Status.values) or not self.types <= set(registry.all_types()):
            return await self.refuse(BAD_FILTER)  # a typo would otherwise be a silent, empty stream
        await self.accept()
        live = await self.join(relay.OPS_GROUP)
        await self.send_json(await read(snapshots.ops_snapshot)(self.types, self.statuses))
        if not live:
            await self.close(code=LIVE_UNAVAILABLE)

    async def job_event(self, envelope: dict) -> None:
        msg = envelope["event"]
        bulk = msg.get("job_id") is None  # one summary for a big submit (no job of its own)
        types = set((msg.get("details") or {}).get("job_types", ())) if bulk else {msg.get("job_type")}
        statuses = set((msg.get("details") or {}).get("statuses", ())) if bulk else {msg.get("status")}
        # A bulk's summary has no one type or status (filtered by them, it never came):
        # it goes to a filtered stream when any of its jobs may be among the filter's.
        if self.types and not types & self.types:
            return
        if self.statuses and not statuses & self.statuses:
            return
        await self.send_json(msg)


def _wanted(values: list[str] | None) -> frozenset[str]:
    return frozenset(v.strip() for value in values or () for v in value.split(",") if v.strip())


class NoRoute(_Socket):
    """Any other ``/ws/…`` path: accept, then close with 4404 (a clear code, not a 500)."""

    async def connect(self) -> None:
        await self.refuse(NOT_FOUND)
