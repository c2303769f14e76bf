"""Standard tasks for the flow-control tests: two types that sleep, resolvable by name
in worker processes (importing this module registers them)."""

from __future__ import annotations

import time

import django_rq

from jobs.tasks.compat import task


@task()
def limited_sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@task()
def free_sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@task(fork=False)
def inline_beating(tag: str, seconds: float) -> str:
    """Runs in its worker's process and never looks at ``is_canceled()``: a cancel stops
    it only through its worker. Notes its start and each beat in Redis (``flow:<tag>:…``)."""
    redis = django_rq.get_connection("normal")
    redis.set(f"flow:{tag}:start", repr(time.time()))
    end = time.time() + seconds
    while time.time() < end:
        redis.set(f"flow:{tag}:beat", repr(time.time()))
        time.sleep(0.02)
    return tag
