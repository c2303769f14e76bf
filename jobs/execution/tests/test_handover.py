"""The claim a forking worker's parent makes after the fork reaches the horse — real
fork()s and pipes: the horse waits for it, gets the row and its claim's span, and takes
"nothing sent" (refused, failed, the parent gone) as not claimed."""

from __future__ import annotations

import os
import pickle
import uuid

import pytest

from jobs.core import tracing
from jobs.core.models import Job
from jobs.execution.handover import Preclaims

DISPATCH = "dispatch-1"


def _in_a_horse(preclaims: Preclaims, before_send) -> tuple[object, str]:
    """Fork a horse inside ``handing_over`` that takes the claim and reports what it
    got; the parent runs ``before_send(pipe)`` after the fork (it sends, or not)."""
    report_read, report_write = os.pipe()
    with preclaims.handing_over(DISPATCH) as pipe:
        pid = os.fork()
        if pid == 0:  # the horse
            try:
                os.close(report_read)
                job = preclaims.take(DISPATCH)
                got = (None if job is None else (str(job.id), job.payload), tracing.attempt_parent(DISPATCH))
                os.write(report_write, pickle.dumps(got))
            finally:
                os._exit(0)
        os.close(report_write)
        before_send(pipe)
    report = b""
    while chunk := os.read(report_read, 1 << 16):
        report += chunk
    os.close(report_read)
    assert os.waitpid(pid, 0)[1] == 0
    return pickle.loads(report)


def test_the_horse_waits_for_the_claim_made_after_its_fork_and_gets_the_row_and_its_span(spans):
    job = Job(id=uuid.uuid4(), type="diagnostics.noop", payload={"big": "x" * 200_000})  # more than a pipe holds
    tracing.claimed(job, DISPATCH, None)
    parent = tracing.attempt_parent(DISPATCH)
    assert parent, "traces are on: the claim has a span"
    got, attempt = _in_a_horse(Preclaims(), lambda pipe: pipe.send(DISPATCH, job))
    assert got == (str(job.id), job.payload)
    assert attempt == parent  # the run becomes a child of the parent's claim span


@pytest.mark.parametrize("verdict", ["refused", "nothing sent"])
def test_no_claim_from_the_parent_is_not_claimed_here(verdict):
    def parent(pipe):
        if verdict == "refused":
            assert pipe.send(DISPATCH, None)
        # else: the parent leaves handing_over without a word (its claim raised)

    assert _in_a_horse(Preclaims(), parent) == (None, "")


def test_a_claim_for_a_horse_already_gone_is_reported_not_raised():
    preclaims = Preclaims()
    with preclaims.handing_over(DISPATCH) as pipe:
        pid = os.fork()
        if pid == 0:
            os._exit(0)  # dies before reading its claim
        os.waitpid(pid, 0)
        assert pipe.send(DISPATCH, Job(id=uuid.uuid4(), type="diagnostics.noop")) is False


def test_a_claim_put_for_this_process_is_taken_once():
    preclaims, job = Preclaims(), Job(id=uuid.uuid4(), type="diagnostics.noop")
    preclaims.put(DISPATCH, job)
    assert preclaims.take(DISPATCH) is job
    assert preclaims.take(DISPATCH) is None
