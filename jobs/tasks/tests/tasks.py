"""Module-level tasks for the backend's tests (the standard API wants module functions)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from jobs import UserFixableError
from jobs.tasks.compat import TaskContext, task


@task()
def noop(*args: Any, **kwargs: Any) -> None:
    return None


@task
def noop_bare(*args: Any, **kwargs: Any) -> None:
    return None


@task()
def add(a: int, b: int) -> int:
    return a + b


@task()
def echo(*args: Any, **kwargs: Any) -> dict:
    return {"args": list(args), "kwargs": kwargs}


@task()
async def add_async(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


@task()
def failing() -> None:
    raise ValueError("this task failed")


@task()
def not_for_you() -> None:
    raise UserFixableError("the input is wrong", recovery_actions=["fix it"])


@task()
def unstorable_result() -> Any:
    return lambda: True


@task()
def text_postgres_cannot_store(which: str) -> str:
    """A NUL character or half a surrogate pair: JSON, but not storable in jsonb."""
    return {"nul": "a\x00b", "surrogate": "a\ud800b"}[which]


@task(takes_context=True)
def reports_progress(context: TaskContext, steps: int) -> dict:
    for step in range(1, steps + 1):
        context.progress(100 * step / steps, f"step {step}/{steps}", step=step)  # type: ignore[attr-defined]
    return {"attempt": context.attempt, "id": context.task_result.id, "canceled": context.is_canceled()}  # type: ignore[attr-defined]


@task(takes_context=True)
async def reports_progress_async(context: TaskContext) -> dict:
    context.progress(50, "halfway")  # type: ignore[attr-defined]
    await asyncio.sleep(0)
    return {"attempt": context.attempt}


@task(max_attempts=2)  # a JobdeskTask option (the standard signature takes **kwargs)
def fails_twice() -> None:
    raise RuntimeError("still broken")


@task(fork=False)
def light_pid() -> int:
    """Runs inside the worker's process (fork=False): returns that process's pid."""
    return os.getpid()


def never_a_task() -> None:
    """Decorated by a test with options a task cannot have: refused, so never registered."""


@task(fork=False)
async def count_users_inline() -> int:
    """The ORM's async API in the worker's own process: starts asgiref's thread there."""
    from django.contrib.auth import get_user_model

    return await get_user_model().objects.acount()


@task(timeout=20, max_attempts=1)
async def count_users() -> int:
    """The same in a work-horse, forked from that process."""
    from django.contrib.auth import get_user_model

    return await get_user_model().objects.acount()
