from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Built-in job types and cron entries register themselves on import. The RQ
        # entry points are imported here, in the worker's parent process, so each
        # forked work-horse does not pay for importing them again (~5 ms per job).
        from jobs import crons, runner  # noqa: F401
        from jobs.handlers import diagnostics, maintenance  # noqa: F401
