"""A standard @task for bench/tasks.py (module level, importable by the workers)."""

from django_tasks import task


@task()
def noop() -> None:
    return None
