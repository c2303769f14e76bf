"""The README's run command, from a fresh clone, as a new user would run it."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import wait_for
from devtools.redis_server import free_port, reachable

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(sys.executable).parent.parent

pytestmark = pytest.mark.slow


def http(method: str, url: str, token: str | None = None, body: dict | None = None) -> tuple[int, dict | str]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Token {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read().decode()
            status = response.status
    except urllib.error.HTTPError as error:
        text, status = error.read().decode(), error.code
    except urllib.error.URLError:  # not listening yet
        return 0, ""
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def test_make_run_from_a_fresh_clone(tmp_path):
    clone = tmp_path / "jobdesk"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    port, redis_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "JOBDESK_VAR_DIR"}}
    # Nothing listens on this port: the run command must start its embedded Redis there.
    env.update({"PORT": str(port), "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "WORKER_CONCURRENCY": "2"})
    # Reuse this suite's virtualenv: installing is what `make test` on a clean clone proves.
    proc = subprocess.Popen(
        ["make", "run", f"VENV={VENV}"],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        wait_for(lambda: any("[jobdesk] ready:" in line for line in output), timeout=120, what="the ready line")
        text = "".join(output)
        login = re.search(r"user: admin\s+password: (\S+)", text)
        token = re.search(r"token: ([0-9a-f]{40})", text)
        assert login and token, text
        redis_dir = clone / "var" / "redis" / str(redis_port)  # one data directory per port
        assert (redis_dir / "appendonly.aof").exists() or (redis_dir / "appendonlydir").exists()  # 6.2 / 7.x

        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: http("GET", f"{base}/admin/login/")[0] == 200, timeout=30, what="the admin page")
        status, job = http("POST", f"{base}/api/jobs/", token.group(1), {"type": "diagnostics.sleep",
                                                                          "payload": {"seconds": 0.2}})  # fmt: skip
        assert status == 201, job

        def completed():
            return http("GET", f"{base}/api/jobs/{job['id']}/", token.group(1))[1].get("status") == "complete"

        wait_for(completed, timeout=60, what="the job to complete through the real worker pool")
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        proc.wait(90)
    text = "".join(output)
    assert "[jobdesk] stopped" in text, text[-3000:]
    assert not reachable(f"redis://127.0.0.1:{redis_port}/0")  # the embedded Redis went too


@pytest.mark.django_db
def test_admin_login_is_created_once_and_printed_the_same_every_run(settings, tmp_path):
    from io import StringIO

    from django.core.management import call_command

    settings.VAR_DIR = tmp_path
    first, second = StringIO(), StringIO()
    call_command("ensure_admin", stdout=first)
    call_command("ensure_admin", stdout=second)
    assert "password: " in first.getvalue()
    assert first.getvalue() == second.getvalue()


@pytest.mark.django_db
@pytest.mark.parametrize("username", ["", "a" * 151, "no spaces"])
def test_ensure_admin_refuses_a_username_the_user_model_refuses(settings, tmp_path, username):
    from django.core.management import CommandError, call_command

    settings.VAR_DIR = tmp_path
    with pytest.raises(CommandError, match="--username"):
        call_command("ensure_admin", "--username", username)


@pytest.mark.django_db
def test_each_database_keeps_its_own_admin_password_and_an_older_single_file_still_counts(settings, tmp_path):
    """Switching DATABASE_URL back and forth lost the first database's printed login:
    one file held whichever database's admin was made last."""
    from io import StringIO

    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from jobs.management.commands.ensure_admin import password_file

    settings.VAR_DIR = tmp_path
    (tmp_path / "admin-password").write_text("another-database's\n")  # kept by an earlier version
    printed = StringIO()
    call_command("ensure_admin", stdout=printed)
    kept = password_file(tmp_path).read_text().strip()
    assert f"password: {kept}\n" in printed.getvalue()
    assert (tmp_path / "admin-password").read_text() == "another-database's\n"  # not this database's: untouched

    admin = get_user_model().objects.get(username="admin")
    admin.set_password("from-before")
    admin.save()
    password_file(tmp_path).unlink()
    (tmp_path / "admin-password").write_text("from-before\n")  # an admin made by an earlier version
    again = StringIO()
    call_command("ensure_admin", stdout=again)
    assert "password: from-before\n" in again.getvalue()


def _make_run(clone: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "JOBDESK_VAR_DIR"}}
    environment.update(env)
    return subprocess.run(["make", "run", f"VENV={VENV}"], cwd=clone, env=environment, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def test_make_run_refuses_a_busy_port_before_starting_anything(tmp_path):
    import socket

    clone = tmp_path / "jobdesk"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    redis_port = free_port()
    with socket.socket() as busy:  # e.g. a first `make run`, or anything else
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _make_run(clone, PORT=str(port), REDIS_URL=f"redis://127.0.0.1:{redis_port}/0")
    assert result.returncode != 0
    assert f"cannot serve on 127.0.0.1:{port}" in result.stderr, result.stderr[-2000:]
    assert "started" not in result.stdout, "nothing started: no Redis, no migrations, no second worker pool"
    assert not reachable(f"redis://127.0.0.1:{redis_port}/0") and not (clone / "db.sqlite3").exists()


def test_make_run_checks_its_port_setting_like_every_other(tmp_path):
    clone = tmp_path / "jobdesk"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    result = _make_run(clone, PORT="abc")
    assert result.returncode != 0
    assert "jobdesk: configuration error: Invalid PORT='abc'" in result.stderr
    assert "Traceback" not in result.stderr


def test_make_run_says_when_redis_url_s_port_is_taken_by_something_else(tmp_path):
    # It started an embedded Redis there, which exited: "redis-server exited with 1; see …".
    import socket
    from types import SimpleNamespace

    from devtools import run

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
        with pytest.raises(SystemExit) as exited:
            run.ensure_redis(SimpleNamespace(REDIS_URL=url, VAR_DIR=tmp_path))
    assert f"REDIS_URL={url}: something that is not a Redis we can use listens on that port" in str(exited.value)
    assert not (tmp_path / "redis").exists()


@pytest.mark.parametrize("value", ["abc", "nan", "-1", "1e9"])
def test_make_run_reads_its_shutdown_grace_at_start(monkeypatch, value):
    # Read only at Ctrl-C, a bad value raised there and no child was stopped; "nan"
    # killed them all after 0.1 s.
    from devtools import run

    monkeypatch.setenv("SHUTDOWN_GRACE", value)
    with pytest.raises(SystemExit) as exited:
        run.shutdown_grace()
    assert f"jobdesk: configuration error: Invalid SHUTDOWN_GRACE='{value}'" in str(exited.value)
    monkeypatch.setenv("SHUTDOWN_GRACE", "5")
    assert run.shutdown_grace() == 5.0


@pytest.mark.parametrize(
    ("host", "says", "hint"),
    [
        ("nohost.invalid", "configuration error: Invalid HOST='nohost.invalid'", "HOST=127.0.0.1"),  # never resolves
        ("[::1]", "configuration error: Invalid HOST='[::1]'", "without brackets, e.g. HOST=::1"),
        ("192.0.2.1", "cannot serve on 192.0.2.1:", "HOST=127.0.0.1"),  # an address, not this machine's (TEST-NET-1)
    ],
)
def test_make_run_names_a_bad_host_as_such_not_as_a_busy_port(monkeypatch, host, says, hint):
    from devtools import run

    monkeypatch.setenv("HOST", host)
    monkeypatch.setenv("PORT", str(free_port()))
    with pytest.raises(SystemExit) as refused:
        run.refuse_busy_port(*run.listen_address())
    message = str(refused.value.code)
    assert says in message and hint in message, message
    assert "already running" not in message


def test_a_second_make_run_from_the_same_checkout_is_refused_whatever_its_port(tmp_path, monkeypatch):
    """On another port, a second one started a second worker pool and scheduler against
    the first one's database and Redis."""
    from devtools import run

    monkeypatch.setattr(run, "_run_lock", None)
    run.hold_the_run_lock(tmp_path, "http://127.0.0.1:8000")
    first = run._run_lock
    try:
        with pytest.raises(SystemExit) as refused:
            run.hold_the_run_lock(tmp_path, "http://127.0.0.1:8002")
        message = str(refused.value.code)
        assert f"already running from {tmp_path} (pid {os.getpid()}, http://127.0.0.1:8000)" in message, message
        assert "JOBDESK_VAR_DIR" in message
    finally:
        first.close()  # the first one stops: the next may start
    run.hold_the_run_lock(tmp_path, "http://127.0.0.1:8002")
    run._run_lock.close()


def test_make_run_names_an_unreachable_database_in_one_line_before_starting_anything(tmp_path):
    redis_port = free_port()
    environment = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "JOBDESK_VAR_DIR"}}
    environment.update(
        DATABASE_URL=f"postgresql://jobdesk:secret@127.0.0.1:{free_port()}/nowhere",
        JOBDESK_VAR_DIR=str(tmp_path / "var"),
        PORT=str(free_port()),
        REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
    )
    result = subprocess.run([sys.executable, "-m", "devtools.run"], cwd=ROOT, env=environment, capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    assert result.returncode != 0
    assert "jobdesk: cannot reach the database (postgresql: nowhere on 127.0.0.1:" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and "secret" not in result.stderr
    assert not reachable(f"redis://127.0.0.1:{redis_port}/0"), "nothing started"


def test_make_run_stops_everything_when_its_terminal_closes(tmp_path):
    """A closed terminal (SIGHUP) left the web, the workers, the scheduler and Redis
    running in sessions of their own — first unhandled, then stopping on a print to the
    dead terminal — without the run lock, beside the next make run."""
    import pty

    port, redis_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "JOBDESK_VAR_DIR"}}
    env.update(
        PORT=str(port), REDIS_URL=f"redis://127.0.0.1:{redis_port}/0", WORKER_CONCURRENCY="1",
        JOBDESK_VAR_DIR=str(tmp_path / "var"), DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
    )  # fmt: skip
    pid, terminal = pty.fork()
    if pid == 0:  # the child: make run's supervisor in the terminal
        os.chdir(ROOT)
        os.execve(sys.executable, [sys.executable, "-m", "devtools.run"], env)
    seen = b""
    deadline = time.monotonic() + 120
    try:
        while b"[jobdesk] ready:" not in seen and time.monotonic() < deadline:
            seen += os.read(terminal, 65536)
    except OSError:
        pass
    assert b"[jobdesk] ready:" in seen, seen[-3000:].decode(errors="replace")
    os.close(terminal)  # the terminal closes: SIGHUP to the supervisor
    finished = wait_for(lambda: os.waitpid(pid, os.WNOHANG)[0] == pid, timeout=90, what="the supervisor to stop")
    assert finished
    wait_for(lambda: not reachable(f"redis://127.0.0.1:{redis_port}/0"), timeout=30, what="the embedded Redis to stop")
    with socket.socket() as probe:  # nobody serves the web port any more
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
