"""Job types and standard tasks for the batch and chain tests, resolvable by name in
worker processes (importing this module registers them)."""

from __future__ import annotations

import contextlib

from jobs.core.errors import UserFixableError
from jobs.core.registry import job_type
from jobs.core.submit import JobSpec
from jobs.tasks.compat import task

CALLBACK = "tests.batch.callback"
SUCCESS = "tests.batch.success"
STEP = "tests.chain.step"


@job_type(CALLBACK, public=False, max_attempts=1)
def callback(ctx) -> dict:
    """A batch callback: its result is the summary it was given."""
    return ctx.payload


@job_type(SUCCESS, public=False, max_attempts=1)
def success(ctx) -> dict:
    return ctx.payload


@job_type(STEP, public=False, max_attempts=1)
def step(ctx) -> dict:
    """A chain step: adds ``add`` to the previous step's ``total`` (0 for the first);
    ``fail`` fails it; it returns what it saw of its dependencies."""
    seen = ctx.dependency_results()
    if ctx.payload.get("fail"):
        raise UserFixableError("this step was told to fail")
    previous = [r["result"]["total"] for r in seen.values() if r["status"] == "complete"]
    total = (previous[-1] if previous else 0) + ctx.payload.get("add", 0)
    return {"total": total, "seen": [{"status": r["status"], "error": r["error"]} for r in seen.values()]}


@task()
def task_callback(summary: dict) -> dict:
    return summary


@task(takes_context=True)
def task_step(context, add: int) -> int:
    results = list(context.dependency_results().values())
    return (results[-1]["result"] if results else 0) + add


@task()
def task_success(summary: dict) -> dict:
    return summary


@task(takes_context=True)
def task_fan_out(context, count: int, seconds: float) -> int:
    """Adds ``count`` sleeps to its own batch while it runs."""
    context.add_to_batch([JobSpec("diagnostics.sleep", {"seconds": seconds, "steps": 1})] * count)
    return count


FAN_OUT_AFTER_CANCEL = "tests.batch.fan_out_after_cancel"


@job_type(FAN_OUT_AFTER_CANCEL, public=False, max_attempts=3)
def fan_out_after_cancel(ctx) -> int:
    """Its batch is canceled while it runs (by its owner, as the API would), then it
    tries to add more."""
    from jobs.core import batches
    from jobs.core.errors import NothingToCancel

    with contextlib.suppress(NothingToCancel):  # run again after it finished: the API's 409
        batches.cancel(ctx.job.batch_id)
    ctx.add_to_batch([JobSpec("diagnostics.noop")])
    return 1
