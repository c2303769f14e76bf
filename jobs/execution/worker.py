"""RQ worker classes that keep Jobdesk's bookkeeping in the worker's parent process.

A forking RQ worker runs each job in a fresh work-horse. Claiming and recording in the
horse would cost a new database connection and a cold ORM per job — more than RQ's own
fork. ``JobdeskWorker`` claims the row before the fork and records the outcome after
the horse exits, through its bookkeeper (jobs.execution.bookkeeper: a process of its
own that never forks, on PostgreSQL) or else on the parent's persistent connection; the
horse only runs the handler and hands its outcome back through a pipe (RQ's result when
it does not fit). A horse that dies (killed, OOM, stop-job) is recorded by its parent at
once. The horse is tied to its parent's life (PR_SET_PDEATHSIG), so "worker process
gone" always means "job no longer running".

Configured as django-rq's default (settings.RQ["WORKER_CLASS"]); with a plain RQ worker
``jobs.execution.runner.execute`` still does the whole job itself.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import ctypes
import functools
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from redis.exceptions import RedisError
from rq import SimpleWorker, Worker, worker_registration
from rq.defaults import DEFAULT_WORKER_TTL
from rq.job import Job as RQJob
from rq.results import Result
from rq.suspension import WORKERS_SUSPENDED
from rq.worker import BaseWorker, WorkerStatus

from jobs.core import cyclegc, queueing, registry, relay, tracing
from jobs.core.errors import SubmitError
from jobs.core.models import Job
from jobs.core.queueing import ENTRY_POINT
from jobs.execution import bookkeeper, leasekeeper, runner

logger = logging.getLogger("jobs.execution.worker")

_PR_SET_PDEATHSIG = 1
MONITOR_INTERVAL = 2  # seconds between the parent's checks on a running horse
# About a minute of database trouble, tried at most 5 s apart (not 15 or 30 at the end):
# a record, and the claim waiting behind it, go on within 5 s of the database's return.
_RECORD_RETRY_PAUSES = (0.5, 1, 2, 4, *[5] * 11)
# Seconds a stopping worker waits for the outcome it is recording: as long as the record
# itself keeps trying through database trouble, and some.
_LAST_RECORD_WAIT = sum(_RECORD_RETRY_PAUSES) + 15.0
# Seconds between heartbeats of an idle worker (RQ's default waits 405 s): a worker whose
# registration Redis lost notices it this soon.
IDLE_HEARTBEAT = 45
_REGISTRATION_CHECK_EVERY = 1.0  # seconds, at most, between heartbeats' registration checks
# Seconds between heartbeats of a dispatch taken up while its claim waits (ClaimBehind):
# well within the reconciler's UNCLAIMED_AFTER.
_CLAIM_WAIT_BEAT = 30.0
# Seconds, at most, between a worker's attempts to reach Redis while it cannot (RQ
# doubles its wait from 1 s up to 60 s): after half a minute without Redis, a worker
# waited up to 16 s more once it was back before trying again.
REDIS_RETRY_MAX_WAIT = 5.0
# Seconds, at most, between the recorder's looks while it waits: a held record no release
# reached (RecordBehind) goes within that time.
_IDLE_LOOK = 1.0
# Seconds within which RQ's loop writes the same heartbeat or state again only once: it
# beats three times and writes "idle" twice between two jobs (seven round trips to Redis,
# a sixth of a short inline job's time), where one of each says the same.
_COALESCE_WRITES = 1.0


class _ParentBookkeeping(BaseWorker):
    # A mixin over RQ's BaseWorker, the common base of Worker and SimpleWorker (which is
    # not a Worker): both subclasses below keep the MRO they had with a plain mixin.

    max_connection_wait_time = REDIS_RETRY_MAX_WAIT
    # Is a run's record held on the recorder's thread until the next run's claim is asked
    # (RecordBehind: held)? Only where a Jobdesk run's claim is asked there (every run
    # whose dispatch names its type): a forked run's claim waits for the record instead.
    record_waits_for_claim = False

    def __init__(self, *args, **kwargs) -> None:
        # django-rq's rqworker passes RQ's default TTL (420 s) when none is asked for: taken
        # as none. With it, an idle worker beat (and checked its registration) every 405 s.
        if kwargs.get("worker_ttl") in (None, DEFAULT_WORKER_TTL):
            kwargs["worker_ttl"] = IDLE_HEARTBEAT + 15
        super().__init__(*args, **kwargs)
        self._unrecorded: list[tuple[Job, runner.Outcome]] = []
        self._inline = False  # the job in hand runs in this process (no work-horse)
        self._registration_checked = float("-inf")  # monotonic time of the last check
        self._beaten_at = float("-inf")  # monotonic time of the last plain heartbeat sent
        self._state_written: tuple[str, float] | None = None  # the state last written alone, and when
        self._recorder = RecordBehind()
        self._books: bookkeeper.Bookkeeper | None = None  # JobdeskWorker's, for its forked runs
        self._booked: set[str] = set()  # the dispatches the bookkeeper claimed, until recorded
        self._handed_over: int | None = None  # its relay's handover for the next horse
        self._asked: tuple[str, str, float] | None = None  # (job id, dispatch, sent): a claim asked, unanswered
        self._claimed: Job | None = None  # the job in hand's row, once claimed here or by the bookkeeper
        self._behind: ClaimBehind | None = None  # the job in hand's claim, under way on the recorder's thread
        self._job_in_hand: RQJob | None = None  # the dispatch being executed (re-registration, claim beats)
        # A claim that may go with the last record (_claim_along): job id, dispatch, and a time
        # before the record was sent (the claim's lease runs from then, if it went with it).
        self._claimed_along: tuple[str, str, float] | None = None

    def execute_job(self, job: RQJob, queue) -> None:
        self._parent_pid = os.getpid()  # read by the horse, to notice a parent already gone
        # Busy from the claim on: a SIGTERM arriving now must wait for this job (RQ's warm
        # shutdown), not abort between the claim and the fork and leave the row active.
        # RQ's shutdown reads the state in this process; Redis hears it with the
        # execution's own write (RQ's prepare_execution), a round trip less per job.
        self._state = WorkerStatus.BUSY
        self._job_in_hand = job
        # The last run's outcome is written before this claim: its finish comes before
        # this start (runs of one worker never overlap in their times, and a concurrency
        # limit counting active jobs does not count it). An inline run's claim is asked of
        # the recorder's thread, which writes it after that record.
        behind = self._behind = self._claim_behind(job)
        if behind is None:
            self._recorder.wait()
            self._record_left_behind()
            self._claimed = self._claim(job)
        try:
            if behind is not None or (self._claimed is not None and self._inline):
                self._perform_inline(job, queue)
            else:
                super().execute_job(job, queue)
        finally:
            self._take_answer()  # a claim asked of the bookkeeper, unanswered: RQ failed before the fork
            if behind is not None:
                self._behind = None
                taken = behind.take()  # in hand already, unless RQ failed before the run
                self._claimed = taken if isinstance(taken, Job) else None
                runner.preclaimed.pop(behind.dispatch, None)  # refused or failed before the run: not taken
            claimed, self._claimed = self._claimed, None
            self._job_in_hand = None
            self._inline = False
            if claimed is not None:
                # The run is over: nothing left to stop, but its lease is kept until the
                # outcome is recorded (a slow record is not a lost run) — on the recorder's
                # thread, while this one dequeues the next job. Busy until it is handed
                # over: a SIGTERM now (RQ's warm shutdown) must not drop the record.
                idle, self._state = self._state, WorkerStatus.BUSY
                lost = leasekeeper.keeper().disarm()
                handed = self._outcome_from_horse()
                self._recorder.record_behind(
                    self._record_and_release, claimed, job, lost, handed, held=self.record_waits_for_claim
                )
                self._state = idle

    def _outcome_from_horse(self) -> runner.Outcome | None:
        """The outcome a work-horse handed back through its pipe (JobdeskWorker)."""
        return None

    def _record_and_release(self, claimed: Job, rq_job: RQJob, lost: str, handed: runner.Outcome | None) -> None:
        # The next hold comes only after this (the claim waits for the record): the
        # keeper's hold released here is still this run's.
        along = self._claim_along(claimed)
        try:
            with along:
                self._record(claimed, rq_job, lost=lost, handed=handed)
        except Exception:  # never lose the recorder's thread: the lease and the reconciler cover this run
            logger.exception("recording an outcome failed")
        finally:
            leasekeeper.keeper().release()

    def work(self, *args, **kwargs) -> bool:
        # Jobdesk schedules with rq-scheduler (manage.py rqscheduler): RQ's own scheduler
        # would be one more child process per worker, orphaned when its worker is killed.
        kwargs["with_scheduler"] = False
        leasekeeper.prepare_interrupts()  # an inline run that loses its lease is stopped
        _prctl()  # looked up here, once: each work-horse inherits it
        if multiprocessing.parent_process() is not None:
            # Started by rqworker-pool: when the pool's process dies (killed), nobody
            # would respawn or stop this worker. Leave with it, warmly (SIGTERM).
            _die_with_parent(os.getppid(), signal.SIGTERM)
        self._books = self._start_bookkeeper()  # before RQ's threads and the first job
        try:
            return super().work(*args, **kwargs)
        finally:
            # The last outcome (the recorder's thread dies with the process), then its end.
            self._recorder.close(_LAST_RECORD_WAIT)
            if self._books is not None:
                self._books.close(_LAST_RECORD_WAIT)  # it ends once the last record is done
                self._books = None
            relay.drain()  # the last jobs' messages: the relay's thread dies with the process
            if multiprocessing.parent_process() is not None:
                # And their spans: a pool's worker ends with os._exit, where no atexit
                # flush runs (a lone worker's runs at its exit).
                tracing.flush(tracing.EXIT_FLUSH_SECONDS)

    def _start_bookkeeper(self) -> bookkeeper.Bookkeeper | None:
        """The process that claims and records this worker's forked runs (JobdeskWorker)."""
        return None

    def request_force_stop(self, signum, frame) -> None:
        runner.cold_stop_under_way()  # the SystemExit RQ raises next is the stop's, not a handler's
        super().request_force_stop(signum, frame)

    def unsubscribe(self) -> None:
        # RQ sends UNSUBSCRIBE, then stops its pub/sub thread and joins it for up to a
        # second. A thread that reads the reply before the stop waits again (60 s) for a
        # subscription, and every stop of this worker waited out that second. Stopped
        # first, the thread leaves as soon as the reply wakes it.
        if self.pubsub_thread is not None:
            self.pubsub_thread.stop()
        super().unsubscribe()

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None):
        found = super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        if found is None and timeout is None:
            # A burst ends on empty queues, but the record still behind may queue more
            # work (a retry, dependents, a batch's callbacks): a burst runs that too.
            self._recorder.wait()
            found = super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        return found

    def heartbeat(self, timeout: int | None = None, pipeline=None) -> None:
        now = time.monotonic()
        # A plain beat within a second of the last plain one is not sent: the key still
        # outlives the wait for the next job (RQ's suspension check, just before it, beats
        # in its own pipeline: the TTL and a minute, for a pop of the TTL less 15 s), and
        # the beat's time is a second old at most. A beat with a TTL of its own (a job's,
        # or in a pipeline) is always sent.
        plain = timeout is None and pipeline is None
        if not plain or now - self._beaten_at >= _COALESCE_WRITES:
            super().heartbeat(timeout, pipeline)
            if plain:
                self._beaten_at = now
        # RQ beats several times per job: check the registration at most once a second
        # (one round trip; it was a tenth of an inline no-op job's time).
        if pipeline is None and now - self._registration_checked >= _REGISTRATION_CHECK_EVERY:
            self._keep_registered()

    def check_for_suspension(self, burst: bool) -> None:
        if self._stop_requested or not self._recorder.holding():
            super().check_for_suspension(burst)  # RQ's own, which asks nothing once a stop is requested
            return
        # RQ's check (a beat and the suspension key, in one pipeline: rq.suspension's
        # is_suspended), which also reads whether a job is waiting: if none is, no claim
        # comes soon, and the held record goes before RQ's long wait for work.
        try:
            with self.connection.pipeline() as pipe:
                self.heartbeat(pipeline=pipe)
                pipe.exists(WORKERS_SUSPENDED)
                for queue in self.queues:
                    pipe.llen(queue.key)
                answers = pipe.execute()
        except RedisError:
            self._recorder.release()  # the loop may wait out Redis's absence: not the record
            raise
        suspended_at = len(answers) - len(self.queues) - 1
        suspended, waiting = answers[suspended_at], answers[suspended_at + 1 :]
        if suspended or not any(waiting):
            self._recorder.release()
        if suspended:
            super().check_for_suspension(burst)  # RQ's own wait (or its StopRequested in a burst)

    def run_maintenance_tasks(self) -> None:
        self._recorder.release()  # registries cleaned may take a while: the record goes first
        super().run_maintenance_tasks()

    def set_state(self, state: str, pipeline=None) -> None:
        # "idle" at the end of a run and again as the next pop starts: written once. A
        # state written in a pipeline (RQ's "busy", with the execution) is not known to
        # have been written, and a registration written again (a flush) writes it anew.
        now = time.monotonic()
        if pipeline is None and self._state_written is not None:
            written, at = self._state_written
            if written == state and now - at < _COALESCE_WRITES:
                self._state = state
                return
        super().set_state(state, pipeline)
        self._state_written = (state, now) if pipeline is None else None

    def _keep_registered(self) -> None:
        """Register again when Redis lost this worker's registration (a flush, a restart
        without persistence, or a pause longer than its TTL): otherwise health, the
        dashboard and ETAs count it as gone while it works."""
        self._registration_checked = time.monotonic()
        try:
            with self.connection.pipeline(transaction=False) as pipe:
                pipe.hexists(self.key, "birth")
                pipe.sismember(worker_registration.REDIS_WORKER_KEYS, self.key)
                born, listed = pipe.execute()
            if born and listed:
                return
            logger.warning("worker registration lost: registering again", extra={"worker": self.name})
            self._state_written = None
            with self.connection.pipeline() as pipe:
                pipe.hset(self.key, mapping=self.serialize())
                pipe.hset(self.key, "state", self._state)
                if self._job_in_hand is not None:
                    pipe.hset(self.key, "current_job", self._job_in_hand.id)
                worker_registration.register(self, pipe)
                pipe.expire(self.key, self.worker_ttl + 60)
                pipe.execute()
        except RedisError:
            logger.warning("redis unreachable: registration not checked", extra={"worker": self.name})

    def _runs_inline(self, job: Job) -> bool:
        """Does this claimed job run in this process (no work-horse)?"""
        return self._runs_inline_type(job.type)

    def _runs_inline_type(self, job_type: str) -> bool:
        return True

    def prepare_job_execution(self, job: RQJob, remove_from_intermediate_queue: bool = False) -> None:
        super().prepare_job_execution(job, remove_from_intermediate_queue)
        # The claim asked of the recorder's thread, taken here: after RQ's own round trips
        # to Redis, before the job's timeout starts (RQ's death penalty) — the claim may
        # wait behind a slow record (the type's hooks, database trouble).
        if self._behind is not None:
            self._behind.take()

    def _perform_inline(self, job: RQJob, queue) -> None:
        # RQ's SimpleWorker.execute_job: the handler runs here, under RQ's death penalty
        # (SIGALRM in this, the main thread) for its timeout.
        try:
            self.prepare_execution(job)
            self.perform_job(job, queue)
        finally:
            # A pause of the collector its handler left open (a timeout or a lost lease
            # raised between the pause's steps) ends with the job (jobs.core.cyclegc).
            cyclegc.release_thread()
        self.set_state(WorkerStatus.IDLE)

    def _claim(self, rq_job: RQJob) -> Job | None:
        """Claim the job's row; None when refused, failed — or asked of the bookkeeper:
        its answer is taken just before the fork (``_take_answer``), so the claim's round
        trip overlaps RQ's own preparation (a round trip to Redis)."""
        ids = _dispatch_of(rq_job)
        if ids is None:
            return None  # not a Jobdesk job (raw RQ work on the same queues)
        job_id, dispatch = ids
        sent = leasekeeper.now()  # the lease the claim grants runs from (at the latest) now
        known = _type_and_queue(rq_job)
        if self._books is not None and known is not None and _forks(known[0]):
            try:
                self._books.ask_to_claim(job_id, dispatch, self.name, known)
                self._asked = (job_id, dispatch, sent)
                return None
            except bookkeeper.BookkeeperGone:
                logger.exception("the bookkeeper is gone: the worker keeps its own books")
                self._books = None
        return self._claimed_here(job_id, dispatch, sent, known)

    def _claim_behind(self, rq_job: RQJob) -> ClaimBehind | None:
        """An inline run's claim, asked of the recorder's thread (which writes the last
        run's outcome first): RQ's own preparation of the run — two round trips to Redis
        — goes on meanwhile, and the run waits for its claim only where it needs the row
        (``runner.execute``). None where the claim is made here (a forked run, a dispatch
        that does not say its type)."""
        ids, known = _dispatch_of(rq_job), _type_and_queue(rq_job)
        if ids is None or known is None or not self._runs_inline_type(known[0]):
            return None
        job_id, dispatch = ids
        self._inline = True
        behind = ClaimBehind(self, job_id, dispatch)
        behind.future = self._recorder.submit(self._claim_after_record, job_id, dispatch, known)
        runner.preclaimed[dispatch] = behind
        return behind

    def _beat_while_claiming(self) -> None:
        """A heartbeat of the dispatch taken up (RQ's execution) while its claim waits."""
        execution, job = self.execution, self._job_in_hand
        if execution is None or job is None:
            return
        try:
            with self.connection.pipeline() as pipe:
                execution.heartbeat(job.started_job_registry, self.get_heartbeat_ttl(job), pipe)
                pipe.execute()
        except RedisError:
            logger.warning("redis unreachable: heartbeat skipped", extra={"worker": self.name})

    def _claim_after_record(self, job_id: str, dispatch: str, known: tuple[str, str]) -> tuple[Job | None, float]:
        """On the recorder's thread: what failed to be recorded before, then the claim;
        the claimed row (None: refused) and when it was asked (the lease runs from then)."""
        along, self._claimed_along = self._claimed_along, None
        if along is not None and along[:2] == (job_id, dispatch) and runner.claim_made_along(job_id, dispatch):
            sent = along[2]  # made with the record: its lease runs from before it
        else:
            _record_again(self._unrecorded)
            _drop_broken_connection()
            sent = leasekeeper.now()
        return runner.claim(job_id, dispatch, self.name, known), sent

    def _claim_along(self, recorded: Job) -> contextlib.AbstractContextManager[None]:
        """On the recorder's thread, around a run's record: when the next run's claim is
        queued right behind it (a simple worker's held record), the record's statement
        takes the claim along (``runner.claim_along``): one round trip to the database
        where the next run waited for two. Not while outcomes wait to be recorded again
        (they go first, before the claim). Whatever fails here, the record goes alone."""
        self._claimed_along = None
        following = self._recorder.following()
        if following is None or self._unrecorded or following[0] != self._claim_after_record:
            return contextlib.nullcontext()
        job_id, dispatch, known = following[1]
        try:
            _drop_broken_connection()
            along = runner.claim_along(job_id, dispatch, self.name, known, recorded=recorded)
        except Exception:  # the levers unread (the database?): the record's own path copes with it
            logger.exception("taking the next claim along with the record failed", extra={"dispatch": dispatch})
            return contextlib.nullcontext()
        # The lease the claim grants runs from (at the latest) now, if it is made along.
        self._claimed_along = (job_id, dispatch, leasekeeper.now())
        return along

    def _claimed_here(self, job_id: str, dispatch: str, sent: float, known: tuple[str, str] | None) -> Job | None:
        try:
            _drop_broken_connection()
            claimed = runner.claim(job_id, dispatch, self.name, known)
        except DatabaseError:
            # The claim may have committed before its answer was lost: then the run is
            # this worker's to take up. Else the work-horse will try to claim for itself;
            # failing that, the row stays queued and the reconciler re-dispatches it.
            # The worker itself lives on.
            logger.exception("claim failed", extra={"job_id": job_id, "dispatch": dispatch})
            return self._adopted(job_id, dispatch)
        return self._hold(claimed, dispatch, sent)

    def _adopted(self, job_id: str, dispatch: str) -> Job | None:
        # The lease runs from the renewal adopting it, not from the claim asked: the
        # bookkeeper may have hung for a while before it died.
        sent = leasekeeper.now()
        try:
            _drop_broken_connection()  # the claim's error may have been the connection's end
            return self._hold(runner.adopt(job_id, dispatch, self.name), dispatch, sent)
        except DatabaseError:
            logger.exception(
                "adopting a claim made for this worker failed", extra={"job_id": job_id, "dispatch": dispatch}
            )
            return None

    def _hold(self, claimed: Job | None, dispatch: str, sent: float) -> Job | None:
        """The claimed run's lease held (renewed until recorded) and its messages relayed."""
        if claimed is not None:
            self._inline = self._runs_inline(claimed)
            runner.preclaimed[dispatch] = claimed
            leasekeeper.keeper().hold(claimed.id, dispatch, self._stop_run, claimed_at=sent)
            self._claim_relayed(dispatch)
        return claimed

    def _take_answer(self) -> None:
        """The bookkeeper's answer to the claim asked (``_claim``), if one is due."""
        if self._asked is None:
            return
        job_id, dispatch, sent = self._asked
        self._asked = None
        assert self._books is not None  # the books are given up only when asking or answering
        try:
            claimed, self._handed_over = self._books.claim_answer(dispatch)
        except bookkeeper.ClaimFailed:
            # Logged there. Its claim may have committed before the error: as after a
            # claim that failed here.
            self._claimed = self._adopted(job_id, dispatch)
            return
        except bookkeeper.BookkeeperGone:
            logger.exception("the bookkeeper is gone: the worker keeps its own books")
            self._books = None
            # It may have died after its claim committed, before it answered: the row is
            # active in this worker's name, and a claim here is refused. Left so, the
            # run would wait for its lease to pass and the reconciler (one more attempt).
            self._claimed = self._claimed_here(job_id, dispatch, sent, None) or self._adopted(job_id, dispatch)
            return
        if claimed is not None:
            self._booked.add(dispatch)
        self._claimed = self._hold(claimed, dispatch, sent)

    def _stop_run(self, reason: str) -> None:
        """Its lease is lost: stop the run before another host may take the job."""
        leasekeeper.interrupt_main_thread(reason)

    def _claim_relayed(self, dispatch: str) -> None:
        """In one process the relay keeps the job's events in order by itself."""

    def _record(self, job: Job, rq_job: RQJob, *, lost: str, handed: runner.Outcome | None = None) -> None:
        dispatch = job.rq_job_id
        runner.preclaimed.pop(dispatch, None)
        outcome = _lease_lost(lost) if lost else _outcome_in_hand(rq_job) or handed or _outcome_of(rq_job)
        if dispatch in self._booked:
            self._booked.discard(dispatch)
            if self._books is not None:
                try:
                    self._books.record(dispatch, outcome)
                    tracing.forget_attempt(dispatch)  # the bookkeeper's claim's, lent to the horse
                    return
                except bookkeeper.BookkeeperGone:
                    logger.exception("the bookkeeper is gone: the worker keeps its own books")
                    self._books = None
        _record_or_keep(job, outcome, self._unrecorded)

    def _record_left_behind(self) -> None:
        _record_again(self._unrecorded)


class JobdeskWorker(_ParentBookkeeping, Worker):
    """Forking worker (RQ's default) with the bookkeeping in the parent. While the horse
    runs, the parent keeps the run's lease (jobs.execution.leasekeeper) and kills the
    horse when it is lost: canceled, taken away, or the database out of reach too long.

    A job whose type says ``fork=False`` runs in this process instead, as
    ``JobdeskSimpleWorker`` would run it: no horse, the same queues, the same claim and
    record. It stops at its timeout (RQ's death penalty, SIGALRM); on cancel
    cooperatively (``ctx.is_canceled()``), or by an interrupt in this process once the
    refused lease renewal says so: there is no horse to kill."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("job_monitoring_interval", MONITOR_INTERVAL)
        super().__init__(*args, **kwargs)
        self._handover: int | None = None  # the relay's handover to the next horse (relay.handover)
        self._from_horse: int | None = None  # the read end of the horse's outcome pipe
        self._to_parent: int | None = None  # its write end, the horse's

    def execute_job(self, job: RQJob, queue) -> None:
        try:
            super().execute_job(job, queue)
        finally:
            # What is left open: not forked after all (refused, or RQ failed before the fork).
            self._close("_handover", "_from_horse", "_to_parent")

    def _outcome_from_horse(self) -> runner.Outcome | None:
        read_end, self._from_horse = self._from_horse, None
        return None if read_end is None else runner.outcome_from_horse(read_end)

    def _close(self, *ends: str) -> None:
        """Close these descriptors of the job in hand (the attributes' names), if open."""
        for name in ends:
            end = getattr(self, name)
            if end is not None:
                os.close(end)
                setattr(self, name, None)

    def _runs_inline_type(self, job_type: str) -> bool:
        return not _forks(job_type)

    def _start_bookkeeper(self) -> bookkeeper.Bookkeeper | None:
        # On PostgreSQL, where moves are one statement each and the worker talks to a
        # server (a bookkeeper would not share a test's in-memory SQLite database), and
        # outside a transaction (a test's: its rows are not the bookkeeper's to see).
        db = connections[DEFAULT_DB_ALIAS]
        if not settings.WORKER_BOOKKEEPER or db.vendor != "postgresql" or db.in_atomic_block:
            return None
        return bookkeeper.Bookkeeper.start(functools.partial(_keep_books, worker_pid=os.getpid()))

    def _stop_run(self, reason: str) -> None:
        if self._inline:
            super()._stop_run(reason)
        else:
            self.kill_horse()  # from the watchdog's thread; RQ's monitor loop then reaps it

    def fork_work_horse(self, job: RQJob, queue) -> None:
        self._take_answer()  # the claim, if the bookkeeper was asked for it
        # The horse hands its outcome back through a pipe of its own (runner.outcome_from_horse).
        ids = _dispatch_of(job)
        if ids is not None and ids[1] in runner.preclaimed:  # claimed here: the horse only runs it
            try:
                self._from_horse, self._to_parent = os.pipe()
            except OSError:  # out of descriptors: the outcome is read from RQ's result
                logger.exception("no pipe for a work-horse's outcome")
        try:
            super().fork_work_horse(job, queue)
        finally:
            self._close("_handover", "_to_parent")  # the horse's: it has its own copies
        # The lease may have been lost between the claim and the fork (a stall in RQ's
        # preparation), when there was no horse to kill yet: kill it now.
        if leasekeeper.keeper().lost():
            self.kill_horse()

    def set_current_job_working_time(self, current_job_working_time, pipeline=None) -> None:
        # RQ calls this from its monitor loop while the horse runs: an unreachable Redis
        # must not end the loop (and the parent) while the horse goes on — the lease,
        # kept in the database, decides whether the run may go on.
        try:
            super().set_current_job_working_time(current_job_working_time, pipeline)
        except RedisError:
            logger.warning("redis unreachable while a job runs", extra={"worker": self.name})

    def _claim_relayed(self, dispatch: str) -> None:
        # The horse relays progress from its own process: its relay waits for "active" to
        # be out first, so followers get the job's events in order — while this process
        # forks, not before. (Inline, one process keeps the order.) The bookkeeper's
        # claim came with its own relay's handover.
        handed_over, self._handed_over = self._handed_over, None
        if dispatch in self._booked:
            self._handover = handed_over
        elif not self._inline:
            self._handover = relay.handover()

    def get_heartbeat_ttl(self, job: RQJob) -> int:
        if self._inline:
            # Nobody beats while the handler runs here: last until its timeout (RQ's
            # SimpleWorker does the same).
            return SimpleWorker.get_heartbeat_ttl(self, job)  # type: ignore[arg-type]
        return super().get_heartbeat_ttl(job)

    def kill_horse(self, sig: signal.Signals = signal.SIGKILL) -> None:
        # RQ's stop-job command (a cancel) kills the horse's process group: with no horse
        # (0), that would be this worker's own group. An inline job is interrupted instead.
        if self.horse_pid:
            super().kill_horse(sig)

    def maintain_heartbeats(self, job: RQJob) -> None:
        try:
            super().maintain_heartbeats(job)
        except RedisError:
            logger.warning("redis unreachable: heartbeat skipped", extra={"worker": self.name})
        self._keep_registered()

    def main_work_horse(self, job: RQJob, queue) -> None:
        try:
            _die_with_parent(self._parent_pid)
            bookkeeper.detach_inherited_connections()
            if self._books is not None:
                self._books.forget()
            runner.in_work_horse(self._to_parent)
            relay.follow_parent(self._handover)
            leasekeeper.stop_with_parents_lease()
        except BaseException:  # never let a horse return into its parent's loop
            logger.exception("work-horse set-up failed")
            os._exit(1)
        super().main_work_horse(job, queue)


class JobdeskSimpleWorker(_ParentBookkeeping, SimpleWorker):
    """Non-forking worker: the same bookkeeping, the handler in the same process. A
    Jobdesk run's claim is asked of the recorder's thread (``ClaimBehind``), so a run's
    record is held there until the next claim is asked (``RecordBehind``: ``held``)."""

    record_waits_for_claim = True


class RecordBehind:
    """Records a finished run's outcome on a thread of its own while the worker asks RQ
    for its next job: the record's round trips to PostgreSQL and Redis (about 2 ms a
    job) overlap the dequeue (RQ's heartbeats, suspension check and pop) instead of
    adding to it — a simple worker's, RQ's preparation of the next run (held, below).
    One record at a time, done before the next claim (a forked run's is
    made after ``wait``; an inline run's is queued behind the record, on the same
    thread: ``submit``) and before the worker's exit. The run's lease is renewed until
    its record is done (disarmed, not released), so a slow record is never taken for a
    lost run; a worker killed with a record behind loses nothing the lease does not
    cover: the reconciler retries the job.

    A simple worker's record is *held*: queued without waking the thread, it goes with
    the next task queued (the next run's claim), while RQ prepares that run, and a busy
    worker's thread wakes once a job instead of twice. Woken while RQ dequeued, the
    thread took the interpreter's lock from RQ's own round trips: a job cost about half
    a millisecond more CPU (docs/benchmarks.md, the twenty-sixth sitting). A held record
    goes at once when the worker has no claim to ask soon (``release``: no job waiting,
    a suspension, RQ's maintenance, Redis failing the check for both), when anyone waits
    for the thread (``wait``, ``close``: a burst's end, the worker's exit), and in any
    case within ``_IDLE_LOOK`` seconds (another worker took the job it saw waiting)."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        # (task, args, future, held), in order
        self._queue: collections.deque = collections.deque()
        self._busy = False  # a task is running
        self._thread: threading.Thread | None = None
        self._closing = False
        self._waiters = 0  # callers of wait(): what is queued goes now

    def record_behind(self, record, *args, held: bool = False) -> None:
        self.wait()
        self.submit(record, *args, held=held)

    def submit(self, task, *args, held: bool = False) -> concurrent.futures.Future:
        """Run ``task(*args)`` on the thread after what is queued; its future. A held
        task waits for the next task queued, ``release`` or ``wait``."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            self._queue.append((task, args, future, held))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="jobdesk-recorder", daemon=True)
                self._thread.start()
            elif not held:
                self._lock.notify_all()
        return future

    def following(self) -> tuple[Callable, tuple] | None:
        """The task queued next (and its arguments), if any: asked by the running one."""
        with self._lock:
            if not self._queue:
                return None
            task, args, _future, _held = self._queue[0]
            return task, args

    def holding(self) -> bool:
        """Is a held task waiting for the next one?"""
        with self._lock:
            return self._held()

    def release(self) -> None:
        """A held task goes now, without waiting for the next one."""
        with self._lock:
            if self._held():
                task, args, future, _ = self._queue[0]
                self._queue[0] = (task, args, future, False)
                self._lock.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        """Until nothing is behind (False: ``timeout`` seconds passed first)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            if self._held():
                self._lock.notify_all()  # it goes now
            self._waiters += 1
            try:
                while self._queue or self._busy:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return False
                    self._lock.wait(left)
            finally:
                self._waiters -= 1
        return True

    def close(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the record behind, then end the thread (and
        its database connection); a later record starts another."""
        self.wait(timeout)
        with self._lock:
            self._closing = True
            self._lock.notify_all()

    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    while not self._queue or self._held():
                        if not self._queue and self._closing:
                            self._closing, self._thread = False, None
                            return
                        if not self._lock.wait(_IDLE_LOOK) and self._held():
                            self.release()  # a held record the worker did not let go of: it goes now
                    task, args, future, _ = self._queue.popleft()
                    self._busy = True
                try:
                    future.set_result(task(*args))
                except BaseException as error:  # never lose the thread, nor a waiter: its caller has the error
                    future.set_exception(error)
                finally:
                    with self._lock:
                        self._busy = False
                        self._lock.notify_all()
        finally:
            connections.close_all()  # this thread's own

    def _held(self) -> bool:
        """Does the task at the head wait for one behind it? The lock held."""
        return len(self._queue) == 1 and self._queue[0][3] and not self._waiters and not self._closing


class ClaimBehind:
    """An inline run's claim under way on the recorder's thread (``_claim_behind``),
    taken where the run needs its row (``runner.execute``, through ``runner.preclaimed``)."""

    future: concurrent.futures.Future

    def __init__(self, worker: _ParentBookkeeping, job_id: str, dispatch: str) -> None:
        self._worker, self.job_id, self.dispatch = worker, job_id, dispatch
        self._taken: Job | str | None = None
        self._done = False

    def take(self) -> Job | str | None:
        """The claimed row, its lease held from now on; runner.REFUSED; or None when the
        claim failed (the run claims for itself, as after a claim that failed here).
        Waits for the claim: an interruption (a cold stop) leaves it to the next call."""
        if not self._done:
            try:
                claimed, sent = self._answer()
            except queueing.TIMEOUT_EXCEPTIONS:
                raise  # not the claim's: the wait was interrupted, and the claim is still to take
            except Exception as error:  # the database, or a bug: as after a claim that failed here
                self._done = True
                logger.exception("claim failed", extra={"dispatch": self.dispatch})
                if isinstance(error, DatabaseError):
                    self._taken = self._worker._adopted(self.job_id, self.dispatch)  # committed, answer lost?
                return self._taken
            self._done = True
            if claimed is None:
                self._taken = runner.REFUSED
            else:
                self._taken = self._worker._hold(claimed, self.dispatch, sent)  # the row now in runner.preclaimed
        return self._taken

    def _answer(self) -> tuple[Job | None, float]:
        """The claim's answer. While it waits (behind the last run's record and hooks,
        which take what they take), RQ's execution of the dispatch is kept beating: the
        reconciler takes a dispatch "started" without a beat for UNCLAIMED_AFTER for one
        whose worker died before its claim."""
        while True:
            try:
                return self.future.result(timeout=_CLAIM_WAIT_BEAT)
            except concurrent.futures.TimeoutError:
                if self.future.done():
                    raise  # the claim's own error, not the wait's
                self._worker._beat_while_claiming()


def _keep_books(sock, *, worker_pid: int) -> None:
    """The bookkeeper's life (jobs.execution.bookkeeper): it dies with the worker, and
    claims and records as ``_ParentBookkeeping`` would."""
    _die_with_parent(worker_pid)
    unrecorded: list[tuple[Job, runner.Outcome]] = []

    def claim(job_id: str, dispatch: str, worker_name: str, known: tuple[str, str] | None) -> Job | None:
        _record_again(unrecorded)
        _drop_broken_connection()
        return runner.claim(job_id, dispatch, worker_name, known)

    def record(job: Job, dispatch: str, outcome: runner.Outcome) -> None:
        _record_or_keep(job, outcome, unrecorded)

    bookkeeper.serve(sock, worker_pid=worker_pid, claim=claim, record=record)


def _record_or_keep(job: Job, outcome: runner.Outcome, unrecorded: list) -> None:
    """Record the outcome, retrying through about a minute of database trouble; then keep
    it in ``unrecorded``. Still active in the database meanwhile, its lease lapses (no one
    renews it), so the reconciler may retry the job: ``_record_again`` tries before the
    next job, and whichever comes first wins (the other is refused by the dispatch guard)."""
    for pause in _RECORD_RETRY_PAUSES:
        try:
            _drop_broken_connection()
            runner.record(job, job.rq_job_id, outcome)
            return
        except DatabaseError:
            logger.exception("recording the outcome failed", extra={"job_id": str(job.id)})
            connections.close_all()
            time.sleep(pause)
    unrecorded.append((job, outcome))


def _record_again(unrecorded: list) -> None:
    for job, outcome in list(unrecorded):
        try:
            _drop_broken_connection()
            runner.record(job, job.rq_job_id, outcome)
        except DatabaseError:
            return  # still down: next time
        unrecorded.remove((job, outcome))


def _forks(job_type: str) -> bool:
    """Does this type run in a work-horse (JobdeskWorker)? An unknown type, or one whose
    code fails to load, does: the horse reports it."""
    try:
        return registry.get(job_type, resolve=True).fork
    except SubmitError:
        return True


def _dispatch_of(rq_job: RQJob) -> tuple[str, str] | None:
    """(job id, dispatch id) when the RQ job is a Jobdesk dispatch."""
    if rq_job.func_name != ENTRY_POINT or len(rq_job.args) < 2:
        return None
    return rq_job.args[0], rq_job.args[1]


def _outcome_in_hand(rq_job: RQJob) -> runner.Outcome | None:
    """The outcome an inline run (this process: ``fork=False``, the simple worker) just
    returned, as RQ keeps it on the job: no need to read back from Redis what this process
    wrote there. None after a work-horse (its return value is in the horse's memory)."""
    returned = getattr(rq_job, "_result", None)
    return returned if isinstance(returned, dict) and "ok" in returned else None


def _latest_result(rq_job: RQJob) -> Result | None:
    for pause in _RECORD_RETRY_PAUSES:
        try:
            return rq_job.latest_result()
        except RedisError:
            time.sleep(pause)
    return None


def _outcome_of(rq_job: RQJob) -> runner.Outcome:
    result = _latest_result(rq_job)
    succeeded = result is not None and result.type == Result.Type.SUCCESSFUL
    if succeeded and result is not None and isinstance(result.return_value, dict) and "ok" in result.return_value:
        return result.return_value
    reason = "no result (RQ lost it, or Redis was unreachable)"
    if result is not None and result.exc_string:
        reason = result.exc_string.strip().splitlines()[-1]
    return {
        "ok": False,
        "category": "temporary",
        "message": f"work-horse died: {reason}",
        "details": (result.exc_string or "") if result is not None else "",
        "recovery_actions": ["None needed: retried automatically", "Check the worker's memory limits"],
        "exception": f"{WorkHorseDied.__module__}.{WorkHorseDied.__qualname__}",
    }


def _lease_lost(reason: str) -> runner.Outcome:
    return {
        "ok": False,
        "category": "temporary",
        "message": f"stopped: {reason}",
        "details": "",
        "recovery_actions": ["None needed: retried automatically", "Check the worker host's link to the database"],
        "exception": f"{leasekeeper.LeaseLost.__module__}.{leasekeeper.LeaseLost.__qualname__}",
    }


class WorkHorseDied(Exception):
    """What an attempt whose work-horse died (killed, out of memory) failed with."""


def _drop_broken_connection() -> None:
    """The parent's connection lives for hours: after a database error, reconnect if it
    is broken (Django notes errors; probing on every job would cost a round trip)."""
    for connection in connections.all(initialized_only=True):
        if connection.errors_occurred and connection.connection is not None and not connection.is_usable():
            connection.close()


@functools.cache
def _prctl():
    """libc's prctl, looked up once (in the worker, before its first fork: a horse would
    pay a dlopen for it on every job); None where there is none (not Linux)."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _die_with_parent(parent_pid: int, sig: int = signal.SIGKILL) -> None:
    prctl = _prctl()
    if prctl is None:  # not Linux: the lease still decides whether the run goes on
        return
    prctl(_PR_SET_PDEATHSIG, sig)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _type_and_queue(rq_job: RQJob) -> tuple[str, str] | None:
    """The job's type (in the dispatch's meta) and queue (its priority), when the
    dispatch carries them (older ones did not: the claim reads the row then)."""
    job_type = (rq_job.meta or {}).get("type")
    return (job_type, rq_job.origin) if job_type and rq_job.origin else None
