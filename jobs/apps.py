from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Built-in job types register themselves on import. The RQ entry point is
        # imported here, in the worker's parent process, so each forked work-horse does
        # not pay for importing it again (~5 ms per job).
        from jobs import runner  # noqa: F401
        from jobs.handlers import diagnostics  # noqa: F401
