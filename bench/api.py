"""The API under load, served by the web tier (devtools.web: uvicorn) on loopback.

    DATABASE_URL=postgresql://… python bench/api.py [--requests 2000] [--clients 16] [--rows 1000000] [--worker]

Starts its own Redis and the web tier serving config.asgi, then:
1. POST /api/jobs/ from concurrent clients (keep-alive connections, token auth): latency
   p50/p99 and requests/s, and the web process's CPU time per request; then from one client,
   one request at a time, the server's own time per request (its ``Server-Timing``
   header, ``SERVER_TIMING`` on: Django's time inside the process, apikit.timing) p50/p99
   — goal p50 ≤ 5 ms on PostgreSQL (with 16 at once each request's time inside also
   holds the others' turns on the CPU); then one more submit in this process, its SQL
   queries and Redis round trips counted. Without workers a submit's answer says none is alive (no ETA to
   work out); ``--worker`` registers one that takes nothing, so each submit's ETA walks
   the growing line;
   then POST /api/jobs/ in this process under WSGI, apikit.wsgi.Handler against Django's
   own handler (a ratio);
   then the same 16-client load through ``--processes`` web processes on one port (as
   ``WEB_CONCURRENCY`` starts them; 0 skips it), and POST /api/jobs/bulk/ of ``--bulk``
   jobs at a time (goal >= 2,000 jobs/s);
2. with --rows finished jobs on record (PostgreSQL: inserted with generate_series),
   GET /api/stats/ for the last 24 hours and the last 30 days (goal < 300 ms).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import environment, free_port, machine_pace, start_web  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--processes", type=int, default=2, help="web processes for the second load (0: skip it)")
    parser.add_argument("--bulk", type=int, default=1000, help="jobs per bulk submit (0: skip it)")
    parser.add_argument(
        "--worker", action="store_true", help="a live worker (idle) in RQ's registry: each submit's ETA walks the line"
    )
    args = parser.parse_args()
    with environment(
        LOG_LEVEL="WARNING",
        DEBUG="false",
        SECRET_KEY="bench-only-secret-" + "x" * 40,
        ALLOWED_HOSTS="127.0.0.1",
        API_USER_RATE="1000000/minute",
        SERVER_TIMING="true",
    ):
        run(args)


def submit_load(port: int, token: str, total: int, clients: int, web_pid: int) -> None:
    latencies: list[float] = []
    server: list[float] = []  # the Server-Timing of each answer (ms)
    failures: list[int] = []
    lock = threading.Lock()
    body = json.dumps({"type": "diagnostics.noop"})
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}

    def client(count: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine, inside = [], []
        for _ in range(count):
            started = time.perf_counter()
            connection.request("POST", "/api/jobs/", body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            mine.append(time.perf_counter() - started)
            inside.append(float(response.getheader("Server-Timing", "app;dur=nan").partition(";dur=")[2]))
            if response.status != 201:
                with lock:
                    failures.append(response.status)
        with lock:
            latencies.extend(mine)
            server.extend(inside)

    threads = [threading.Thread(target=client, args=(total // clients,)) for _ in range(clients)]
    cpu = _tree_cpu(web_pid)
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    cpu = _tree_cpu(web_pid) - cpu
    ordered = sorted(latencies)
    print(
        f"POST /api/jobs/  {len(ordered)} requests, {clients} clients: {len(ordered) / elapsed:7.1f} req/s  "
        f"p50 {statistics.median(ordered) * 1000:6.1f} ms  p99 {ordered[int(0.99 * (len(ordered) - 1))] * 1000:6.1f} ms"
        f"  non-201: {len(failures)}"
    )
    if clients == 1:
        print(f"  server time, one at a time (Server-Timing): {_quantiles(server)}  goal p50 <= 5 ms")
    else:
        print(f"  server time with {clients} at once (Server-Timing): {_quantiles(server)}")
    print(f"  the web process's CPU (uvicorn and Django): {cpu / len(ordered) * 1000:.2f} ms per request")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children that have ended (Linux);
    with several web processes, ``pid`` is uvicorn's supervisor: see ``_tree_cpu``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tree_cpu(pid: int) -> float:
    """The CPU of ``pid`` and of its live children (uvicorn's --workers processes)."""
    total = _cpu_seconds(pid)
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split() if (task / "children").exists() else []
        total += sum(_tree_cpu(int(child)) for child in children)
    return total


def bulk_load(port: int, token: str, size: int, rounds: int = 3) -> None:
    """POST /api/jobs/bulk/ of ``size`` jobs, ``rounds`` times: jobs per second (median)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    body = json.dumps({"jobs": [{"type": "diagnostics.noop"}] * size})
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    rates = []
    for _ in range(rounds):
        started = time.perf_counter()
        connection.request("POST", "/api/jobs/bulk/", body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        assert response.status == 201, response.status
        rates.append(size / (time.perf_counter() - started))
    print(f"POST /api/jobs/bulk/  {size} jobs a request: {statistics.median(rates):,.0f} jobs/s (median of {rounds};"
          " goal >= 2,000)")  # fmt: skip


def _quantiles(values) -> str:
    ordered = sorted(values)
    return f"p50 {statistics.median(ordered):6.2f} ms  p99 {ordered[int(0.99 * (len(ordered) - 1))]:6.2f} ms"


def count_one_submit(token: str) -> None:
    """One more submit in this process (Django's test client: the same middleware, view
    and services, no web server): its SQL queries and Redis round trips."""
    import redis
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    trips: list[str] = []
    command, pipeline = redis.Redis.execute_command, redis.client.Pipeline.execute
    # The request's own: the relay's thread may send an earlier submit's event meanwhile.
    requesting = threading.get_ident()

    def counted_command(self, *args, **options):
        if threading.get_ident() == requesting:
            trips.append(str(args[0]))
        return command(self, *args, **options)

    def counted_pipeline(self, *args, **options):
        if threading.get_ident() == requesting:
            trips.append("pipeline of " + "+".join(str(c[0][0]) for c in self.command_stack))
        return pipeline(self, *args, **options)

    client = Client(HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION=f"Token {token}")
    body = json.dumps({"type": "diagnostics.noop"})
    client.post("/api/jobs/", body, content_type="application/json")  # warm
    redis.Redis.execute_command, redis.client.Pipeline.execute = counted_command, counted_pipeline  # type: ignore[method-assign]
    try:
        with CaptureQueriesContext(connection) as queries:
            answer = client.post("/api/jobs/", body, content_type="application/json")
    finally:
        redis.Redis.execute_command, redis.client.Pipeline.execute = command, pipeline  # type: ignore[method-assign]
    assert answer.status_code == 201, answer.content
    statements = [q["sql"].split()[0] for q in queries.captured_queries]
    print(f"  one submit: {len(statements)} SQL statements ({', '.join(statements)}), "
          f"{len(trips)} Redis round trips ({', '.join(trips)})")  # fmt: skip


def wsgi_submits(token: str, requests: int = 300, rounds: int = 3) -> None:
    """In this process, no server: POST /api/jobs/ through apikit.wsgi.Handler (what
    config/wsgi.py serves) and through Django's own WSGIHandler (the baseline), rounds
    alternating; each one's p50 per submit and the ratio."""
    import io
    from wsgiref.util import setup_testing_defaults

    from django.core.handlers.wsgi import WSGIHandler

    from apikit.wsgi import Handler

    body = json.dumps({"type": "diagnostics.noop"}).encode()

    def one(app) -> float:
        environ: dict = {"REQUEST_METHOD": "POST", "PATH_INFO": "/api/jobs/", "HTTP_HOST": "127.0.0.1",
                         "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body)),
                         "HTTP_AUTHORIZATION": f"Token {token}", "wsgi.input": io.BytesIO(body)}  # fmt: skip
        setup_testing_defaults(environ)
        status: list[str] = []
        started = time.perf_counter()
        b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))
        took = time.perf_counter() - started
        assert status[0].startswith("201"), status
        return took

    apps = {"apikit.wsgi.Handler": Handler(), "Django's WSGIHandler": WSGIHandler()}
    times: dict[str, list[float]] = {name: [] for name in apps}
    for _ in range(rounds):
        for name, app in apps.items():
            for _ in range(20):
                one(app)  # warm
            times[name] += [one(app) for _ in range(requests // rounds)]
    ours, django_own = (statistics.median(t) * 1000 for t in times.values())
    print(f"WSGI, in this process: POST /api/jobs/ p50 {ours:.2f} ms (apikit.wsgi.Handler) vs {django_own:.2f} ms "
          f"(Django's WSGIHandler, each API view through an event loop): {django_own / ours:.2f}x")  # fmt: skip


_SEED_SQL = """
INSERT INTO jobs_job (id, type, payload, priority, status, heavy, attempts, max_attempts, timeout, has_dependents,
    hooks_done, error_category, error_message, error_details, recovery_actions, progress, stage, progress_details,
    seq, rq_job_id, worker_name, runner_host, hold, on_dependency_failure, trace_context, created_at, updated_at,
    started_at, finished_at, eta_error_seconds)
SELECT gen_random_uuid(), 'bench.type' || (n %% 8), '{}'::jsonb, 'normal',
    CASE WHEN n %% 50 = 0 THEN 'failed' WHEN n %% 97 = 0 THEN 'dead_letter' ELSE 'complete' END,
    false, 1, 4, 1800, false, true, CASE WHEN n %% 50 = 0 THEN 'user_fixable' ELSE '' END, '', '', '[]'::jsonb,
    100, '', '{}'::jsonb, 3, '', 'bench', '', '', 'cancel', '',
    at - interval '2 seconds', at, at - interval '1 second' * (n %% 7), at, (n %% 11) - 5
FROM (SELECT n, now() - interval '30 days' * random() AS at FROM generate_series(1, %(rows)s) AS n) AS seed
"""


def seed_history(rows: int) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(_SEED_SQL, {"rows": rows})
        cursor.execute("VACUUM ANALYZE jobs_job")


def time_get(port: int, token: str, path: str, repeat: int = 7) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        connection.request("GET", path, headers={"Authorization": f"Token {token}"})
        response = connection.getresponse()
        response.read()
        times.append(time.perf_counter() - started)
        assert response.status == 200, response.status
    print(f"GET {path:30s} median {statistics.median(times) * 1000:7.1f} ms  max {max(times) * 1000:7.1f} ms"
          "  goal < 300 ms")  # fmt: skip


def run(args) -> None:
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from rest_framework.authtoken.models import Token

    from jobs.core.models import Job, JobStatsHour

    call_command("migrate", verbosity=0)
    Job.objects.all().delete()
    JobStatsHour.objects.all().delete()  # roll-ups of the jobs just deleted (a previous run's)
    operator = {"is_staff": True, "is_superuser": True}  # sees every job, as an operator's console does
    user, _ = get_user_model().objects.update_or_create(username="bench", defaults=operator)
    token = Token.objects.get_or_create(user=user)[0].key
    port = free_port()
    server = start_web(port)
    idle = None
    if args.worker:
        from rq import Worker

        from jobs.core import queueing

        idle = Worker(["normal"], connection=queueing.connection(), name="bench-idle")
        idle.register_birth()
    try:
        workers = "one, idle" if idle else "none"
        print(f"database: {connection.vendor}; uvicorn on 127.0.0.1:{port}; live workers: {workers}")
        print(f"machine pace: {machine_pace():.0f} ms for bench.harness's reference loop (lower is faster)")
        submit_load(port, token, args.requests, args.clients, server.pid)
        submit_load(port, token, args.requests // 4, 1, server.pid)  # the server's own time, without the others' turns
        count_one_submit(token)
        wsgi_submits(token)
        if args.bulk:
            bulk_load(port, token, args.bulk)
        if args.processes:
            several, several_port = None, free_port()
            try:
                several = start_web(several_port, processes=args.processes)
                print(f"WEB_CONCURRENCY={args.processes}: uvicorn on 127.0.0.1:{several_port}")
                submit_load(several_port, token, args.requests // 4, args.clients, several.pid)  # warm each process
                submit_load(several_port, token, args.requests, args.clients, several.pid)
            finally:
                if several is not None:
                    several.terminate()
                    several.wait(30)
        if connection.vendor != "postgresql":
            print("stats at scale: PostgreSQL only (set DATABASE_URL)")
            return
        started = time.perf_counter()
        seed_history(args.rows)
        print(f"seeded {args.rows:,} finished jobs in {time.perf_counter() - started:.0f}s")
        # What the minute cron (stats roll-up) does on a running system: its first pass
        # folds the whole history, each later one the last hours.
        from jobs.insight import rollup

        for label in ("roll-up backfill (first cron run)", "roll-up refresh (each minute)"):
            started = time.perf_counter()
            rollup.refresh()
            print(f"{label}: {time.perf_counter() - started:.2f}s")
        time_get(port, token, "/api/stats/?hours=24")
        time_get(port, token, "/api/stats/?hours=720")
    finally:
        server.terminate()
        server.wait(30)
        if idle is not None:
            idle.register_death()


if __name__ == "__main__":
    main()
