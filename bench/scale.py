"""Cost as the system grows: 1, 2, 4 and 8 forking workers, Jobdesk and raw RQ, in one run.

    python bench/scale.py --own-postgres [--workers 1,2,4,8] [--jobs 400] [--rounds 1]
    DATABASE_URL=postgresql://… python bench/scale.py        (or unset: a throwaway SQLite)

First 10,000 finished jobs are put on record (``--history``), as on a system that has
run for a while: on a table of a few hundred rows the planner scans the whole table for
a lookup by id, which no real system pays. Then for each worker count N, each side in
turn (the order alternates from one point to the next): N ``manage.py rqworker``
processes — ``JobdeskWorker`` draining ``diagnostics.noop`` jobs, RQ's own ``Worker``
draining raw RQ no-op jobs, both RQ's forking worker (a work-horse per job) — are
started and warmed with 2N jobs. The workers are then stopped (SIGSTOP), the measured
jobs submitted (the submit is the web tier's cost, not the workers', and stays out), the
tables analyzed, everything read, the workers continued (SIGCONT) and timed until RQ's
per-worker job counts reach the total; once their CPU is still, everything is read
again. Printed per point: jobs/s, CPU milliseconds per job in each process class,
PostgreSQL statements and Redis commands per job; then Jobdesk's added CPU per job over
raw RQ (goal <= 1.5 ms on PostgreSQL), where the commands and statements go, and what a
16-core worker host would do by that arithmetic.

How the CPU is counted, per process: its own CPU (every thread, live or ended) from its
CPU-time clock (``clock_getcpuclockid``, to the nanosecond), and the CPU of the children
it reaped from ``/proc/<pid>/stat`` (cutime + cstime, in whole clock ticks of 10 ms:
each such difference is within 2 ticks; the "±" printed is 2 ticks per worker and 2 for
the postmaster over the point's jobs, a worst case, not a typical error):
* worker parents: their own CPU;
* horses: the parents' reaped children's — a horse's CPU is added to its parent's when
  the parent reaps it (RQ's ``wait4`` on every horse) — plus any horse alive at a
  reading (none: the workers are idle at both);
* PostgreSQL: the postmaster's own and reaped (backends and autovacuum workers that
  exited) plus every live child's — the whole cluster, found from the bench's own
  backend's parent. It must serve nothing else: ``--own-postgres`` starts a throwaway
  cluster for the bench; with DATABASE_URL the cluster is taken to be otherwise idle,
  and it must run on this machine (else no PostgreSQL column);
* Redis: the redis-server the bench starts (its pid from ``INFO server``).
On SQLite the database runs inside the workers: its CPU is in the worker parents'
(claim and record) and horses' figures, and there is no PostgreSQL column.

Statements: ``pg_stat_statements`` (calls, planning and executing time per normalized
statement) when the server preloads it (``--own-postgres`` does); otherwise
``pg_stat_database``'s transactions and rows, first read 10.5 s after the warm-up (an
idle backend flushes its counts within 10 s), then after the workers stopped (a backend
flushes them when it exits): 21 s more per point. Redis: ``INFO commandstats``
differences less the bench's own calls (its first reading and its progress polls, one
HMGET per worker each).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import environment, own_postgres  # noqa: E402

CLASSES = ("worker parents", "horses", "PostgreSQL", "Redis")
SIDES = {"Jobdesk": "jobs.execution.worker.JobdeskWorker", "raw RQ": "rq.Worker"}
GOAL_MS = 1.5
TICK = 1 / os.sysconf("SC_CLK_TCK")
POLL = 0.05  # seconds between the progress polls
HOST_CORES = 16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", default="1,2,4,8", help="worker counts, comma-separated")
    parser.add_argument("--jobs", type=int, default=400, help="measured jobs per side and point")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each point (figures summed)")
    parser.add_argument("--own-postgres", action="store_true",
                        help="a throwaway PostgreSQL cluster with pg_stat_statements (else DATABASE_URL)")  # fmt: skip
    parser.add_argument("--history", type=int, default=10_000, help="finished jobs on record before the first point")
    parser.add_argument("--raw-worker-class", default=SIDES["raw RQ"], help="the baseline's worker class")
    args = parser.parse_args()
    args.counts = [int(n) for n in args.workers.split(",")]
    SIDES["raw RQ"] = args.raw_worker_class
    if args.own_postgres:
        with own_postgres("shared_preload_libraries=pg_stat_statements", "pg_stat_statements.track_planning=on") as url:
            os.environ["DATABASE_URL"] = url
            with environment() as scratch:
                run(args, scratch)
    else:
        with environment() as scratch:
            run(args, scratch)


# --- /proc ------------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)


def _processes() -> dict[int, tuple[int, int, int]]:
    """Every process: pid -> (parent pid, own ticks, reaped children's ticks)."""
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            text = Path(entry.path, "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        fields = text[text.rindex(")") + 2 :].split()  # fields[0] is the 3rd field, the state
        utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
        found[int(entry.name)] = (int(fields[1]), utime + stime, cutime + cstime)
    return found


def _own_seconds(pid: int, ticks: int) -> float:
    """A live process's own CPU to the nanosecond (its CPU-time clock, every thread), or
    its ticks from /proc when the clock cannot be read (it exited meanwhile)."""
    clock = ctypes.c_int()
    if _libc.clock_getcpuclockid(pid, ctypes.byref(clock)) == 0:
        try:
            return time.clock_gettime(clock.value)
        except OSError:
            pass
    return ticks * TICK


def cpu_reading(workers: list[int], postmaster: int | None, redis_pid: int) -> dict[str, float]:
    """Seconds of CPU so far per process class (see the module's docstring)."""
    procs = _processes()
    children = defaultdict(list)
    for pid, (ppid, _, _) in procs.items():
        children[ppid].append(pid)

    def tree(pid: int) -> float:
        """A process's own CPU, its reaped children's and its live children's, recursively."""
        if pid not in procs:
            return 0.0
        _, own, reaped = procs[pid]
        return _own_seconds(pid, own) + reaped * TICK + sum(tree(child) for child in children[pid])

    reading = {
        "worker parents": sum(_own_seconds(pid, procs[pid][1]) for pid in workers),
        "horses": sum(procs[pid][2] * TICK + sum(tree(c) for c in children[pid]) for pid in workers),
        "Redis": tree(redis_pid),
    }
    if postmaster is not None:
        reading["PostgreSQL"] = tree(postmaster)
    return reading


def postmaster_pid() -> int | None:
    """The PostgreSQL server serving this process's connection, if it runs on this machine."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("select pg_backend_pid()")
        (backend,) = cursor.fetchone()
    try:
        text = Path(f"/proc/{backend}/stat").read_text()
    except OSError:
        return None  # another machine (or namespace): its CPU cannot be read from here
    return int(text[text.rindex(")") + 2 :].split()[1])


# --- PostgreSQL's and Redis's own counts --------------------------------------------------


class Statements:
    """Statements per run from pg_stat_statements, else pg_stat_database's counts."""

    def __init__(self) -> None:
        from django.db import connection

        self.source = "—"
        if connection.vendor != "postgresql":
            return
        try:
            with connection.cursor() as cursor:
                cursor.execute("create extension if not exists pg_stat_statements")
                cursor.execute("select count(*) from pg_stat_statements")
            self.source = "pg_stat_statements"
        except Exception:  # not in shared_preload_libraries: the view refuses to answer
            self.source = "pg_stat_database"

    def start(self) -> Counter:
        if self.source == "pg_stat_statements":
            self._execute("select pg_stat_statements_reset()")
            return Counter()
        if self.source == "pg_stat_database":
            # The workers' backends (idle: the workers are stopped) flush what the warm-up
            # left pending within PGSTAT_IDLE_INTERVAL (10 s); this one at once.
            self._flush_own()
            time.sleep(10.5)
        return self._read()

    def end(self, workers_stopped: bool) -> Counter | None:
        """pg_stat_statements is current at once: read while the workers still run;
        pg_stat_database gets a backend's counts when it flushes them (at the latest when
        it exits): read after the workers stopped. None when this is not the moment."""
        if workers_stopped != (self.source == "pg_stat_database"):
            return None
        if workers_stopped:
            self._flush_own()
        return self._read()

    def _flush_own(self) -> None:
        """This backend's pending counts, flushed as soon as it is idle (PostgreSQL 15+)."""
        from django.db import DatabaseError

        # Before 15 a collector process gathered the counts within half a second.
        with contextlib.suppress(DatabaseError):
            self._execute("select pg_stat_force_next_flush()")

    def _read(self) -> Counter:
        if self.source == "pg_stat_statements":
            found: Counter = Counter()
            for query, calls, ms, plan_ms in self._execute(
                "select query, calls, total_exec_time, total_plan_time from pg_stat_statements where dbid = "
                "(select oid from pg_database where datname = current_database()) "
                "and query not like '%pg_stat_statements%'"
            ):
                found[(query, "calls")] += calls
                found[(query, "ms")] += ms
                found[(query, "plan ms")] += plan_ms
            return found
        if self.source == "pg_stat_database":
            columns = ("xact_commit", "xact_rollback", "tup_returned", "tup_fetched", "tup_inserted",
                       "tup_updated", "tup_deleted")  # fmt: skip
            (row,) = self._execute(
                f"select {', '.join(columns)} from pg_stat_database where datname = current_database()"
            )
            return Counter({(column, "count"): n for column, n in zip(columns, row, strict=True)})
        return Counter()

    @staticmethod
    def _execute(sql: str) -> list:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetchall()


def commandstats(client) -> Counter:
    """Calls and microseconds per Redis command so far: {("hset", "calls"): n, ...}."""
    found: Counter = Counter()
    for name, stats in client.info("commandstats").items():
        command = name.removeprefix("cmdstat_")
        found[(command, "calls")] = int(stats["calls"])
        found[(command, "usec")] = int(stats["usec"])
    return found


# --- one point ----------------------------------------------------------------------------


@dataclass
class Tally:
    """One side's sums over a point's rounds (or over every point)."""

    jobs: int = 0
    cpu: Counter = field(default_factory=Counter)  # class -> seconds
    commands: Counter = field(default_factory=Counter)  # (command, calls|usec) -> count
    statements: Counter = field(default_factory=Counter)  # (statement, calls|ms) or (column, count)
    rates: list[float] = field(default_factory=list)
    processes: int = 0  # worker parents, for the tick bound

    def add(self, other: Tally) -> None:
        self.jobs += other.jobs
        self.cpu.update(other.cpu)
        self.commands.update(other.commands)
        self.statements.update(other.statements)
        self.rates += other.rates
        self.processes += other.processes

    def ms(self, name: str) -> float:
        return 1000 * self.cpu[name] / self.jobs

    def total_ms(self, names=CLASSES) -> float:
        return sum(self.ms(name) for name in names)

    @staticmethod
    def only(counts: Counter, wanted: str) -> Counter:
        """{name: n} of one kind out of {(name, kind): n}."""
        return Counter({name: n for (name, kind), n in counts.items() if kind == wanted})

    def per_job(self, counts: Counter, wanted: str) -> float:
        return sum(self.only(counts, wanted).values()) / self.jobs


class Bench:
    def __init__(self, args, scratch: Path) -> None:
        import django_rq
        import redis

        self.args = args
        self.env = dict(os.environ)
        self.log = open(scratch / "workers.log", "ab")  # noqa: SIM115 - the workers' stderr, for a failure
        self.queue = django_rq.get_queue("normal")
        # The bench's own Redis client: one connection opened now, so that its calls in a
        # measured window are exactly the ones counted (no connection handshake).
        self.redis = redis.Redis.from_url(os.environ["REDIS_URL"], single_connection_client=True)
        self.redis_pid = int(self.redis.info("server")["process_id"])
        self.postmaster = postmaster_pid()
        self.statements = Statements()

    def history(self, count: int) -> None:
        """Finished jobs on record before the first point (see the module's docstring; the
        foreign-key checks of each event's insert scanned a small table whole). Each
        point's jobs stay on record after it too."""
        from django.utils import timezone

        from jobs.core.models import Job, Status, status_writes
        from jobs.core.submit import JobSpec, submit_many

        for start in range(0, count, 5000):
            submit_many([JobSpec("diagnostics.noop")] * min(5000, count - start))
        now = timezone.now()
        with status_writes():  # filler rows, finished by decree rather than run
            Job.objects.update(status=Status.COMPLETE, started_at=now, finished_at=now, progress=100)
        self.reset()
        self._maintain("vacuum analyze")

    def reset(self) -> None:
        from jobs.core import relay

        relay.drain()
        self.redis.flushall()
        self._maintain("vacuum")  # the last point's dead rows gone: each point starts alike

    @staticmethod
    def _maintain(command: str) -> None:
        from django.db import connection

        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(command)

    def submit(self, side: str, count: int) -> None:
        if side == "Jobdesk":
            from jobs.core import relay
            from jobs.core.submit import JobSpec, submit_many

            submit_many([JobSpec("diagnostics.noop")] * count)
            relay.drain()  # the operators' message, sent before any reading
        else:
            from bench.rawjobs import noop

            self.queue.enqueue_many([self.queue.prepare_data(noop) for _ in range(count)])

    def start_workers(self, count: int, worker_class: str) -> tuple[list[subprocess.Popen], list[bytes]]:
        procs = [
            subprocess.Popen(
                [sys.executable, "manage.py", "rqworker", "immediate", "normal", "low", "--worker-class", worker_class],
                cwd=ROOT,
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=self.log,
            )
            for _ in range(count)
        ]
        from rq import Worker

        deadline = time.monotonic() + 120
        pids = {p.pid for p in procs}
        while True:
            keys = [w.key.encode() for w in Worker.all(connection=self.redis) if w.pid in pids]
            if len(keys) == count:
                return procs, keys
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                stop(procs)
                raise SystemExit(f"{count} workers did not all register (see {self.log.name})")
            time.sleep(0.2)

    def done(self, keys: list[bytes]) -> tuple[int, int]:
        """(succeeded, failed) as RQ counts them, summed over the workers: one HMGET each."""
        with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hmget(key, "successful_job_count", "failed_job_count")
            rows = pipe.execute()
        return sum(int(ok or 0) for ok, _ in rows), sum(int(bad or 0) for _, bad in rows)

    def wait_for(self, keys: list[bytes], total: int, pids: list[int]) -> tuple[int, float]:
        """Poll until RQ has counted ``total`` jobs, then until the workers' CPU is still
        (the last record and relay message come after RQ's count); returns the number of
        polls (each one HMGET per worker) and the moment the count was reached."""
        polls, deadline = 0, time.monotonic() + 600
        while True:
            succeeded, failed = self.done(keys)
            polls += 1
            if failed:
                raise SystemExit(f"{failed} jobs failed in RQ")
            if succeeded >= total:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"only {succeeded}/{total} jobs done after 600 s")
            time.sleep(POLL)
        counted = time.perf_counter()
        before = None
        for _ in range(20):
            time.sleep(0.25)
            now = cpu_reading(pids, None, self.redis_pid)
            if (
                before is not None
                and now["horses"] == before["horses"]
                and (now["worker parents"] - before["worker parents"] < 0.002)
            ):
                break
            before = now
        return polls, counted

    def point(self, side: str, workers: int) -> Tally:
        """One side at one worker count: start, warm, measure, stop."""
        self.reset()
        procs, keys = self.start_workers(workers, SIDES[side])
        pids = [p.pid for p in procs]
        try:
            warm = 2 * workers
            self.submit(side, warm)
            self.wait_for(keys, warm, pids)
            for pid in pids:
                os.kill(pid, signal.SIGSTOP)
            self.submit(side, self.args.jobs)
            self._maintain("analyze")  # the planner's statistics as the run finds the tables
            cpu0 = cpu_reading(pids, self.postmaster, self.redis_pid)
            statements0 = self.statements.start()
            commands0 = commandstats(self.redis)
            started = time.perf_counter()
            for pid in pids:
                os.kill(pid, signal.SIGCONT)
            polls, counted = self.wait_for(keys, warm + self.args.jobs, pids)
            commands = commandstats(self.redis) - commands0
            cpu1 = cpu_reading(pids, self.postmaster, self.redis_pid)
            statements1 = self.statements.end(workers_stopped=False)
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)  # a failure in between must not leave them stopped
            stop(procs)
        if statements1 is None:
            statements1 = self.statements.end(workers_stopped=True) or Counter()
        # The bench's own calls: its first INFO (the second does not count itself), the polls.
        commands[("info", "calls")] -= 1
        commands[("hmget", "calls")] -= polls * workers
        self.check(side, warm + self.args.jobs)
        return Tally(
            jobs=self.args.jobs,
            cpu=Counter({name: cpu1[name] - cpu0[name] for name in cpu1}),
            commands=+commands,
            statements=+(statements1 - statements0),
            rates=[self.args.jobs / (counted - started)],
            processes=workers,
        )

    def check(self, side: str, total: int) -> None:
        from jobs.core.models import Job, Status

        if side == "Jobdesk" and (left := Job.objects.exclude(status=Status.COMPLETE).count()):
            raise SystemExit(f"{left} of the last {total} Jobdesk jobs not complete")
        if side == "raw RQ" and self.queue.count:
            raise SystemExit("raw RQ left jobs behind")


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.terminate()  # RQ's warm shutdown
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- the run and its report -----------------------------------------------------------------


def run(args, scratch: Path) -> None:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    bench = Bench(args, scratch)
    bench.history(args.history)
    db = connection.vendor
    pg_where = "this machine" if bench.postmaster else "not readable from here"
    print(
        f"database: {db}"
        + (f" ({'own throwaway cluster' if args.own_postgres else 'DATABASE_URL'}, server on {pg_where}, "
           f"statements from {bench.statements.source})" if db == "postgresql" else " (inside the workers)")
        + f"   redis: pid {bench.redis_pid}   cores: {os.cpu_count()}   measured jobs per side and point: "
        f"{args.jobs} (after 2N warm-up jobs)   rounds: {args.rounds}   finished jobs on record: {args.history:,}+",
        flush=True,
    )  # fmt: skip
    points: dict[int, dict[str, Tally]] = {}
    flip = False
    for workers in args.counts:
        points[workers] = {side: Tally() for side in SIDES}
        for _ in range(args.rounds):
            for side in sorted(SIDES, reverse=flip):  # alternate which side goes first
                tally = bench.point(side, workers)
                points[workers][side].add(tally)
                print(f"  {workers} workers, {side}: {tally.rates[0]:.1f} jobs/s, "
                      f"{tally.total_ms(list(tally.cpu)):.2f} ms CPU/job", flush=True)  # fmt: skip
            flip = not flip
    report(args, points, bench, db)


def report(args, points: dict[int, dict[str, Tally]], bench: Bench, db: str) -> None:
    classes = [c for c in CLASSES if c != "PostgreSQL" or bench.postmaster]
    source = bench.statements.source
    statement_kind, statement_label = {
        "pg_stat_statements": ("calls", "PG statements/job"),
        "pg_stat_database": ("count", "PG counters/job"),
    }.get(source, ("", "PG statements/job"))
    print(f"\n{args.jobs} no-op jobs per side and point × {args.rounds} round(s), {db}; CPU in ms per job\n")
    print(f"| workers | side | jobs/s | {' | '.join(classes)} | total | ± ticks | {statement_label} | "
          "Redis commands/job |")  # fmt: skip
    print("|---" * (7 + len(classes)) + "|")
    for workers, sides in points.items():
        for side, t in sides.items():
            bound = 1000 * TICK * 2 * (t.processes + 1) / t.jobs  # the reaped figures' ticks
            statements = f"{t.per_job(t.statements, statement_kind):.1f}" if statement_kind else "—"
            print(
                f"| {workers} | {side} | {statistics.median(t.rates):.1f} | "
                + " | ".join(f"{t.ms(c):.2f}" for c in classes)
                + f" | **{t.total_ms(classes):.2f}** | {bound:.2f} | {statements} | "
                f"{t.per_job(t.commands, 'calls'):.1f} |"
            )

    print(f"\nJobdesk's added CPU per job over raw RQ, ms (goal ≤ {GOAL_MS} ms on PostgreSQL)\n")
    print(f"| workers | {' | '.join(classes)} | total | goal |")
    print("|---" * (3 + len(classes)) + "|")
    for workers, sides in points.items():
        ours, theirs = sides["Jobdesk"], sides["raw RQ"]
        added = ours.total_ms(classes) - theirs.total_ms(classes)
        verdict = "met" if added <= GOAL_MS else f"{added / GOAL_MS:.1f}× the goal"
        print(
            f"| {workers} | "
            + " | ".join(f"{ours.ms(c) - theirs.ms(c):+.2f}" for c in classes)
            + f" | **{added:+.2f}** | ≤ {GOAL_MS}: {verdict} |"
        )

    overall = {side: Tally() for side in SIDES}
    for sides in points.values():
        for side, t in sides.items():
            overall[side].add(t)
    ours, theirs = overall["Jobdesk"], overall["raw RQ"]
    print("\nRedis commands per job, every point together (INFO commandstats; µs: Redis's own time in the command)\n")
    print("| command | Jobdesk calls/job | raw RQ calls/job | difference | Jobdesk µs/job | raw RQ µs/job |")
    print("|---|---|---|---|---|---|")
    mine, base = Tally.only(ours.commands, "calls"), Tally.only(theirs.commands, "calls")
    mine_us, base_us = Tally.only(ours.commands, "usec"), Tally.only(theirs.commands, "usec")
    for command in sorted(set(mine) | set(base), key=lambda c: (-mine[c], -base[c], c)):
        a, b = mine[command] / ours.jobs, base[command] / theirs.jobs
        print(f"| {command} | {a:.2f} | {b:.2f} | {a - b:+.2f} | {mine_us[command] / ours.jobs:.0f} | "
              f"{base_us[command] / theirs.jobs:.0f} |")  # fmt: skip
    a, b = ours.per_job(ours.commands, "calls"), theirs.per_job(theirs.commands, "calls")
    print(f"| **all** | **{a:.2f}** | **{b:.2f}** | **{a - b:+.2f}** | {ours.per_job(ours.commands, 'usec'):.0f} | "
          f"{theirs.per_job(theirs.commands, 'usec'):.0f} |")  # fmt: skip

    if source == "pg_stat_statements":
        print("\nPostgreSQL statements per Jobdesk job, every point together (pg_stat_statements; raw RQ has none)\n")
        print("| calls/job | planning ms/job | executing ms/job | statement |")
        print("|---|---|---|---|")
        calls = Tally.only(ours.statements, "calls")
        plan, ms = Tally.only(ours.statements, "plan ms"), Tally.only(ours.statements, "ms")
        for text, n in calls.most_common():
            shown = " ".join(text.split())
            shown = shown if len(shown) <= 120 else shown[:117] + "…"
            print(f"| {n / ours.jobs:.2f} | {plan[text] / ours.jobs:.3f} | {ms[text] / ours.jobs:.3f} | `{shown}` |")
        print(f"| **{ours.per_job(ours.statements, 'calls'):.2f}** | {ours.per_job(ours.statements, 'plan ms'):.3f} | "
              f"{ours.per_job(ours.statements, 'ms'):.3f} | all |")  # fmt: skip
    elif source == "pg_stat_database":
        print("\nPostgreSQL per Jobdesk job, every point together (pg_stat_database: no pg_stat_statements here)\n")
        print("| counter | per job |\n|---|---|")
        for column, n in Tally.only(ours.statements, "count").items():
            print(f"| {column} | {n / ours.jobs:.2f} |")
    else:
        print("\nSQLite: no statement counts; the database's CPU is inside the worker parents and horses.")

    arithmetic(points, classes)


def arithmetic(points: dict[int, dict[str, Tally]], classes: list[str]) -> None:
    def median(side: str, names) -> float:
        return statistics.median(sides[side].total_ms(names) for sides in points.values())

    elsewhere = "Redis and PostgreSQL" if "PostgreSQL" in classes else "Redis (SQLite runs in the workers)"
    print(f"\nArithmetic, not a measurement: a {HOST_CORES}-core worker host ({elsewhere} on other machines),")
    print("from the medians over the points of the CPU per no-op job above; a real job adds its own work to the")
    print("horses' figure, and nothing here says the cores scale perfectly:")
    for side in SIDES:
        host_ms, redis_ms = median(side, ("worker parents", "horses")), median(side, ["Redis"])
        host_rate = HOST_CORES * 1000 / host_ms
        redis_cap = 1000 / redis_ms if redis_ms else float("inf")
        rate = min(host_rate, redis_cap)
        line = (f"  {side}: the worker host's {host_ms:.2f} ms/job → {HOST_CORES} × 1000 / {host_ms:.2f} ≈ "
                f"{host_rate:,.0f} jobs/s; Redis's {redis_ms:.2f} ms/job on its one thread caps at "
                f"{redis_cap:,.0f} jobs/s, so ≈ {rate:,.0f} jobs/s with Redis "
                f"{100 * rate / redis_cap:.0f} % busy")  # fmt: skip
        if "PostgreSQL" in classes and side == "Jobdesk":
            pg_ms = median(side, ["PostgreSQL"])
            line += f" and PostgreSQL's {pg_ms:.2f} ms/job ≈ {rate * pg_ms / 1000:.1f} cores"
        print(line + ".")


if __name__ == "__main__":
    main()
