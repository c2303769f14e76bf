"""Jobdesk settings: every knob comes from the environment.

Invalid values raise ``config.env.ConfigError`` at import, which the entry points turn
into one line naming the variable and the fix.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

from config.env import (
    MAX_DAYS,
    MAX_SECONDS,
    ConfigError,
    check_lease_timing,
    env_bool,
    env_choice,
    env_database,
    env_float,
    env_int,
    env_list,
    env_rate,
    env_redis_url,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("JOBDESK_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)  # local state (test database, Redis data) lives here

DEBUG = env_bool("DEBUG", True)
SECRET_KEY = env_str("SECRET_KEY", "dev-only-insecure-secret-key-change-me-in-production")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])

# daphne's app installs Twisted's reactor when it is imported: 0.2 s and 18 MiB in every
# process (workers, the scheduler, the uvicorn web tier). Only ``manage.py runserver``
# needs it, listed first so that its ``runserver`` (ASGI) wins over staticfiles'.
_RUNSERVER = sys.argv[1:2] == ["runserver"]

INSTALLED_APPS = [
    *(["daphne"] if _RUNSERVER else []),
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI assets served locally: no CDN behind firewalls
    "jobs",  # before django_rq: its rqscheduler command (a working default queue) wins
    "django_rq",
    "channels",
    "django_tasks",  # the standard task API (django.tasks' backport for Django 5.2)
    "workwindow",
    "ingestion",
]

MIDDLEWARE = [
    "apikit.errors.RefusedHostAsJson",  # a Host refused under /api/: JSON, with DEBUG on too
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "jobs.console.zone.OperatorZoneMiddleware",  # the console's times in the operator's zone
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
# Each response says how long the process took for it (apikit.timing; bench/api.py).
SERVER_TIMING = env_bool("SERVER_TIMING", False)
if SERVER_TIMING:
    MIDDLEWARE.insert(0, "apikit.timing.ServerTiming")

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# --- Database -------------------------------------------------------------------
DATABASES = {"default": env_database("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded default must survive web + worker pool writing at once: WAL lets
    # readers run beside the writer, IMMEDIATE takes the write lock at BEGIN (no
    # lock-upgrade deadlocks), and the busy timeout waits instead of failing.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    # A file (not :memory:) so worker subprocesses started by tests share it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}
else:
    # A worker host cut off from the database must find out within seconds (its lease
    # keeper, its records), not after TCP gives up some fifteen minutes later. The
    # URL's own query (?connect_timeout=…) wins over these.
    DATABASES["default"]["OPTIONS"] = {
        "connect_timeout": 5, "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 3,
        "keepalives_count": 3, "tcp_user_timeout": 10_000,
        **DATABASES["default"].get("OPTIONS", {}),
    }  # fmt: skip

# Keep connections between requests and WebSocket reads (a new PostgreSQL connection
# costs more than most of the queries made on it); checked before reuse.
DATABASES["default"]["CONN_MAX_AGE"] = env_int("DB_CONN_MAX_AGE", 60, minimum=0, maximum=MAX_SECONDS)
# The worker's claim and completion and the lone submit's insert (jobs.core.fastpath,
# PostgreSQL) as statements the server prepares once per connection. Off behind a pooler
# that cannot keep them (PgBouncer in transaction mode before 1.21, or without
# max_prepared_statements).
DB_PREPARED_STATEMENTS = env_bool("DB_PREPARED_STATEMENTS", True)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis, RQ, cache, channels -------------------------------------------------
REDIS_URL = env_redis_url("REDIS_URL", "redis://127.0.0.1:6379/0")
# The Channels layer (live progress over WebSockets) may live in a Redis of its own.
CHANNEL_LAYER_URL = env_redis_url("CHANNEL_LAYER_URL", REDIS_URL)

WORKER_CONCURRENCY = env_int("WORKER_CONCURRENCY", 2, minimum=1)
# A forking worker's claims and records go through a process of its own that never forks
# (jobs.execution.bookkeeper), on PostgreSQL: off, the worker keeps its own books.
WORKER_BOOKKEEPER = env_bool("WORKER_BOOKKEEPER", True)
# Web server processes `make run` starts on one port (devtools.web).
WEB_CONCURRENCY = env_int("WEB_CONCURRENCY", 1, minimum=1)
JOB_TIMEOUT = env_int("JOB_TIMEOUT", 1800, minimum=1, maximum=MAX_SECONDS)
# RQ's result carries a work-horse's outcome back to its parent when it does not fit in
# their pipe (runner.outcome_from_horse): keep it at least a minute.
JOB_RESULT_TTL = env_int("JOB_RESULT_TTL", 3600, minimum=60, maximum=MAX_SECONDS)
RETRY_BASE_DELAY = env_float("RETRY_BASE_DELAY", 30.0, minimum=0.0)
RETRY_MAX_DELAY = env_float("RETRY_MAX_DELAY", 86400.0, minimum=1.0)
JOB_MAX_ATTEMPTS = env_int("JOB_MAX_ATTEMPTS", 4, minimum=1)
QUEUE_MAX_DEPTH = env_int("QUEUE_MAX_DEPTH", 1000, minimum=1)
# The reconciler spares rows changed this recently (their enqueue may be in flight).
RECONCILE_GRACE_SECONDS = env_float("RECONCILE_GRACE_SECONDS", 10.0, minimum=0.0)
# A remote worker whose RQ heartbeat is older than this is considered dead.
WORKER_STALE_SECONDS = env_int("WORKER_STALE_SECONDS", 120, minimum=10, maximum=MAX_SECONDS)
# Every run holds a lease (jobs.core.leases) that its worker renews every
# JOB_LEASE_RENEW_SECONDS; a worker that could not renew for JOB_LEASE_STOP_SECONDS stops
# the run, and another host takes the job over only after JOB_LEASE_SECONDS without a
# renewal — so the two never overlap. renew < stop < lease, with room for the stop.
JOB_LEASE_SECONDS = env_float("JOB_LEASE_SECONDS", 15.0, minimum=3.0)
JOB_LEASE_RENEW_SECONDS = env_float("JOB_LEASE_RENEW_SECONDS", 2.0, minimum=0.2)
JOB_LEASE_STOP_SECONDS = env_float("JOB_LEASE_STOP_SECONDS", 10.0, minimum=1.0)
check_lease_timing(JOB_LEASE_SECONDS, JOB_LEASE_RENEW_SECONDS, JOB_LEASE_STOP_SECONDS)
# Finished jobs (and their events) older than this many days are pruned at 09:00 UTC.
JOB_RETENTION_DAYS = env_int("JOB_RETENTION_DAYS", 30, minimum=1, maximum=MAX_DAYS)
JOB_EVENT_RETENTION_DAYS = env_int("JOB_EVENT_RETENTION_DAYS", 90, minimum=1, maximum=MAX_DAYS)
SCHEDULER_HEARTBEAT_KEY = "jobdesk:scheduler:heartbeat"
# Estimated run time of a job type never seen finishing (seconds), for ETAs.
ETA_DEFAULT_DURATION = env_float("ETA_DEFAULT_DURATION", 10.0, minimum=0.0)
# How often a handler's progress reports may write the job row (seconds).
PROGRESS_WRITE_INTERVAL = env_float("PROGRESS_WRITE_INTERVAL", 0.1, minimum=0.0)
# Job logs (jobs.execution.capture): the lines a handler logs are kept per attempt, the
# last JOB_LOG_LINES of them (0 turns capture off), each cut to JOB_LOG_LINE_CHARS, and
# written at most every JOB_LOG_WRITE_INTERVAL seconds while the handler runs.
JOB_LOG_LINES = env_int("JOB_LOG_LINES", 1000, minimum=0)
JOB_LOG_LINE_CHARS = env_int("JOB_LOG_LINE_CHARS", 2000, minimum=80)
JOB_LOG_WRITE_INTERVAL = env_float("JOB_LOG_WRITE_INTERVAL", 0.5, minimum=0.0)
# How often a WebSocket following a waiting job re-reads its ETA (seconds).
WS_ETA_REFRESH_SECONDS = env_float("WS_ETA_REFRESH_SECONDS", 10.0, minimum=0.5)
# After work joins the line ahead of a followed job, how long to gather more arrivals
# before re-estimating it (a burst is one revision, not one per job).
WS_ETA_SETTLE_SECONDS = env_float("WS_ETA_SETTLE_SECONDS", 0.3, minimum=0.0)

# --- Sizes: request bodies, payloads, results ---------------------------------------
# Bodies over their route's limit are refused with 413 before they are read
# (apikit.bodylimit); uploads and bulk submits have their own.
MAX_REQUEST_BYTES = env_int("MAX_REQUEST_BYTES", 4 * 1024 * 1024, minimum=1024)
MAX_BULK_REQUEST_BYTES = env_int("MAX_BULK_REQUEST_BYTES", 32 * 1024 * 1024, minimum=1024)
MAX_UPLOAD_BYTES = env_int("MAX_UPLOAD_BYTES", 50 * 1024 * 1024, minimum=1)
# Multipart framing and the name field travel with an uploaded file.
UPLOAD_FRAMING_BYTES = 64 * 1024
BODY_LIMITS = {
    "/api/materials/": MAX_UPLOAD_BYTES + UPLOAD_FRAMING_BYTES,
    "/api/jobs/bulk/": MAX_BULK_REQUEST_BYTES,
    "/api/batches/": MAX_BULK_REQUEST_BYTES,
    "/api/batches/*/jobs/": MAX_BULK_REQUEST_BYTES,  # jobs added to an open batch, as many as a bulk
}
# Django's own check on non-file request data: never stricter than the routes' limits.
DATA_UPLOAD_MAX_MEMORY_SIZE = max(MAX_REQUEST_BYTES, MAX_BULK_REQUEST_BYTES)
# A job's payload (at submit: 413 above it) and its result (a handler returning more
# fails the job admin_required), as compact JSON.
MAX_PAYLOAD_BYTES = env_int("MAX_PAYLOAD_BYTES", 1024 * 1024, minimum=1024)
MAX_RESULT_BYTES = env_int("MAX_RESULT_BYTES", 1024 * 1024, minimum=1024)

# --- Ingestion ------------------------------------------------------------------
# Materials above this size are heavy: they wait for the work window.
HEAVY_MATERIAL_BYTES = env_int("HEAVY_MATERIAL_BYTES", 5 * 1024 * 1024, minimum=1)
CHUNK_SIZE = env_int("CHUNK_SIZE", 1000, minimum=50)
CHUNK_OVERLAP = env_int("CHUNK_OVERLAP", 200, minimum=0)
if CHUNK_OVERLAP >= CHUNK_SIZE:
    raise ConfigError("CHUNK_OVERLAP", str(CHUNK_OVERLAP), f"it must be smaller than CHUNK_SIZE={CHUNK_SIZE}")
# Per client, for POSTs that upload (DRF rate syntax: <number>/<second|minute|hour|day>).
UPLOAD_RATE = env_rate("UPLOAD_RATE", "30/minute")
# Requests per client to the API (429 with Retry-After above them).
API_USER_RATE = env_rate("API_USER_RATE", "1200/minute")
API_ANON_RATE = env_rate("API_ANON_RATE", "60/minute")
# Failed token checks per address (429 above it, for every token it sends).
API_AUTH_FAILURE_RATE = env_rate("API_AUTH_FAILURE_RATE", "30/minute")
# How long a web process keeps a valid API token's row (and its user's) instead of
# reading it per request: a token deleted or a user deactivated elsewhere is honoured
# within this many seconds (0: read on every request). apikit.auth.
API_TOKEN_CACHE_SECONDS = env_float("API_TOKEN_CACHE_SECONDS", 5.0, minimum=0.0)
# When set, GET /metrics wants "Authorization: Bearer <token>".
METRICS_TOKEN = env_str("METRICS_TOKEN", "")
# What one file may cost to read (ingestion.budget): over any of these, the material
# fails at once as user_fixable, naming the limit.
EXTRACT_MAX_PAGES = env_int("EXTRACT_MAX_PAGES", 10_000, minimum=1)
EXTRACT_MAX_SECONDS = env_float("EXTRACT_MAX_SECONDS", 300.0, minimum=1.0)
EXTRACT_MAX_STREAM_BYTES = env_int("EXTRACT_MAX_STREAM_BYTES", 32 * 1024 * 1024, minimum=1024)
EXTRACT_MAX_DOCUMENT_BYTES = env_int("EXTRACT_MAX_DOCUMENT_BYTES", 256 * 1024 * 1024, minimum=1024)
EXTRACT_MAX_TEXT_PER_BYTE = env_int("EXTRACT_MAX_TEXT_PER_BYTE", 100, minimum=1)
EXTRACT_MAX_TEXT = env_int("EXTRACT_MAX_TEXT", 128_000_000, minimum=1_000)
EXTRACT_MAX_NESTING = env_int("EXTRACT_MAX_NESTING", 2_000, minimum=10)
# Materials not ready this many days after upload are deleted by the 08:00 UTC cron.
MATERIAL_RETENTION_DAYS = env_int("MATERIAL_RETENTION_DAYS", 7, minimum=1, maximum=MAX_DAYS)

JOB_QUEUES = ("immediate", "normal", "low")
RQ_QUEUES = {
    name: {"URL": REDIS_URL, "DEFAULT_TIMEOUT": JOB_TIMEOUT, "DEFAULT_RESULT_TTL": JOB_RESULT_TTL}
    for name in JOB_QUEUES
}
# django-rq's own admin copy of its queue pages checks only is_staff; the copy mounted in
# config/urls.py is guarded (jobs.console.roles) and linked from the console instead.
RQ_SHOW_ADMIN_LINK = False
# Bookkeeping in the worker's parent process (see jobs/execution/worker.py); `rqworker` and
# `rqworker-pool` use it unless --worker-class says otherwise.
# The scheduler re-arms cron entries missing from Redis (see jobs/upkeep/scheduler.py).
RQ = {
    "WORKER_CLASS": "jobs.execution.worker.JobdeskWorker",
    "SCHEDULER_CLASS": "jobs.upkeep.scheduler.JobdeskScheduler",
}

# Django's standard task API runs on Jobdesk: any app's @task becomes a durable Job.
TASKS = {"default": {"BACKEND": "jobs.tasks.JobdeskBackend"}}

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "jobdesk",
    }
}

# Messages each WebSocket follower's queue in its web process holds before channels-redis
# drops its oldest (the follower sees the gap by seq and sends a snapshot at once).
# A web process's followers share one channel in Redis, which holds ten times as many:
# full, it drops the *newest* — a job's last message, which no later one would reveal —
# so it must not fill before a follower's queue does. (channels-redis's default of 100
# for both was a tenth of a second of a busy process's messages.)
WS_CHANNEL_CAPACITY = env_int("WS_CHANNEL_CAPACITY", 1000, minimum=1)
CHANNEL_LAYERS = {
    "default": {
        # channels-redis's layer, counting what it drops (jobs.live.layer, jobs.core.dropped)
        # and reading a group's members in one round trip
        "BACKEND": "jobs.live.layer.ChannelLayer",
        # redis-py 8 times reads out after 5 s by default, and channels-redis waits up to
        # 5 s (BZPOPMIN) for a message: without a longer timeout an idle WebSocket dies
        # with 1011 after five quiet seconds.
        "CONFIG": {
            "hosts": [{"address": CHANNEL_LAYER_URL, "socket_timeout": 15, "socket_connect_timeout": 2}],
            "capacity": WS_CHANNEL_CAPACITY,
            "channel_capacity": {"specific.*": 10 * WS_CHANNEL_CAPACITY},  # a web process's own channel
        },
    }
}

# --- Auth, i18n, static -----------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LANGUAGE_CODE = "en-us"
# UTC everywhere: Django sets the process zone, and rq-scheduler computes cron times
# from naive local time (docs/stack.md).
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
FORMAT_MODULE_PATH = ["config.formats"]  # times to the second in the console

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "media/"

# --- API ------------------------------------------------------------------------
# Clients are told apart by their address: X-Forwarded-For is believed only from this
# many proxies in front (0: never, so a client cannot pick a fresh address per request).
NUM_PROXIES = env_int("NUM_PROXIES", 0, minimum=0)
API_PAGE_SIZE = env_int("API_PAGE_SIZE", 50, minimum=1)
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apikit.auth.ApiTokenAuthentication",  # Token or Bearer; failures throttled per address
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON bodies (uploads take multipart: ingestion.api); a form-encoded body would read
    # an empty field as "not given".
    "DEFAULT_PARSER_CLASSES": ["apikit.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "apikit.pagination.Pagination",
    "PAGE_SIZE": API_PAGE_SIZE,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "apikit.errors.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["apikit.throttling.AnonRate", "apikit.throttling.UserRate"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Jobdesk API",
    "DESCRIPTION": "Durable background jobs on RQ: submit, inspect and steer them.",
    "VERSION": "0.2.0",  # pyproject.toml's (a test keeps them one)
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "apikit.schema.add_error_responses",
        "jobs.api.schema.name_the_job_types",
    ],
    "COMPONENT_SPLIT_REQUEST": True,
    # One name per choice set (drf-spectacular otherwise numbers colliding ones:
    # Priority72bEnum) — a client generator's type names stay stable.
    "ENUM_NAME_OVERRIDES": {
        "PriorityEnum": "jobs.core.models.Priority",
        # jobs.core.models.Priority's values and "" (the job type's own); the settings
        # cannot import models. tests/test_api_docs.py notices a drift (a warning again).
        "SchedulePriorityEnum": ["", "immediate", "normal", "low"],
        "LimitSourceEnum": ["code", "operator"],
    },
}

# --- Logging: readable lines on a terminal, JSON lines otherwise ---------------------
_LEVELS = ("notset", "debug", "info", "warning", "warn", "error", "critical", "fatal")  # what logging knows
LOG_LEVEL = env_choice("LOG_LEVEL", "info", _LEVELS).upper()
# "json", "text", or "auto": text when the output is a terminal (`make run`), JSON when it
# is collected (a file, a pipe, a container's log driver).
LOG_FORMAT = env_choice("LOG_FORMAT", "auto", ("auto", "json", "text"))
if LOG_FORMAT == "auto":
    LOG_FORMAT = "text" if sys.stderr.isatty() else "json"
# rq-scheduler asks crontab for cron times without saying "UTC"; with the process in UTC
# (TIME_ZONE) both readings agree, and the warning would print at every start.
warnings.filterwarnings("ignore", message="Version 0.22.0\\+ of crontab", category=FutureWarning)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
        "text": {"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s", "datefmt": "%H:%M:%S"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    # Naming these loggers replaces the plain-text handlers Django and rq-scheduler would
    # otherwise attach, so every line is JSON and appears once.
    "loggers": {
        "django": {"handlers": [], "level": "INFO"},
        "django.db.backends": {"level": "INFO"},
        "rq.worker": {"level": env_choice("RQ_LOG_LEVEL", "warning", _LEVELS).upper()},
        "rq_scheduler.scheduler": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
