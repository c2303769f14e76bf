"""Standard tasks for the flow-control tests: two types that sleep, resolvable by name
in worker processes (importing this module registers them)."""

from __future__ import annotations

import time

from jobs.tasks.compat import task


@task()
def limited_sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@task()
def free_sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds
