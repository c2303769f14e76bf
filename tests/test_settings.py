"""Invalid environment values stop start-up with one line naming the variable and fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, **env}
    return subprocess.run(args, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    "name, value",
    [
        ("WORKER_CONCURRENCY", "abc"),
        ("WORKER_CONCURRENCY", "0"),
        ("JOB_TIMEOUT", "-5"),
        ("RETRY_BASE_DELAY", "fast"),
        ("RETRY_BASE_DELAY", "nan"),
        ("LOG_LEVEL", "LOUD"),
        ("RQ_LOG_LEVEL", "chatty"),
        ("JOB_LEASE_SECONDS", "inf"),
        ("JOB_LEASE_SECONDS", "1e16"),  # accepted, then every claim failed: no interval that long
        ("JOB_RETENTION_DAYS", "1000000000"),
        ("JOB_TIMEOUT", "9" * 5000),
        ("API_USER_RATE", "\u00b2/minute"),
        ("API_USER_RATE", "9" * 5000 + "/minute"),
        ("DEBUG", "maybe"),
        ("DATABASE_URL", "mysql//oops"),
        ("DATABASE_URL", "postgresql://"),
        ("REDIS_URL", "localhost:6379"),
        ("REDIS_URL", "redis://127.0.0.1:port/0"),
    ],
)
def test_invalid_value_gives_one_line_naming_the_variable(name, value):
    result = run([sys.executable, "manage.py", "check"], **{name: value})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"jobdesk: configuration error: Invalid {name}=")
    assert "Traceback" not in result.stderr
    assert "e.g." in lines[0]  # the fix


def test_asgi_entry_point_fails_with_the_same_line():
    result = run([sys.executable, "-c", "import config.asgi"], WORKER_CONCURRENCY="abc")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "jobdesk: configuration error: Invalid WORKER_CONCURRENCY='abc': set it to a whole number >= 1, "
        "e.g. WORKER_CONCURRENCY=2"
    ]


@pytest.mark.django_db
def test_sqlite_default_uses_wal_immediate_and_busy_timeout():
    from django.db import connection

    if connection.vendor != "sqlite":
        pytest.skip("SQLite options only apply to the embedded default database")
    with connection.cursor() as cursor:
        assert cursor.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert cursor.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
    assert connection.transaction_mode == "IMMEDIATE"


PROBE = (
    "import os, sys; sys.argv = ['manage.py', *sys.argv[1:]]; "
    "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings'); "
    "import django; django.setup(); "
    "from django.core.management import get_commands; "
    "print(get_commands()['runserver'], 'daphne.server' in sys.modules)"
)


@pytest.mark.parametrize(
    "command, expected", [("runserver", "daphne True"), ("rqworker", "django.contrib.staticfiles False")]
)
def test_only_runserver_loads_daphne(command, expected):
    """runserver serves ASGI through daphne; every other process (workers, the scheduler,
    the uvicorn web tier) starts without Twisted's reactor (0.2 s and 18 MiB each)."""
    result = run([sys.executable, "-c", PROBE, command])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


def test_redis_clients_parse_with_hiredis():
    """requirements.txt pins hiredis for redis-py's C reply parser (and the blocking
    client's C command packer): a submit's CPU -9 %, bench/api.py. redis-py drops to its
    Python parser without a word when hiredis is missing or a version it does not take."""
    import redis
    import redis.asyncio
    import redis.utils
    from redis._parsers import _AsyncHiredisParser, _HiredisParser
    from redis.connection import HiredisRespSerializer

    assert redis.utils.HIREDIS_AVAILABLE
    blocking = redis.Redis().connection_pool.make_connection()  # not connected: no server needed
    assert isinstance(blocking._parser, _HiredisParser)
    assert isinstance(blocking._command_packer, HiredisRespSerializer)
    asyncio_connection = redis.asyncio.Redis().connection_pool.make_connection()  # channels-redis's kind
    assert isinstance(asyncio_connection._parser, _AsyncHiredisParser)


# Settings Jobdesk's code reads that a project must set itself (the README's "Add Jobdesk
# to your project" lists them), or that only a diagnostics run of Jobdesk's own reads.
_PROJECT_SETS = {"RQ", "REDIS_URL", "TASKS"}


def test_every_setting_jobdesk_reads_has_a_default_or_is_the_project_s():
    """A host project has none of config/settings.py: every setting the platform reads
    plainly (``settings.NAME``) must be defaulted by ``jobs.conf`` or Django (a missing one
    was an AttributeError on every submit on PostgreSQL: DB_PREPARED_STATEMENTS)."""
    import re

    from django.conf import global_settings

    from jobs.conf import DEFAULTS

    read: dict[str, set[str]] = {}
    for package in ("jobs", "apikit", "workwindow"):
        for path in (ROOT / package).rglob("*.py"):
            if "tests" in path.parts or "migrations" in path.parts:
                continue
            for name in re.findall(r"\bsettings\.([A-Z][A-Z0-9_]+)\b", path.read_text()):
                read.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    undefaulted = {
        name: sorted(paths)
        for name, paths in read.items()
        if name not in DEFAULTS and not hasattr(global_settings, name) and name not in _PROJECT_SETS
    }
    assert not undefaulted, f"add to jobs.conf.DEFAULTS (and docs/contract.md): {undefaulted}"


def test_system_checks_name_what_a_project_s_settings_get_wrong(monkeypatch):
    """django_rq before jobs made rqscheduler django-rq's own (a KeyError at its start);
    no channel layer filled the workers' logs with tracebacks. Both passed ``check``."""
    from types import SimpleNamespace

    from django.conf import settings

    from jobs import checks

    assert checks.jobs_before_django_rq(None) == [] and checks.channel_layer_configured(None) == []
    configs = list(checks.apps.get_app_configs())
    rq_first = sorted(configs, key=lambda config: config.label != "django_rq")
    monkeypatch.setattr(checks.apps, "get_app_configs", lambda: rq_first)
    monkeypatch.setattr(checks, "settings", SimpleNamespace(INSTALLED_APPS=settings.INSTALLED_APPS, CHANNEL_LAYERS={}))
    assert [m.id for m in checks.jobs_before_django_rq(None)] == ["jobs.E001"]
    assert [m.id for m in checks.channel_layer_configured(None)] == ["jobs.W001"]
