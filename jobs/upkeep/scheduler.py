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
import signal
import time

from django.conf import settings
from django.db import DatabaseError, connections
from django.utils import timezone
from django_rq.queues import DjangoScheduler
from redis.exceptions import RedisError

from jobs.core import flow
from jobs.upkeep import schedules

logger = logging.getLogger("jobs.upkeep.scheduler")

OUTAGE_PAUSES = (0.5, 1, 2, 4, 8, 15)  # seconds between attempts while Redis (or the database) is down
OUTAGES = (RedisError, DatabaseError, OSError)
SYNC_EVERY = 60.0  # seconds between syncs of the code's cron entries (a deploy restarts the scheduler anyway)


class JobdeskScheduler(DjangoScheduler):
    def enqueue_jobs(self):
        # The scheduler's own heartbeat (health reads it from the first poll on); the
        # heartbeat cron entry refreshes the same key through a worker every minute.
        self.connection.set(settings.SCHEDULER_HEARTBEAT_KEY, timezone.now().isoformat(), ex=180)
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
                    self._lock_acquired = False  # if we held it, it expires by itself
                    pause = _outage(error, failures)
                    time.sleep(pause)
                    continue
                if failures:
                    logger.warning("scheduler reconnected", extra={"failed_polls": failures})
                    failures = 0
                if done:
                    return
                time.sleep(max(0.0, self._interval - (time.monotonic() - started)))
        finally:
            _quietly(self.remove_lock)
            _quietly(self.register_death)

    def _poll(self, burst: bool) -> bool:
        """One round of rq-scheduler's loop; True when a burst run is done."""
        if not self.connection.exists(self.key):  # first round, or Redis lost it (restart, flush)
            self.register_birth()
        self.heartbeat()
        if not self.acquire_lock():
            logger.debug("another scheduler holds the lock: skipping this round")
            return False
        try:
            self.enqueue_jobs()
            self.heartbeat()
        finally:
            self.remove_lock()
        return burst

    def _install_signal_handlers(self) -> None:
        # rq-scheduler's handler writes to Redis from inside the signal handler, which
        # raised a traceback when Redis was down; cleanup happens in run()'s finally.
        def stop(signum, frame):
            logger.info("scheduler stopping", extra={"signal": signum})
            raise SystemExit(0)

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)


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
