"""Typed readers for environment variables that fail fast with one readable line.

Settings call these at import time; an invalid value raises ``ConfigError``, which
``manage.py``, ``config.asgi`` and ``config.wsgi`` turn into a single line on stderr
and exit status 2 — never a traceback.
"""

from __future__ import annotations

import math
import os
from urllib.parse import urlparse

import dj_database_url


class ConfigError(Exception):
    """An environment variable holds a value the project cannot start with."""

    def __init__(self, name: str, value: str, fix: str) -> None:
        super().__init__(f"Invalid {name}={value!r}: {fix}")
        self.name = name


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


# Seconds a setting may hold at most (~31 years): a time past it, added to now, is beyond
# what dates and PostgreSQL's intervals hold — accepted at start, every claim failed.
MAX_SECONDS = 1_000_000_000
MAX_DAYS = 36_500
_MAX_WHOLE = 2**53  # sizes and counts: past any real one, and exact as a JSON number


def _env_number(name: str, default, minimum, maximum, kind):
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    bounds = f">= {minimum}" if maximum == _MAX_WHOLE else f"from {minimum:g} to {maximum:,}"
    fix = f"set it to a {'whole ' if kind is int else ''}number {bounds}, e.g. {name}={default}"
    try:
        value = kind(raw.strip())
    except ValueError:  # int() also refuses 4,300+ digits
        raise ConfigError(name, raw[:40], fix) from None
    if not math.isfinite(value) or not minimum <= value <= maximum:  # float() takes "nan" and "inf"
        raise ConfigError(name, raw[:40], fix)
    return value


def env_int(name: str, default: int, *, minimum: int = 0, maximum: int = _MAX_WHOLE) -> int:
    return _env_number(name, default, minimum, maximum, int)


def env_float(name: str, default: float, *, minimum: float = 0.0, maximum: float = MAX_SECONDS) -> float:
    """A number of seconds, unless ``maximum`` says otherwise."""
    return _env_number(name, default, minimum, maximum, float)


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def check_lease_timing(lease: float, renew: float, stop: float) -> None:
    """A run must stop well before its lease lapses, and renew more than once before it
    would stop: otherwise the fencing promise (never two runs at once) does not hold."""
    if not renew * 2 <= stop:
        raise ConfigError(
            "JOB_LEASE_STOP_SECONDS", str(stop), f"make it at least twice JOB_LEASE_RENEW_SECONDS ({renew})"
        )
    if not stop + 2 <= lease:
        raise ConfigError(
            "JOB_LEASE_SECONDS", str(lease), f"make it at least JOB_LEASE_STOP_SECONDS + 2 ({stop + 2:g})"
        )


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(name, raw, f"use one of true/false/1/0, e.g. {name}=false")


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = os.environ.get(name, default).strip().lower()
    if raw not in choices:
        raise ConfigError(name, raw, f"use one of {', '.join(choices)}, e.g. {name}={default}")
    return raw


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


_RATE_PERIODS = {"s", "sec", "second", "m", "min", "minute", "h", "hour", "d", "day"}


def env_rate(name: str, default: str) -> str:
    """A DRF throttle rate such as ``30/minute``."""
    raw = os.environ.get(name, default).strip()
    count, _, period = raw.partition("/")
    if not (count.isascii() and count.isdigit()) or len(count) > 9 or int(count) < 1 or period not in _RATE_PERIODS:
        raise ConfigError(name, raw, f"use <number>/<second|minute|hour|day>, e.g. {name}={default}")
    return raw


def env_database(name: str, default: str) -> dj_database_url.DBConfig:
    raw = os.environ.get(name, default)
    fix = f"use e.g. {name}=sqlite:///db.sqlite3 or {name}=postgresql://user:pass@host:5432/dbname"
    scheme = urlparse(raw).scheme
    if scheme not in {"sqlite", "postgres", "postgresql", "pgsql", "postgis"}:
        raise ConfigError(name, raw, fix)
    try:
        config = dj_database_url.parse(raw, conn_max_age=0)
    except Exception:  # dj-database-url raises several types for malformed URLs
        raise ConfigError(name, raw, fix) from None
    if not config.get("NAME"):
        raise ConfigError(name, raw, fix)
    return config


def env_redis_url(name: str, default: str) -> str:
    raw = os.environ.get(name, default)
    parsed = urlparse(raw)
    fix = f"use e.g. {name}=redis://127.0.0.1:6379/0"
    if parsed.scheme not in {"redis", "rediss", "unix"}:
        raise ConfigError(name, raw, fix)
    try:
        parsed.port  # noqa: B018 - raises ValueError on a non-numeric port
    except ValueError:
        raise ConfigError(name, raw, fix) from None
    if parsed.scheme != "unix" and not parsed.hostname:
        raise ConfigError(name, raw, fix)
    return raw


def run_or_exit(main) -> None:
    """Run ``main`` and turn a ConfigError into one line on stderr and exit status 2."""
    import sys

    try:
        main()
    except ConfigError as error:
        sys.stderr.write(f"jobdesk: configuration error: {error}\n")
        sys.exit(2)
