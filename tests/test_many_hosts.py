"""Jobdesk across network hosts: leases and fencing proven with links cut and hosts killed.

Each host is a Linux network namespace (devtools.hostlab): ``core`` runs PostgreSQL and
Redis, three worker hosts run ``rqworker-pool`` (and two of them a scheduler) under
hostnames of their own. The test drives from outside every host network, through the
core's unix sockets, and runs the reconciler itself (the cron entry would, once a
minute). ``diagnostics.sleep`` with ``trace`` writes every run's start and steps, with
host and time, to a file — the record that shows whether two runs ever overlapped.

Skipped with the reason where namespaces cannot be built (not root, no ``ip``), unless
``JOBDESK_REQUIRE_NETNS`` is set — CI sets it, so there they fail instead.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest
import redis

from conftest import wait_for
from devtools import hostlab

pytestmark = [pytest.mark.slow, pytest.mark.integration]

# Short leases, so a test waits seconds, not minutes (the defaults are 15 / 2 / 10).
LEASE, RENEW, STOP = 8.0, 1.0, 4.0
STEP = 0.25  # seconds between a traced run's signs of life
HOST_ENV = {
    "JOB_LEASE_SECONDS": str(LEASE),
    "JOB_LEASE_RENEW_SECONDS": str(RENEW),
    "JOB_LEASE_STOP_SECONDS": str(STOP),
    "RETRY_BASE_DELAY": "0.1",
    "LOG_LEVEL": "INFO",
}
QUEUES = ("immediate", "normal", "low")
# When the reconciler declared the job's run lost (on this machine's one clock).
LOST_EVENT = (
    "select extract(epoch from created_at) from jobs_jobevent "
    "where job_id = %s and actor_label = 'reconciler' and to_status = 'retrying'"
)


@pytest.fixture(scope="module")
def lab(request):
    reason = hostlab.unavailable()
    if reason:
        if os.environ.get("JOBDESK_REQUIRE_NETNS"):
            pytest.fail(f"JOBDESK_REQUIRE_NETNS is set but network hosts cannot be built: {reason}")
        pytest.skip(f"network hosts cannot be built here: {reason}")
    built = hostlab.Lab()
    failed_before = request.session.testsfailed
    try:
        built.build().start_services()
        built.manage("migrate", "--noinput")
        yield built
    finally:
        failed = request.session.testsfailed > failed_before
        built.destroy(keep_logs=failed)
        if failed:
            print(f"the hosts' logs are kept in {built.directory}")


@pytest.fixture
def hosts(lab, tmp_path):
    """The lab with fresh Redis, all links up, a trace directory; every host process
    is killed afterwards."""
    trace_dir = tmp_path / "trace"
    trace_dir.mkdir()
    os.chmod(tmp_path, 0o777)
    os.chmod(trace_dir, 0o777)
    lab.trace_dir = trace_dir
    core_redis(lab).flushall()
    yield lab
    for host in lab.hosts:
        lab.restore(host)
        lab.kill_host(host)


def core_redis(lab) -> redis.Redis:
    return redis.Redis(unix_socket_path=str(lab.socket_dir / "redis.sock"))


def start_pool(lab, host: str, workers: int = 1) -> None:
    lab.start_on(
        host, "rqworker-pool", *QUEUES, "--num-workers", str(workers),
        DIAGNOSTICS_TRACE_DIR=str(lab.trace_dir), **HOST_ENV,
    )  # fmt: skip


def start_scheduler(lab, host: str):
    return lab.start_on(host, "rqscheduler", "--interval", "1", **HOST_ENV)


def submit(lab, count: int = 1, **payload) -> list[str]:
    specs = json.dumps({"trace": True, **payload})
    code = (
        "import json; from jobs.core.submit import JobSpec, submit_many; "
        f"jobs = submit_many([JobSpec('diagnostics.sleep', json.loads({specs!r}), max_attempts=10)] * {count}); "
        "print(json.dumps([str(s.job.id) for s in jobs]))"
    )
    return json.loads(lab.python(code, **HOST_ENV))


def reconcile(lab) -> dict:
    return json.loads(lab.manage("reconcile", "--grace", "0", **HOST_ENV).stdout)


def lease_of(lab, job_id: str) -> float:
    ((expires,),) = lab.sql("select extract(epoch from lease_expires_at) from jobs_job where id = %s", job_id)
    return float(expires or 0)


def wait_for_a_renewal(lab, job_id: str) -> None:
    granted = wait_for(lambda: lease_of(lab, job_id), timeout=30, what="the claim's lease")
    wait_for(lambda: lease_of(lab, job_id) > granted, timeout=10 * RENEW, what="the lease to be renewed")


def status(lab, job_id: str) -> tuple[str, str, int]:
    (row,) = lab.sql("select status, rq_job_id, attempts from jobs_job where id = %s", job_id)
    return row


class Run:
    def __init__(self, host: str, pid: str, attempt: str) -> None:
        self.host, self.pid, self.attempt = host, pid, attempt
        self.first = self.last = 0.0
        self.ended = False

    @property
    def surely_over_by(self) -> float:
        """A run without an end line was stopped within one step of its last sign of life."""
        return self.last if self.ended else self.last + STEP


def runs_of(lab, job_id: str) -> list[Run]:
    path = Path(lab.trace_dir) / job_id
    if not path.exists():
        return []
    runs: dict[tuple[str, str, str], Run] = {}
    for line in path.read_text().splitlines():
        at, event, host, pid, attempt = line.split()
        run = runs.setdefault((host, pid, attempt), Run(host, pid, attempt))
        run.first = run.first or float(at)
        run.last = float(at)
        run.ended = run.ended or event == "end"
    return sorted(runs.values(), key=lambda run: run.first)


def assert_never_two_at_once(runs: list[Run]) -> None:
    for earlier, later in zip(runs, runs[1:], strict=False):
        assert later.first > earlier.surely_over_by, (
            f"run on {later.host} started at {later.first:.3f} while the one on {earlier.host} "
            f"may still have been running (last seen {earlier.last:.3f})"
        )


def keep_reconciling(lab, until, *, timeout: float, what: str):
    """The reconciler's cron entry, at test speed: a pass every moment until ``until()``."""
    return wait_for(lambda: until() or (reconcile(lab) and until()), timeout=timeout, interval=0.5, what=what)


def test_a_host_cut_off_mid_job_stops_its_run_before_its_lease_passes_and_rejoins_later(hosts):
    lab = hosts
    for host in lab.hosts:
        start_pool(lab, host)
    for host in lab.hosts[:2]:
        start_scheduler(lab, host)
    # Long enough to be cut off mid-run (a renewal, then STOP), short enough for its retry.
    (job_id,) = submit(lab, seconds=15, steps=int(15 / STEP))
    first = wait_for(lambda: runs_of(lab, job_id), timeout=60, what="the job to start on a host")[0]
    wait_for_a_renewal(lab, job_id)  # the run is well under way, its lease kept
    cut_at = time.time()
    lab.cut(first.host)

    keep_reconciling(
        lab, lambda: status(lab, job_id)[2] >= 2 or status(lab, job_id)[0] == "retrying",
        timeout=60, what="the reconciler to take the job over",
    )  # fmt: skip
    stopped = runs_of(lab, job_id)[0]
    assert stopped.host == first.host and not stopped.ended
    assert stopped.last < cut_at + STOP + 1.0, "the cut-off run went on past its stop deadline"
    (lost_at,) = lab.sql(LOST_EVENT, job_id)[0]
    assert float(lost_at) > stopped.surely_over_by, "taken over before the cut-off run had stopped"

    wait_for(lambda: status(lab, job_id)[0] == "complete", timeout=90, what="the retry to finish on another host")
    runs = runs_of(lab, job_id)
    assert runs[-1].host != first.host and runs[-1].ended
    assert_never_two_at_once(runs)

    others = [h for h in lab.hosts if h != first.host]
    for other in others:  # only the host that came back can take the next job
        lab.kill_host(other)
    (after,) = submit(lab, seconds=0.5, steps=2)
    lab.restore(first.host)
    restored_at = time.monotonic()
    # A call caught in the cut (the killed run's failure, written to Redis) resumes at
    # TCP's next retransmission: from under a second to about half a minute after.
    wait_for(lambda: status(lab, after)[0] == "complete", timeout=90, what="the returned host to take new work")
    print(f"the returned host took work {time.monotonic() - restored_at:.1f} s after its link came back")
    assert runs_of(lab, after)[-1].host == first.host
    assert any(w.hostname == first.host for w in rq_workers(lab)), "the returned host is registered"


def rq_workers(lab):
    from rq import Worker

    return Worker.all(connection=core_redis(lab))


def test_sigkilling_every_process_of_a_host_retries_its_jobs_after_their_leases_pass(hosts):
    lab = hosts
    for host in lab.hosts:
        start_pool(lab, host)
    start_scheduler(lab, lab.hosts[0])
    (job_id,) = submit(lab, seconds=12, steps=int(12 / STEP))  # killed after a renewal; the retry runs it all
    first = wait_for(lambda: runs_of(lab, job_id), timeout=60, what="the job to start on a host")[0]
    wait_for_a_renewal(lab, job_id)  # the run is well under way, its lease kept
    if first.host == lab.hosts[0]:
        start_scheduler(lab, lab.hosts[1])  # the scheduler dies with its host: keep one for the retry
    lab.kill_host(first.host)
    killed_at = time.time()
    lease_expires = lease_of(lab, job_id)
    assert lease_expires > killed_at, "the lease had not been kept"

    keep_reconciling(lab, lambda: status(lab, job_id)[0] != "active", timeout=60, what="the job to be declared lost")
    ((lost_at,),) = lab.sql(LOST_EVENT, job_id)
    assert float(lost_at) >= float(lease_expires), "declared lost before its lease had passed"
    wait_for(lambda: status(lab, job_id)[0] == "complete", timeout=90, what="the retry on another host")
    runs = runs_of(lab, job_id)
    assert [run.host for run in runs][-1] != first.host
    assert_never_two_at_once(runs)


def fired(lab, made: dict) -> list[tuple[str, int]]:
    """Each test schedule with the number of jobs its ticks submitted."""
    return lab.sql(
        "select s.name, count(j.id) from jobs_schedule s left join jobs_job j "
        "on j.idempotency_key like 'cron:' || s.name || ':%%' where s.name = any(%s) group by s.name",
        made["schedules"],
    )


def test_the_standby_scheduler_takes_over_when_the_leaders_host_is_cut_off(hosts):
    lab = hosts
    start_pool(lab, lab.hosts[2], workers=2)
    schedulers = {host: start_scheduler(lab, host) for host in lab.hosts[:2]}
    r = core_redis(lab)
    leader = wait_for(lambda: r.get("jobdesk:scheduler:leader"), timeout=60, what="a scheduler to lead").decode()
    leader_host = leader.split(":")[0]
    standby_host = next(h for h in lab.hosts[:2] if h != leader_host)

    # Ticks falling before, during and after the cut: cron entries due every 2 s (their
    # next tick a year away) and deferred jobs at the same moments.
    code = (
        "import json; from datetime import timedelta; from django.utils import timezone; "
        "from jobs.core.models import Schedule; from jobs.core.submit import JobSpec, submit_many; "
        "now = timezone.now(); names = []\n"
        "for i in range(12):\n"
        "    s = Schedule.objects.create(name=f'tick-{now.timestamp():.0f}-{i}', job_type='diagnostics.noop', "
        "cron='0 0 1 1 *', next_run_at=now + timedelta(seconds=3 + 2 * i)); names.append(s.name)\n"
        "at = [now + timedelta(seconds=3 + 2 * i) for i in range(12)]\n"
        "jobs = submit_many([JobSpec('diagnostics.noop', run_at=moment) for moment in at])\n"
        "print(json.dumps({'schedules': names, 'deferred': [str(s.job.id) for s in jobs]}))"
    )
    made = json.loads(lab.python(code, **HOST_ENV))
    wait_for(lambda: sum(count for _, count in fired(lab, made)) >= 1, timeout=30, what="the leader to fire a tick")
    lab.cut(leader_host)
    cut_at = time.monotonic()
    wait_for(
        lambda: (r.get("jobdesk:scheduler:leader") or b"").decode().startswith(standby_host + ":"),
        timeout=30, what="the standby to lead",
    )  # fmt: skip
    assert time.monotonic() - cut_at < 10 + 5  # its lease (10 s) and a poll or two

    wait_for(lambda: all(count >= 1 for _, count in fired(lab, made)), timeout=60, what="every tick to fire")
    assert all(count == 1 for _, count in fired(lab, made)), f"a tick fired twice: {fired(lab, made)}"
    wait_for(
        lambda: lab.sql("select count(*) from jobs_job where id = any(%s) and status = 'complete'", made["deferred"])
        == [(12,)],
        timeout=60, what="every deferred job to run",
    )  # fmt: skip
    assert lab.sql("select max(attempts) from jobs_job where id = any(%s)", made["deferred"]) == [(1,)]

    lab.restore(leader_host)
    returned = Path(schedulers[leader_host].log_path)
    wait_for(lambda: "stands by" in returned.read_text(), timeout=60, what="the returned scheduler to stand by")
    assert (r.get("jobdesk:scheduler:leader") or b"").decode().startswith(standby_host + ":")
    assert schedulers[leader_host].poll() is None, "the returned scheduler should stand by, not exit"


def test_soak_500_jobs_across_three_hosts_while_links_go_down_and_up(hosts):
    lab = hosts
    for host in lab.hosts:
        start_pool(lab, host, workers=2)
    for host in lab.hosts[:2]:
        start_scheduler(lab, host)
    ids = submit(lab, 500, seconds=0.2, steps=2)
    rng = random.Random(20261128)
    stop = threading.Event()

    def flap() -> None:  # one host at a time down for 2-9 s, every few seconds, bounded
        for _ in range(12):
            if stop.wait(rng.uniform(2, 5)):
                return
            host = rng.choice(lab.hosts)
            lab.cut(host)
            stop.wait(rng.uniform(2, 9))
            lab.restore(host)

    flapper = threading.Thread(target=flap, daemon=True)
    flapper.start()

    def unfinished() -> int:
        final = ["complete", "failed", "dead_letter", "canceled"]
        ((count,),) = lab.sql("select count(*) from jobs_job where id = any(%s) and status <> all(%s)", ids, final)
        return count

    try:
        keep_reconciling(lab, lambda: unfinished() == 0, timeout=600, what="all 500 jobs to be final")
    finally:
        stop.set()
        flapper.join(30)
        for host in lab.hosts:
            lab.restore(host)
    statuses = dict(lab.sql("select status, count(*) from jobs_job where id = any(%s) group by status", ids))
    assert statuses == {"complete": 500}
    ((retried, taken_over),) = lab.sql(
        "select count(*) filter (where attempts > 1), count(*) filter (where exists (select 1 from jobs_jobevent e "
        "where e.job_id = j.id and e.actor_label = 'reconciler')) from jobs_job j where id = any(%s)",
        ids,
    )
    print(f"soak: {retried} jobs needed another attempt, {taken_over} were taken over by the reconciler")
    assert retried >= 1, "no link went down under a running job: the soak proved nothing"
    by_host: dict[str, int] = defaultdict(int)
    for job_id in ids:
        runs = runs_of(lab, job_id)
        assert runs, f"job {job_id} never ran"
        assert_never_two_at_once(runs)
        by_host[runs[-1].host] += 1
    assert len(by_host) == 3, f"every host should have done work: {dict(by_host)}"
