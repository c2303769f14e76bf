"""The relay from jobs to WebSocket clients through the Channels layer.

Every status change (``lifecycle``) and every progress write (``progress``) becomes one
message (its shape: docs/contract.md, "Live progress"), sent to the groups for the
job, for each subject its type names (what the job works on, e.g. an app's document:
``registry.subject_field``), and for the operators' stream. Sending never blocks the caller and never
fails a job: messages go into a per-process buffer that a background thread drains into
channels-redis, in batches (``_Sender``). When the channel layer is unreachable the thread
logs once, drops what it cannot send and tries again after ``_RETRY_AFTER`` seconds;
clients that reconnect get a snapshot from the database, so nothing is lost for them.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import heapq
import itertools
import json
import logging
import os
import re
import select
import threading
import time
from datetime import datetime
from typing import Any

from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

from jobs.core import dropped, registry
from jobs.core.errors import SubmitError
from jobs.core.models import ERRORED_STATUSES, FINAL_STATUSES, Job, Status

logger = logging.getLogger("jobs.core.relay")

OPS_GROUP = "jobdesk.ops"
# Followers of waiting jobs: told when work joins the line, so an estimate a burst of more
# urgent work has moved is revised at once (jobs.live's followers, jobs.insight.revisions).
LINE_GROUP = "jobdesk.line"
# The arrivals of this long are one "line" message per process (followers gather them for
# WS_ETA_SETTLE_SECONDS anyway): a send per submit cost a submitting web process more
# than a millisecond of its CPU.
LINE_INTERVAL = 0.1
EVENT = "job.event"  # the Channels handler name on consumers (``job_event``)
_BUFFER = 10_000  # messages held per process while the layer is slow; oldest dropped first
_SEND_TIMEOUT = 2.0  # seconds for one batch's sends before the layer is judged down
_BATCH = 100  # messages sent at once, at most (their groups' members read in one round trip)
# Seconds a message waits for others to go in the same send: a worker's job sends two or
# three, and waking the relay's thread and reading the groups' members for each cost a
# worker about as much as its whole bookkeeping besides. A drain (a work-horse's exit)
# and a handover (what a horse's messages must follow) send at once.
GATHER_SECONDS = 0.005
# Seconds at least from the start of one send to the next, in one process: a worker
# running a few hundred light jobs a second sent a batch for nearly every job (one job's
# two or three messages, then the next's), and those sends — their round trip, their
# thread's turns at the interpreter — cost it about 6 % of its throughput. Paced, a
# batch carries ten jobs' messages. A message more than PACE_SECONDS - GATHER_SECONDS
# after the last send still goes after GATHER_SECONDS; what is due now (at_once, a
# handover, a drain) or a full batch goes now. A follower's event waits 25 ms at most.
PACE_SECONDS = 0.025
_RETRY_AFTER = 5.0  # seconds to drop messages after a failure before trying again
_RESULT_SUMMARY_CHARS = 1000
_SAFE_NAME = re.compile(r"[A-Za-z0-9._-]{1,60}")  # what a Channels group name may hold
# When the layer last failed, per process and inherited by a forked work-horse, so each
# horse does not wait out a dead layer again for its first message.
_down_until = 0.0
# Seconds a work-horse's relay waits, at most, for its parent's earlier messages to go
# before it sends its own (``handover``): a channel layer that is down is skipped at once.
HANDOVER_WAIT = 0.2
# In a work-horse: the read end of its parent's handover (None: nothing to wait for).
_parent_handover: int | None = None


def job_group(job_id) -> str:
    return f"jobdesk.job.{job_id}"


def batch_group(batch_id) -> str:
    """Followers of a batch (``/ws/batches/<id>/``): its jobs' events and its own."""
    return f"jobdesk.batch.{batch_id}"


BATCH_EVENT = "batch.event"  # "re-read this batch": the consumers' ``batch_event``
# A batch's followers re-read its aggregate from the database, so its group gets a nudge,
# not each of its jobs' messages: at most one per batch per process per this many
# seconds, however fast its jobs move (a send per job event cost a worker ~1 ms a job).
BATCH_NUDGE_INTERVAL = 0.25


def batch_changed(batch_id) -> None:
    """Tell a batch's followers to re-read it now (its callbacks were just submitted)."""
    try:
        _sender().put((batch_group(batch_id),), {"batch_id": str(batch_id)}, kind=BATCH_EVENT)
    except Exception:
        logger.exception("relay unavailable", extra={"batch_id": str(batch_id)})


def subject_group(field: str, value) -> str:
    """The group of everyone following a subject (e.g. ``document_id`` = <uuid>)."""
    return f"jobdesk.{field}.{value}"


# --- Messages ---------------------------------------------------------------------------

# A message about no one job (bulk announcements): every key, all empty. Subject fields
# that apps register are added (as None) by ``blank()``.
BLANK: dict[str, Any] = {
    "type": "status", "job_id": None, "batch_id": None, "job_type": None, "seq": 0, "timestamp": None,
    "status": None, "progress": 0, "stage": "", "details": {}, "result_summary": None, "error_category": None,
    "user_message": None, "recovery_actions": [], "estimated_start_at": None, "estimated_finish_at": None,
    "estimated_start_range": None, "estimated_finish_range": None, "eta_paused": False, "eta_cold": False,
    "priority": None, "eta_revision": None,
}  # fmt: skip
ETA_KEYS = ("estimated_start_at", "estimated_finish_at", "estimated_start_range", "estimated_finish_range",
            "eta_paused", "eta_cold")  # fmt: skip


def kind_of(status: str) -> str:
    if status == Status.COMPLETE:
        return "completed"
    if status in ERRORED_STATUSES or status == Status.RETRYING:
        return "error"
    return "status"


def is_terminal(message: dict) -> bool:
    return message.get("status") in FINAL_STATUSES or message.get("status") == "deleted"


def blank() -> dict[str, Any]:
    return {**BLANK, **dict.fromkeys(registry.subject_fields())}


def subjects_of(job: Job) -> dict[str, str | None]:
    """Every registered subject field, with the ones the job's type names filled in."""
    found: dict[str, str | None] = dict.fromkeys(registry.subject_fields())
    try:
        job_type = registry.get(job.type)
    except SubmitError:
        return found
    if job_type.subjects is not None:
        named = job_type.subjects(job.payload or {})
        found.update({field: str(value) for field, value in named.items() if value})
    return found


def message(job: Job, kind: str | None = None, *, at: datetime | None = None, estimate=None) -> dict[str, Any]:
    """The message for the job's current state (``kind`` defaults from its status)."""
    return {
        "type": kind or kind_of(job.status),
        "job_id": str(job.id),
        "batch_id": str(job.batch_id) if job.batch_id else None,
        **subjects_of(job),
        "job_type": job.type,
        "priority": job.priority,
        "seq": job.seq,
        "timestamp": (at or timezone.now()).isoformat(),
        "status": job.status,
        "progress": job.progress,
        "stage": job.stage,
        "details": job.progress_details or {},
        "result_summary": _summary(job.result) if job.status == Status.COMPLETE else None,
        "error_category": job.error_category or None,
        "user_message": job.error_message or None,
        "recovery_actions": list(job.recovery_actions or []),
        **eta_fields(estimate),
        "eta_revision": None,  # set on a snapshot that revises the estimate: {"from", "to", "reason"}
    }


def eta_fields(estimate) -> dict[str, Any]:
    """An estimate (jobs.insight.estimates.Estimate, or None) as a live message's fields:
    the times, their 80 % ranges, whether an operator paused it (no time then) and whether
    it leans on a guess for a type without history."""
    if estimate is None:
        return {key: BLANK[key] for key in ETA_KEYS}
    return {
        "estimated_start_at": iso(estimate.start_at),
        "estimated_finish_at": iso(estimate.finish_at),
        "estimated_start_range": iso_range(estimate.start_range),
        "estimated_finish_range": iso_range(estimate.finish_range),
        "eta_paused": bool(estimate.paused),
        "eta_cold": bool(estimate.cold),
    }


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def iso_range(value: tuple[datetime, datetime] | None) -> list[str] | None:
    return [value[0].isoformat(), value[1].isoformat()] if value else None


def _summary(result: Any) -> Any:
    """The result itself when small; otherwise the start of its JSON text."""
    if result is None:
        return None
    text = json.dumps(result, cls=DjangoJSONEncoder)
    return result if len(text) <= _RESULT_SUMMARY_CHARS else text[:_RESULT_SUMMARY_CHARS] + "…"


# --- Sending ----------------------------------------------------------------------------


def publish(job: Job, kind: str | None = None, *, at: datetime | None = None) -> None:
    """Relay the job's current state; returns at once."""
    send(message(job, kind, at=at))


_BULK = 50  # a submission of more jobs than this is announced as one message


def publish_new(jobs: list[Job]) -> None:
    """Announce submitted jobs on the operators' stream (no one follows them yet).

    A bulk submission of thousands is one ``status`` message with ``job_id`` null and
    the counts in ``details`` (``submitted``, ``statuses``, ``job_types``): a message per
    job would cost the submitter more than the insert, and no operator reads them one
    by one.
    """
    try:
        _announce(jobs)
    except Exception:  # the jobs are in; telling the stream is not worth a failed submit
        logger.exception("relay unavailable", extra={"submitted": len(jobs)})


def _announce(jobs: list[Job]) -> None:
    queued = collections.Counter(job.priority for job in jobs if job.status == Status.QUEUED)
    if queued:
        _sender().arrived(queued)
    if len(jobs) <= _BULK:
        for job in jobs:
            _sender().put((OPS_GROUP,), message(job))
        return
    details = {
        "submitted": len(jobs),
        "statuses": dict(collections.Counter(job.status for job in jobs)),
        "job_types": dict(collections.Counter(job.type for job in jobs)),
    }
    _sender().put(
        (OPS_GROUP,), {**blank(), "type": "status", "timestamp": timezone.now().isoformat(), "details": details}
    )


def send(msg: dict, *, at_once: bool = False) -> None:
    """Queue a message for its groups. Never raises: a job's move has already happened,
    and telling clients about it must not turn into the move's error. ``at_once``: no
    gathering (the job is about to be queued: another process may claim it and relay
    "active" within milliseconds)."""
    groups = [job_group(msg["job_id"]), OPS_GROUP]
    for field in registry.subject_fields():
        value = msg.get(field)
        if value and _SAFE_NAME.fullmatch(value):
            groups.append(subject_group(field, value))
    try:
        sender = _sender()
        sender.put(tuple(groups), msg, at_once=at_once)
        if msg.get("batch_id"):
            sender.nudge(msg["batch_id"])
    except Exception:
        logger.exception("relay unavailable", extra={"job_id": msg.get("job_id")})


def handover(*, wake: bool = True) -> int | None:
    """Before forking a work-horse that may relay: the read end of a pipe that becomes
    readable once everything this process has relayed so far is sent (or dropped). The
    horse passes it to ``follow_parent``; its own messages then go after its parent's
    (a job's "active", then its progress) without the parent waiting for the send before
    the fork — that wait cost a forked job about a fifth of its time. None when nothing
    is left to send. The parent closes its copy of the read end after the fork.

    The handover makes what has gathered due now. ``wake=False`` leaves waking the
    relay's thread to the caller (``wake()``), once it has passed the read end on: the
    bookkeeper's answer to a claim then goes without the relay's thread taking the
    interpreter from it (1.0 ms instead of 1.5)."""
    sender = _own_sender()
    return None if sender is None else sender.handover(wake)


def wake() -> None:
    """Wake the relay's thread: what a handover made due goes now (``handover``)."""
    sender = _own_sender()
    if sender is not None:
        sender.wake()


def follow_parent(read_end: int | None) -> None:
    """In a work-horse: its relay sends nothing before its parent's handover (above) is
    done, or HANDOVER_WAIT seconds passed."""
    global _parent_handover
    _parent_handover = read_end


def _wait_for_parent() -> None:
    global _parent_handover
    read_end, _parent_handover = _parent_handover, None
    if read_end is None:
        return
    try:
        waiting = select.poll()  # not select(): a descriptor may be numbered past 1023
        waiting.register(read_end, select.POLLIN)
        waiting.poll(HANDOVER_WAIT * 1000)
    except OSError:  # never keep the horse's messages back for it: they go now
        logger.exception("waiting for the parent's relay failed")
    finally:
        os.close(read_end)


def drain(timeout: float = 2.0) -> bool:
    """Wait until this process's buffer is sent (a work-horse calls it before exiting);
    at once while the layer is known to be down (its messages are dropped anyway)."""
    sender = _own_sender()
    if sender is None:
        return True
    sent = True  # at once while the layer is down: its messages are dropped (and counted) anyway
    if time.monotonic() >= _down_until:
        sender.flush_nudges()  # a work-horse about to exit sends its batches' nudges now
        sent = sender.wait_idle(timeout)
    dropped.flush()  # drops counted here: the timer that would add them dies with a work-horse
    return sent


class _Sender:
    """One per process: a daemon thread that sends what is buffered, in order, in
    batches. Created lazily and again after fork(), since neither threads nor sockets
    survive it.

    Jobdesk's layer (jobs.live.layer) sends a batch from this thread as blocking Redis
    calls, one pipeline for the batch's groups: an event loop here cost a worker about
    a millisecond of CPU per job, and its wake-ups held the job's own thread back. Any
    other Channels layer is driven through an event loop of this thread's own."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.buffer: collections.deque = collections.deque(maxlen=_BUFFER)
        self.lock = threading.Condition()
        self.busy = False
        self.oldest = 0.0  # when the oldest buffered message came (monotonic)
        self.sent_at = float("-inf")  # when the last batch went (monotonic): the pace
        self.draining = 0  # callers waiting for the buffer to go: no gathering
        self.nudging: set[str] = set()  # batches with a nudge due (BATCH_NUDGE_INTERVAL)
        self.arriving: collections.Counter[str] = collections.Counter()  # by priority, for LINE_GROUP
        self.timers: list[tuple[float, int, Any, tuple]] = []  # (due, order, function, args), a heap
        self.timer_order = itertools.count()
        self.queued = 0  # messages put in this process, ever
        self.gone = 0  # of them, sent or dropped
        self.handovers: list[tuple[int, int]] = []  # (messages to be gone, a pipe's write end)
        self.loop: asyncio.AbstractEventLoop | None = None  # for a layer with no blocking send
        # Built here, in the caller's thread: importing the backend inside the relay
        # thread could leave a half-imported module to a work-horse forked meanwhile.
        # (No connection yet: it is opened by the first send.)
        self.layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
        threading.Thread(target=self._run, name="jobdesk-relay", daemon=True).start()

    def put(self, groups: tuple[str, ...], msg: dict, kind: str = EVENT, *, at_once: bool = False) -> None:
        with self.lock:
            if len(self.buffer) == self.buffer.maxlen:
                dropped.count("relay_buffer")  # the oldest goes: its followers see the gap
                self.gone += 1
            self.queued += 1
            if not self.buffer:
                self.oldest = time.monotonic()
            if at_once:
                self.oldest = float("-inf")  # due now, with what is gathering
            self.buffer.append((groups, msg, kind))
            # The thread sleeps until the first message is due (GATHER_SECONDS) once it
            # knows of one: wake it for the first, for one due now, and for a full batch.
            if at_once or len(self.buffer) in (1, _BATCH):
                self.lock.notify_all()

    def later(self, delay: float, function, *args) -> None:
        """Call ``function(*args)`` from the relay's thread in ``delay`` seconds."""
        with self.lock:
            heapq.heappush(self.timers, (time.monotonic() + delay, next(self.timer_order), function, args))
            self.lock.notify_all()

    def nudge(self, batch_id: str) -> None:
        """A batch's followers are told to re-read it within BATCH_NUDGE_INTERVAL; the
        nudges of one batch in that time are one."""
        with self.lock:
            if batch_id in self.nudging:
                return
            self.nudging.add(batch_id)
        self.later(BATCH_NUDGE_INTERVAL, self._nudge_due, batch_id)

    def _nudge_due(self, batch_id: str) -> None:
        with self.lock:
            if batch_id not in self.nudging:
                return  # flushed already
            self.nudging.discard(batch_id)
        self.put((batch_group(batch_id),), {"batch_id": batch_id}, kind=BATCH_EVENT)

    def flush_nudges(self) -> None:
        with self.lock:
            due, self.nudging = self.nudging, set()
        for batch_id in due:
            self.put((batch_group(batch_id),), {"batch_id": batch_id}, kind=BATCH_EVENT)
        self._line_due()

    def arrived(self, queued: collections.Counter[str]) -> None:
        """Jobs joined the line: told to its followers within LINE_INTERVAL, summed."""
        with self.lock:
            first = not self.arriving
            self.arriving.update(queued)
        if first:
            self.later(LINE_INTERVAL, self._line_due)

    def _line_due(self) -> None:
        with self.lock:
            arrived, self.arriving = self.arriving, collections.Counter()
        if arrived:
            self.put((LINE_GROUP,), {"type": "line", "arrived": dict(arrived)})

    def handover(self, wake: bool = True) -> int | None:
        with self.lock:
            if self.gone == self.queued:
                return None
            try:
                read_end, write_end = os.pipe()
            except OSError:  # out of descriptors: the horse does not wait (its order is not kept)
                logger.exception("no pipe for a relay handover")
                return None
            self.handovers.append((self.queued, write_end))
            self.oldest = float("-inf")  # a work-horse will wait for these: no gathering
            if wake:
                self.lock.notify_all()
        return read_end

    def wake(self) -> None:
        with self.lock:
            self.lock.notify_all()

    def _hand_over(self) -> None:
        """Open the handovers whose messages are all gone (the lock held)."""
        while self.handovers and self.handovers[0][0] <= self.gone:
            _, write_end = self.handovers.pop(0)
            with contextlib.suppress(OSError):
                os.write(write_end, b"x")
            os.close(write_end)

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.lock:
            self.draining += 1
            self.lock.notify_all()  # what is gathering goes now
            try:
                while self.buffer or self.busy:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self.lock.wait(left)
            finally:
                self.draining -= 1
        return True

    def _run(self) -> None:
        _wait_for_parent()  # a work-horse's messages go after its parent's
        while True:
            self._fire_due_timers()
            with self.lock:
                if not self.buffer:
                    self.busy = False
                    self.lock.notify_all()
                    self._sleep(until=None)
                    continue
                due = self._due()
                if due > time.monotonic() and len(self.buffer) < _BATCH and not self.draining:
                    self._sleep(until=due)
                    continue
                # What is buffered goes in one send (its groups' members read at once):
                # a busy worker's messages cost a round trip per batch, not per group.
                batch = [self.buffer.popleft() for _ in range(min(len(self.buffer), _BATCH))]
                self.busy = True
                self.sent_at = time.monotonic()
            try:
                self._send(batch)
            except Exception:  # never let the thread die: later messages must still go
                logger.exception("relay send failed")
            with self.lock:
                self.gone += len(batch)
                self._hand_over()

    def _due(self) -> float:
        """When what is buffered goes (the lock held): GATHER_SECONDS after its oldest
        message, and no sooner than PACE_SECONDS after the last send; now when a
        message is due now (``at_once``, a handover)."""
        if self.oldest == float("-inf"):
            return self.oldest
        return max(self.oldest + GATHER_SECONDS, self.sent_at + PACE_SECONDS)

    def _sleep(self, until: float | None) -> None:
        """Wait (the lock held) for a put, a drain, the next timer or ``until`` (monotonic
        time; None: no limit of its own)."""
        limits = [limit for limit in (until, self.timers[0][0] if self.timers else None) if limit is not None]
        self.lock.wait(min(limits) - time.monotonic() if limits else None)

    def _fire_due_timers(self) -> None:
        now = time.monotonic()
        with self.lock:
            due = []
            while self.timers and self.timers[0][0] <= now:
                due.append(heapq.heappop(self.timers))
        for _, _, function, args in due:
            try:
                function(*args)
            except Exception:  # never let the thread die: later messages must still go
                logger.exception("relay timer failed")

    def _send(self, batch: list[tuple[tuple[str, ...], dict, str]]) -> None:
        global _down_until
        if time.monotonic() < _down_until:
            dropped.count("relay_down", len(batch))  # clients re-read the truth on reconnect
            return
        sends = [(group, {"type": kind, "event": msg}) for groups, msg, kind in batch for group in groups]
        try:
            self._group_send_many(sends)
        except Exception as error:  # any layer failure: the job goes on, clients re-read
            dropped.count("relay_down", len(batch))
            _down_until = time.monotonic() + _RETRY_AFTER
            logger.warning(
                "channel layer unreachable; live updates paused",
                extra={"job_id": batch[0][1].get("job_id"), "error": f"{type(error).__name__}: {error}",
                       "retry_in": _RETRY_AFTER, "messages": len(batch)},
            )  # fmt: skip
            self._reset_layer()

    def _group_send_many(self, sends: list[tuple[str, dict]]) -> None:
        """The sends in order: blocking where the layer can (jobs.live.layer's, its
        calls timed out after _SEND_TIMEOUT), else one group after another on an event
        loop, as Channels' layers send."""
        blocking = getattr(self.layer, "group_send_many_blocking", None)
        if blocking is not None:
            blocking(sends, timeout=_SEND_TIMEOUT)
            return

        async def one_by_one() -> None:
            for group, envelope in sends:
                await self.layer.group_send(group, envelope)

        if self.loop is None:
            self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(asyncio.wait_for(one_by_one(), _SEND_TIMEOUT))

    def _reset_layer(self) -> None:
        """Drop pooled connections that may be broken; the next send reconnects."""
        with contextlib.suppress(Exception):  # closing a broken pool may fail too
            if self.loop is not None:
                self.loop.run_until_complete(asyncio.wait_for(self.layer.close_pools(), _SEND_TIMEOUT))
            else:
                self.layer.close_blocking()
        self.layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)


_current: _Sender | None = None
_create_lock = threading.Lock()
# A process that ends normally sends what it still holds first (a script or a command that
# ends right after a move; the relay's thread is a daemon and dies with the process). A
# work-horse leaves through os._exit and drains itself; in it, the parent's sender is not
# its own (``drain`` checks the pid).
_EXIT_DRAIN_SECONDS = 1.0
atexit.register(drain, _EXIT_DRAIN_SECONDS)


def _own_sender() -> _Sender | None:
    """This process's sender if it made one (a forked child's inherited one is not)."""
    sender = _current
    return sender if sender is not None and sender.pid == os.getpid() else None


def _sender() -> _Sender:
    global _current
    sender = _own_sender()
    if sender is not None:
        return sender
    with _create_lock:
        if _current is None or _current.pid != os.getpid():
            _current = _Sender()
        return _current
