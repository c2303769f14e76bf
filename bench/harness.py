"""What every benchmark needs first: its own Redis, settings from the environment, and a
throwaway SQLite file unless DATABASE_URL names a database."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from devtools.redis_server import RedisServer


@contextmanager
def environment(**env: str) -> Iterator[Path]:
    """Start a Redis for the benchmark and set its environment; yields a scratch directory."""
    scratch = Path(tempfile.mkdtemp(prefix="jobdesk-bench-"))
    server = RedisServer(directory=scratch / "redis").start()
    os.environ.update({"REDIS_URL": server.url, "LOG_LEVEL": "ERROR", "DJANGO_SETTINGS_MODULE": "config.settings",
                       **env})  # fmt: skip
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{scratch / 'bench.sqlite3'}")
    try:
        yield scratch
    finally:
        server.stop()
