"""``make run``: everything Jobdesk needs, in one terminal, stopped by Ctrl-C.

Redis (embedded when REDIS_URL is not reachable, data under var/redis with AOF),
migrations, the admin login, the cron entries, then web (devtools.web), the worker
pool and the scheduler. A child that dies is started again (with a growing pause); one
that keeps dying, or a web server that cannot listen, stops everything with a non-zero
exit and a line saying why.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
# A child that dies this many times within RESTART_WINDOW seconds is given up on.
RESTART_LIMIT = 5
RESTART_WINDOW = 60.0
RESTART_PAUSES = (1, 2, 4, 8, 15)


def manage(*args: str) -> list[str]:
    return [PYTHON, str(ROOT / "manage.py"), *args]


def say(message: str) -> None:
    with contextlib.suppress(OSError):  # the terminal is gone (SIGHUP): the stopping goes on without it
        print(f"[jobdesk] {message}", flush=True)


def fail(message: str) -> NoReturn:
    sys.exit(f"jobdesk: {message}")


def load_settings():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from config.env import ConfigError

    try:
        from django.conf import settings

        settings.REDIS_URL  # noqa: B018 - importing settings validates the environment
    except ConfigError as error:
        fail(f"configuration error: {error}")
    return settings


def shutdown_grace() -> float:
    """SHUTDOWN_GRACE: seconds the children get to stop before they are killed. Read at
    start, like every setting: read at Ctrl-C, a bad value raised there, and nothing was
    stopped."""
    from config.env import ConfigError, env_float

    try:
        return env_float("SHUTDOWN_GRACE", 30.0, minimum=0.0, maximum=3600.0)
    except ConfigError as error:
        fail(f"configuration error: {error}")


def listen_address() -> tuple[str, int]:
    """HOST and PORT, checked like every other setting."""
    host = os.environ.get("HOST", "127.0.0.1").strip() or "127.0.0.1"
    raw = os.environ.get("PORT", "8000").strip()
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 5 or not 1 <= int(raw) <= 65535:
        fail(f"configuration error: Invalid PORT={raw!r}: set it to a port number from 1 to 65535, e.g. PORT=8000")
    if host.startswith("["):
        fail(f"configuration error: Invalid HOST={host!r}: write an IPv6 address without brackets, e.g. HOST=::1")
    try:
        socket.getaddrinfo(host, int(raw), type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        if error.errno == socket.EAI_AGAIN:  # the name server did not answer: not the setting's fault
            fail(f"cannot look up HOST={host!r} ({error.strerror}); try again, or give an address, e.g. HOST=127.0.0.1")
        fail(f"configuration error: Invalid HOST={host!r} ({error.strerror}): {_HOST_HINT}")
    except UnicodeError as error:
        fail(f"configuration error: Invalid HOST={host!r} ({error}): {_HOST_HINT}")
    return host, int(raw)


_HOST_HINT = (
    "set it to an address of this machine, e.g. HOST=127.0.0.1 (this machine only) or HOST=0.0.0.0 (every network)"
)


def refuse_busy_port(host: str, port: int) -> None:
    """Before anything starts (migrations, a second worker pool against a live system):
    the web server's port must be free — on every address HOST names (``localhost`` may
    be 127.0.0.1 and ::1; uvicorn listens on what it resolves to)."""
    for family, _, _, _, address in set(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)):
        with socket.socket(family) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as error:
                fail(_cannot_serve(host, port, error))


def _cannot_serve(host: str, port: int, error: OSError) -> str:
    said = f"cannot serve on {host}:{port}: {error.strerror or error}."
    if error.errno == errno.EADDRINUSE:
        return (
            f"{said} Something else is listening there (another Jobdesk checkout?): stop it, "
            f"or choose another port, e.g. PORT={port + 1} make run"
        )
    if error.errno == errno.EACCES:
        return f"{said} Ports below 1024 need privileges: choose another, e.g. PORT=8000"
    return f"{said} HOST: {_HOST_HINT}"  # not an address of this machine (EADDRNOTAVAIL)


_run_lock = None  # the open lock file: held (flock) for as long as this process lives


def hold_the_run_lock(var_dir: Path, url: str) -> None:
    """One ``make run`` per var directory (per checkout, unless JOBDESK_VAR_DIR says
    otherwise), whatever its port: a second one on another port started a second worker
    pool and scheduler against the first one's database and Redis."""
    global _run_lock
    var_dir.mkdir(parents=True, exist_ok=True)
    lock = open(var_dir / "run.lock", "a+")  # noqa: SIM115 - kept open on purpose
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "another process"
        fail(
            f"Jobdesk is already running from {var_dir} ({holder}). Stop it first (Ctrl-C in its terminal); "
            "a second one needs its own JOBDESK_VAR_DIR, DATABASE_URL and REDIS_URL."
        )
    lock.seek(0)
    lock.truncate()
    lock.write(f"pid {os.getpid()}, {url}\n")
    lock.flush()
    _run_lock = lock


def url_of(host: str, port: int) -> str:
    """http://host:port/, with an IPv6 address in brackets."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def check_database() -> None:
    """The database answers, or one line says which and why (not the migration's
    traceback, after the embedded Redis has started)."""
    from django.db import DatabaseError, connections

    connection = connections["default"]
    try:
        connection.ensure_connection()
    except DatabaseError as error:
        db = connection.settings_dict
        where = f"{db['NAME']}" + (f" on {db['HOST']}:{db['PORT'] or 'default port'}" if db.get("HOST") else "")
        # The driver's lines, joined: the cause ("Connection refused") is on the first.
        reason = " ".join(line.strip() for line in str(error).splitlines() if line.strip()) or type(error).__name__
        fail(
            f"cannot reach the database ({connection.vendor}: {where}): {reason} — "
            "start (or create) it, or fix DATABASE_URL"
        )
    finally:
        connection.close()


def ensure_redis(settings):
    from devtools.redis_server import reachable, server_for_url

    if reachable(settings.REDIS_URL):
        say(f"using Redis at {settings.REDIS_URL}")
        return None
    address = urlparse(settings.REDIS_URL)
    if _something_listens(address.hostname or "127.0.0.1", address.port or 6379):
        fail(
            f"REDIS_URL={settings.REDIS_URL}: something that is not a Redis we can use listens on that port "
            "(another program, or a Redis that wants a password); point REDIS_URL at your Redis or at a free port"
        )
    try:
        # One data directory per port: two embedded servers never share (and append to)
        # one AOF.
        port = urlparse(settings.REDIS_URL).port or 6379
        server = server_for_url(settings.REDIS_URL, settings.VAR_DIR / "redis" / str(port), appendonly=True)
        server.start()
    except RuntimeError as error:
        fail(str(error))
    say(f"started embedded Redis on {server.url} (data: {server.directory}, AOF on)")
    return server


def _something_listens(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def run_once(args: list[str]) -> None:
    result = subprocess.run(args, cwd=ROOT)
    if result.returncode != 0:
        sys.exit(result.returncode)


@dataclass
class Child:
    """One long-lived process of the stack, restarted when it dies."""

    name: str
    args: list[str]
    process: subprocess.Popen | None = None
    deaths: list[float] = field(default_factory=list)
    restart_at: float | None = None

    def start(self) -> None:
        # Own session: Ctrl-C reaches only this supervisor, which stops the children in
        # order (SIGTERM = warm shutdown for the workers).
        self.process = subprocess.Popen(self.args, cwd=ROOT, start_new_session=True)
        self.restart_at = None
        say(f"started {self.name} (pid {self.process.pid})")

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def note_death(self, now: float) -> bool:
        """Record that it died; False when it keeps dying (give up)."""
        self.deaths = [t for t in self.deaths if now - t < RESTART_WINDOW] + [now]
        if len(self.deaths) >= RESTART_LIMIT:
            return False
        pause = RESTART_PAUSES[min(len(self.deaths) - 1, len(RESTART_PAUSES) - 1)]
        self.restart_at = now + pause
        code = self.process.returncode if self.process else None
        say(f"{self.name} exited with {code}; starting it again in {pause}s")
        return True


def main() -> None:
    host, port = listen_address()
    grace = shutdown_grace()
    settings = load_settings()
    hold_the_run_lock(Path(settings.VAR_DIR), url_of(host, port))
    refuse_busy_port(host, port)
    check_database()
    redis_server = ensure_redis(settings)
    from devtools import web

    children = [
        Child("web", web.command(host, port, processes=settings.WEB_CONCURRENCY)),
        Child(
            "workers", manage("rqworker-pool", *settings.JOB_QUEUES, "--num-workers", str(settings.WORKER_CONCURRENCY))
        ),  # fmt: skip
        Child("scheduler", manage("rqscheduler", "--interval", "1")),
    ]
    stopping = False
    status = 0

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    # Its terminal closed: the children (sessions of their own) would live on without
    # it, and without the run lock, beside the next make run.
    signal.signal(signal.SIGHUP, stop)
    try:
        run_once(manage("migrate", "--noinput", "-v", "0"))
        run_once(manage("sync_schedules"))
        for child in children:
            child.start()
        if not wait_for_port(host, port, children[0]):
            say(f"web did not start listening on {host}:{port}; stopping everything")
            stopping, status = True, 1
        else:
            run_once(manage("ensure_admin", "--url", url_of(host, port)))
            say(f"ready: {url_of(host, port)}/admin/ — Ctrl-C stops everything")
        while not stopping:
            gave_up, status = supervise(children)
            stopping = stopping or gave_up  # a signal that came meanwhile still stops
            time.sleep(0.5)
    finally:
        shutdown(children, redis_server, grace)
    sys.exit(status)


def supervise(children: list[Child]) -> tuple[bool, int]:
    """Restart children that died; (stop everything?, exit status)."""
    now = time.monotonic()
    for child in children:
        if child.restart_at is not None:
            if now >= child.restart_at:
                child.start()
        elif not child.running() and not child.note_death(now):
            say(f"{child.name} died {RESTART_LIMIT} times within {RESTART_WINDOW:.0f}s; stopping everything")
            return True, 1
    return False, 0


def wait_for_port(host: str, port: int, web: Child, timeout: float = 60.0) -> bool:
    """Say "ready" only when the web server accepts connections (and did not die)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not web.running():
            return False
        if _something_listens(host, port, timeout=0.5):
            return True
        time.sleep(0.2)  # a poll's pause within the deadline above
    return False


def shutdown(children: list[Child], redis_server, grace: float) -> None:
    say("stopping…")
    for child in children:
        if child.running():
            assert child.process is not None  # running() means it has a process
            child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in children:
        if child.process is None:
            continue
        try:
            child.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say(f"{child.name} did not stop within SHUTDOWN_GRACE={grace:g} s; killing it"
                + (" (a job it ran is a lost run: retried or dead-lettered once its lease lapses)"
                   if child.name == "workers" else ""))  # fmt: skip
            os.killpg(child.process.pid, signal.SIGKILL)
            child.process.wait()
    if redis_server is not None:
        redis_server.stop()
        say("embedded Redis stopped")
    say("stopped")


if __name__ == "__main__":
    main()
