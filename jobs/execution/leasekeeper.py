"""Keeps the lease of the run a process has in hand, and stops the run when it cannot.

Two daemon threads per worker process, started with its first run:

- the *renewer* extends the lease (``jobs.core.leases.renew``) every
  ``JOB_LEASE_RENEW_SECONDS`` on a database connection of its own, so a handler that
  runs in the main thread (an inline job) or a main thread stuck on an unreachable Redis
  does not stop the renewals; it closes that connection while no run is held;
- the *watchdog* does no I/O at all: it stops the run once ``JOB_LEASE_STOP_SECONDS``
  have passed since the last renewal that succeeded (counted from when it was sent), or
  at once when a renewal was refused (canceled, taken away, expired). A renewal blocked
  on a cut network link therefore cannot delay the stop.

Stopping is the caller's: the forking worker kills its work-horse; a process that runs
the handler itself interrupts it (``interrupt_main_thread``) and leaves if it does not
give way. Either way the stop comes ``JOB_LEASE_SECONDS - JOB_LEASE_STOP_SECONDS`` before
any other host may take the job — as long as these threads get the interpreter lock: a
handler in this process that holds it in C code for longer than the lease is not
stopped (README, Known limits); a forked horse always is.
A run never holds more than one lease per process (a worker's next claim waits until the
last run's outcome is recorded, its lease kept — disarmed — until then); a short job ends
before its first renewal is due, so it costs no renewal at all.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import math
import mmap
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from django.conf import settings
from django.db import connection

from jobs.core import leases

logger = logging.getLogger("jobs.execution.leasekeeper")

_RETRY_AFTER_FAILURE = 0.5  # seconds; a failed renewal is tried again soon, not after a full interval


def _shared_stop_time() -> ctypes.c_double:
    """A stop time (infinity for now) in memory a forked child shares."""
    shared = ctypes.c_double.from_buffer(mmap.mmap(-1, 8))  # MAP_SHARED: a forked child sees the writes
    shared.value = math.inf
    return shared


# When the run in hand is to be stopped at the latest (``now()`` seconds: the last renewal
# that went through, or the claim, plus JOB_LEASE_STOP_SECONDS; infinity while none is
# held), in memory this process shares with every work-horse it forks. The parent's
# watchdog kills its horse then; a parent that cannot (frozen: SIGSTOP, a debugger, a
# paused cgroup) leaves the horse to stop itself by it (``stop_with_parents_lease``),
# before another host may take the job. One aligned 8-byte store: a reader never sees
# half of it.
_stop_by = _shared_stop_time()  # this process's, for the horses it forks
_parents_stop_by: ctypes.c_double | None = None  # in a forked child: its parent's
# Seconds a horse waits past that time for its parent's own stop (a kill) before it
# leaves by itself: the lease still holds JOB_LEASE_SECONDS - JOB_LEASE_STOP_SECONDS
# (at least 2 s, config.env.check_lease_timing) after it.
_HORSE_STOP_MARGIN = 1.0


def _idle_look() -> float:
    """Seconds between an idle renewer's (or watchdog's) looks for a new hold: a hold
    wakes neither, and this leaves the renewer time to send the first renewal (due
    JOB_LEASE_RENEW_SECONDS after the claim) on time."""
    return min(1.0, settings.JOB_LEASE_RENEW_SECONDS / 2)


def now() -> float:
    """Seconds on a clock that keeps counting while the machine sleeps (a suspended VM
    wakes up knowing its lease is gone), else the monotonic clock."""
    try:
        return time.clock_gettime(time.CLOCK_BOOTTIME)
    except (AttributeError, OSError):  # not Linux
        return time.monotonic()


class LeaseLost(Exception):
    """Raised in a handler that runs in the worker's own process when its lease is lost."""


@dataclass(eq=False)  # holds are compared by identity: each is one run
class _Hold:
    job_id: str
    dispatch: str
    stop: Callable[[str], None]
    renewed_at: float  # now() when the last successful renewal (or the claim) was sent
    next_renewal: float
    lost: str = ""  # why the run was stopped; "" while it holds its lease
    failures: int = 0


def _nothing_to_stop(reason: str) -> None:
    """The stop of a run that is over (its outcome being recorded)."""


class LeaseKeeper:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._held: _Hold | None = None
        self._started = False
        self._closing = False

    def hold(self, job_id, dispatch: str, stop: Callable[[str], None], *, claimed_at: float) -> None:
        """Keep this run's lease from now on; ``claimed_at``: ``now()`` when the claim
        (which granted the lease) was sent. ``stop(reason)`` ends the run: it is called
        at most once, from the watchdog's thread, and must not block."""
        renew_every = settings.JOB_LEASE_RENEW_SECONDS
        with self._lock:
            # No wake-up (two thread switches a job): the renewer and the watchdog look
            # again soon enough (_idle_look) for the first renewal.
            self._held = _Hold(str(job_id), dispatch, stop, claimed_at, claimed_at + renew_every)
            _stop_by.value = claimed_at + settings.JOB_LEASE_STOP_SECONDS
        if not self._started:
            self._start()

    def disarm(self) -> str:
        """The run has ended; its outcome is being recorded: keep renewing the lease (so
        a slow record is not taken for a lost run) but stop nothing any more. Returns
        why the run was stopped ("" when it was not)."""
        with self._lock:
            if self._held is None:
                return ""
            self._held.stop = _nothing_to_stop
            return self._held.lost

    def release(self) -> str:
        """The outcome is recorded (or given up): stop keeping the lease. Returns why
        the run was stopped ("" when it was not)."""
        with self._lock:
            held, self._held = self._held, None
            _stop_by.value = math.inf
        return held.lost if held else ""

    def lost(self) -> str:
        with self._lock:
            return self._held.lost if self._held else ""

    def holds(self, held: object) -> bool:
        with self._lock:
            return self._held is held

    def current(self) -> object:
        """The hold in hand, to ask ``holds`` about later (None when none)."""
        return self._held  # read by the watchdog's stop, which holds the lock already

    def close(self) -> None:
        """End the threads (tests; a worker's keeper lives as long as its process)."""
        with self._lock:
            self._closing, self._held = True, None
            _stop_by.value = math.inf
            self._wake.notify_all()

    def _start(self) -> None:
        self._started = True
        for name, loop in (("lease-renewer", self._renew_loop), ("lease-watchdog", self._watch_loop)):
            threading.Thread(target=loop, name=name, daemon=True).start()

    # --- the renewer -----------------------------------------------------------------

    def _kept(self) -> _Hold | None:
        """The hold whose lease is being kept (the lock held): None when there is none,
        or its lease was lost."""
        held = self._held
        return None if held is None or held.lost else held

    def _renew_loop(self) -> None:
        while not self._closing:
            with self._lock:
                held = self._kept()
                if held is not None:
                    pause = held.next_renewal - now()
                    if pause > 0:
                        self._wake.wait(pause)
                        continue
            if held is None:
                self._idle()
            else:
                self._renew(held)
        connection.close()

    def _idle(self) -> None:
        # No run to renew: the renewer's connection is closed until the next renewal
        # (outside the lock: it is I/O). An idle worker holds no connection of its own
        # open for it — many idle workers would use up a server's connections — and a
        # database can be dropped (a test's) or restarted under it meanwhile.
        connection.close()
        with self._lock:
            if self._kept() is None:  # no hold came meanwhile
                self._wake.wait(_idle_look())

    def _renew(self, held: _Hold) -> None:
        sent = now()
        try:
            renewed = leases.renew(held.job_id, held.dispatch)
        except Exception as error:  # the database out of reach, or anything else: a failed renewal
            with contextlib.suppress(Exception):
                connection.close()  # this thread's own connection: reconnect on the next try
            with self._lock:
                held.failures += 1
                held.next_renewal = now() + _RETRY_AFTER_FAILURE
            if held.failures == 1:
                logger.warning("lease renewal failed", extra={"job_id": held.job_id, "error": str(error)})
            return
        if not renewed:
            self._stop(held, "its lease renewal was refused: the job was canceled, taken over, or its lease expired")
            return
        with self._lock:
            held.renewed_at, held.failures = sent, 0
            held.next_renewal = sent + settings.JOB_LEASE_RENEW_SECONDS
            if held is self._held:  # a late answer for a run released meanwhile moves nothing
                _stop_by.value = sent + settings.JOB_LEASE_STOP_SECONDS

    # --- the watchdog ----------------------------------------------------------------

    def _watch_loop(self) -> None:
        stop_after = settings.JOB_LEASE_STOP_SECONDS
        while not self._closing:
            with self._lock:
                held = self._kept()
                if held is None:
                    self._wake.wait(_idle_look())
                    continue
                left = held.renewed_at + stop_after - now()
                if left > 0:
                    self._wake.wait(min(left, _idle_look()))
                    continue
            self._stop(held, f"its lease could not be renewed for {stop_after:g} s (the database was unreachable)")

    def _stop(self, held: _Hold, reason: str) -> None:
        # Under the lock, so the stop reaches this run and never the next one (a release
        # and a new hold wait for it); stops are a signal or a kill, they do not block.
        # The log line comes after: a blocked log pipe must not hold the stop back.
        with self._lock:
            if held is not self._held or held.lost:
                return  # over already, or stopped once
            held.lost = reason
            self._wake.notify_all()
            try:
                held.stop(reason)
            except BaseException:  # a stop that cannot be delivered: the process must not run on
                os._exit(75)
        logger.warning("stopped a run that lost its lease", extra={"job_id": held.job_id, "reason": reason})


_keeper: LeaseKeeper | None = None


def keeper() -> LeaseKeeper:
    """This process's keeper (a forked child gets a fresh one: threads do not fork)."""
    global _keeper
    if _keeper is None:
        _keeper = LeaseKeeper()
    return _keeper


def _forget_in_child() -> None:
    global _keeper, _handler_running, _stop_by, _parents_stop_by
    _keeper, _handler_running = None, False
    # A child's own keeper (a horse claiming for itself) writes its own stop time.
    _parents_stop_by, _stop_by = _stop_by, _shared_stop_time()


os.register_at_fork(after_in_child=_forget_in_child)


def stop_with_parents_lease() -> None:
    """In a work-horse whose parent keeps the run's lease: leave (os._exit) once the
    parent's stop time has passed without the parent stopping it — the parent is frozen
    and cannot renew the lease or kill this horse, and the job may soon be taken over
    elsewhere. A daemon thread: like the parent's watchdog, it needs the interpreter lock
    now and then."""
    if _parents_stop_by is not None:  # else not a forked child: no parent keeps its lease
        threading.Thread(target=_leave_at_parents_stop, args=(_parents_stop_by,), name="lease-follower",
                         daemon=True).start()  # fmt: skip


def _leave_at_parents_stop(parents: ctypes.c_double) -> None:
    while True:
        left = parents.value + _HORSE_STOP_MARGIN - now()
        if left <= 0:
            # No log first: a blocked log pipe must not keep the horse running. The
            # handler's own children too, as the parent's kill would (RQ's horse leads
            # a process group of its own).
            if os.getpgrp() == os.getpid():
                os.killpg(0, signal.SIGKILL)
            os._exit(75)
        time.sleep(min(left, _idle_look()))


# --- stopping a handler that runs in this process -----------------------------------------

_INTERRUPT = signal.SIGUSR2
# If the handler does not give way to the interrupt (stuck in Python-free code), the
# process leaves before its lease runs out: its pool starts another, the job is retried.
_EXIT_MARGIN = 1.5  # seconds before the lease would pass
_handler_running = False  # the interrupt raises only inside a handler, never in the worker's own code


def prepare_interrupts() -> None:
    """Call in the main thread before in-process runs: a lost lease raises LeaseLost there."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(_INTERRUPT, _raise_lease_lost)


@contextlib.contextmanager
def handler_running() -> Iterator[None]:
    """Around a handler's call in the main thread: where a lost lease may interrupt it."""
    global _handler_running
    # A work-horse whose parent keeps the lease has no keeper of its own: none to ask.
    lost = _keeper.lost() if _keeper is not None else ""
    if lost:
        raise LeaseLost(f"the run lost its lease before its handler started: {lost}")
    _handler_running = True
    try:
        yield
    finally:
        _handler_running = False


def _raise_lease_lost(signum, frame) -> None:
    if _handler_running:
        raise LeaseLost("the run lost its lease and was stopped")
    # Outside the handler (the worker's own bookkeeping): the run's end is near anyway,
    # and its outcome carries the keeper's reason.


def interrupt_main_thread(reason: str) -> None:
    """``stop`` for a handler running in this process's main thread."""
    held = keeper().current()
    signal.pthread_kill(threading.main_thread().ident or 0, _INTERRUPT)
    grace = settings.JOB_LEASE_SECONDS - settings.JOB_LEASE_STOP_SECONDS - _EXIT_MARGIN
    last_resort = threading.Timer(max(grace, 0.1), _exit_if_still_running, args=(keeper(), held))
    last_resort.daemon = True
    last_resort.start()


def _exit_if_still_running(held_by: LeaseKeeper, held: object) -> None:
    if held_by.holds(held) and _handler_running:  # the same run, still in its handler: it did not stop
        os._exit(75)  # no log first: a blocked log pipe must not keep the process alive
