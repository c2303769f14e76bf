"""Workers as operators find them: ``host:pid`` for RQ's 32-hex-character worker names.

A job's timeline, error message and dispatch fields name the RQ worker that ran it.
Each claim's timeline event records the claiming process as ``details["worker"]``
(``host:pid``, see ``lifecycle.claim``); older claims left only the job's last
``runner_host``/``runner_pid``; live workers are in RQ's registry. ``labels`` gathers
those for the jobs a page shows (one indexed query, one Redis call), and ``spans``
cuts a text at the names it knows, for the console to show the label with the name
in its tooltip.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable

from redis.exceptions import RedisError

from jobs.core import queueing
from jobs.core.models import Job, JobEvent, Status


def label(worker: queueing.WorkerState) -> str:
    """host:pid, as an operator finds the process (RQ's name is 32 hex characters)."""
    if worker.hostname and worker.pid:
        return f"{worker.hostname}:{worker.pid}"
    return worker.name


def labels(jobs: Iterable[Job], *, live: bool = True) -> dict[str, str]:
    """RQ worker name → ``host:pid`` for every worker that ran (or runs) these jobs,
    and for the live ones when ``live``."""
    jobs = list(jobs)
    found: dict[str, str] = {}
    if live:
        with contextlib.suppress(RedisError):  # unreachable: what the database says still applies
            found.update({w.name: label(w) for w in queueing.workers().values() if w.hostname and w.pid})
    for job in jobs:  # claims recorded before events carried the label: the last one
        if job.worker_name and job.runner_host and job.runner_pid:
            found.setdefault(job.worker_name, f"{job.runner_host}:{job.runner_pid}")
    claims = JobEvent.objects.filter(job_id__in=[job.pk for job in jobs], to_status=Status.ACTIVE).values_list(
        "actor_label", "details"
    )
    for name, details in claims:
        recorded = (details or {}).get("worker") if isinstance(details, dict) else None
        if name and recorded:
            found[name] = recorded  # what the claim itself recorded wins
    return found


def spans(text: str, known: dict[str, str]) -> list[tuple[str, str | None]]:
    """``text`` as pieces: (plain text, None) and (label, RQ name) for each known name."""
    names = [name for name in known if name and name in text]
    if not text or not names:
        return [(text, None)]
    pattern = re.compile("|".join(re.escape(name) for name in sorted(names, key=len, reverse=True)))
    pieces: list[tuple[str, str | None]] = []
    at = 0
    for match in pattern.finditer(text):
        if match.start() > at:
            pieces.append((text[at : match.start()], None))
        pieces.append((known[match.group(0)], match.group(0)))
        at = match.end()
    if at < len(text):
        pieces.append((text[at:], None))
    return pieces
