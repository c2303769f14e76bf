"""What every benchmark needs first: its own Redis, settings from the environment, and a
throwaway SQLite file unless DATABASE_URL names a database (or a throwaway PostgreSQL
cluster of its own: ``own_postgres``)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from devtools import hostlab
from devtools.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def environment(**env: str) -> Iterator[Path]:
    """Start a Redis for the benchmark and set its environment; yields a scratch directory."""
    scratch = Path(tempfile.mkdtemp(prefix="jobdesk-bench-"))
    server = RedisServer(directory=scratch / "redis").start()
    # DEBUG off, as deployed: with it on, Django keeps every query's SQL in memory.
    os.environ.update({"REDIS_URL": server.url, "LOG_LEVEL": "ERROR", "DJANGO_SETTINGS_MODULE": "config.settings",
                       "DEBUG": "false", **env})  # fmt: skip
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{scratch / 'bench.sqlite3'}")
    try:
        yield scratch
    finally:
        server.stop()


def machine_pace() -> float:
    """Milliseconds for a fixed piece of pure Python (calls, dicts, strings; the best of
    five): the same code measured on this machine has run at half the speed on some days,
    so absolute figures (an API's milliseconds) are printed beside it. Lower is faster."""

    def step(i: int) -> str:
        row = {"id": i, "status": "queued", "attempts": i % 3}
        return f"{row['id']}:{row['status']}:{row['attempts']}"

    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for i in range(200_000):
            step(i)
        best = min(best, time.perf_counter() - started)
    return best * 1000


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


@contextmanager
def own_postgres(*settings: str) -> Iterator[str]:
    """A throwaway PostgreSQL cluster as ``.ci/run`` starts one (initdb, ``fsync=off``, as
    the ``postgres`` user when run as root), with extra ``-c`` settings such as
    ``shared_preload_libraries=pg_stat_statements``; yields its database's URL."""
    pgbin = hostlab.pg_bin()  # PGBIN, else the newest installed
    if pgbin is None:
        raise SystemExit("no initdb found: install PostgreSQL's server or set PGBIN")
    directory = Path(tempfile.mkdtemp(prefix="jobdesk-bench-pg-"))
    as_pg: list[str] = []
    if os.getuid() == 0:  # the server refuses to run as root
        shutil.chown(directory, "postgres")
        as_pg = ["runuser", "-u", "postgres", "--"]

    def pg(program: str, *args: str, check: bool = True) -> None:
        subprocess.run([*as_pg, str(pgbin / program), *args], check=check, stdout=subprocess.DEVNULL)

    data, port = str(directory / "data"), str(free_port())
    pg("initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
    options = f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    pg("pg_ctl", "-D", data, "-l", str(directory / "server.log"), "-w", "-t", "60", "start",
       "-o", options + "".join(f" -c {setting}" for setting in settings))  # fmt: skip
    try:
        pg("createdb", "-h", "127.0.0.1", "-p", port, "-U", "postgres", "jobdesk")
        yield f"postgresql://postgres@127.0.0.1:{port}/jobdesk"
    finally:
        pg("pg_ctl", "-D", data, "-m", "fast", "-w", "stop", check=False)
        shutil.rmtree(directory, ignore_errors=True)
