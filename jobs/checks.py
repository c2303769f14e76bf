"""Django system checks (``manage.py check``) for what a project's settings get wrong
about Jobdesk but cannot be defaulted: said at ``check`` (and at every command's start),
not as a traceback from a worker or the scheduler later."""

from __future__ import annotations

from django.apps import apps
from django.conf import settings
from django.core import checks


@checks.register(checks.Tags.compatibility)
def jobs_before_django_rq(app_configs, **kwargs) -> list[checks.CheckMessage]:
    labels = [config.label for config in apps.get_app_configs()]  # INSTALLED_APPS' order, however named
    if "django_rq" in labels and "jobs" in labels and labels.index("django_rq") < labels.index("jobs"):
        return [
            checks.Error(
                '"django_rq" is listed before "jobs" in INSTALLED_APPS: its rqscheduler command (and its pages) '
                "would be django-rq's own, which fail on Jobdesk's queues.",
                hint='List "jobs" before "django_rq".',
                id="jobs.E001",
            )
        ]
    return []


@checks.register(checks.Tags.compatibility)
def channel_layer_configured(app_configs, **kwargs) -> list[checks.CheckMessage]:
    if (getattr(settings, "CHANNEL_LAYERS", None) or {}).get("default"):
        return []
    return [
        checks.Warning(
            "No CHANNEL_LAYERS['default']: jobs run, but nothing follows them live (WebSockets, the "
            "dashboard), and workers log that the relay is unavailable.",
            hint='Set CHANNEL_LAYERS as the README\'s "Add Jobdesk to your project" shows.',
            id="jobs.W001",
        )
    ]
