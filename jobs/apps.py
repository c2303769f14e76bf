import django
from django.apps import AppConfig

IMMEDIATE_TASK_BACKEND = (
    "django.tasks.backends.immediate.ImmediateBackend"
    if django.VERSION >= (6, 0)
    else "django_tasks.backends.immediate.ImmediateBackend"
)


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Built-in job types, upkeep duties and their cron entries register themselves on
        # import. The RQ entry points are imported here, in the worker's parent process,
        # so each forked work-horse does not pay for importing them again (~5 ms per job).
        from django.conf import settings
        from django.db.models.signals import post_delete, post_migrate, post_save, pre_delete

        from jobs import conf

        conf.apply_defaults()  # what a host project did not set; a clear error for what it must
        from jobs import checks  # noqa: F401  (registers the system checks)
        from jobs.core import tracing

        # Traces, when the OTEL_* variables ask for them: in every process kind (web,
        # workers, scheduler, commands), each with its own exporter (jobs.core.tracing).
        tracing.configure()

        # Jobdesk's own standard tasks run on Jobdesk whatever the project's default
        # task backend is: they use this alias, added here when the project has not
        # (the project's default stays what it was: Django's own when it set none).
        tasks = getattr(settings, "TASKS", None)
        if tasks is None:
            tasks = settings.TASKS = {"default": {"BACKEND": IMMEDIATE_TASK_BACKEND}}
        tasks.setdefault("jobdesk", {"BACKEND": "jobs.tasks.JobdeskBackend"})

        from jobs.builtin import diagnostics  # noqa: F401
        from jobs.console import admin, batch_admin, roles, window_admin  # noqa: F401
        from jobs.core import flow, lifecycle, submit, window
        from jobs.execution import runner  # noqa: F401
        from jobs.insight import estimates, rollup  # noqa: F401
        from jobs.upkeep import heartbeat, pruning, reconcile, schedules  # noqa: F401
        from workwindow.models import WorkWindow

        # Every new job gets its first ETA from the insight area's model.
        submit.set_estimator(estimates.record_first)
        # Deferred heavy jobs follow edits to the work windows.
        post_save.connect(window.on_window_change, sender=WorkWindow, dispatch_uid="jobs-window-save")
        post_delete.connect(window.on_window_change, sender=WorkWindow, dispatch_uid="jobs-window-delete")
        # A deleted user's jobs leave the idempotency keys to the system's (crons').
        pre_delete.connect(submit.forget_keys_of, sender=settings.AUTH_USER_MODEL, dispatch_uid="jobs-user-keys")
        # A job leaving "active" frees a slot of its type's concurrency limit.
        lifecycle.job_left_active.connect(flow.on_job_left_active, dispatch_uid="jobs-flow-slot-freed")
        # The operators' groups, with their permissions (jobs.console.roles).
        post_migrate.connect(roles.ensure_operators_group, dispatch_uid="jobs-operators-group")
        # The code's cron entries as schedules, so the console lists them from the start.
        post_migrate.connect(schedules.sync_after_migrate, sender=self, dispatch_uid="jobs-sync-schedules")
