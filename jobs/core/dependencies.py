"""What a job's dependencies ended with: the results a chain passes along."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from jobs.core.models import Job, Status

if TYPE_CHECKING:
    from jobs.core.submit import JobSpec, Submitted

_FIELDS = ("id", "type", "status", "result", "error_category", "error_message", "created_at")


def results_of(job_id) -> dict[str, dict[str, Any]]:
    """``{dependency id: {"type", "status", "result", "error"}}``, in the order the
    dependencies were submitted (then the order the job named them)."""
    through = Job.depends_on.through
    links = through.objects.filter(from_job_id=job_id).order_by("to_job__created_at", "id")
    rows = {row["id"]: row for row in Job.objects.filter(dependents=job_id).values(*_FIELDS)}
    found: dict[str, dict[str, Any]] = {}
    for dependency_id in links.values_list("to_job_id", flat=True):
        row = rows[dependency_id]
        failed = row["status"] != Status.COMPLETE and (row["error_category"] or row["error_message"])
        error = {"category": row["error_category"] or None, "message": row["error_message"]} if failed else None
        found[str(dependency_id)] = {
            "type": row["type"],
            "status": row["status"],
            "result": row["result"],
            "error": error,
        }
    return found


def chain(specs: Sequence[JobSpec], *, owner=None, allow_internal: bool = True, **options: Any) -> list[Submitted]:
    """Submit A → B → C in one call and one transaction: each step depends on the one
    before (besides its own ``depends_on``) and reads its result with
    ``ctx.dependency_results()``. A step that fails cancels the rest, unless the next
    one asked to run anyway (``JobSpec(..., on_dependency_failure="run")``) and see the
    failure. ``options`` go to ``submit_many`` (e.g. ``batch=``)."""
    from jobs.core.submit import submit_many

    linked: list[JobSpec] = []
    for index, spec in enumerate(specs):
        ref = spec.ref or f"chain-step-{index}"
        depends_on = list(spec.depends_on)
        if linked:
            depends_on.append(linked[-1].ref)
        linked.append(dataclasses.replace(spec, ref=ref, depends_on=depends_on))
    return submit_many(linked, owner=owner, allow_internal=allow_internal, **options)
