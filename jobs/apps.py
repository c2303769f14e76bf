from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Built-in job types and cron entries register themselves on import. The RQ
        # entry points are imported here, in the worker's parent process, so each
        # forked work-horse does not pay for importing them again (~5 ms per job).
        from django.db.models.signals import post_delete, post_migrate, post_save

        from jobs import crons, roles, runner, window  # noqa: F401
        from jobs.handlers import diagnostics, maintenance  # noqa: F401
        from workwindow.models import WorkWindow

        # Deferred heavy jobs follow edits to the work windows.
        post_save.connect(window.on_window_change, sender=WorkWindow, dispatch_uid="jobs-window-save")
        post_delete.connect(window.on_window_change, sender=WorkWindow, dispatch_uid="jobs-window-delete")
        # The read-only operators group, with every view permission (SPEC §10).
        post_migrate.connect(roles.ensure_operators_group, dispatch_uid="jobs-operators-group")
