"""A standard @task that sleeps, for bench/eta_accuracy.py's limited type (module level,
so the workers resolve it by name)."""

import time

from django_tasks import task


@task()
def limited_sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds
