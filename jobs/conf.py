"""Jobdesk's settings and their defaults. This project sets each from the environment
(config/settings.py); a project that installs Jobdesk gets these defaults for the ones
it does not set (applied when the app is ready), and a clear error for what it must set.
docs/contract.md lists each with its meaning."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

DEFAULTS = {
    "JOB_QUEUES": ("immediate", "normal", "low"),
    "JOB_TIMEOUT": 1800,
    "JOB_RESULT_TTL": 3600,
    "RETRY_BASE_DELAY": 30.0,
    "RETRY_MAX_DELAY": 86400.0,
    "JOB_MAX_ATTEMPTS": 4,
    "QUEUE_MAX_DEPTH": 1000,
    "RECONCILE_GRACE_SECONDS": 10.0,
    "WORKER_STALE_SECONDS": 120,
    "JOB_LEASE_SECONDS": 15.0,
    "JOB_LEASE_RENEW_SECONDS": 2.0,
    "JOB_LEASE_STOP_SECONDS": 10.0,
    "WORKER_CONCURRENCY": 2,
    "WORKER_BOOKKEEPER": True,
    "DB_PREPARED_STATEMENTS": True,
    "JOB_RETENTION_DAYS": 30,
    "JOB_EVENT_RETENTION_DAYS": 90,
    "SCHEDULER_HEARTBEAT_KEY": "jobdesk:scheduler:heartbeat",
    "ETA_DEFAULT_DURATION": 10.0,
    "JOB_LOG_LINES": 1000,
    "JOB_LOG_LINE_CHARS": 2000,
    "JOB_LOG_WRITE_INTERVAL": 0.5,
    "PROGRESS_WRITE_INTERVAL": 0.1,
    "WS_ETA_REFRESH_SECONDS": 10.0,
    "WS_ETA_SETTLE_SECONDS": 0.3,
    "MAX_PAYLOAD_BYTES": 1024 * 1024,
    "MAX_RESULT_BYTES": 1024 * 1024,
    "METRICS_TOKEN": "",
    "API_PAGE_SIZE": 50,
    "NUM_PROXIES": 0,
    "MAX_REQUEST_BYTES": 4 * 1024 * 1024,
    "MAX_BULK_REQUEST_BYTES": 32 * 1024 * 1024,
    "BODY_LIMITS": {},
}


def apply_defaults() -> None:
    for name, value in DEFAULTS.items():
        if not hasattr(settings, name):
            setattr(settings, name, value)
    # The bulk submit route's own request-body limit (apikit.bodylimit), unless the project set one.
    settings.BODY_LIMITS.setdefault("/api/jobs/bulk/", settings.MAX_BULK_REQUEST_BYTES)
    settings.BODY_LIMITS.setdefault("/api/batches/", settings.MAX_BULK_REQUEST_BYTES)
    settings.BODY_LIMITS.setdefault("/api/batches/*/jobs/", settings.MAX_BULK_REQUEST_BYTES)
    _check_queues()


def _check_queues() -> None:
    """Jobdesk's queues must be among django-rq's: one line saying what to add."""
    queues = getattr(settings, "RQ_QUEUES", None) or {}
    missing = [name for name in settings.JOB_QUEUES if name not in queues]
    if missing:
        example = ", ".join(f'"{name}": {{"URL": REDIS_URL}}' for name in missing)
        raise ImproperlyConfigured(
            f"Jobdesk needs the RQ queues {', '.join(settings.JOB_QUEUES)} in RQ_QUEUES; missing: "
            f"{', '.join(missing)}. Add e.g. RQ_QUEUES = {{..., {example}}}."
        )
