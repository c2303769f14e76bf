"""Standard @tasks that sleep, for bench/eta_accuracy.py's mixed workload (module level,
so the workers resolve them by name): a type limited to one at once, a bimodal type, a
sized type whose run grows with its size, and a type that is new when measuring starts."""

import random
import time

from django_tasks import task


@task()
def limited_sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@task()
def bimodal_sleep(seconds: float) -> float:
    """Most runs short, some long: the caller draws ``seconds`` from the two modes."""
    time.sleep(seconds)
    return seconds


SECONDS_PER_UNIT = 0.0002


@task()
def sized_sleep(units: int) -> float:
    """0.1 s plus 0.2 ms per unit of size, ±10 %: enqueue with ``.options(size=units)``."""
    seconds = (0.1 + units * SECONDS_PER_UNIT) * random.uniform(0.9, 1.1)
    time.sleep(seconds)
    return seconds


@task()
def cold_sleep(seconds: float) -> float:
    """Never run before the measured part: its first estimates have no history."""
    time.sleep(seconds)
    return seconds
