"""Prometheus metrics, read from the database and Redis at scrape time.

Nothing is counted inside processes: every web process answers a scrape from the same
shared state, so several of them (and any number of workers) never disagree. The cost is
a few aggregate queries per scrape.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

from django.db.models import Aggregate, Count, IntegerField, Q, Sum
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast
from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from redis.exceptions import RedisError

from jobs.core import dropped, flow, queueing
from jobs.core.models import ErrorCategory, Job, Status
from jobs.insight import calibration
from jobs.insight.stats import span

DURATION_BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 1800, 3600)
WAIT_BUCKETS = (0.1, 1, 5, 30, 60, 300, 1800, 3600, 21600)


class JobdeskCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        yield self._jobs_by_status()
        yield from self._redis()
        yield self._histogram(
            "jobdesk_job_duration_seconds", "Run time of completed jobs, per type.",
            Job.objects.filter(status=Status.COMPLETE, started_at__isnull=False), "finished_at", "started_at",
            DURATION_BUCKETS,
        )  # fmt: skip
        yield self._histogram(
            "jobdesk_job_queue_wait_seconds", "Submit to (last) start, per type.",
            Job.objects.filter(started_at__isnull=False), "started_at", "created_at", WAIT_BUCKETS,
        )  # fmt: skip
        yield self._failures()
        yield self._reconciler_repairs()
        yield from self._eta_error()
        yield from self._flow_control()

    def _flow_control(self) -> Iterator[Metric]:
        """Paused levers and parked jobs: paused is a choice an operator made, not a
        failure, so it is its own series (alert on it separately, if at all)."""
        queues = GaugeMetricFamily("jobdesk_queue_paused", "1 while an operator pauses the queue.", labels=["queue"])
        for lever in flow.describe_queues():
            queues.add_metric([lever["name"]], int(lever["paused"]))
        yield queues
        types = GaugeMetricFamily("jobdesk_type_paused", "1 while an operator pauses the job type.", labels=["type"])
        for name in flow.paused_types():
            types.add_metric([name], 1)
        yield types
        held = GaugeMetricFamily(
            "jobdesk_jobs_held", "Queued jobs parked by a pause or a limit, per type and why.", labels=["type", "hold"]
        )
        for (job_type, hold), count in sorted(flow.held_counts().items()):
            held.add_metric([job_type, hold], count)
        yield held

    def _jobs_by_status(self) -> Metric:
        family = GaugeMetricFamily("jobdesk_jobs", "Jobs on record by status and type.", labels=["status", "type"])
        for row in Job.objects.values("status", "type").annotate(n=Count("pk")).order_by():
            family.add_metric([row["status"], row["type"]], row["n"])
        return family

    def _redis(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("jobdesk_redis_up", "1 when Redis answered this scrape.")
        try:
            depths = queueing.queue_depths()
            workers = queueing.worker_count()
            scheduled = queueing.scheduler().count()
            lost = dropped.totals()
        except RedisError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        depth = GaugeMetricFamily("jobdesk_queue_depth", "Jobs in each RQ queue.", labels=["queue"])
        for name, n in depths.items():
            depth.add_metric([name], n)
        yield depth
        yield GaugeMetricFamily("jobdesk_workers_alive", "Workers in RQ's registry.", value=workers)
        yield GaugeMetricFamily(
            "jobdesk_scheduler_entries", "Entries in rq-scheduler (run_at, backoff, work window).", value=scheduled
        )
        live = CounterMetricFamily(
            "jobdesk_live_dropped", "Live messages dropped on the way to followers, per layer.", labels=["layer"]
        )
        for layer, n in lost.items():
            live.add_metric([layer], n)
        yield live

    def _histogram(self, name, documentation, rows, end, start, buckets) -> Metric:
        """Cumulative buckets per type in one aggregate query (no row is read)."""
        elapsed = span(end, start)
        aggregates: dict[str, Aggregate] = {
            f"le_{i}": Count("pk", filter=Q(elapsed__lte=timedelta(seconds=bound))) for i, bound in enumerate(buckets)
        }
        aggregates["total"] = Count("pk")
        aggregates["sum"] = Sum("elapsed")
        family = HistogramMetricFamily(name, documentation, labels=["type"])
        for row in rows.annotate(elapsed=elapsed).values("type").annotate(**aggregates).order_by():
            counts = [(str(float(b)), row[f"le_{i}"]) for i, b in enumerate(buckets)] + [("+Inf", row["total"])]
            total = row["sum"].total_seconds() if row["sum"] is not None else 0.0
            family.add_metric([row["type"]], counts, total)
        return family

    def _failures(self) -> Metric:
        family = CounterMetricFamily(
            "jobdesk_job_failures", "Jobs that ended failed or dead-lettered, by type and category.",
            labels=["type", "category"],
        )  # fmt: skip
        rows = Job.objects.errored().values("type", "error_category").annotate(n=Count("pk")).order_by()
        for row in rows:
            family.add_metric([row["type"], row["error_category"] or ErrorCategory.TEMPORARY], row["n"])
        return family

    def _reconciler_repairs(self) -> Metric:
        repairs = (
            Job.objects.filter(type="jobs.reconcile", status=Status.COMPLETE)
            .annotate(repairs=Cast(KeyTextTransform("repairs", "result"), IntegerField()))
            .aggregate(total=Sum("repairs"))["total"]
        )
        return CounterMetricFamily(
            "jobdesk_reconciler_repairs", "Repairs made by reconciler runs still on record.", value=repairs or 0
        )

    def _eta_error(self) -> Iterator[Metric]:
        accuracy = calibration.accuracy()
        family = GaugeMetricFamily(
            "jobdesk_eta_error_seconds", "|first estimated start - real start| over recent jobs.", labels=["quantile"]
        )
        fraction = GaugeMetricFamily(
            "jobdesk_eta_error_fraction",
            "|first estimated start - real start| / wait over recent jobs, warm and cold estimates apart.",
            labels=["estimate", "quantile"],
        )
        coverage = GaugeMetricFamily(
            "jobdesk_eta_range_coverage",
            "Share of recent jobs that waited whose real start fell inside their first 80 % range (goal 0.75-0.85).",
        )
        if accuracy.get("samples"):
            family.add_metric(["0.5"], accuracy["median_seconds"])
            family.add_metric(["0.9"], accuracy["p90_seconds"])
            for kind in ("warm", "cold"):
                part = accuracy[kind]
                if part.get("samples"):
                    fraction.add_metric([kind, "0.5"], part["median_fraction"])
                    fraction.add_metric([kind, "0.9"], part["p90_fraction"])
            if accuracy["coverage"].get("share") is not None:
                coverage.add_metric([], accuracy["coverage"]["share"])
        yield family
        yield fraction
        yield coverage


def render() -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JobdeskCollector())
    return generate_latest(registry)
