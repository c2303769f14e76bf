"""``make run``: everything Jobdesk needs, in one terminal, stopped by Ctrl-C.

Redis (embedded when REDIS_URL is not reachable, data under var/redis with AOF),
migrations, the admin login, the cron entries, then web (daphne), the worker pool and
the scheduler.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def manage(*args: str) -> list[str]:
    return [PYTHON, str(ROOT / "manage.py"), *args]


def say(message: str) -> None:
    print(f"[jobdesk] {message}", flush=True)


def load_settings():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from config.env import ConfigError

    try:
        from django.conf import settings

        settings.REDIS_URL  # noqa: B018 - importing settings validates the environment
    except ConfigError as error:
        sys.exit(f"jobdesk: configuration error: {error}")
    return settings


def ensure_redis(settings):
    from devtools.redis_server import reachable, server_for_url

    if reachable(settings.REDIS_URL):
        say(f"using Redis at {settings.REDIS_URL}")
        return None
    try:
        server = server_for_url(settings.REDIS_URL, settings.VAR_DIR / "redis", appendonly=True)
        server.start()
    except RuntimeError as error:
        sys.exit(f"jobdesk: {error}")
    say(f"started embedded Redis on {server.url} (data: {server.directory}, AOF on)")
    return server


def run_once(args: list[str]) -> None:
    result = subprocess.run(args, cwd=ROOT)
    if result.returncode != 0:
        sys.exit(result.returncode)


def main() -> None:
    settings = load_settings()
    host = os.environ.get("HOST", "127.0.0.1")
    port = os.environ.get("PORT", "8000")
    redis_server = ensure_redis(settings)
    children: list[tuple[str, subprocess.Popen]] = []
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        run_once(manage("migrate", "--noinput", "-v", "0"))
        run_once(manage("ensure_admin", "--url", f"http://{host}:{port}"))
        run_once(manage("sync_schedules"))
        commands = {
            "web": [PYTHON, "-m", "daphne", "-b", host, "-p", port, "config.asgi:application"],
            "workers": manage("rqworker-pool", *settings.JOB_QUEUES, "--num-workers", str(settings.WORKER_CONCURRENCY)),
            "scheduler": manage("rqscheduler", "--queue", "normal", "--interval", "1"),
        }
        for name, args in commands.items():
            # Own session: Ctrl-C reaches only this supervisor, which stops the
            # children in order (SIGTERM = warm shutdown for the workers).
            children.append((name, subprocess.Popen(args, cwd=ROOT, start_new_session=True)))
            say(f"started {name} (pid {children[-1][1].pid})")
        if wait_for_port(host, int(port), children):
            say(f"ready: http://{host}:{port}/admin/ — Ctrl-C stops everything")
        else:
            say("web did not start listening; stopping everything")
            stopping = True
        while not stopping:
            for name, proc in children:
                if proc.poll() is not None:
                    say(f"{name} exited with {proc.returncode}; stopping everything")
                    stopping = True
            time.sleep(0.5)
    finally:
        shutdown(children, redis_server)


def wait_for_port(host: str, port: int, children, timeout: float = 60.0) -> bool:
    """Say "ready" only when the web server accepts connections (and nothing died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(proc.poll() is not None for _name, proc in children):
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.2)
    return False


def shutdown(children, redis_server) -> None:
    say("stopping…")
    for _name, proc in children:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + float(os.environ.get("SHUTDOWN_GRACE", "30"))
    for name, proc in children:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say(f"{name} did not stop in time; killing it")
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if redis_server is not None:
        redis_server.stop()
        say("embedded Redis stopped")
    say("stopped")


if __name__ == "__main__":
    main()
