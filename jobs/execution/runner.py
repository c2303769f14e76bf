"""The single RQ entry point for every job, in three steps:

claim → run_handler → record (outcome, hooks, dependents).

With ``jobs.execution.worker.JobdeskWorker`` (the default worker class) the worker's long-lived
parent process claims and records, around the fork, on its persistent database
connection; the work-horse only runs the handler and returns the outcome through RQ's
result. With a plain RQ worker, ``execute`` does all three itself. Each database step
is a guarded lifecycle move, so a duplicate or stale RQ entry, a cancel, or a requeue
in between can never make a job run twice at once or run after it finished.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import pickle
import socket
import traceback
from typing import Any, Protocol

from asgiref.sync import SyncToAsync
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import reset_queries

from jobs.core import flow, leases, lifecycle, outcomes, queueing, registry, relay, tracing, window
from jobs.core.errors import (
    AdminRequiredError,
    JobError,
    JobNotFound,
    SubmitError,
    TransitionError,
    TypeLoadFailed,
    UserFixableError,
)
from jobs.core.joblog import log_job
from jobs.core.models import Job
from jobs.execution import leasekeeper
from jobs.execution.context import JobContext

logger = logging.getLogger("jobs.execution.runner")

Outcome = dict[str, Any]  # {"ok": True, "result": …} | {"ok": False, "category": …, "message": …, …}


class ClaimUnderWay(Protocol):
    """A claim the worker made on another thread: ``take`` waits for it and gives the
    row, REFUSED, or None when it failed (the run claims for itself)."""

    def take(self) -> Job | str | None: ...


# Jobs the worker's parent process claimed before forking, by dispatch id. The
# work-horse inherits this dict through fork(), so it knows the claim is done. An
# inline run's claim may still be under way (``ClaimUnderWay``).
preclaimed: dict[str, Job | ClaimUnderWay] = {}
REFUSED = "refused"  # a claim under way that was refused: the run is skipped
# This process is a work-horse of JobdeskWorker's, which exits right after its run.
_short_lived = False
# A cold stop of this worker is under way (RQ's second SIGINT/SIGTERM raises SystemExit
# from its signal handler, wherever the main thread is): an inline handler's SystemExit
# from then on is the stop, not the handler's own.
_cold_stop = False
# In such a horse: the write end of the pipe its parent reads the outcome from.
_to_parent: int | None = None
# The length prefix of an outcome handed to the parent: its pickle's size in bytes.
_FRAME = 4


def cold_stop_under_way() -> None:
    """Called by the worker just before RQ's cold stop raises SystemExit."""
    global _cold_stop
    _cold_stop = True


def in_work_horse(outcome_pipe: int | None = None) -> None:
    """Called first in a forking worker's work-horse, which ends right after its run: its
    spans go back to the parent with the outcome, written to ``outcome_pipe``; and its
    run's messages (progress) are sent before the run returns. A long-lived process lets
    its relay gather them (jobs.core.relay.GATHER_SECONDS)."""
    global _short_lived, _to_parent
    _short_lived, _to_parent = True, outcome_pipe
    tracing.in_work_horse()
    _own_thread_sensitive_executor()


def _own_thread_sensitive_executor() -> None:
    """asgiref's one thread for thread-sensitive calls (the ORM's async API: ``await
    Model.objects.aget()``), started in the parent by a ``fork=False`` async task, is
    inherited without its thread: every such call of a forked task waited on a thread
    that is not there, until the task's timeout. The horse gets an executor of its own."""
    SyncToAsync.single_thread_executor = concurrent.futures.ThreadPoolExecutor(max_workers=1)


def _hand_to_parent(outcome: Outcome) -> None:
    """Write the outcome to the parent's pipe, whole or not at all (a pipe holds 64 KiB
    when nobody reads it): the parent then need not read it back from RQ's result in
    Redis — a round trip, and an outcome lost when Redis was flushed or down meanwhile.
    What does not fit, the parent reads from RQ's result as before."""
    if _to_parent is None:
        return
    try:
        data = pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)
        os.set_blocking(_to_parent, False)
        os.write(_to_parent, len(data).to_bytes(_FRAME, "big") + data)  # a partial write is ignored: too short
    except Exception:  # too big for the pipe (or not picklable: RQ's result says why): the parent reads RQ's
        logger.debug("outcome not handed to the parent", exc_info=True)


def outcome_from_horse(read_end: int) -> Outcome | None:
    """In the parent, once its horse has exited: the outcome the horse wrote to the pipe
    (``_hand_to_parent``), or None when it wrote none whole (it died first, or the outcome
    did not fit). Closes ``read_end``."""
    chunks = []
    try:
        os.set_blocking(read_end, False)
        while chunk := os.read(read_end, 1 << 16):
            chunks.append(chunk)
    except BlockingIOError:
        pass  # all there is: the horse has exited
    finally:
        os.close(read_end)
    data = b"".join(chunks)
    if len(data) < _FRAME or len(data) != _FRAME + int.from_bytes(data[:_FRAME], "big"):
        return None
    try:
        return pickle.loads(data[_FRAME:])  # written by this worker's own child, from this code
    except Exception:  # a value that pickles but does not load back: RQ's result says what it was
        logger.exception("a work-horse's outcome could not be read from its pipe")
        return None


def execute(job_id: str, dispatch: str) -> dict:
    """What RQ runs. Returns the outcome (parent-claimed) or a summary (self-claimed)."""
    found = preclaimed.pop(dispatch, None)
    job = found.take() if found is not None and not isinstance(found, Job) else found  # claimed on another thread
    if job == REFUSED:
        return {"skipped": True}
    if isinstance(job, Job):
        # The parent records it; a work-horse's spans go back with the outcome.
        outcome = tracing.hand_back(run_handler(job, dispatch))
        _hand_to_parent(outcome)
        return outcome
    tracing.export_from_here()  # nobody takes this process's spans back
    sent = leasekeeper.now()
    job = claim(job_id, dispatch, queueing.current_worker_name())
    if job is None:
        return {"skipped": True}
    # Nobody else keeps this run's lease (a plain RQ worker, or a parent whose claim
    # failed): this process does, and stops the handler if it is lost.
    keeper = leasekeeper.keeper()
    leasekeeper.prepare_interrupts()
    keeper.hold(job.id, dispatch, leasekeeper.interrupt_main_thread, claimed_at=sent)
    try:
        outcome = run_handler(job, dispatch)
    finally:
        keeper.disarm()  # the handler is done: nothing to stop, the lease kept while recording
    try:
        recorded = record(job, dispatch, outcome)
    finally:
        keeper.release()
    relay.drain()  # in a work-horse, the outcome's message too
    tracing.flush(tracing.HORSE_FLUSH_SECONDS)  # RQ's own forking worker: the horse exports its spans
    return {"status": recorded.status if recorded else "discarded"}


def claim(job_id: str, dispatch: str, worker_name: str, known: tuple[str, str] | None = None) -> Job | None:
    """Claim the row for this dispatch; None when refused or sent back to its window.
    ``known``: the job's (type, queue) as its dispatch says, if the caller has them."""
    started = tracing.now()
    try:
        job = flow.claim(job_id, dispatch, worker_name, known=known)  # None: a lever holds it back for now
    except (TransitionError, JobNotFound) as refused:
        logger.info("dispatch skipped", extra={"job_id": job_id, "dispatch": dispatch, "reason": str(refused)})
        return None
    if job is None or _sent_back_to_its_window(job, dispatch):
        return None
    tracing.claimed(job, dispatch, started)
    return job


def claim_along(
    job_id: str, dispatch: str, worker_name: str, known: tuple[str, str] | None, *, recorded: Job
) -> contextlib.AbstractContextManager[None]:
    """Inside: the record of the ``recorded`` run takes this claim along in its own
    statement (``lifecycle.claim_along``), where a plain claim is all the claim would be
    and nothing slow follows the record (``_quick_to_follow_up``): the claim's lease
    runs from then, and nobody renews it before the record is done. ``claim`` then takes
    its answer (``claim_made_along``)."""
    if not _quick_to_follow_up(recorded) or not flow.claims_outright(known):
        return contextlib.nullcontext()
    return lifecycle.claim_along(job_id, dispatch, worker_name, record=(recorded.id, recorded.rq_job_id))


def claim_made_along(job_id: str, dispatch: str) -> bool:
    """Was this claim made along with this thread's last record, its answer waiting?"""
    return lifecycle.claim_made_along(job_id, dispatch)


def _quick_to_follow_up(job: Job) -> bool:
    """Does nothing of the team's code, nor any batch's, follow this run's record: no
    completion hook of its type, no after-record listener, no batch, no dependents?"""
    if job.batch_id is not None or not job.hooks_done:
        return False
    try:
        job_type = registry.get(job.type, resolve=True)
    except SubmitError:
        return False
    return not job_type.on_success and not job_type.on_failure and job_type.after_record is None


def adopt(job_id: str, dispatch: str, worker_name: str) -> Job | None:
    """The run a worker's bookkeeper claimed in its name and died before answering
    (``leases.adopt``); None when there is none to take over."""
    job = leases.adopt(job_id, dispatch, worker_name, socket.gethostname(), os.getpid())
    if job is None or _sent_back_to_its_window(job, dispatch):
        return None
    logger.info("run adopted from the bookkeeper", extra={"job_id": job_id, "dispatch": dispatch})
    # The claim's "active" may have died in the bookkeeper's relay: followers get it
    # from here (again, at the same seq, if it did go), before the horse's messages.
    relay.publish(job)
    return job


def _sent_back_to_its_window(job: Job, dispatch: str) -> bool:
    try:
        return window.defer_if_closed(job, dispatch)
    except TransitionError:
        return True  # canceled between the claim and the window check: nothing to run
    except Exception:  # broken window data must not stop work: run it, say so
        logger.exception("work-window check failed; running the job", extra={"job_id": str(job.id)})
        return False


def run_handler(job: Job, dispatch: str) -> Outcome:
    """Run the type's handler and classify how it ended. Touches the database only
    through the context (progress, cancel checks) if the handler uses them."""
    try:
        job_type = registry.get(job.type, resolve=True)
    except TypeLoadFailed as broken:  # a broken deploy: retrying will not mend it
        return _error(AdminRequiredError(broken.message))
    except SubmitError as unknown:
        return _error(AdminRequiredError(f"{unknown.message} Was the type removed from the code?"))
    context = JobContext(job, dispatch)
    with tracing.running(job, dispatch) as span:
        try:
            with context.capturing(), leasekeeper.handler_running():
                result = _json_safe(job_type.handler(context))
        except (UserFixableError, AdminRequiredError) as error:
            outcome = _error(error)
        except queueing.TIMEOUT_EXCEPTIONS:
            outcome = _error(TemporaryTimeout(job.timeout))
        except Exception as error:  # temporary errors and unexpected crashes alike retry
            outcome = _error(error)
        except SystemExit as error:
            if _cold_stop:
                raise  # the worker's cold stop, raised here: RQ's to handle, as before
            outcome = _error(error)  # the handler's own sys.exit(): an error of its code, as any other
        else:
            outcome = {"ok": True, "result": result}
        context.flush()  # the last progress report: an event of the run's span too
        tracing.ran(span, outcome)
    if _short_lived:
        relay.drain()  # a work-horse exits right after: let its progress messages out first
    # With DEBUG on, Django logs every query for the life of the process; a long-lived
    # worker must not keep every job's queries (a bulk insert's SQL can be megabytes).
    if settings.DEBUG:
        reset_queries()
    return outcome


def record(job: Job, dispatch: str, outcome: Outcome) -> Job | None:
    """Write the outcome, run hooks, settle dependents, and tell the type's
    ``after_record`` listener. None if the run no longer owns the job (canceled or
    repaired while it ran): its outcome is discarded."""
    outcome = tracing.take_back(outcome)  # a work-horse's spans, exported from here
    with tracing.recording(job, dispatch) as span:
        recorded = _record(job, dispatch, outcome)
        tracing.outcome(span, recorded.status if recorded is not None else "discarded")
        if recorded is not None:
            _tell_after_record(recorded)
    return recorded


def _tell_after_record(job: Job) -> None:
    try:
        listener = registry.get(job.type, resolve=True).after_record
        if listener is not None:
            listener(job)
    except Exception:  # a notification: it never undoes or fails the recorded outcome
        logger.exception("after-record listener failed", extra={"job_id": str(job.id)})


def _record(job: Job, dispatch: str, outcome: Outcome) -> Job | None:
    try:
        if outcome.get("ok"):
            done = lifecycle.complete(job.id, dispatch, outcome.get("result"))
            outcomes.finished(done)
            return done
        error: dict[str, Any] = {k: outcome.get(k) for k in ("message", "details", "recovery_actions")}
        error["exception"] = outcome.get("exception") or ""
        if outcome.get("category") in ("user_fixable", "admin_required"):
            failed = lifecycle.fail(job.id, dispatch, category=outcome["category"], **error)
            if failed.error_category == "admin_required":
                log_job("operator attention needed", failed, level=logging.ERROR, error=failed.error_message)
            outcomes.finished(failed)
            return failed
        return outcomes.temporary_failure(job, dispatch, actor_label=job.worker_name, **error)
    except (TransitionError, JobNotFound) as refused:
        # Canceled, repaired or deleted (e.g. from the admin) while it ran: nothing to record.
        logger.info("outcome discarded", extra={"job_id": str(job.id), "dispatch": dispatch, "reason": str(refused)})
        if leases.release(job.id, dispatch):  # the run has stopped: a requeue need not wait for its lease
            flow.slot_freed(job.type)  # nor a held job of its type for the scheduler's next poll
        return None


class TemporaryTimeout(JobError):
    def __init__(self, seconds: int) -> None:
        super().__init__(
            f"timed out after {seconds}s",
            recovery_actions=["Retry later", "Raise the job type's timeout if the work is legitimately slow"],
        )


def _error(error: BaseException) -> Outcome:
    if isinstance(error, JobError):
        category, message, actions = error.category, error.message, error.recovery_actions
        details = error.details or traceback.format_exc()
    else:
        category, message = "temporary", f"{type(error).__name__}: {error}"
        actions, details = ["Retry later", "Report it if it keeps happening"], traceback.format_exc()
    return {
        "ok": False, "category": category, "message": message, "details": details, "recovery_actions": actions,
        "exception": f"{type(error).__module__}.{type(error).__qualname__}",
    }  # fmt: skip


def _json_safe(result):
    """Results go into a JSONField: reject what cannot be kept, as a handler bug."""
    if result is None or isinstance(result, bool):
        return result  # nothing to check (most handlers return None): a light job's horse spares the encoder
    return registry.stored_result(
        result, AdminRequiredError, who="handler", encoder=DjangoJSONEncoder,
        advice="Store big output elsewhere (a file, a table) and return its id",
    )  # fmt: skip
