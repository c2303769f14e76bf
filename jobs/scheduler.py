"""The rq-scheduler class Jobdesk runs: it keeps the cron entries armed.

A Redis flush, or a deployment that never ran ``sync_schedules``, would otherwise leave
no reconcile cron to repair anything. On every poll the scheduler checks that each
registered entry is scheduled (one pipelined ZSCORE per entry) and re-syncs if not, and
refreshes its heartbeat key.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.utils import timezone
from django_rq.queues import DjangoScheduler

from jobs import crons

logger = logging.getLogger("jobs.scheduler")


class JobdeskScheduler(DjangoScheduler):
    def enqueue_jobs(self):
        # The scheduler's own heartbeat (health reads it from the first poll on); the
        # heartbeat cron entry refreshes the same key through a worker every minute.
        self.connection.set(settings.SCHEDULER_HEARTBEAT_KEY, timezone.now().isoformat(), ex=180)
        missing = crons.missing()
        if missing:
            logger.warning("cron entries missing from Redis: re-registering", extra={"missing": missing})
            crons.sync()
        return super().enqueue_jobs()
