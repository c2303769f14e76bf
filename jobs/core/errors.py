"""Errors a handler raises to say how its failure should be treated."""

from __future__ import annotations


class JobError(Exception):
    """Base: a message for the user, recovery actions, and optional technical details."""

    category = "temporary"

    def __init__(self, message: str, *, recovery_actions: list[str] | None = None, details: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.recovery_actions = list(recovery_actions or [])
        self.details = details


class TemporaryError(JobError):
    """Worth retrying later: network hiccups, a busy dependency, rate limits."""

    category = "temporary"


class UserFixableError(JobError):
    """The input is wrong; retrying will not help, the user must change something."""

    category = "user_fixable"


class AdminRequiredError(JobError):
    """Configuration or infrastructure problem; operators are alerted, no retry."""

    category = "admin_required"


class ActionRefused(Exception):
    """An operator or API action the job's situation forbids (the API answers 409)."""

    http_status = 409
    code = "conflict"
    hint = "Reload the job to see its current status."


class BatchClosed(ActionRefused, UserFixableError):
    """A job may not join this batch: the API answers 409; a job of the batch that tries
    (``ctx.add_to_batch``) fails without a retry — a retry would be refused the same."""

    hint = "Reload the batch to see its state: a closed batch takes new jobs only from its own running jobs."

    def __init__(self, message: str) -> None:
        # A job failed by it shows the hint as what to do, as the API's answer does.
        super().__init__(message, recovery_actions=[self.hint])


class NotInABatch(ActionRefused, UserFixableError):
    """``ctx.add_to_batch`` from a job of no batch: a bug of its code, so the job fails
    without a retry (a retry would be refused the same)."""

    hint = "Submit the jobs with jobs.submit, or submit this job into a batch to fan out into it."

    def __init__(self, message: str) -> None:
        super().__init__(message, recovery_actions=[self.hint])


class NothingToCancel(ActionRefused):
    """A batch that has finished: canceling it would only stamp it canceled."""

    hint = "A finished batch has no waiting jobs; retry-failed requeues its failed ones."


class BatchFinished(BatchClosed):
    hint = "A finished batch takes no new jobs: submit them on their own, or in a new batch."


class BatchCanceled(BatchClosed):
    hint = "Retry the batch's failed jobs (retry-failed) to let its running jobs add more again."


class JobNotFound(Exception):
    """No job with that id (the API answers 404)."""

    http_status = 404
    code = "not_found"
    hint = "Check the id; you only see your own jobs."
    message = "Not found."


class IdempotencyConflict(ActionRefused):
    """An idempotency key reused for a different request (the API answers 409)."""

    hint = "Use a new key for new work; the same request with this key answers with the first job."

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field  # the item's key, in a bulk ("jobs[4999].idempotency_key")


class TransitionError(ActionRefused):
    """The job's current state forbids the requested move."""

    def __init__(self, job_id, action: str, status: str, allowed) -> None:
        allowed_list = ", ".join(sorted(str(s) for s in allowed))
        super().__init__(f"Cannot {action} job {job_id}: it is {status}; {action} needs one of: {allowed_list}.")
        self.job_id = job_id
        self.action = action
        self.status = status
        self.allowed = allowed


class SubmitError(Exception):
    """A submission was rejected: unknown type, invalid payload, bad dependency (400)."""

    http_status = 400
    code = "invalid"

    def __init__(self, message: str, *, field: str | None = None, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.hint = hint


class DependencyCycle(SubmitError):
    """Jobs of one submit that depend on each other by ref, round in a circle. Only refs
    can close one (a job id is of a job made before), which the API takes as
    ``depends_on_refs``: it names that field."""


class TypeLoadFailed(SubmitError):
    """A type's code fails to load in this process (its module raises at import: a broken
    deploy). Worker side: its job ends admin_required, since retrying will not mend it."""


class PayloadTooLarge(SubmitError):
    """A payload over MAX_PAYLOAD_BYTES (413): big data travels by reference."""

    http_status = 413
    code = "too_large"


class InvalidInput(SubmitError):
    """A bad value for an operator's setting (a lever, a schedule): 400 naming the field."""
