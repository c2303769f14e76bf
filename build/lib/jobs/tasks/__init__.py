"""Django's standard task API on Jobdesk: ``TASKS = {"default": {"BACKEND":
"jobs.tasks.JobdeskBackend"}}`` makes every ``@task`` a durable Jobdesk job.

``JobdeskTask`` carries Jobdesk's extras (``options(idempotency_key=…, depends_on=…,
heavy=…, max_attempts=…)``); a task that takes its context gets ``JobdeskTaskContext``
(``progress()``, ``is_canceled()``). docs/tasks.md tells the whole story."""

from jobs.tasks.backend import JobdeskBackend, JobdeskTask, UnstorableArgument, queue_of

__all__ = ["JobdeskBackend", "JobdeskTask", "UnstorableArgument", "queue_of"]
