"""The claim a forking worker's parent hands to the process that runs the job.

The parent claims a job's row on its own long-lived database connection, so a work-horse
needs no connection for it. It claims right *after* the fork, while the new horse gets
going: a horse's start (copy-on-write faults, RQ's preparation of the job, its own Redis
connection) takes several milliseconds, longer than the claim's round trip, which then
costs the job no time. The horse waits for the claim where it needs it, at the entry
point (``runner.execute``): its handler never starts before the row is claimed for this
dispatch.

The claim travels through a pipe made before the fork: the parent writes the claimed row
(pickled) and closes its end; nothing written (the claim refused or failed, the parent
gone) means "not claimed here", and the horse claims for itself, as a horse of a plain
RQ worker does. A process that runs the job itself (an inline run, no fork) just puts
its claim here.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pickle
from collections.abc import Iterator

from jobs.core import tracing
from jobs.core.models import Job

logger = logging.getLogger("jobs.execution.handover")

_PIPE_BUFFER = getattr(fcntl, "F_SETPIPE_SZ", None)  # Linux: room for the row in one write


class _Pipe:
    """One job's claim on its way from the parent to the horse forked before it."""

    def __init__(self) -> None:
        self.read_end, self.write_end = os.pipe()

    def send(self, dispatch: str, job: Job | None) -> bool:
        """The parent's verdict (the claimed row and its claim's span, or None: not
        claimed); False when the horse is already gone (it never runs the handler)."""
        self.close_read_end()  # the horse's copy is the only reader left: its death breaks the pipe
        try:
            if job is not None:
                claim = (job, tracing.attempt_parent(dispatch))
                self._write(pickle.dumps(claim, protocol=pickle.HIGHEST_PROTOCOL))
            return True
        except BrokenPipeError:
            return False
        finally:
            self.close_write_end()

    def receive(self, dispatch: str) -> Job | None:
        """In the horse: wait for the parent's verdict (its end closed, written or not)."""
        self.close_write_end()  # the horse's inherited copy, or the end would never close
        chunks = []
        try:
            while chunk := os.read(self.read_end, 1 << 16):
                chunks.append(chunk)
        finally:
            self.close_read_end()
        if not chunks:
            return None
        job, attempt = pickle.loads(b"".join(chunks))  # noqa: S301 - written by this process's parent
        tracing.adopt_attempt(dispatch, attempt)
        return job

    def _write(self, data: bytes) -> None:
        if _PIPE_BUFFER is not None and len(data) > 1 << 16:
            # A big row (a large payload) in one write, where the system allows: the
            # parent need not wait for the horse to read. Else it waits (the horse reads
            # soon; if it dies, the write fails at once).
            with contextlib.suppress(OSError):
                fcntl.fcntl(self.write_end, _PIPE_BUFFER, len(data))
        view = memoryview(data)
        while view:
            view = view[os.write(self.write_end, view) :]

    def close_write_end(self) -> None:
        if self.write_end >= 0:
            os.close(self.write_end)
            self.write_end = -1

    def close_read_end(self) -> None:
        if self.read_end >= 0:
            os.close(self.read_end)
            self.read_end = -1


class Preclaims:
    """Jobs claimed for this process by its worker, by dispatch id: put here before the
    run, or — in a horse forked before the claim — still on their way (``coming``)."""

    def __init__(self) -> None:
        self._claimed: dict[str, Job] = {}
        self._coming: dict[str, _Pipe] = {}

    def put(self, dispatch: str, job: Job) -> None:
        self._claimed[dispatch] = job

    def discard(self, dispatch: str) -> None:
        self._claimed.pop(dispatch, None)

    def take(self, dispatch: str) -> Job | None:
        """The job claimed for this dispatch (waiting for it if it is on its way), or
        None: claimed by no one here."""
        pipe = self._coming.pop(dispatch, None)
        if pipe is not None:
            return pipe.receive(dispatch)
        return self._claimed.pop(dispatch, None)

    @contextlib.contextmanager
    def handing_over(self, dispatch: str) -> Iterator[_Pipe]:
        """Around the fork, in the parent: the horse forked inside expects this
        dispatch's claim through the pipe yielded; the parent sends it (``send``) after
        the fork. On the way out the parent's ends are closed (an unsent verdict: not
        claimed)."""
        pipe = _Pipe()
        self._coming[dispatch] = pipe
        try:
            yield pipe
        finally:
            # Only the parent gets here: a horse leaves through os._exit.
            self._coming.pop(dispatch, None)
            pipe.close_write_end()
            pipe.close_read_end()
