"""Several network hosts on one Linux machine, for tests of Jobdesk across hosts.

Each host is a network namespace with its own address; the worker hosts' processes also
get their own hostname (a UTS namespace), so nothing on them looks local to another:

    core   10.77.0.1   PostgreSQL and Redis (and the bridge the others plug into)
    w1     10.77.0.11  worker hosts: rqworker-pool, a scheduler …
    w2     10.77.0.12
    …

Cutting a host off is ``ip link set eth0 down`` inside it. The test driver itself sits
on no host network: it reaches PostgreSQL and Redis through their unix sockets (the
filesystem is shared), so it keeps its view of the truth while links go down. Only
addresses inside these namespaces, or unix sockets, are ever contacted.

Needs root (CI runs as root), ``ip``, ``unshare`` and PostgreSQL's server binaries.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from devtools.redis_server import binary as redis_binary

ROOT = Path(__file__).resolve().parent.parent
CORE_ADDRESS = "10.77.0.1"
PG_PORT = 5432
REDIS_PORT = 6379


def pg_bin() -> Path | None:
    given = os.environ.get("PGBIN")
    candidates = [Path(given)] if given else sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    return next((path for path in candidates if (path / "initdb").exists()), None)


def unavailable() -> str:
    """Why hosts cannot be built here ("" when they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs as root)"
    for tool in ("ip", "unshare", "runuser"):
        if shutil.which(tool) is None:
            return f"no `{tool}` command"
    if pg_bin() is None:
        return "no PostgreSQL server binaries (initdb) under /usr/lib/postgresql or $PGBIN"
    probe = f"jdprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return ""


def _run(*args: str) -> None:
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")


@dataclass
class Lab:
    hosts: tuple[str, ...] = ("w1", "w2", "w3")
    prefix: str = field(default_factory=lambda: f"jd{os.getpid() % 100000}")
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="jobdesk-hostlab-")))
    processes: list[subprocess.Popen] = field(default_factory=list)

    # --- the network -------------------------------------------------------------------

    def namespace(self, host: str) -> str:
        return f"{self.prefix}-{host}"

    def address(self, host: str) -> str:
        return CORE_ADDRESS if host == "core" else f"10.77.0.{11 + self.hosts.index(host)}"

    def build(self) -> Lab:
        core = self.namespace("core")
        _run("ip", "netns", "add", core)
        _run("ip", "-n", core, "link", "set", "lo", "up")
        _run("ip", "-n", core, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", core, "addr", "add", f"{CORE_ADDRESS}/24", "dev", "br0")
        _run("ip", "-n", core, "link", "set", "br0", "up")
        for host in self.hosts:
            ns = self.namespace(host)
            _run("ip", "netns", "add", ns)
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            _run("ip", "link", "add", f"to-{host}", "netns", core, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _run("ip", "-n", core, "link", "set", f"to-{host}", "master", "br0", "up")
            _run("ip", "-n", ns, "addr", "add", f"{self.address(host)}/24", "dev", "eth0")
            _run("ip", "-n", ns, "link", "set", "eth0", "up")
        return self

    def cut(self, host: str) -> None:
        """Pull the host's cable: nothing gets in or out (its processes run on)."""
        _run("ip", "-n", self.namespace(host), "link", "set", "eth0", "down")

    def restore(self, host: str) -> None:
        _run("ip", "-n", self.namespace(host), "link", "set", "eth0", "up")

    def pids(self, host: str) -> list[int]:
        out = subprocess.run(["ip", "netns", "pids", self.namespace(host)], capture_output=True, text=True).stdout
        return [int(pid) for pid in out.split()]

    def kill_host(self, host: str) -> None:
        """SIGKILL every process of the host at once (a power cut)."""
        for pid in self.pids(host):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    # --- the core's services -----------------------------------------------------------

    @property
    def socket_dir(self) -> Path:
        return self.directory / "sockets"

    def start_services(self) -> Lab:
        os.chmod(self.directory, 0o755)  # PostgreSQL runs as its own user
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.socket_dir, 0o777)
        self._start_postgres()
        self._start_redis()
        return self

    def _start_postgres(self) -> None:
        bin_dir = pg_bin()
        assert bin_dir is not None
        home = self.directory / "pg"
        home.mkdir()
        shutil.chown(home, "postgres")
        data = home / "data"
        as_postgres = ("runuser", "-u", "postgres", "--")
        _run(*as_postgres, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync")
        with open(data / "pg_hba.conf", "a") as hba:  # the hosts' network (the driver uses the socket)
            hba.write("host all all 10.77.0.0/24 trust\n")
        options = (
            f"-p {PG_PORT} -k {self.socket_dir} -c listen_addresses={CORE_ADDRESS} -c fsync=off "
            "-c max_connections=200 -c synchronous_commit=off "
            # As docs/deployment.md advises: a host cut off mid-transaction must not hold
            # its row locks (a schedule's tick) until TCP gives up hours later.
            "-c idle_in_transaction_session_timeout=5s -c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 "
            "-c tcp_keepalives_count=3 -c tcp_user_timeout=10000"
        )
        _run(
            "ip", "netns", "exec", self.namespace("core"), *as_postgres, str(bin_dir / "pg_ctl"), "-D", str(data),
            "-l", str(home / "server.log"), "-w", "-t", "60", "-o", options, "start",
        )  # fmt: skip
        _run(*as_postgres, str(bin_dir / "createdb"), "-h", str(self.socket_dir), "-p", str(PG_PORT), "jobdesk")

    def _start_redis(self) -> None:
        args = [
            "ip", "netns", "exec", self.namespace("core"), redis_binary(),
            "--bind", CORE_ADDRESS, "--port", str(REDIS_PORT),
            "--unixsocket", str(self.socket_dir / "redis.sock"), "--unixsocketperm", "777",
            "--save", "", "--appendonly", "no", "--dir", str(self.directory),
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        self.processes.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, start_new_session=True))
        deadline = time.monotonic() + 15
        while not (self.socket_dir / "redis.sock").exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis did not start in the core host: see {self.directory / 'redis.log'}")
            time.sleep(0.05)

    # --- environments ------------------------------------------------------------------

    def driver_env(self, **extra: str) -> dict[str, str]:
        """For the test driver (on no host network): the unix sockets."""
        return self._env(
            DATABASE_URL=f"postgresql://postgres@{str(self.socket_dir).replace('/', '%2F')}:{PG_PORT}/jobdesk",
            REDIS_URL=f"unix://{self.socket_dir / 'redis.sock'}?db=0",
            **extra,
        )

    def host_env(self, **extra: str) -> dict[str, str]:
        """For processes on the hosts: the core's network address."""
        return self._env(
            DATABASE_URL=f"postgresql://postgres@{CORE_ADDRESS}:{PG_PORT}/jobdesk",
            REDIS_URL=f"redis://{CORE_ADDRESS}:{REDIS_PORT}/0",
            **extra,
        )

    def _env(self, **values: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL", "TEST_"))}
        env.update(DJANGO_SETTINGS_MODULE="config.settings", PYTHONUNBUFFERED="1", DB_CONN_MAX_AGE="60")
        env.update(values)
        return env

    def sql(self, query: str, *params) -> list[tuple]:
        """Read the truth (the core's database) as the driver, through its socket."""
        import psycopg

        with psycopg.connect(host=str(self.socket_dir), port=PG_PORT, user="postgres", dbname="jobdesk") as conn:
            return conn.execute(query, params).fetchall()

    def python(self, code: str, **env: str) -> str:
        """Run Django code as the driver; its last line of output."""
        out = self.manage("shell", "--no-imports", "-c", code, **env).stdout.strip().splitlines()
        return out[-1] if out else ""

    # --- processes ---------------------------------------------------------------------

    def manage(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        """Run a manage.py command as the driver (to completion)."""
        done = subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, env=self.driver_env(**env),
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"manage.py {args[0]} failed ({done.returncode}): {done.stderr[-3000:]}")
        return done

    def start_on(self, host: str, *args: str, **env: str) -> subprocess.Popen:
        """Start a manage.py command on a worker host, under the host's own hostname."""
        log = open(self.directory / f"{host}-{len(self.processes)}.log", "wb")  # noqa: SIM115 - lives with the process
        command = [
            "ip", "netns", "exec", self.namespace(host), "unshare", "--uts", "--fork", "--kill-child",
            "sh", "-c", 'hostname "$0" && exec "$@"', host, sys.executable, str(ROOT / "manage.py"), *args,
        ]  # fmt: skip
        proc = subprocess.Popen(
            command, cwd=ROOT, env=self.host_env(**env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        proc.log_path = log.name  # type: ignore[attr-defined]
        self.processes.append(proc)
        return proc

    # --- teardown ----------------------------------------------------------------------

    def destroy(self, *, keep_logs: bool = False) -> None:
        """Stop everything and remove the namespaces; the directory (logs, the database)
        too, unless ``keep_logs`` (a test failed: read them)."""
        for host in (*self.hosts, "core"):
            self.kill_host(host)
        bin_dir = pg_bin()
        if bin_dir is not None and (self.directory / "pg" / "data").exists():
            subprocess.run(
                ["runuser", "-u", "postgres", "--", str(bin_dir / "pg_ctl"), "-D", str(self.directory / "pg" / "data"),
                 "-m", "immediate", "-w", "stop"], capture_output=True,
            )  # fmt: skip
        for proc in self.processes:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        for host in (*self.hosts, "core"):
            subprocess.run(["ip", "netns", "del", self.namespace(host)], capture_output=True)
        if not keep_logs:
            shutil.rmtree(self.directory, ignore_errors=True)
