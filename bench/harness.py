"""What every benchmark needs first: its own Redis, settings from the environment, and a
throwaway SQLite file unless DATABASE_URL names a database."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from devtools.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent


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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_web(port: int, processes: int = 1) -> subprocess.Popen:
    """The web tier as ``make run`` starts it (devtools.web), once it accepts connections."""
    from devtools import web

    server = subprocess.Popen(
        web.command("127.0.0.1", port, processes=processes),
        cwd=ROOT, env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("the web server did not start")
