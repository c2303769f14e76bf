"""The rq-scheduler class Jobdesk runs: it fires the cron schedules and rides out
outages.

On every poll, besides rq-scheduler's own work (deferred jobs, retries), it fires the
``Schedule`` rows that are due (``jobs.upkeep.schedules``: once per tick, from the
database, so a Redis flush or a restart loses none), syncs the code's cron entries into
them every ``SYNC_EVERY`` seconds (and on its first poll), releases held jobs whose
lever lets them go, and refreshes its heartbeat key.

rq-scheduler's own loop exits on the first Redis error, so a 20-second Redis restart
took the scheduler — and with it every retry and cron — down for good. This loop logs
the outage, waits with a growing pause, re-registers itself if Redis lost its
registration, and goes on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import socket
import time

from django.db import DatabaseError, connections
from django.utils import timezone
from django_rq.queues import DjangoScheduler
from redis.exceptions import RedisError

from jobs.core import flow, queueing
from jobs.upkeep import schedules

logger = logging.getLogger("jobs.upkeep.scheduler")

OUTAGE_PAUSES = (0.5, 1, 2, 4, 8, 15)  # seconds between attempts while Redis (or the database) is down
OUTAGES = (RedisError, DatabaseError, OSError)
LEADER_KEY = "jobdesk:scheduler:leader"
LEADER_LEASE_SECONDS = 10.0
SYNC_EVERY = 60.0  # seconds between syncs of the code's cron entries (a deploy restarts the scheduler anyway)


class JobdeskScheduler(DjangoScheduler):
    def enqueue_jobs(self):
        if time.monotonic() >= getattr(self, "_next_sync", 0.0):
            if not hasattr(self, "_next_sync"):
                schedules.forget_legacy_timers()
            schedules.sync_from_code()
            self._next_sync = time.monotonic() + SYNC_EVERY
        schedules.fire_due()
        enqueued = super().enqueue_jobs()
        # Held jobs whose lever lets them go now (a rate's next opening; a release a
        # crashed process never made): at most a poll late.
        flow.release_held()
        # The scheduler's own heartbeat, once a poll went through (health reads it from
        # the first poll on): polls that keep failing let it go stale, and health says so.
        # Only the scheduler sets it (its cron job beats under a key of its own).
        self.connection.set(queueing.scheduler_beat_key(), timezone.now().isoformat(), ex=180)
        return enqueued

    def run(self, burst: bool = False) -> None:
        self._install_signal_handlers()
        failures = 0
        try:
            while True:
                started = time.monotonic()
                try:
                    done = self._poll(burst)
                except OUTAGES as error:
                    failures += 1
                    pause = _outage(error, failures)
                    time.sleep(pause)
                    continue
                except Exception:  # a bug in one poll: the next may go through (a dying
                    # scheduler stopped every cron, retry and deferred job until restarted)
                    logger.exception("scheduler poll failed; the next poll tries again")
                    time.sleep(self._interval)
                    continue
                if failures:
                    logger.warning("scheduler reconnected", extra={"failed_polls": failures})
                    failures = 0
                if done:
                    return
                time.sleep(max(0.0, self._interval - (time.monotonic() - started)))
        finally:
            _quietly(self._step_down)
            _quietly(self.register_death)

    def _step_down(self) -> None:
        """A scheduler that stops hands the lead over at once (not after its lease)."""
        if getattr(self, "_leading", False):
            self.connection.eval(_GIVE_UP, 1, LEADER_KEY, self.leader_name)

    def _poll(self, burst: bool) -> bool:
        """One round of rq-scheduler's loop; True when a burst run is done."""
        if not self.connection.exists(self.key):  # first round, or Redis lost it (restart, flush)
            self.register_birth()
        self.heartbeat()
        if not self._lead():
            return burst
        self.enqueue_jobs()
        self.heartbeat()
        return burst

    def _lead(self) -> bool:
        """Take or keep the leader's lease; False while another scheduler holds it.

        One scheduler leads across all hosts; the others stand by and poll. A leader
        cut off from Redis cannot renew, so its lease lapses and a standby takes over
        within ``leader_lease`` seconds; when it returns it finds the lease taken and
        stands by. (Each cron tick is also fired at most once by the database, and a
        deferred job claimed at most once by its dispatch: the lease keeps the work on
        one scheduler, the guards keep it right even in the moment two think they lead —
        as they may when one poll outlasts the lease: the lead is checked as a poll starts.)
        """
        lease_ms = int(self.leader_lease * 1000)
        leads = bool(self.connection.eval(_KEEP_OR_TAKE, 1, LEADER_KEY, self.leader_name, lease_ms))
        if leads and not getattr(self, "_leading", False):
            # Leading from the start is the usual case; taking over from another is news.
            taking_over = hasattr(self, "_leading")
            logger.log(logging.WARNING if taking_over else logging.INFO, "scheduler leads",
                       extra={"scheduler": self.leader_name, "took_over": taking_over})  # fmt: skip
        elif not leads and getattr(self, "_leading", True):
            logger.warning(
                "scheduler stands by: another one leads",
                extra={"scheduler": self.leader_name, "leader": _decoded(self.connection.get(LEADER_KEY))},
            )
        self._leading = leads
        return leads

    @property
    def leader_name(self) -> str:
        # host:pid for operators, and a token of its own: two containers may share both.
        if not hasattr(self, "_leader_name"):
            self._leader_name = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        return self._leader_name

    @property
    def leader_lease(self) -> float:
        # A few polls long, so one slow poll does not hand the lead over.
        return max(LEADER_LEASE_SECONDS, 3 * float(self._interval))

    def _install_signal_handlers(self) -> None:
        # rq-scheduler's handler writes to Redis from inside the signal handler, which
        # raised a traceback when Redis was down; cleanup happens in run()'s finally.
        def stop(signum, frame):
            logger.info("scheduler stopping", extra={"signal": signum})
            raise SystemExit(0)

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)


# Keep the lead if it is ours, take it if nobody holds it (atomically, in Redis).
_KEEP_OR_TAKE = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return 1
elseif not holder then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
    return 1
end
return 0
"""

# Give the lead up only if it is still ours.
_GIVE_UP = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


def _decoded(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


def _outage(error: Exception, failures: int) -> float:
    pause = OUTAGE_PAUSES[min(failures - 1, len(OUTAGE_PAUSES) - 1)]
    if isinstance(error, DatabaseError):
        connections.close_all()  # reconnect on the next attempt
    if failures == 1 or failures % 20 == 0:
        logger.error(
            "scheduler cannot reach Redis or the database; retrying",
            extra={"error": str(error), "failed_polls": failures, "next_attempt_in": pause},
        )
    return pause


def _quietly(call) -> None:
    with contextlib.suppress(*OUTAGES):  # Redis is down: its keys expire by themselves
        call()
