"""Shared fixtures: real Redis (devtools.pytest_redis), users and tokens, in-process RQ
workers, worker subprocesses, and deadline-bounded waiting."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import gc
import os
import random
import resource
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import quote

import django_rq
import pytest
from django.db import connection
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from devtools import pytest_redis

ROOT = Path(__file__).resolve().parent

# The API fuzzer's generation (tests/test_api_fuzz.py): a fresh seed each run, printed in
# the run's header so a failure can be replayed with FUZZ_SEED=<seed>.
FUZZ_SEED = int(os.environ.get("FUZZ_SEED") or random.randrange(1 << 32))
# `make test`'s processes (pytest-xdist) start after this import, from this environment:
# they fuzz on the seed the header prints, not each on one of its own.
os.environ["FUZZ_SEED"] = str(FUZZ_SEED)
FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))


def pytest_report_header(config) -> str:
    return f"API fuzzing: seed {FUZZ_SEED}, {FUZZ_EXAMPLES} examples per operation (replay: FUZZ_SEED={FUZZ_SEED})"


# --- waiting --------------------------------------------------------------------------


def wait_for(predicate: Callable[[], object], *, timeout: float = 20.0, interval: float = 0.05, what: str = ""):
    """Poll ``predicate`` until it returns something truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def readable_within(fd: int, seconds: float) -> bool:
    """Whether ``fd`` (a pipe's read end: a relay's handover) becomes readable within
    ``seconds`` — a deadline-bounded wait, also for what must not happen that soon."""
    readable, _, _ = select.select([fd], [], [], seconds)
    return bool(readable)


def relay_asleep_until_due(sender) -> None:
    """Wait for a relay sender's thread (jobs.core.relay), woken by a first message, to be
    back asleep until the message is due (its condition's waiters: CPython's own
    bookkeeping)."""
    wait_for(lambda: sender.lock._waiters, timeout=5, what="the relay's thread asleep")


def run_at_once(count: int, task: Callable[[], object]) -> tuple[list, list]:
    """Start ``task`` in ``count`` threads released together; (results, exceptions).
    Each thread has its own database connection, closed when it ends."""
    barrier = threading.Barrier(count)
    results: list = []
    errors: list = []

    def one() -> None:
        from django.db import connection

        try:
            barrier.wait()
            results.append(task())
        except Exception as exc:  # returned to the test, which asserts on it
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results, errors


# --- rows as a test's history has them ----------------------------------------------


def past_jobs(jobs: Iterable) -> list:
    """Write Job rows directly, as a test's history has them (finished, queued…): the one
    licensed bypass of the lifecycle (``status_writes``), for building a past quickly."""
    from jobs.core.models import Job, status_writes

    with status_writes():
        return Job.objects.bulk_create(list(jobs))


def past_job(**fields):
    from jobs.core.models import Job

    return past_jobs([Job(**fields)])[0]


# --- Redis ----------------------------------------------------------------------------


# Fixtures that need Redis, a committed database or processes: a test using any of them
# (or marked slow, or on a transactional database) is in the integration layer.
INTEGRATION_FIXTURES = {"run_worker", "redis_conn", "spawn", "web", "scheduler_tick", "live_server"}


# The longest modules (a minute or more each, on CI's kind of machine), started first when
# the suite runs in several processes (`make test`): one that started last would run on
# alone while the other processes sit idle.
LONGEST_FIRST = (
    "tests/test_api_fuzz.py",
    "tests/test_many_hosts.py",
    "tests/test_console_browser.py",
    "jobs/upkeep/tests/test_chaos.py",
    "jobs/insight/tests/test_eta_calibration.py",
)


def pytest_collection_modifyitems(config, items) -> None:
    """Sort every test into a layer: ``integration`` (real Redis, committed transactions,
    processes) or the fast layer (``make test-fast``: ``-m "not integration"``); in
    several processes, give each test an id of its own and start the longest first."""
    _unique_node_ids(items)
    if hasattr(config, "workerinput"):  # one of pytest-xdist's processes
        items.sort(key=_longest_first)  # stable: the order within a module stays
    for item in items:
        db = item.get_closest_marker("django_db")
        transactional = db is not None and (db.kwargs.get("transaction") or db.kwargs.get("serialized_rollback"))
        needs_redis = item.get_closest_marker("redis") or INTEGRATION_FIXTURES & set(item.fixturenames)
        if needs_redis and db is not None and not transactional:
            # What reaches Redis is sent once a transaction commits: such a test commits.
            item.add_marker(pytest.mark.django_db(transaction=True), append=False)
            transactional = True
        if item.get_closest_marker("slow") or transactional or needs_redis:
            item.add_marker(pytest.mark.integration)


def _unique_node_ids(items) -> None:
    """pytest-xdist sends tests to its processes by node id, and schemathesis gives each
    operation's test its function's id (``test_as_a_user``, 47 times): all but one would
    be dropped. A repeated id becomes the test's full name (``test_as_a_user[GET /api/jobs/]``)."""
    counts = collections.Counter(item.nodeid for item in items)
    for item in items:
        if counts[item.nodeid] > 1:
            # pytest (9.2, pinned) keeps a node's id as a structured NodeId: parsed from the
            # full name, it carries the operation as the test's parameters. The check below
            # fails the run loudly should a later pytest keep it elsewhere.
            item._id = type(item.id).parse(f"{item.parent.nodeid}::{item.name}")
    repeated = [nodeid for nodeid, count in collections.Counter(item.nodeid for item in items).items() if count > 1]
    if repeated:
        raise pytest.UsageError(f"tests with the same id would be dropped in several processes: {repeated[:5]}")


def _longest_first(item) -> int:
    path = item.nodeid.split("::", 1)[0]
    return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)


@pytest.fixture(autouse=True)
def _cheap_passwords(settings):
    """Users are made with cheap hashes (Django's PBKDF2 costs ~0.37 s a hash, and as much
    a check): still PBKDF2, so the servers the suite starts, on the default settings,
    check them (devtools.cheap_hashing)."""
    settings.PASSWORD_HASHERS = ["devtools.cheap_hashing.CheapPBKDF2PasswordHasher"]


@pytest.fixture(autouse=True)
def _clean_redis(request):
    """Every test starts with an empty Redis (the suite's own server, see pytest_redis).
    Under `make test-fast` there is none, and a test that reaches for it fails; in the
    whole suite a fast test may still read through the cache, which swallows its errors
    (the dashboard's overview, cached in Redis for seconds: an earlier test's figures).
    What this process's relay still holds from the test before (a line's arrivals go
    out up to LINE_INTERVAL later) is sent first, so none of it reaches this test's
    followers."""
    if not pytest_redis.fast_layer():
        from jobs.core import relay

        relay.drain()
        django_rq.get_connection("normal").flushall()
    yield


@pytest.fixture
def redis_conn():
    return django_rq.get_connection("normal")


@pytest.fixture
def queues_unreachable(settings):
    """RQ's queues point at a port nothing listens on: Redis is down for the code under
    test (a refused connection, as when the server is stopped)."""
    settings.RQ_QUEUES = {name: {"URL": "redis://127.0.0.1:1/0", "DEFAULT_TIMEOUT": 60} for name in settings.JOB_QUEUES}


# --- users and API clients ----------------------------------------------------------------


@pytest.fixture
def make_user(django_user_model):
    """A user; ``group`` puts a staff user in one of the operators' groups (jobs.console.roles)."""

    def make(username: str, *, staff: bool = False, group: str | None = None):
        from django.contrib.auth.models import Group

        user = django_user_model.objects.create_user(username, password="pw-" + username, is_staff=staff)
        if group:
            user.groups.add(Group.objects.get(name=group))
        return user

    return make


@pytest.fixture
def alice(make_user):
    return make_user("alice")


@pytest.fixture
def bob(make_user):
    return make_user("bob")


@pytest.fixture
def operator(make_user):
    """Staff who may act on everything (the "Operators" group)."""
    from jobs.console.roles import ACTING_OPERATORS_GROUP

    return make_user("operator", staff=True, group=ACTING_OPERATORS_GROUP)


@pytest.fixture
def watcher(make_user):
    """Staff who may see everything and change nothing ("Operators (read-only)")."""
    from jobs.console.roles import OPERATORS_GROUP

    return make_user("watcher", staff=True, group=OPERATORS_GROUP)


def _client_for(user) -> APIClient:
    client = APIClient()
    if user is not None:
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def api_as():
    return _client_for


# --- flow control -----------------------------------------------------------------------


@pytest.fixture
def fresh_flow_rules():
    """Each test reads the levers afresh (a process keeps a snapshot up to 0.5 s)."""
    from jobs.core import flow

    flow.forget_rules()
    yield flow
    flow.forget_rules()


@pytest.fixture
def make_limited_type():
    """Register a throwaway job type with code limits (``concurrency=``, ``rate=``)."""
    from jobs.core import registry

    made: list[str] = []

    def make(name: str, **limits) -> str:
        registry.job_type(name, **limits)(lambda ctx: None)
        made.append(name)
        return name

    yield make
    for name in made:
        registry.unregister(name)


# --- running jobs -------------------------------------------------------------------------


@pytest.fixture
def run_worker():
    """Drain the queues with a real RQ worker in this process (burst mode): Jobdesk's
    non-forking worker class, or any other RQ worker class given."""
    from jobs.execution.worker import JobdeskSimpleWorker

    def run(max_jobs: int | None = None, worker_class=JobdeskSimpleWorker) -> None:
        conn = django_rq.get_connection("normal")
        queues = [django_rq.get_queue(name) for name in ("immediate", "normal", "low")]
        worker_class(queues, connection=conn).work(burst=True, max_jobs=max_jobs, with_scheduler=False)

    return run


@pytest.fixture
def spans():
    """Traces on in this (the test's) process, its spans kept in memory (an exporter's
    ``get_finished_spans()``)."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from jobs.core import tracing

    exporter = InMemorySpanExporter()
    tracing.start([SimpleSpanProcessor(exporter)])
    yield exporter
    tracing.stop()


@pytest.fixture
def scheduler_tick():
    """One pass of the real rq-scheduler: move due jobs onto their queues."""
    from jobs.core import queueing

    def tick() -> None:
        queueing.scheduler().enqueue_jobs()

    return tick


def database_url() -> str:
    """A DATABASE_URL for the *test* database, for subprocesses to share it."""
    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    user = quote(s.get("USER") or "", safe="")
    password = f":{quote(s['PASSWORD'], safe='')}" if s.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    return f"postgresql://{auth}{s.get('HOST') or '127.0.0.1'}:{s.get('PORT') or 5432}/{s['NAME']}"


def subprocess_env(**overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": database_url(),
            "REDIS_URL": os.environ["REDIS_URL"],
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "PYTHONUNBUFFERED": "1",
            # A process that hangs can be asked where (SIGABRT: every thread's stack
            # into its log; see ``exits``).
            "PYTHONFAULTHANDLER": "1",
            "LOG_LEVEL": "WARNING",
        }
    )
    env.update(overrides)
    return env


_FAILED_PHASES = pytest.StashKey[set]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Note the phases that failed, for fixtures that say more when their test failed."""
    report = yield
    if report.failed:
        item.stash.setdefault(_FAILED_PHASES, set()).add(report.when)
    return report


@pytest.fixture
def spawn(tmp_path, request):
    """Start ``manage.py`` subprocesses (workers, scheduler, or ``-m uvicorn``) that share
    the test database.

    Each is stopped at teardown: SIGTERM; a second SIGTERM to what still runs after
    ``_WARM_STOP`` seconds (a worker's warm shutdown waits for its job: the second is
    RQ's cold shutdown); then SIGKILL of whatever is left of its process group.
    """
    started: list[subprocess.Popen] = []

    def start(*args: str, **env: str) -> subprocess.Popen:
        log = open(tmp_path / f"proc-{len(started)}.log", "wb")  # noqa: SIM115 - closed with the process
        # ``spawn("-m", "uvicorn", …)`` runs a module; anything else is a manage.py command.
        command = list(args) if args[0] == "-m" else [str(ROOT / "manage.py"), *args]
        proc = subprocess.Popen(
            [sys.executable, *command],
            cwd=ROOT,
            env=subprocess_env(**env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        proc.log_path = log.name  # type: ignore[attr-defined]
        started.append(proc)
        return proc

    yield start
    _stop_all(started)
    if request.node.stash.get(_FAILED_PHASES, set()) & {"setup", "call"}:
        _print_logs(started)


def _print_logs(started: list[subprocess.Popen]) -> None:
    """The end of each spawned process's log, into the failed test's report (a wait that
    timed out says what it waited for, not what the processes were doing)."""
    for proc in started:
        log = Path(proc.log_path).read_text(errors="replace")  # type: ignore[attr-defined]
        command = " ".join(map(str, list(proc.args)[1:]))  # type: ignore[arg-type]  # spawn passes a list
        print(f"--- {command} (pid {proc.pid}, exit {proc.returncode}) ---", file=sys.stderr)
        print(log[-6000:], file=sys.stderr)


# ``exits`` aborts a hung process for its stacks: no core file of it (nor of any process
# the suite starts, each inheriting this limit) in the repository.
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def exits(proc: subprocess.Popen, timeout: float, what: str) -> int:
    """Wait for a spawned process to end; its return code. One that outlives ``timeout``
    fails the test with where each thread of its group stood (faulthandler's dump on
    SIGABRT: the worker, its work-horse, its bookkeeper) and the end of its log, not a
    bare timeout."""
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGABRT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        log_path = getattr(proc, "log_path", None)
        log = Path(log_path).read_text(errors="replace") if log_path else ""
        pytest.fail(f"{what}: not ended after {timeout}s; the stacks and the log:\n{log[-12000:]}")


# Seconds a spawned process has, at teardown, after its first SIGTERM (a warm stop) and
# after its second (a cold one), before what is left of its group is killed.
_WARM_STOP, _COLD_STOP = 2.0, 8.0


def _stop_all(started: list[subprocess.Popen]) -> None:
    for grace in (_WARM_STOP, _COLD_STOP):
        running = [proc for proc in started if proc.poll() is None]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.0, deadline - time.monotonic()))
    for proc in started:
        # The whole group, even when its first process has ended: a pool's workers that
        # outlived it must not write to the next test's database.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# --- a web server ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


@dataclasses.dataclass(frozen=True)
class WebServer:
    url: str  # ws://…
    process: subprocess.Popen


@pytest.fixture
def web_server(spawn) -> WebServer:
    """The web tier (devtools.web: uvicorn serving config.asgi, sharing the test
    database), once it answers."""
    from devtools import web as web_tier

    port = free_port()
    process = spawn(*web_tier.command("127.0.0.1", port)[1:])
    wait_for(lambda: answers(f"http://127.0.0.1:{port}/api/health/live/"), timeout=30, what="the web server")
    return WebServer(f"ws://127.0.0.1:{port}", process)


@pytest.fixture
def web(web_server) -> str:
    """ws://… of the web tier, once it answers."""
    return web_server.url


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup):
    """pytest-django's, and before it drops the test databases: the connections of threads
    that have ended closed. A WebSocket test's consumer reads the database on its event
    loop's executor threads (``database_sync_to_async``), and Channels' test communicator
    makes the close after each read a no-op (``channels.testing``: it patches
    ``close_old_connections``). When the loop ends, those threads do, and their
    connections, held in reference cycles, stay open until the garbage collector next
    runs: the database could not be dropped ("being accessed by other users", found by
    listing ``pg_stat_activity`` with the thread that opened each session)."""
    yield
    gc.collect()
