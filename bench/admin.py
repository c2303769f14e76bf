"""The operations console on a big table: PostgreSQL with 1M job rows.

    DATABASE_URL=postgresql://… python bench/admin.py [--rows 1000000]

Seeds ``--rows`` finished jobs over 30 days (complete, failed, dead letters; the same
seed as bench/api.py) plus 2,000 waiting ones, then times the console's pages through
Django's test client as a logged-in superuser (median of 7, after one warm-up):
the job list (default, filtered by status, by type, searched by id, searched by text,
searched by a value in the payload: each job gets an order number and a customer id,
searched through the pg_trgm index of migration 0009), a job's page, the dashboard and
its data (with the throughput chart's grouped query). Goal: < 300 ms each.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import environment  # noqa: E402

GOAL_MS = 300
# About 100,000 customers (C-0…), one order number per job (ORD-…): what a payload search finds.
PAYLOADS_SQL = """
UPDATE jobs_job SET payload = jsonb_build_object(
    'customer', 'C-' || (floor(random() * 100000))::int,
    'order', 'ORD-' || lpad((floor(random() * 1e9))::bigint::text, 9, '0'))
"""
# Their searchable text, as a submit writes it (jobs.core.models.PayloadText).
PAYLOAD_TEXT_SQL = """
DELETE FROM jobs_payloadtext;
INSERT INTO jobs_payloadtext (job_id, text) SELECT id, payload::text FROM jobs_job WHERE payload <> '{}'::jsonb
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with environment(LOG_LEVEL="WARNING", DEBUG="false", SECRET_KEY="bench-only-secret-" + "x" * 40):
        run(args)


def timed(client, url: str, repeat: int, before=lambda: None) -> tuple[float, int]:
    client.get(url)  # warm-up: plans, per-process caches
    times, status = [], 0
    for _ in range(repeat):
        before()
        started = time.perf_counter()
        response = client.get(url)
        times.append(time.perf_counter() - started)
        status = response.status_code
    return statistics.median(times) * 1000, status


def run(args) -> None:
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.cache import cache
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from bench.api import seed_history
    from jobs.core.models import Job
    from jobs.core.submit import JobSpec, submit_many
    from jobs.insight import dashboard, rollup

    if connection.vendor != "postgresql":
        raise SystemExit("bench/admin.py measures PostgreSQL: set DATABASE_URL=postgresql://…")
    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    seed_history(args.rows)
    submit_many([JobSpec("diagnostics.sleep", {"seconds": 1}) for _ in range(2000)])
    with connection.cursor() as cursor:  # payloads as operators search them: an order number, a customer id
        cursor.execute(PAYLOADS_SQL)
        one = Job.objects.filter(status="failed").values_list("id", flat=True)[:1]
        Job.objects.filter(pk__in=one).update(payload={"order": "ORD-BENCH-4242", "customer": "CUST-77"})
        cursor.execute(PAYLOAD_TEXT_SQL)
        cursor.execute("VACUUM ANALYZE jobs_job")
        cursor.execute("VACUUM ANALYZE jobs_payloadtext")
    print(f"seeded {Job.objects.count():,} jobs (with payloads) in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    rollup.refresh()  # what the stats-rollup cron does every minute
    print(f"hourly roll-ups backfilled in {time.perf_counter() - started:.1f} s")

    admin = get_user_model().objects.create_superuser("bench-admin", password="x")
    client = Client()
    client.force_login(admin)
    some = Job.objects.filter(status="dead_letter").values_list("id", flat=True).first()
    pages = {
        "job list (default)": "/admin/jobs/job/",
        "job list, status = dead letter": "/admin/jobs/job/?status__exact=dead_letter",
        "job list, status = queued": "/admin/jobs/job/?status__exact=queued",
        "job list, type = bench.type3": "/admin/jobs/job/?type=bench.type3",
        "job list, search by id": f"/admin/jobs/job/?q={some}",
        "job list, search by text (type)": "/admin/jobs/job/?q=sleep",
        "job list, search by text, no match": "/admin/jobs/job/?q=nothing-matches-this",
        "payload search, one order number": "/admin/jobs/job/?q=ORD-BENCH-4242",
        "payload search, a customer (~10 rows)": "/admin/jobs/job/?q=C-4242%22",
        "payload search, no match": "/admin/jobs/job/?q=ORD-NOPE-0000",
        "payload search, every row matches": "/admin/jobs/job/?q=customer",
        "job list, heavy = yes (no rows)": "/admin/jobs/job/?heavy__exact=1",
        "job list, error category (2 %)": "/admin/jobs/job/?error_category__exact=user_fixable",
        "job page": f"/admin/jobs/job/{some}/change/",
        "dashboard": "/admin/jobs/job/dashboard/",
        "dashboard data (live refresh)": "/admin/jobs/job/dashboard/data/",
    }
    # The dashboard's overview is cached for 2 s (shared by every open dashboard); the
    # "computed" rows drop that cache before each request.
    pages["dashboard, computed"] = pages["dashboard"]
    pages["dashboard data, computed"] = pages["dashboard data (live refresh)"]
    print(f"{'page':<36} {'median':>10}  status  goal < {GOAL_MS} ms")
    for name, url in pages.items():
        drop = (lambda: cache.delete(dashboard.CACHE_KEY)) if "computed" in name else (lambda: None)
        ms, status = timed(client, url, args.repeat, drop)
        verdict = "ok" if ms < GOAL_MS and status == 200 else "SLOW" if status == 200 else "ERROR"
        print(f"{name:<36} {ms:8.1f} ms  {status}     {verdict}")


if __name__ == "__main__":
    main()
